"""An LSTM layer's time loops as one op each way (functional.lstm_forward_loop, lstm_backward_loop), and their
replay on the kernel path (kernels.loops): recorded the second time a loop runs over the same buffers, replayed from
then on without running the Python of its steps, and giving exactly what the loop gives step by step.

Tier 2 records onto the host tape (the host build of the kernels); tier 3 (marked gpu) captures CUDA graphs.
"""
import numpy
import pytest
from gpudl.kernels import loader, loops

from gpudl import functional as F
from gpudl.backend import to_numpy


@pytest.fixture(autouse=True)
def fresh_recordings():
    loops.forget()
    yield
    loops.forget()


def buffers(path, t=4, n=3, h=5, dtype=numpy.float64, seed=0):
    """a (T, N, 4H) = x W_x + b, hs and cs (T + 1, N, H) with a random initial state, W_h (H, 4H), dh, dc."""
    rng = numpy.random.default_rng(seed)
    a = rng.standard_normal((t, n, 4 * h)).astype(dtype)
    hs, cs = numpy.zeros((t + 1, n, h), dtype), numpy.zeros((t + 1, n, h), dtype)
    hs[0], cs[0] = rng.standard_normal((n, h)), rng.standard_normal((n, h))
    W_h = (rng.standard_normal((h, 4 * h)) / numpy.sqrt(h)).astype(dtype)
    dh, dc = rng.standard_normal((t, n, h)).astype(dtype), rng.standard_normal((n, h)).astype(dtype)
    return [path.asarray(v) for v in (a, hs, cs, W_h, dh, dc)]


def step_by_step(a, hs, cs, W_h, dh, dc):
    """The loops as nn.LSTM runs them, one functional op at a time."""
    for t in range(a.shape[0]):
        F.matmul_add(hs[t], W_h, a[t])
        F.lstm_step(a[t], cs[t], out=(hs[t + 1], cs[t + 1]))
    W_h_T = F.transpose_for_products(W_h)
    for t in reversed(range(a.shape[0])):
        F.lstm_step_backward(dh[t], dc, a[t], cs[t], cs[t + 1], out=(a[t], dc))
        if t:
            F.matmul_add(a[t], W_h_T, dh[t - 1])


def both_loops(a, hs, cs, W_h, dh, dc):
    F.lstm_forward_loop(a, hs, cs, W_h)
    F.lstm_backward_loop(a, cs, dh, dc, F.transpose_for_products(W_h))


def launches(path):
    return path.counter["launches"] if path.counter is not None else 0


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_the_loops_give_what_the_steps_give_and_the_replays_too(kernel_path, dtype):
    """Run 1 eager, run 2 recorded then replayed, run 3 replayed: each from fresh values in the same buffers, each
    equal to the step-by-step loops (exactly), and those equal to the NumPy path."""
    arrays = buffers(kernel_path, dtype=dtype)
    for run in range(3):
        fresh = buffers(kernel_path, dtype=dtype, seed=run)
        for buffer, value in zip(arrays, fresh):
            buffer[...] = value
        both_loops(*arrays)
        step_by_step(*fresh)
        for got, want in zip(arrays, fresh):
            numpy.testing.assert_array_equal(to_numpy(got), to_numpy(want))
    assert len(loops._recordings) == 2                 # the forward loop and the backward loop
    with kernel_path.reference():
        reference = buffers(kernel_path, dtype=dtype, seed=2)
        reference = [to_numpy(r) for r in reference]
        both_loops(*reference)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == numpy.float32 else {"rtol": 1e-12, "atol": 1e-13}
    for got, want in zip(arrays, reference):
        numpy.testing.assert_allclose(to_numpy(got), want, **tol)


def test_a_replay_runs_no_python_of_the_steps(kernel_path, monkeypatch):
    arrays = buffers(kernel_path)
    both_loops(*arrays)
    both_loops(*arrays)                                 # recorded, then replayed

    def refuse(*args, **kwargs):
        raise AssertionError("a step op was called during a replay")
    for name in ("matmul_add", "lstm_step", "lstm_step_backward"):
        monkeypatch.setattr(F.lstm, name, refuse)
    before = launches(kernel_path)
    both_loops(*arrays)
    if kernel_path.counter is not None:     # the replay's calls are the loop's: 2T launches (and T + T-1 GEMMs)
        assert launches(kernel_path) - before == 2 * arrays[0].shape[0]


def test_other_buffers_are_other_recordings_and_a_one_off_loop_is_not_recorded(kernel_path):
    first, second = buffers(kernel_path), buffers(kernel_path, seed=1)
    F.lstm_forward_loop(*first[:4])
    assert not loops._recordings                        # met once: run eagerly, not recorded
    F.lstm_forward_loop(*second[:4])
    F.lstm_forward_loop(*first[:4])
    F.lstm_forward_loop(*second[:4])
    assert len(loops._recordings) == 2
    wider = buffers(kernel_path, n=4)
    F.lstm_forward_loop(*wider[:4])
    F.lstm_forward_loop(*wider[:4])
    assert len(loops._recordings) == 3


