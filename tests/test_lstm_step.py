"""functional.lstm_step and lstm_step_backward: the NumPy reference is the lecture's equations on the column slices of
a (gates i, f, g, o), bit for bit; the CPU kernels agree with it to float32 rounding (their float32 tanh is a rational
function accurate to about 1e-8, evaluated in double precision); in-place outputs, central differences in float64,
calls from several threads at once; and functional.linear.transpose_for_products, which the recurrent backward
multiplies by at every step."""
import threading

import numpy as np
import pytest

from gpudl import functional as F
from gpudl.functional import dispatch
from gpudl.functional.linear import transpose_for_products
from gpudl.gradient_check import directional_derivatives

SHAPES = [(1, 1), (3, 5), (7, 33), (64, 32)]


@pytest.fixture
def reference(monkeypatch):
    """The NumPy reference instead of the CPU kernels."""
    monkeypatch.setattr(dispatch, "use_cpu_kernels", False)


def plain_step(a, c_prev):
    """h_t, c_t on column slices of a, gates i, f, g, o: sigma(x) = 1/2 + 1/2 tanh(x/2)."""
    h = a.shape[1] // 4
    i, f, g, o = (a[:, k * h:(k + 1) * h] for k in range(4))
    i, f, o = (0.5 + 0.5 * np.tanh(0.5 * v) for v in (i, f, o))
    g = np.tanh(g)
    c = f * c_prev + i * g
    return o * np.tanh(c), c


def plain_step_backward(dh, dc, a, c_prev, c):
    """da, dc_{t-1} from the lecture's derivatives, one gate block at a time."""
    h = a.shape[1] // 4
    i, f, g, o = (a[:, k * h:(k + 1) * h] for k in range(4))
    i, f, o = (0.5 + 0.5 * np.tanh(0.5 * v) for v in (i, f, o))
    g = np.tanh(g)
    tanh_c = np.tanh(c)
    dc_total = dc + dh * o * (1 - tanh_c * tanh_c)
    da = np.concatenate([dc_total * g * i * (1 - i), dc_total * c_prev * f * (1 - f), dc_total * i * (1 - g * g),
                         dh * tanh_c * o * (1 - o)], axis=1)
    return da, dc_total * f


