"""Every kernel against the NumPy path: tier 2 (the .cu source built for the host) and tier 3 (on a GPU).

The ops are called through gpudl.functional, so the dispatch is tested too. Launches are capped at SMALL_GRID blocks
of SMALL_BLOCK threads, far fewer threads than elements, so every grid-stride loop goes round. The geometries hit
every boundary: padding, SAME's asymmetric padding, stride > kernel, non-square windows, ties in max pooling.
"""
import contextlib

import numpy
import pytest
from cuda_host.fixtures import SMALL_BLOCK, SMALL_GRID

from gpudl import functional as F
from gpudl.backend import to_numpy
from gpudl.geometry import Window
from gpudl.kernels import loader

pytestmark = pytest.mark.usefixtures("small_launches")
DTYPES = [numpy.float32, numpy.float64]
THREADS = SMALL_BLOCK * SMALL_GRID

# (H, W, kernel, strides, padding)
GEOMETRIES = [
    (5, 6, (3, 3), (1, 1), "valid"),
    (6, 5, (2, 2), (1, 1), "same"),          # pads (0, 1, 0, 1): all padding at the bottom/right
    (7, 8, (3, 3), (2, 2), "same"),          # pads (1, 1, 0, 1)
    (5, 7, (2, 3), (1, 2), 1),
    (7, 7, (2, 2), (3, 3), "valid"),         # stride > kernel: some cells are read by no window
    (6, 9, (1, 2), (2, 3), "same"),
    (4, 5, (4, 5), (1, 1), "valid"),         # one window covers the whole image
    (6, 5, (2, 2), (1, 1), "same_lower"),    # pads (1, 0, 1, 0): all padding at the top/left (ONNX's SAME_LOWER)
    (7, 8, (3, 3), (2, 2), "same_lower"),    # pads (1, 1, 1, 0)
]
POOL_GEOMETRIES = GEOMETRIES + [(5, 5, (3, 3), (1, 1), "same"), (7, 6, (2, 2), (2, 2), 1)]


def window_of(x, kernel, strides, padding):
    return Window.of(x.shape, kernel, strides, padding)


def tolerance(dtype):
    return 2e-6 if dtype == numpy.float32 else 1e-13


def launches_fewer_threads_than(path, before, n):
    """The grid-stride loop was needed: n elements, at most THREADS threads (counted on the host target)."""
    assert THREADS < n
    if path.counter is not None:
        assert path.counter["launches"] > before[1]
        assert path.counter["threads"] - before[0] <= THREADS * (path.counter["launches"] - before[1])


def counts(path):
    return (path.counter["threads"], path.counter["launches"]) if path.counter is not None else None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_col2im_match_numpy(kernel_path, dtype, geometry):
    h, w, (kh, kw), (sh, sw), padding = geometry
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((2, 3, h, w)).astype(dtype)
    window = window_of(x, (kh, kw), (sh, sw), padding)
    before = counts(kernel_path)
    col = F.im2col(kernel_path.asarray(x), window)
    col_min = F.im2col(kernel_path.asarray(x), window, fill=-numpy.inf)
    dcol = rng.standard_normal(col.shape).astype(dtype)
    img = F.col2im(kernel_path.asarray(dcol), window)
    with kernel_path.reference():
        col_ref = F.im2col(x, window)
        col_min_ref = F.im2col(x, window, fill=-numpy.inf)
        img_ref = F.col2im(dcol, window)
    launches_fewer_threads_than(kernel_path, before, col.size)
    numpy.testing.assert_array_equal(to_numpy(col), col_ref)
    numpy.testing.assert_array_equal(to_numpy(col_min), col_min_ref)
    # the same summation order as the NumPy path (window row i, then column j)
    numpy.testing.assert_allclose(to_numpy(img), img_ref, rtol=tolerance(dtype), atol=tolerance(dtype))
    assert col.dtype == img.dtype == dtype and img.shape == x.shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", POOL_GEOMETRIES)
