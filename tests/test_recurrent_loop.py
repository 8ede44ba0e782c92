"""The recurrent time loops' building blocks: functional.matmul_add, out= on the LSTM step ops (NumPy path), and
how many array calls one time step makes (each would be one CuPy call, ~10-35 us of host time, on a GPU)."""
import collections

import numpy
import pytest

from gpudl import functional as F
from gpudl import nn
from gpudl.backend import to_numpy
from gpudl.functional import dispatch
from gpudl.kernels import blas, loader


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("form", ["plain", "transposed", "strided"])
def test_matmul_add_adds_the_product_in_place(xp, dtype, form):
    rng = numpy.random.default_rng(0)
    x, out0 = rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal((5, 4)).astype(dtype)
    base = {"plain": rng.standard_normal((3, 4)), "transposed": rng.standard_normal((4, 3)),
            "strided": rng.standard_normal((3, 8))}[form].astype(dtype)
    view = {"plain": lambda w: w, "transposed": lambda w: w.T, "strided": lambda w: w[:, ::2]}[form]
    out = xp.array(out0)
    got = F.matmul_add(xp.asarray(x), view(xp.asarray(base)), out)
    assert got is out
    tol = 1e-5 if dtype == numpy.float32 else 1e-12
    numpy.testing.assert_allclose(to_numpy(out), out0 + x @ view(base), rtol=tol, atol=tol)


def test_matmul_add_into_a_time_major_slice(xp):
    """The layers' use: out is one step of a (T, N, M) buffer; the other steps stay untouched."""
    rng = numpy.random.default_rng(1)
    buf0, h, W = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 5)), rng.standard_normal((5, 4))
    buf = xp.array(buf0)
    F.matmul_add(xp.asarray(h), xp.asarray(W), buf[1])
    want = buf0.copy()
    want[1] += h @ W
    numpy.testing.assert_allclose(to_numpy(buf), want, rtol=1e-12, atol=1e-12)


