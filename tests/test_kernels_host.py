"""Tier 2: the arithmetic of every CUDA kernel, checked without a GPU.

Each .cu file is built for the host with tests/cuda_host/cuda_host.h and called through ctypes, by the very wrappers
in gpudl.kernels (only the kernel lookup is swapped), then compared with the NumPy path of gpudl.functional. Launches
use blocks of 8 threads and at most 3 blocks, far fewer threads than elements, so every grid-stride loop goes round.
"""
import numpy
import pytest
from cuda_host import HostKernels, compiler

from gpudl import kernels
from gpudl.functional import conv, lstm, pad_amounts, pooling

BLOCK, MAX_BLOCKS = 8, 3
DTYPES = [numpy.float32, numpy.float64]

# (H, W, kernel, strides, padding): valid, SAME with asymmetric padding, explicit padding, stride > kernel,
# non-square windows and images, a 1x1 window, a window as large as the image.
GEOMETRIES = [
    (5, 6, (3, 3), (1, 1), "valid"),
    (6, 5, (2, 2), (1, 1), "same"),          # pads (0, 1, 0, 1): all padding at the bottom/right
    (7, 8, (3, 3), (2, 2), "same"),          # pads (1, 1, 0, 1)
    (5, 7, (2, 3), (1, 2), 1),
    (7, 7, (2, 2), (3, 3), "valid"),         # stride > kernel: some cells are read by no window
    (6, 9, (1, 2), (2, 3), "same"),
    (4, 5, (4, 5), (1, 1), "valid"),
]
POOL_GEOMETRIES = GEOMETRIES + [(5, 5, (3, 3), (1, 1), "same"), (7, 6, (2, 2), (2, 2), 1)]


def pads_of(h, w, kernel, strides, padding):
    return pad_amounts(h, kernel[0], strides[0], padding) + pad_amounts(w, kernel[1], strides[1], padding)


@pytest.fixture(scope="session")
def host_kernels(tmp_path_factory):
    if compiler() is None:
        pytest.skip("no host C++ compiler (g++) to build the kernels for the CPU")
    return HostKernels(kernels.KERNEL_DIR, str(tmp_path_factory.mktemp("cuda_host")))


@pytest.fixture
def host(host_kernels, monkeypatch):
    """gpudl.kernels launching on the host: numpy arrays in, small grids, the same checks and wrappers."""
    monkeypatch.setattr(kernels, "get_kernel", host_kernels.get_kernel)
    monkeypatch.setattr(kernels, "BLOCK", BLOCK)
    monkeypatch.setattr(kernels, "max_blocks", lambda xp: MAX_BLOCKS)
    return host_kernels


def grid_stride_checked(host, before, n_elements):
    """Assert the last launch ran fewer threads than it had elements (so the grid-stride loop was needed)."""
    threads = host.counter["threads"] - before
    assert host.counter["launches"] > 0
    assert threads <= BLOCK * MAX_BLOCKS < n_elements


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_col2im_match_numpy(host, dtype, geometry):
    h, w, (kh, kw), (sh, sw), padding = geometry
    pads = pads_of(h, w, (kh, kw), (sh, sw), padding)
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((2, 3, h, w)).astype(dtype)
    before = host.counter["threads"]
    col = kernels.im2col(x, kh, kw, sh, sw, pads)
    grid_stride_checked(host, before, col.size)
    numpy.testing.assert_array_equal(col, conv._im2col_xp(x, kh, kw, sh, sw, pads, 0.0))
    assert col.dtype == dtype

    col_min = kernels.im2col(x, kh, kw, sh, sw, pads, fill=-numpy.inf)
    numpy.testing.assert_array_equal(col_min, conv._im2col_xp(x, kh, kw, sh, sw, pads, -numpy.inf))

    dcol = rng.standard_normal(col.shape).astype(dtype)
    img = kernels.col2im(dcol, h, w, sh, sw, pads)
    # the same summation order as the NumPy path (window row i, then column j): equal up to the last bit or so
    numpy.testing.assert_allclose(img, conv._col2im_xp(dcol, h, w, sh, sw, pads), rtol=1e-6, atol=1e-6)
    assert img.shape == x.shape and img.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", POOL_GEOMETRIES)