def test_inside_the_recording_of_a_step_the_loop_is_recorded_with_it(kernel_path):
    if kernel_path.name != "host":
        pytest.skip("the host tape's own recording")
    arrays = buffers(kernel_path)
    F.lstm_forward_loop(*arrays[:4])                    # met once
    with loader.recording() as tape:
        F.lstm_forward_loop(*arrays[:4])
    t = arrays[0].shape[0]
    assert len(tape) == 2 * t and not loops._recordings  # the step's tape holds the loop's calls: no loop recording


def test_a_loop_whose_recording_fails_runs_eagerly_from_then_on(kernel_path, monkeypatch):
    from gpudl.kernels import graph
    tried = []

    def broken(self, step):
        tried.append(1)
        raise RuntimeError("capture refused")
    monkeypatch.setattr(graph.Tape, "record", broken)
    monkeypatch.setattr(graph.CudaGraph, "record", broken)
    arrays = buffers(kernel_path)
    reference = [a.copy() for a in arrays]
    for _ in range(3):
        F.lstm_forward_loop(*arrays[:4])
        step_by_step_forward(*reference[:4])
    assert tried == [1] and not loops._recordings
    for got, want in zip(arrays, reference):
        numpy.testing.assert_array_equal(to_numpy(got), to_numpy(want))


def step_by_step_forward(a, hs, cs, W_h):
    for t in range(a.shape[0]):
        F.matmul_add(hs[t], W_h, a[t])
        F.lstm_step(a[t], cs[t], out=(hs[t + 1], cs[t + 1]))


def test_the_loops_refuse_buffers_that_do_not_fit(kernel_path):
    a, hs, cs, W_h, dh, dc = buffers(kernel_path)
    with pytest.raises(ValueError, match="a must be"):
        F.lstm_forward_loop(a[:, :, :-1], hs, cs, W_h)
    with pytest.raises(ValueError, match="hs must be"):
        F.lstm_forward_loop(a, hs[1:], cs, W_h)
    with pytest.raises(ValueError, match="W_h of shape"):
        F.lstm_forward_loop(a, hs, cs, W_h[:, :4])
    with pytest.raises(ValueError, match="dh .* and dc .* do not fit"):
        F.lstm_backward_loop(a, cs, dh[1:], dc, W_h.T)


def test_the_lstm_layer_replays_its_loops_in_eager_use(kernel_path, monkeypatch):
    """nn.LSTM runs its time loops through these ops: over the same buffers (the allocator hands a step's arrays back
    at the same addresses; here the layer's buffers are pinned to make that so on the host), it soon replays both
    loops (the first pass also makes the carried state's arrays, so the buffers settle from the second pass on),
    runs no Python of their steps, and gives what the first, eager pass gave."""
    from gpudl import nn
    from gpudl.functional import lstm as functional_lstm
    rng = numpy.random.default_rng(0)
    layer = kernel_path.move(nn.LSTM(3, 4, dtype=numpy.float64, rng=rng))
    x = kernel_path.asarray(rng.standard_normal((2, 5, 3)))
    dy = kernel_path.asarray(rng.standard_normal((2, 5, 4)))
    pinned, seen = {}, {}
    real_empty = kernel_path.xp.empty

    def empty(shape, dtype=float, **options):       # the k-th request of a shape in a pass gets the same array
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        key = (shape, numpy.dtype(dtype))
        seen[key] = seen.get(key, -1) + 1
        return pinned.setdefault(key + (seen[key],), real_empty(shape, dtype=dtype, **options))
    monkeypatch.setattr(kernel_path.xp, "empty", empty)
    steps = []
    for name in ("lstm_step", "lstm_step_backward"):
        real = getattr(functional_lstm, name)
        monkeypatch.setattr(functional_lstm, name, lambda *a, _real=real, **k: steps.append(1) or _real(*a, **k))
    results = []
    for _ in range(4):
        steps.clear()
        seen.clear()
        for p in layer.parameters():
            p.grad[...] = 0
        y = layer.forward(x)
        dx = layer.backward(dy)
        results.append((to_numpy(y).copy(), to_numpy(dx).copy(), [to_numpy(p.grad).copy() for p in layer.parameters()],
                        len(steps)))
    assert results[0][3] == 10 and results[3][3] == 0          # 5 steps each way, then none: replayed
    for got in results[1:]:
        numpy.testing.assert_array_equal(got[0], results[0][0])
        numpy.testing.assert_array_equal(got[1], results[0][1])
        for g, want in zip(got[2], results[0][2]):
            numpy.testing.assert_array_equal(g, want)
