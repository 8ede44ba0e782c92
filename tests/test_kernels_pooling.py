"""The tiled pooling kernels of pooling.cu (stride = window, no padding, the image exactly covered) against the general
ones and the NumPy path, bit for bit: max and average pooling, forward and backward, float32 and float64, 32- and
64-bit index math, runs of windows that stay in one row and runs that cross rows (OW a multiple of VEC or not),
compile-time window widths (2, 3) and others, NaNs, ties and signed zeros. And which kernel each window takes.

Tier 2 (the host build, on small grids so the grid-stride loops go round) and tier 3 (a GPU) through kernel_path.
"""
import numpy
import pytest

from gpudl import functional as F
from gpudl.backend import to_numpy
from gpudl.geometry import Window
from gpudl.kernels import loader
from gpudl.kernels import pooling as kernel_pooling

pytestmark = pytest.mark.usefixtures("small_launches")
DTYPES = [numpy.float32, numpy.float64]
# (H, W, kernel): tiled windows, stride = kernel; OW = W / KW a multiple of VEC (4 floats, 2 doubles) or not
TILED = [
    (8, 16, (2, 2)),            # OW 8: every run in one row
    (6, 10, (2, 2)),            # OW 5: runs cross rows
    (4, 2, (2, 2)),             # OW 1
    (9, 12, (3, 3)),            # OW 4
    (6, 15, (3, 3)),            # OW 5
    (6, 12, (2, 3)),            # non-square, OW 4
    (4, 9, (2, 3)),             # OW 3
    (4, 14, (2, 7)),            # a width without a compile-time version, OW 2
    (6, 7, (3, 1)),             # KW 1, OW 7
    (12, 24, (12, 12)),         # 144 cells: the int32 argmax
]


def bits(array):
    array = to_numpy(array)
    return array.view(numpy.dtype(f"u{array.dtype.itemsize}"))