def test_max_pool_matches_numpy_with_ties(host, dtype, geometry):
    h, w, (kh, kw), (sh, sw), padding = geometry
    pads = pads_of(h, w, (kh, kw), (sh, sw), padding)
    rng = numpy.random.default_rng(1)
    x = rng.integers(-2, 2, size=(2, 3, h, w)).astype(dtype)    # four values only: ties in almost every window
    before = host.counter["threads"]
    y, argmax = kernels.max_pool2d(x, kh, kw, sh, sw, pads)
    if y.size > BLOCK * MAX_BLOCKS:
        grid_stride_checked(host, before, y.size)
    y_ref, argmax_ref = pooling.max_pool2d(x, kh, kw, sh, sw, pads)
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(argmax, argmax_ref)       # the first maximum wins on both paths
    assert argmax.dtype == numpy.int64 and y.dtype == dtype

    dy = rng.standard_normal(y.shape).astype(dtype)
    before = host.counter["threads"]
    dx = kernels.max_pool2d_backward(dy, argmax, x.shape, kh, kw, sh, sw, pads)
    grid_stride_checked(host, before, dx.size)
    numpy.testing.assert_allclose(dx, pooling.max_pool2d_backward(dy, argmax_ref, x.shape, kh, kw, sh, sw, pads),
                                  rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_nan_wins_like_numpy(host, dtype):
    x = numpy.arange(2 * 4 * 4, dtype=dtype).reshape(2, 1, 4, 4)
    x[0, 0, 0, 1] = numpy.nan        # second cell of window (0, 0)
    x[1, 0, 3, 2] = x[1, 0, 2, 3] = numpy.nan
    y, argmax = kernels.max_pool2d(x, 2, 2, 2, 2, (0, 0, 0, 0))
    y_ref, argmax_ref = pooling.max_pool2d(x, 2, 2, 2, 2, (0, 0, 0, 0))
    numpy.testing.assert_array_equal(y, y_ref)                 # assert_array_equal treats NaN == NaN
    numpy.testing.assert_array_equal(argmax, argmax_ref)
    assert argmax[0, 0, 0, 0] == 1 and argmax[1, 0, 1, 1] == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", POOL_GEOMETRIES)
def test_avg_pool_matches_numpy(host, dtype, geometry):
    h, w, (kh, kw), (sh, sw), padding = geometry
    pads = pads_of(h, w, (kh, kw), (sh, sw), padding)
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((2, 3, h, w)).astype(dtype)
    tol = 1e-6 if dtype == numpy.float32 else 1e-13
    y = kernels.avg_pool2d(x, kh, kw, sh, sw, pads)
    numpy.testing.assert_allclose(y, pooling.avg_pool2d(x, kh, kw, sh, sw, pads), rtol=tol, atol=tol)
    assert y.dtype == dtype

    dy = rng.standard_normal(y.shape).astype(dtype)
    before = host.counter["threads"]
    dx = kernels.avg_pool2d_backward(dy, x.shape, kh, kw, sh, sw, pads)
    grid_stride_checked(host, before, dx.size)
    numpy.testing.assert_allclose(dx, pooling.avg_pool2d_backward(dy, x.shape, kh, kw, sh, sw, pads),
                                  rtol=tol, atol=tol)


def test_avg_pool_does_not_count_padding(host):
    x = numpy.ones((1, 1, 3, 3), numpy.float64)
    y = kernels.avg_pool2d(x, 2, 2, 2, 2, (1, 0, 1, 0))        # corner windows hold one real cell
    numpy.testing.assert_array_equal(y, numpy.ones((1, 1, 2, 2)))
    dx = kernels.avg_pool2d_backward(numpy.ones_like(y), x.shape, 2, 2, 2, 2, (1, 0, 1, 0))
    numpy.testing.assert_array_equal(dx[0, 0], [[1, 0.5, 0.5], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, hidden", [(3, 5), (7, 4), (1, 1)])
def test_lstm_step_matches_numpy(host, dtype, n, hidden):
    rng = numpy.random.default_rng(3)
    a = (4 * rng.standard_normal((n, 4 * hidden))).astype(dtype)     # saturating gates too
    a[0, 0] = 60.0                                                   # exp overflow if sigma were computed naively
    a[-1, -1] = -60.0
    c_prev = rng.standard_normal((n, hidden)).astype(dtype)
    tol = 2e-6 if dtype == numpy.float32 else 1e-13
    before = host.counter["threads"]
    h, c = kernels.lstm_step(a, c_prev)
    if n * hidden > BLOCK * MAX_BLOCKS:
        grid_stride_checked(host, before, n * hidden)
    h_ref, c_ref = lstm.lstm_step(a, c_prev)
    numpy.testing.assert_allclose(h, h_ref, rtol=tol, atol=tol)
    numpy.testing.assert_allclose(c, c_ref, rtol=tol, atol=tol)
    assert h.dtype == c.dtype == dtype and numpy.isfinite(h).all()

    dh, dc = (rng.standard_normal((n, hidden)).astype(dtype) for _ in range(2))
    da, dc_prev = kernels.lstm_step_backward(dh, dc, a, c_prev, c)
    da_ref, dc_prev_ref = lstm.lstm_step_backward(dh, dc, a, c_prev, c_ref)
    numpy.testing.assert_allclose(da, da_ref, rtol=tol, atol=tol)
    numpy.testing.assert_allclose(dc_prev, dc_prev_ref, rtol=tol, atol=tol)
    assert da.shape == (n, 4 * hidden) and dc_prev.shape == (n, hidden)


def test_lstm_state_broadcasts_zero(host):
    a = numpy.random.default_rng(4).standard_normal((2, 8))
    h, c = kernels.lstm_step(a, 0.0)                                 # the first step: c_{-1} = 0
    h_ref, c_ref = lstm.lstm_step(a, numpy.zeros((2, 2)))
    numpy.testing.assert_allclose(h, h_ref, rtol=1e-13)
    da, dc_prev = kernels.lstm_step_backward(numpy.ones((2, 2)), 0, a, numpy.zeros((1, 2)), c)
    da_ref, dc_prev_ref = lstm.lstm_step_backward(numpy.ones((2, 2)), 0, a, numpy.zeros((1, 2)), c_ref)
    numpy.testing.assert_allclose(da, da_ref, rtol=1e-13)
    numpy.testing.assert_allclose(dc_prev, dc_prev_ref, rtol=1e-13)


def test_non_contiguous_input_is_made_contiguous(host):
    x = numpy.random.default_rng(5).standard_normal((2, 5, 6, 3)).transpose(0, 3, 1, 2)   # (2, 3, 5, 6), strided
    assert not x.flags.c_contiguous
    numpy.testing.assert_array_equal(kernels.im2col(x, 2, 2, 1, 1, (0, 0, 0, 0)),
                                     conv._im2col_xp(x, 2, 2, 1, 1, (0, 0, 0, 0), 0.0))