def sample(n, h, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = (3 * rng.standard_normal((n, 4 * h))).astype(dtype)      # wide enough to reach the flat ends of sigma, tanh
    return a, *(rng.standard_normal((n, h)).astype(dtype) for _ in range(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, h", SHAPES)
def test_the_reference_is_the_plain_equations_bit_for_bit(reference, n, h, dtype):
    a, c_prev, dh, dc = sample(n, h, dtype)
    h_t, c_t = F.lstm_step(a, c_prev)
    h_ref, c_ref = plain_step(a, c_prev)
    assert h_t.dtype == c_t.dtype == dtype
    assert np.array_equal(h_t, h_ref) and np.array_equal(c_t, c_ref)
    da, dc_prev = F.lstm_step_backward(dh, dc, a, c_prev, c_t)
    da_ref, dc_prev_ref = plain_step_backward(dh, dc, a, c_prev, c_t)
    assert np.array_equal(da, da_ref) and np.array_equal(dc_prev, dc_prev_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, h", SHAPES)
def test_the_cpu_kernels_agree_with_the_equations_to_rounding(n, h, dtype):
    pytest.importorskip("gpudl.cpu", reason="the CPU kernels need numba")
    a, c_prev, dh, dc = sample(n, h, dtype)
    h_t, c_t = F.lstm_step(a, c_prev)
    da, dc_prev = F.lstm_step_backward(dh, dc, a, c_prev, c_t)
    exact = [v.astype(np.float64) for v in (a, c_prev, dh, dc)]
    h_64, c_64 = plain_step(exact[0], exact[1])
    da_64, dc_prev_64 = plain_step_backward(exact[2], exact[3], exact[0], exact[1], c_t.astype(np.float64))
    # a few units in the last place of float32 (eps 1.2e-7) on values of order 1; float64 to its own rounding
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    for got, want in ((h_t, h_64), (c_t, c_64), (da, da_64), (dc_prev, dc_prev_64)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def test_the_float32_tanh_is_accurate_everywhere():
    cpu = pytest.importorskip("gpudl.cpu", reason="the CPU kernels need numba")
    x = np.concatenate([np.linspace(-12, 12, 200001), np.geomspace(1e-30, 1, 1000), -np.geomspace(1e-30, 1, 1000),
                        [0.0, -0.0, np.inf, -np.inf, 9.0, -9.0]])
    got = np.array([cpu.lstm.rational_tanh(v) for v in x])
    assert np.abs(got - np.tanh(x)).max() < 2.1e-8         # a sixth of float32's rounding near 1
    assert np.all(np.abs(got) <= 1) and np.signbit(got[-5]) and np.isnan(cpu.lstm.rational_tanh(np.nan))


@pytest.mark.parametrize("use_kernels", [True, False])
def test_in_place_outputs_give_the_same_bits(monkeypatch, use_kernels):
    monkeypatch.setattr(dispatch, "use_cpu_kernels", use_kernels)
    a, c_prev, dh, dc = sample(5, 8, np.float32, seed=1)
    h_ref, c_ref = F.lstm_step(a, c_prev)
    da_ref, dc_prev_ref = F.lstm_step_backward(dh, dc, a, c_prev, c_ref)
    c_io, h_io = c_prev.copy(), np.empty_like(c_prev)
    F.lstm_step(a, c_io, out=(h_io, c_io))                           # c_t over c_{t-1}
    assert np.array_equal(h_io, h_ref) and np.array_equal(c_io, c_ref)
    a_io, dc_io = a.copy(), dc.copy()
    F.lstm_step_backward(dh, dc_io, a_io, c_prev, c_ref, out=(a_io, dc_io))     # da over a, dc_{t-1} over dc
    assert np.array_equal(a_io, da_ref) and np.array_equal(dc_io, dc_prev_ref)


@pytest.mark.parametrize("use_kernels", [True, False])
def test_step_backward_matches_central_differences(monkeypatch, use_kernels):
    monkeypatch.setattr(dispatch, "use_cpu_kernels", use_kernels)
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


def test_calls_from_several_threads_at_once_change_no_result():
    small, large = sample(3, 5, np.float32, seed=4), sample(9, 7, np.float64, seed=5)
    want = {id(s): (F.lstm_step(s[0], s[1]), F.lstm_step_backward(s[2], s[3], s[0], s[1], s[1]))
            for s in (small, large)}
    errors = []

    def run(samples):
        try:
            for s in samples * 20:
                fwd, bwd = F.lstm_step(s[0], s[1]), F.lstm_step_backward(s[2], s[3], s[0], s[1], s[1])
                for got, ref in zip(fwd + bwd, want[id(s)][0] + want[id(s)][1]):
                    assert np.array_equal(got, ref)
        except AssertionError as exc:
            errors.append(exc)
    workers = [threading.Thread(target=run, args=(order,)) for order in ([small, large], [large, small])]
    for w in workers:
        w.start()
    run([small, large])
    for w in workers:
        w.join()
    assert not errors


@pytest.mark.parametrize("use_kernels", [True, False])
def test_transpose_for_products_is_a_copy_on_the_cpu_and_the_view_on_the_cuda_kernels(monkeypatch, use_kernels):
    W = np.arange(12.0).reshape(3, 4)
    monkeypatch.setattr(dispatch, "use_cpu_kernels", use_kernels)
    W_T = transpose_for_products(W)
    assert W_T.flags.c_contiguous and np.array_equal(W_T, W.T) and not np.shares_memory(W_T, W)
    monkeypatch.setattr(dispatch, "takes_kernel_path", lambda array: True)
    view = transpose_for_products(W)
    assert np.shares_memory(view, W) and np.array_equal(view, W.T)
