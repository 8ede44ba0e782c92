"""The LSTM's time loops as one CPU kernel each (gpudl.cpu.lstm.forward_loop/backward_loop, run by cpu.loops.replayed,
each step split by hidden units): the same results as the step-by-step NumPy reference, the same bits at every thread
count, and the loops that have no fused kernel run as they are."""
import numpy as np
import pytest

import gpudl
from gpudl import functional as F
from gpudl.functional import dispatch

cpu = pytest.importorskip("gpudl.cpu", reason="the CPU kernels need numba")
from gpudl.cpu import loops, lstm  # noqa: E402


def run_loops(shape, dtype, seed=0):
    """hs, cs, da (over a), dh, dc after lstm_forward_loop and lstm_backward_loop on random buffers."""
    steps, n, h = shape
    rng = np.random.default_rng(seed)
    a = (2 * rng.standard_normal((steps, n, 4 * h))).astype(dtype)
    W = (0.5 * rng.standard_normal((h, 4 * h))).astype(dtype)
    hs, cs = np.zeros((steps + 1, n, h), dtype), np.zeros((steps + 1, n, h), dtype)
    hs[0], cs[0] = rng.standard_normal((n, h)), rng.standard_normal((n, h))
    dh, dc = rng.standard_normal((steps, n, h)).astype(dtype), rng.standard_normal((n, h)).astype(dtype)
    F.lstm_forward_loop(a, hs, cs, W)
    F.lstm_backward_loop(a, cs, dh, dc, np.ascontiguousarray(W.T))
    return hs, cs, a, dh, dc


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("shape", [(6, 19, 5), (3, 1, 4), (2, 8, 16)])
@pytest.mark.parametrize("units, rows, cores", [(1, 3, 4), (2, 3, 6), (8, 2, 4)])
def test_the_fused_loops_give_the_reference_loops_results(monkeypatch, dtype, tolerance, shape, units, rows, cores):
    """Pieces of hidden units only (4 at h = 5, unequal), of units and rows (2 x 3 at (19, 5)), of rows only (a piece
    of units is 8 wide): more pieces than this machine may have cores."""
    monkeypatch.setattr(lstm, "LOOP_UNITS", units)
    monkeypatch.setattr(lstm, "LOOP_ROWS", rows)
    monkeypatch.setattr(lstm, "MAX_THREADS", cores)
    calls = []
    for name in ("forward_loop", "backward_loop"):
        monkeypatch.setitem(loops._FUSED, f"lstm_{name}",
                            lambda *a, _f=getattr(lstm, name), _n=name: calls.append(_n) or _f(*a))
    got = run_loops(shape, dtype)
    assert calls == ["forward_loop", "backward_loop"]
    monkeypatch.setattr(dispatch, "use_cpu_kernels", False)        # the NumPy reference's loops
    want = run_loops(shape, dtype)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_loops_give_the_same_bits_at_every_thread_count(monkeypatch, dtype):
    monkeypatch.setattr(lstm, "LOOP_UNITS", 2)          # 3 x 2 pieces at (9, 6), on one thread and on two
    monkeypatch.setattr(lstm, "LOOP_ROWS", 4)
    monkeypatch.setattr(lstm, "MAX_THREADS", 6)
    results = []
    kept = gpudl.set_num_threads(1)
    try:
        for threads in (1, 2, 1):
            gpudl.set_num_threads(threads)
            results.append(run_loops((5, 9, 6), dtype))
    finally:
        gpudl.set_num_threads(kept)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def test_a_loop_without_a_fused_kernel_runs_its_body():
    ran = []
    loops.replayed("rnn_forward_loop", (), lambda: ran.append(True))
    assert ran == [True]
    loops.replayed("lstm_forward_loop", (np.zeros((1, 1, 4)), np.zeros((2, 1, 1)), np.zeros((2, 1, 1)),
                                         np.zeros((1, 4))), lambda: ran.append(False))
    assert ran == [True]


def test_the_loops_refuse_buffers_they_could_not_write_in_place():
    """A loop writes a (and dh, dc) in place: a strided view would have been written through a copy and the results
    lost, so it is refused, as on the step-by-step path."""
    steps, n, h = 3, 4, 2
    a = np.zeros((steps, 2 * n, 4 * h), np.float32)[:, ::2]
    hs, cs = np.zeros((steps + 1, n, h), np.float32), np.zeros((steps + 1, n, h), np.float32)
    W = np.zeros((h, 4 * h), np.float32)
    with pytest.raises(ValueError, match="C-contiguous .* not contiguous"):
        F.lstm_forward_loop(a, hs, cs, W)
    a = np.ascontiguousarray(a)
    dh = np.zeros((steps, n, 2 * h), np.float32)[:, :, ::2]
    with pytest.raises(ValueError, match="dh and dc must be C-contiguous"):
        F.lstm_backward_loop(a, cs, dh, np.zeros((n, h), np.float32), np.ascontiguousarray(W.T))


def test_an_overflowing_product_in_a_loop_raises_under_numpys_errstate():
    """As the step-by-step loop's products do (cpu.blas.gemm): finite inputs whose product overflows raise in training
    (numpy.errstate(over="raise")), and pass quietly outside it."""
    steps, n, h = 2, 3, 2
    W = np.full((h, 4 * h), 3e38, np.float32)
    for errstate, raises in (("raise", True), ("ignore", False)):
        a = np.zeros((steps, n, 4 * h), np.float32)
        hs, cs = np.ones((steps + 1, n, h), np.float32), np.zeros((steps + 1, n, h), np.float32)
        with np.errstate(over=errstate):
            if raises:
                with pytest.raises(FloatingPointError, match="overflow encountered in lstm_forward_loop"):
                    F.lstm_forward_loop(a, hs, cs, W)
            else:
                F.lstm_forward_loop(a, hs, cs, W)
                assert np.isinf(a).any()
        dh, dc = np.full((steps, n, h), 100, np.float32), np.zeros((n, h), np.float32)
        a = np.ones((steps, n, 4 * h), np.float32)
        with np.errstate(over=errstate):
            if raises:
                with pytest.raises(FloatingPointError, match="overflow encountered in lstm_backward_loop"):
                    F.lstm_backward_loop(a, cs, dh, dc, np.full((4 * h, h), 3e38, np.float32))
            else:
                F.lstm_backward_loop(a, cs, dh, dc, np.full((4 * h, h), 3e38, np.float32))
                assert np.isinf(dh).any()