def tied_images(shape, dtype, rng):
    """Few values (ties in most windows), signed zeros, infinities and NaNs."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    x[rng.random(shape) < 0.3] = -0.0
    x[rng.random(shape) < 0.03] = -numpy.inf
    x[rng.random(shape) < 0.03] = numpy.inf
    x[rng.random(shape) < 0.05] = numpy.nan
    return x


def gradients(shape, dtype, rng):
    """dy with negative zeros (a backward writes 0 + value: -0 becomes +0, as the general gather's sum does)."""
    dy = rng.standard_normal(shape).astype(dtype)
    dy[rng.random(shape) < 0.3] = -0.0
    return dy


def misaligned(path, array):
    """A C-contiguous copy of `array` one element past an aligned start (the kernels' 16-byte accesses must not
    assume alignment)."""
    flat = path.xp.empty(array.size + 1, array.dtype)
    flat[1:] = path.asarray(array.reshape(-1))
    return flat[1:].reshape(array.shape)


def all_ops(path, x, x_avg, dy, window, move=None):
    """y, argmax, dx of max pooling over x and y, dx of average pooling over x_avg (dy for both backwards)."""
    move = move or path.asarray
    y, argmax = F.max_pool2d(move(x), window)
    dx = F.max_pool2d_backward(move(dy), argmax, x.shape, window)
    y_avg = F.avg_pool2d(move(x_avg), window)
    dx_avg = F.avg_pool2d_backward(move(dy), x.shape, window)
    return [y, argmax, dx, y_avg, dx_avg]


def launched_names(monkeypatch):
    """The names of the kernels launched from now on, in order."""
    names = []
    get_kernel = loader.get_kernel
    monkeypatch.setattr(loader, "get_kernel", lambda xp, file, name, dtype: names.append(name) or
                        get_kernel(xp, file, name, dtype))
    return names


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h,w,kernel", TILED)
def test_tiled_kernels_give_the_general_kernels_bits(kernel_path, monkeypatch, dtype, h, w, kernel):
    rng = numpy.random.default_rng(h * 100 + w)
    x = tied_images((2, 3, h, w), dtype, rng)
    x_avg = rng.standard_normal(x.shape).astype(dtype)         # sums that round: their order shows
    x_avg[rng.random(x.shape) < 0.02] = numpy.nan
    window = Window.of(x.shape, kernel, kernel, "valid", pooling=True)
    dy = gradients((2, 3, window.oh, window.ow), dtype, rng)
    names = launched_names(monkeypatch)
    tiled = all_ops(kernel_path, x, x_avg, dy, window)
    assert names and all("_tiled" in name for name in names)
    assert all(name.endswith("_a32") == (kernel == (12, 12)) for name in names if name.startswith("max"))
    tiled_unaligned = all_ops(kernel_path, x, x_avg, dy, window, lambda a: misaligned(kernel_path, a))
    monkeypatch.setattr(loader, "INT32_LIMIT", 0)               # the _i64 entry points
    tiled_64 = all_ops(kernel_path, x, x_avg, dy, window)
    monkeypatch.setattr(loader, "INT32_LIMIT", 2 ** 31)
    monkeypatch.setattr(kernel_pooling, "tiles", lambda window: False)   # the general kernels
    del names[:]
    general = all_ops(kernel_path, x, x_avg, dy, window)
    assert names and not any("_tiled" in name for name in names)
    for got, got_unaligned, got_64, want in zip(tiled, tiled_unaligned, tiled_64, general):
        numpy.testing.assert_array_equal(bits(got), bits(want))
        numpy.testing.assert_array_equal(bits(got_unaligned), bits(want))
        numpy.testing.assert_array_equal(bits(got_64), bits(want))
    with kernel_path.reference():
        y_ref, argmax_ref = F.max_pool2d(x, window)
        dx_ref = F.max_pool2d_backward(dy, argmax_ref, x.shape, window)
        y_avg_ref = F.avg_pool2d(x_avg, window)
        dx_avg_ref = F.avg_pool2d_backward(dy, x.shape, window)
    y, argmax, dx, y_avg, dx_avg = (to_numpy(a) for a in tiled)
    numpy.testing.assert_array_equal(y, y_ref)                  # NaN == NaN here
    numpy.testing.assert_array_equal(argmax, argmax_ref)        # the first maximum (or NaN) of each window
    numpy.testing.assert_array_equal(dx, dx_ref)
    numpy.testing.assert_allclose(y_avg, y_avg_ref, rtol=1e-6 if dtype == numpy.float32 else 1e-14)
    numpy.testing.assert_array_equal(dx_avg, dx_avg_ref)
    assert not numpy.signbit(dx[dx == 0]).any() and not numpy.signbit(dx_avg[dx_avg == 0]).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiled_max_pool_nan_and_ties(kernel_path, dtype):
    """The first maximum wins a tie, the first NaN wins over everything, -0 and +0 tie."""
    x = numpy.zeros((1, 1, 2, 8), dtype)
    x[0, 0, :, 0:2] = [[1, 3], [3, 3]]                  # tie: the first 3
    x[0, 0, :, 2:4] = [[1, numpy.nan], [numpy.nan, 9]]  # the first NaN
    x[0, 0, :, 4:6] = [[-0.0, 0.0], [0.0, -0.0]]        # -0 first: it stays
    x[0, 0, :, 6:8] = [[-numpy.inf] * 2, [-numpy.inf, -numpy.inf]]
    window = Window.of(x.shape, 2, 2, "valid", pooling=True)
    y, argmax = F.max_pool2d(kernel_path.asarray(x), window)
    assert to_numpy(argmax).tolist() == [[[[1, 1, 0, 0]]]]
    y = to_numpy(y)
    assert y[0, 0, 0, 0] == 3 and numpy.isnan(y[0, 0, 0, 1]) and numpy.signbit(y[0, 0, 0, 2])
    assert y[0, 0, 0, 3] == -numpy.inf
    dx = to_numpy(F.max_pool2d_backward(kernel_path.asarray(numpy.full((1, 1, 1, 4), 2.0, dtype)), argmax, x.shape,
                                        window))     # the argmax as the forward left it, on the device
    numpy.testing.assert_array_equal(dx[0, 0], [[0, 2, 0, 2, 2, 0, 2, 0], [0, 0, 0, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize("x_shape,kernel,strides,pads,tiled", [
    ((1, 2, 8, 8), (2, 2), (2, 2), (0, 0, 0, 0), True),
    ((1, 2, 9, 12), (3, 3), (3, 3), (0, 0, 0, 0), True),
    ((1, 2, 4, 9), (2, 3), (2, 3), (0, 0, 0, 0), True),
    ((1, 2, 3, 3), (3, 3), (3, 3), (0, 0, 0, 0), True),          # one window: the whole image
    ((1, 2, 7, 7), (2, 2), (2, 2), (0, 1, 0, 1), False),         # padding at the bottom/right ("same")
    ((1, 2, 6, 6), (2, 2), (2, 2), (1, 1, 1, 1), False),         # padding all round
    ((1, 2, 6, 6), (2, 2), (1, 1), (0, 0, 0, 0), False),         # overlapping windows
    ((1, 2, 7, 8), (2, 2), (2, 2), (0, 0, 0, 0), False),         # a ragged edge: row 6 is in no window
    ((1, 2, 8, 9), (2, 2), (2, 2), (0, 0, 0, 0), False),         # a ragged edge: column 8
    ((1, 2, 8, 8), (2, 2), (3, 3), (0, 0, 0, 0), False),         # stride > window: cells between windows
    ((1, 2, 8, 8), (2, 2), (2, 1), (0, 0, 0, 0), False),         # stride = window along one axis only
])
def test_tiled_windows_take_the_tiled_kernels(kernel_path, monkeypatch, x_shape, kernel, strides, pads, tiled):
    window = Window.with_pads(x_shape, kernel, strides, pads, pooling=True)
    assert kernel_pooling.tiles(window) == tiled
    names = launched_names(monkeypatch)
    x = numpy.random.default_rng(0).standard_normal(x_shape)
    dy = numpy.ones((x_shape[0], x_shape[1], window.oh, window.ow))
    all_ops(kernel_path, x, x, dy, window)
    general = ["max_pool_forward_a8", "max_pool_backward_a8", "avg_pool_forward", "avg_pool_backward"]
    assert names == ([name.replace("_a8", "_tiled_a8") if "_a8" in name else name + "_tiled" for name in general]
                     if tiled else general)