def test_max_pool_matches_numpy_with_ties(kernel_path, dtype, geometry):
    h, w, (kh, kw), (sh, sw), padding = geometry
    rng = numpy.random.default_rng(1)
    x = rng.integers(-2, 2, size=(2, 3, h, w)).astype(dtype)    # four values only: ties in almost every window
    window = Window.of(x.shape, (kh, kw), (sh, sw), padding, pooling=True)
    y, argmax = F.max_pool2d(kernel_path.asarray(x), window)
    dy = rng.standard_normal(y.shape).astype(dtype)
    before = counts(kernel_path)
    dx = F.max_pool2d_backward(kernel_path.asarray(dy), argmax, x.shape, window)
    launches_fewer_threads_than(kernel_path, before, dx.size)
    with kernel_path.reference():
        y_ref, argmax_ref = F.max_pool2d(x, window)
        dx_ref = F.max_pool2d_backward(dy, argmax_ref, x.shape, window)
    numpy.testing.assert_array_equal(to_numpy(y), y_ref)
    numpy.testing.assert_array_equal(to_numpy(argmax), argmax_ref)      # the first maximum wins on both paths
    numpy.testing.assert_allclose(to_numpy(dx), dx_ref, rtol=tolerance(dtype), atol=tolerance(dtype))
    assert argmax.dtype == numpy.int8 and y.dtype == dx.dtype == dtype      # windows of at most 128 cells


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_nan_wins_like_numpy(kernel_path, dtype):
    x = numpy.arange(2 * 4 * 4, dtype=dtype).reshape(2, 1, 4, 4)
    x[0, 0, 0, 1] = numpy.nan        # second cell of window (0, 0)
    x[1, 0, 3, 2] = x[1, 0, 2, 3] = numpy.nan
    y, argmax = F.max_pool2d(kernel_path.asarray(x), Window.of((1, 1, 4, 4), 2, 2, "valid"))
    with kernel_path.reference():
        y_ref, argmax_ref = F.max_pool2d(x, Window.of((1, 1, 4, 4), 2, 2, "valid"))
    numpy.testing.assert_array_equal(to_numpy(y), y_ref)                # NaN == NaN here
    numpy.testing.assert_array_equal(to_numpy(argmax), argmax_ref)
    assert argmax_ref[0, 0, 0, 0] == 1 and argmax_ref[1, 0, 1, 1] == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", POOL_GEOMETRIES)
def test_avg_pool_matches_numpy(kernel_path, dtype, geometry):
    h, w, (kh, kw), (sh, sw), padding = geometry
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((2, 3, h, w)).astype(dtype)
    window = Window.of(x.shape, (kh, kw), (sh, sw), padding, pooling=True)
    y = F.avg_pool2d(kernel_path.asarray(x), window)
    dy = rng.standard_normal(y.shape).astype(dtype)
    before = counts(kernel_path)
    dx = F.avg_pool2d_backward(kernel_path.asarray(dy), x.shape, window)
    launches_fewer_threads_than(kernel_path, before, dx.size)
    with kernel_path.reference():
        y_ref = F.avg_pool2d(x, window)
        dx_ref = F.avg_pool2d_backward(dy, x.shape, window)
    numpy.testing.assert_allclose(to_numpy(y), y_ref, rtol=tolerance(dtype), atol=tolerance(dtype))
    numpy.testing.assert_allclose(to_numpy(dx), dx_ref, rtol=tolerance(dtype), atol=tolerance(dtype))
    assert y.dtype == dx.dtype == dtype