def test_matmul_add_refuses_bad_arguments():
    x, W, out = numpy.zeros((2, 3)), numpy.zeros((3, 4)), numpy.zeros((2, 4))
    with pytest.raises(ValueError, match=r"matmul_add: cannot add x \(2, 3\) @ W \(3, 3\)"):
        F.matmul_add(x, numpy.zeros((3, 3)), out)
    with pytest.raises(ValueError, match="cannot add"):
        F.matmul_add(x, W, numpy.zeros((4, 2)))
    with pytest.raises(TypeError, match="float32"):
        F.matmul_add(x, W, out.astype(numpy.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        F.matmul_add(x, W, numpy.zeros((4, 2)).T)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_lstm_step_out_gives_the_same_bits_numpy(dtype):
    """The NumPy path writes into out (also in place over a and dc) with exactly the allocating path's results."""
    rng = numpy.random.default_rng(2)
    a = (3 * rng.standard_normal((4, 12))).astype(dtype)
    c_prev, dh, dc = (rng.standard_normal((4, 3)).astype(dtype) for _ in range(3))
    h, c = F.lstm_step(a, c_prev)
    da, dc_prev = F.lstm_step_backward(dh, dc, a, c_prev, c)
    hs = numpy.zeros((2, 4, 3), dtype)
    c_io = c_prev.copy()
    h_out, c_out = F.lstm_step(a, c_io, out=(hs[1], c_io))
    assert numpy.shares_memory(h_out, hs[1]) and c_out is c_io
    a_io, dc_io = a.copy(), dc.copy()
    da_io, dc_prev_io = F.lstm_step_backward(dh, dc_io, a_io, c_prev, c, out=(a_io, dc_io))
    assert da_io is a_io and dc_prev_io is dc_io
    for got, want in ((hs[1], h), (c_io, c), (a_io, da), (dc_io, dc_prev)):
        numpy.testing.assert_array_equal(got, want)
        assert got.dtype == dtype
    numpy.testing.assert_array_equal(hs[0], 0)


@pytest.mark.parametrize("layer_type", [nn.RNN, nn.LSTM])
@pytest.mark.parametrize("n, t", [(3, 4), (1, 1), (2, 1), (1, 3)])
def test_backward_leaves_the_callers_arrays_alone(layer_type, n, t):
    """The backward loop adds into its own buffers, never into dh_seq or the final-state gradients it was given."""
    rng = numpy.random.default_rng(3)
    layer = layer_type(2, 3, dtype=numpy.float64, rng=rng)
    x, state = rng.standard_normal((n, t, 2)), rng.standard_normal((n, 3))
    initial = state if layer_type is nn.RNN else (state, state + 1)
    kept = [v.copy() for v in (x, state)]
    y = layer.forward(x, initial)
    dy, dh_last, dc_last = rng.standard_normal(y.shape), rng.standard_normal((n, 3)), rng.standard_normal((n, 3))
    given = (dy, dh_last, dc_last)
    copies = [v.copy() for v in given]
    layer.backward(dy, dh_last if layer_type is nn.RNN else (dh_last, dc_last))
    for got, want in zip(given + (x, state), copies + kept):
        numpy.testing.assert_array_equal(got, want)


class Counted(numpy.ndarray):
    """numpy arrays that count the array operations (ufuncs, copies, allocations) done to them while `on`."""

    calls = collections.Counter()
    on = False

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if Counted.on:
            Counted.calls[ufunc.__name__] += 1
        plain = tuple(v.view(numpy.ndarray) if isinstance(v, Counted) else v for v in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(v.view(numpy.ndarray) for v in kwargs["out"])
        result = getattr(ufunc, method)(*plain, **kwargs)
        return result.view(Counted) if isinstance(result, numpy.ndarray) else result

    def __setitem__(self, key, value):
        if Counted.on:
            Counted.calls["copy"] += 1
        super().__setitem__(key, value)


@pytest.mark.parametrize("layer_type", [nn.LSTM, nn.RNN])
def test_one_gemm_and_one_kernel_per_step(monkeypatch, layer_type):
    """With the kernel path and cuBLAS stood in for, count what the extra time step of a sequence costs: one GEMM
    and one launch per step, forward and backward, nothing else (no NumPy/CuPy array math of the layer's own, which
    a recorded step would miss), and no allocation."""
    monkeypatch.setattr(Counted, "calls", collections.Counter())
    monkeypatch.setattr(dispatch, "takes_kernel_path", lambda a: True)
    monkeypatch.setattr(loader, "max_blocks", lambda xp: 1)
    monkeypatch.setattr(loader, "get_kernel", lambda xp, file, name, dtype:
                        lambda grid, block, args: Counted.calls.update([name]))

    class Blas:
        @staticmethod
        def gemm(transa, transb, x, W, out, alpha, beta):
            Counted.calls["gemm"] += 1
            return out

    monkeypatch.setattr(blas, "get_blas", lambda xp: Blas)
    for name in ("empty", "zeros", "full", "empty_like", "zeros_like"):
        make = getattr(numpy, name)
        monkeypatch.setattr(numpy, name, lambda *a, _make=make, _name=name, **k: (
            Counted.calls.update([_name] if Counted.on else []), _make(*a, **k).view(Counted))[1])

    def per_phase(t):
        layer = layer_type(3, 4, rng=numpy.random.default_rng(0))
        x = numpy.ones((2, t, 3), numpy.float32).view(Counted)

        def counted(call, *args):
            Counted.calls.clear()
            Counted.on = True
            result = call(*args)
            Counted.on = False
            return result, collections.Counter(Counted.calls)

        y, forward = counted(layer.forward, x)
        _, backward = counted(layer.backward, y)
        return forward, backward

    try:
        short, long = per_phase(5), per_phase(6)
    finally:
        Counted.on = False
    forward, backward = (b - a for a, b in zip(short, long))
    if layer_type is nn.LSTM:
        assert forward == {"gemm": 1, "lstm_step_forward": 1}
        assert backward == {"gemm": 1, "lstm_step_backward": 1}
    else:
        assert forward == {"gemm": 1, "tanh_forward": 1}
        assert backward == {"gemm": 1, "tanh_backward": 1}
