"""The NumPy path of functional.lstm_step and lstm_step_backward: the same numbers as the plain column-slice version
of the lecture's equations (bit for bit: the fused version does the same arithmetic in the same order, on block-major
work buffers), against central differences in float64, with its per-thread work buffers shared safely; and
functional.linear.transpose_for_products, which the recurrent backward multiplies by at every step."""
import threading

import numpy as np
import pytest

from gpudl import functional as F
from gpudl.functional import dispatch
from gpudl.functional.linear import transpose_for_products
from gpudl.gradient_check import directional_derivatives

SHAPES = [(1, 1), (3, 5), (7, 33), (64, 32)]


def plain_step(a, c_prev):
    """h_t, c_t on column slices of a: sigma(x) = 1/2 + 1/2 tanh(x/2), in the order the fused path computes it."""
    h = a.shape[1] // 4
    i, f, g, o = (a[:, k * h:(k + 1) * h] for k in range(4))
    i, f, o = (np.tanh(v * 0.5) * 0.5 + 0.5 for v in (i, f, o))
    g = np.tanh(g)
    c = f * c_prev + i * g
    return np.tanh(c) * o, c


def plain_step_backward(dh, dc, a, c_prev, c):
    """da, dc_{t-1} from the lecture's derivatives, one gate block at a time, in the fused path's order."""
    h = a.shape[1] // 4
    i, f, g, o = (a[:, k * h:(k + 1) * h] for k in range(4))
    i, f, o = (np.tanh(v * 0.5) * 0.5 + 0.5 for v in (i, f, o))
    g = np.tanh(g)
    tanh_c = np.tanh(c)
    dc_total = (1 - tanh_c * tanh_c) * o * dh + dc
    da = np.concatenate([(1 - i) * i * g * dc_total, (1 - f) * f * c_prev * dc_total,
                         (1 - g * g) * i * dc_total, (1 - o) * o * tanh_c * dh], axis=1)
    return da, dc_total * f


def sample(n, h, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = (3 * rng.standard_normal((n, 4 * h))).astype(dtype)      # wide enough to reach the flat ends of sigma, tanh
    return a, *(rng.standard_normal((n, h)).astype(dtype) for _ in range(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, h", SHAPES)
def test_step_is_bit_identical_to_the_plain_equations(n, h, dtype):
    a, c_prev, dh, dc = sample(n, h, dtype)
    h_t, c_t = F.lstm_step(a, c_prev)
    h_ref, c_ref = plain_step(a, c_prev)
    assert h_t.dtype == c_t.dtype == dtype
    assert np.array_equal(h_t, h_ref) and np.array_equal(c_t, c_ref)
    da, dc_prev = F.lstm_step_backward(dh, dc, a, c_prev, c_t)
    da_ref, dc_prev_ref = plain_step_backward(dh, dc, a, c_prev, c_t)
    assert np.array_equal(da, da_ref) and np.array_equal(dc_prev, dc_prev_ref)


def test_in_place_outputs_give_the_same_bits():
    a, c_prev, dh, dc = sample(5, 8, np.float32, seed=1)
    h_ref, c_ref = F.lstm_step(a, c_prev)
    da_ref, dc_prev_ref = F.lstm_step_backward(dh, dc, a, c_prev, c_ref)
    c_io, h_io = c_prev.copy(), np.empty_like(c_prev)
    F.lstm_step(a, c_io, out=(h_io, c_io))                           # c_t over c_{t-1}
    assert np.array_equal(h_io, h_ref) and np.array_equal(c_io, c_ref)
    a_io, dc_io = a.copy(), dc.copy()
    F.lstm_step_backward(dh, dc_io, a_io, c_prev, c_ref, out=(a_io, dc_io))     # da over a, dc_{t-1} over dc
    assert np.array_equal(a_io, da_ref) and np.array_equal(dc_io, dc_prev_ref)


def test_step_backward_matches_central_differences():
    a, c_prev, _, _ = sample(3, 4, np.float64, seed=2)
    seen = {}

    def forward(a_in, c_in):
        seen.update(a=a_in, c_prev=c_in)
        return F.lstm_step(a_in, c_in)

    def backward(weights):
        c_t = F.lstm_step(seen["a"], seen["c_prev"])[1]
        return F.lstm_step_backward(weights[0], weights[1], seen["a"], seen["c_prev"], c_t)
    analytic, numeric = directional_derivatives(forward, backward, [a, c_prev], [], seed=3)
    assert analytic != 0
    assert np.isclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_work_buffers_survive_other_shapes_and_other_threads():
    """The work buffers are per thread and re-made for another shape: interleaved calls change no result."""
    small, large = sample(3, 5, np.float32, seed=4), sample(9, 7, np.float64, seed=5)
    want = {id(s): (F.lstm_step(s[0], s[1]), F.lstm_step_backward(s[2], s[3], s[0], s[1], s[1])) for s in (small, large)}
    errors = []

    def run(samples):
        try:
            for s in samples * 20:
                fwd, bwd = F.lstm_step(s[0], s[1]), F.lstm_step_backward(s[2], s[3], s[0], s[1], s[1])
                for got, ref in zip(fwd + bwd, want[id(s)][0] + want[id(s)][1]):
                    assert np.array_equal(got, ref)
        except AssertionError as exc:
            errors.append(exc)
    workers = [threading.Thread(target=run, args=([small, large],)), threading.Thread(target=run, args=([large, small],))]
    for w in workers:
        w.start()
    run([small, large])
    for w in workers:
        w.join()
    assert not errors


def test_work_buffers_over_the_bound_are_not_kept(monkeypatch):
    from gpudl.functional import lstm
    monkeypatch.setattr(lstm, "KEEP_BYTES", 64)
    a, c_prev, dh, dc = sample(4, 3, np.float64, seed=6)             # gates (4, 4, 3) float64: 384 bytes
    h_ref, c_ref = plain_step(a, c_prev)
    assert lstm._work("gates", (4, 4, 3), np.float64) is not lstm._work("gates", (4, 4, 3), np.float64)
    h_t, c_t = F.lstm_step(a, c_prev)
    assert np.array_equal(h_t, h_ref) and np.array_equal(c_t, c_ref)
    assert lstm._work("small", (2, 2), np.float64) is lstm._work("small", (2, 2), np.float64)


def test_transpose_for_products_is_a_contiguous_copy_on_numpy_and_the_view_on_the_kernel_path(monkeypatch):
    W = np.arange(12.0).reshape(3, 4)
    W_T = transpose_for_products(W)
    assert W_T.flags.c_contiguous and np.array_equal(W_T, W.T) and not np.shares_memory(W_T, W)
    monkeypatch.setattr(dispatch, "takes_kernel_path", lambda array: True)
    view = transpose_for_products(W)
    assert np.shares_memory(view, W) and np.array_equal(view, W.T)