def test_avg_pool_does_not_count_padding(kernel_path):
    x = kernel_path.xp.ones((1, 1, 3, 3), numpy.float64)
    window = Window.with_pads(x.shape, (2, 2), (2, 2), (1, 0, 1, 0), pooling=True)
    y = F.avg_pool2d(x, window)                                  # corner windows hold one real cell
    numpy.testing.assert_array_equal(to_numpy(y), numpy.ones((1, 1, 2, 2)))
    dx = F.avg_pool2d_backward(kernel_path.xp.ones_like(y), x.shape, window)
    numpy.testing.assert_array_equal(to_numpy(dx)[0, 0], [[1, 0.5, 0.5], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, hidden", [(3, 5), (7, 4), (1, 1)])
def test_lstm_step_matches_numpy(kernel_path, dtype, n, hidden):
    rng = numpy.random.default_rng(3)
    a = (4 * rng.standard_normal((n, 4 * hidden))).astype(dtype)     # saturating gates too
    a[0, 0], a[-1, -1] = 60.0, -60.0                                 # exp would overflow in a naive sigmoid
    c_prev, dh, dc = (rng.standard_normal((n, hidden)).astype(dtype) for _ in range(3))
    before = counts(kernel_path)
    h, c = F.lstm_step(kernel_path.asarray(a), kernel_path.asarray(c_prev))
    if n * hidden > THREADS:
        launches_fewer_threads_than(kernel_path, before, n * hidden)
    da, dc_prev = F.lstm_step_backward(*(kernel_path.asarray(v) for v in (dh, dc, a, c_prev, to_numpy(c))))
    with kernel_path.reference():
        h_ref, c_ref = F.lstm_step(a, c_prev)
        da_ref, dc_prev_ref = F.lstm_step_backward(dh, dc, a, c_prev, c_ref)
    tol = tolerance(dtype)
    for got, want in ((h, h_ref), (c, c_ref), (da, da_ref), (dc_prev, dc_prev_ref)):
        numpy.testing.assert_allclose(to_numpy(got), want, rtol=tol, atol=tol)
        assert got.dtype == dtype and got.shape == want.shape
    assert numpy.isfinite(to_numpy(h)).all()


def test_lstm_state_broadcasts_zero(kernel_path):
    a = numpy.random.default_rng(4).standard_normal((2, 8))
    h, c = F.lstm_step(kernel_path.asarray(a), 0.0)                  # the first step: c_{-1} = 0
    ones, zero_row = kernel_path.xp.ones((2, 2)), kernel_path.xp.zeros((1, 2))
    da, dc_prev = F.lstm_step_backward(ones, 0, kernel_path.asarray(a), zero_row, c)
    with kernel_path.reference():
        h_ref, c_ref = F.lstm_step(a, numpy.zeros((2, 2)))
        da_ref, dc_prev_ref = F.lstm_step_backward(numpy.ones((2, 2)), 0, a, numpy.zeros((1, 2)), c_ref)
    for got, want in ((h, h_ref), (da, da_ref), (dc_prev, dc_prev_ref)):
        numpy.testing.assert_allclose(to_numpy(got), want, rtol=1e-13, atol=1e-15)


def test_non_contiguous_input_is_made_contiguous(kernel_path):
    x = numpy.random.default_rng(5).standard_normal((2, 5, 6, 3))
    x_dev = kernel_path.asarray(x).transpose(0, 3, 1, 2)            # (2, 3, 5, 6), strided
    assert not x_dev.flags.c_contiguous
    window = Window.of(x_dev.shape, 2, 1, "valid")
    col = F.im2col(x_dev, window)
    with kernel_path.reference():
        numpy.testing.assert_array_equal(to_numpy(col), F.im2col(x.transpose(0, 3, 1, 2), window))


def test_host_target_really_runs_the_kernels(kernel_path):
    """Guard for the tier itself: on the host target the ops above went through the .cu builds, not NumPy."""
    if kernel_path.counter is None:
        pytest.skip("only the host target counts its launches")
    before = counts(kernel_path)
    F.max_pool2d(numpy.zeros((1, 1, 4, 4)), Window.of((1, 1, 4, 4), 2, 2, "valid"))
    assert kernel_path.counter["launches"] == before[1] + 1
    assert loader.BLOCK == SMALL_BLOCK


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_step_writes_into_out_and_in_place(kernel_path, dtype):
    """out= on both ops, and the aliasing the layer relies on: c_out over c_prev, da over a, dc_prev over dc."""
    xp, rng = kernel_path.xp, numpy.random.default_rng(8)
    n, hidden = 7, 4                                                 # 28 states > THREADS: the loops go round
    a = (3 * rng.standard_normal((n, 4 * hidden))).astype(dtype)
    c_prev, dh, dc = (rng.standard_normal((n, hidden)).astype(dtype) for _ in range(3))
    a_d, c_prev_d, dh_d, dc_d = (kernel_path.asarray(v) for v in (a, c_prev, dh, dc))
    h_new, c_new = F.lstm_step(a_d, c_prev_d)                        # allocating: the values to match
    da_new, dc_prev_new = F.lstm_step_backward(dh_d, dc_d, a_d, c_prev_d, c_new)

    hs = xp.zeros((3, n, hidden), dtype)                             # time-major buffers, as in nn.LSTM
    cs = xp.zeros((3, n, hidden), dtype)
    cs[1] = c_prev_d
    F.lstm_step(a_d, cs[1], out=(hs[2], cs[2]))
    c_io = c_prev_d.copy()
    h_io, c_io_out = F.lstm_step(a_d, c_io, out=(xp.empty_like(c_io), c_io))
    a_io, dc_io = a_d.copy(), dc_d.copy()
    da_io, dc_prev_io = F.lstm_step_backward(dh_d, dc_io, a_io, c_prev_d, c_new, out=(a_io, dc_io))
    assert da_io is a_io and dc_prev_io is dc_io and c_io_out is c_io
    # in place or not, the kernels compute the same bits
    for got, want in ((hs[2], h_new), (cs[2], c_new), (h_io, h_new), (c_io, c_new), (a_io, da_new),
                      (dc_io, dc_prev_new)):
        numpy.testing.assert_array_equal(to_numpy(got), to_numpy(want))
    numpy.testing.assert_array_equal(to_numpy(hs[:2]), 0)           # nothing written outside out
    with kernel_path.reference():
        h_ref, c_ref = F.lstm_step(a, c_prev)
        da_ref, dc_prev_ref = F.lstm_step_backward(dh, dc, a, c_prev, c_ref)
    for got, want in ((hs[2], h_ref), (c_io, c_ref), (a_io, da_ref), (dc_io, dc_prev_ref)):
        numpy.testing.assert_allclose(to_numpy(got), want, rtol=tolerance(dtype), atol=tolerance(dtype))


def test_lstm_step_refuses_bad_out(kernel_path, monkeypatch):
    """A wrong out is a clear error on the kernel path and on the NumPy path alike, before anything is written."""
    xp = kernel_path.xp
    a, c = xp.zeros((2, 8), numpy.float32), xp.zeros((2, 2), numpy.float32)
    bad = [
        ((xp.empty((2, 2), numpy.float32),), TypeError, "tuple of 2 arrays"),
        ((xp.empty((2, 2), numpy.float32), xp.empty((2, 3), numpy.float32)), ValueError, r"out\[1\].*\(2, 2\)"),
        ((xp.empty((2, 2), numpy.float64), xp.empty((2, 2), numpy.float32)), TypeError, r"out\[0\].*float32"),
        ((xp.empty((2, 4), numpy.float32)[:, ::2], c), ValueError, "not C-contiguous"),
    ]
    for reference in (False, True):
        with kernel_path.reference() if reference else contextlib.nullcontext():
            for out, error, words in bad:
                with pytest.raises(error, match=words):
                    F.lstm_step(a, c, out=out)
            with pytest.raises(ValueError, match=r"lstm_step_backward: out\[0\]"):
                F.lstm_step_backward(c, c, a, c, c, out=(c, c))     # da must be (N, 4H)
