"""Max and average pooling against naive loops, ties, and padding."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudl import functional as F
from gpudl import nn

import reference

CASES = [(k, s, p, c) for k in (1, 2, 3) for s in (None, 1, 2, 3) for p in ("valid", "same", 1) for c in (1, 3)
         if not (p == 1 and k == 1)]


@pytest.mark.parametrize("pool,reduce", [(nn.MaxPool2D, "max"), (nn.AvgPool2D, "mean")])
@pytest.mark.parametrize("k,s,padding,c", CASES)
def test_pooling_matches_naive_loops(pool, reduce, k, s, padding, c):
    x = np.random.default_rng(k * 10 + (s or 0)).standard_normal((2, c, 7, 8))
    layer = pool(k, strides=s, padding=padding)
    strides = (k, k) if s is None else (s, s)
    np.testing.assert_allclose(layer.forward(x), reference.pool2d(x, (k, k), strides, padding, reduce), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3),
       sw=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]), seed=st.integers(0, 2**16),
       reduce=st.sampled_from(["max", "mean"]))
def test_pooling_property_random_shapes(h, w, kh, kw, sh, sw, padding, seed, reduce):
    x = np.random.default_rng(seed).standard_normal((2, 2, h, w))
    layer = (nn.MaxPool2D if reduce == "max" else nn.AvgPool2D)((kh, kw), strides=(sh, sw), padding=padding)
    pads = reference.pads_of(h, w, (kh, kw), (sh, sw), padding)
    if h + pads[0] + pads[1] < kh or w + pads[2] + pads[3] < kw:
        with pytest.raises(ValueError):
            layer.forward(x)
        return
    np.testing.assert_allclose(layer.forward(x), reference.pool2d(x, (kh, kw), (sh, sw), padding, reduce))
    dy = np.random.default_rng(seed + 1).standard_normal(layer.forward(x).shape)
    dx = layer.backward(dy)
    assert dx.shape == x.shape
    assert np.isclose(dx.sum(), dy.sum())  # every window hands on exactly its gradient


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.array([[[[1.0, 3.0], [3.0, 3.0]]]])
    layer = nn.MaxPool2D(2)
    assert layer.forward(x)[0, 0, 0, 0] == 3.0
    np.testing.assert_array_equal(layer.backward(np.array([[[[5.0]]]]))[0, 0], [[0.0, 5.0], [0.0, 0.0]])


def test_overlapping_max_windows_sum_their_gradients():
    x = np.array([[[[0.0, 9.0, 0.0, 0.0]]]])
    layer = nn.MaxPool2D((1, 2), strides=1)
    assert layer.forward(x).tolist() == [[[[9.0, 9.0, 0.0]]]]
    np.testing.assert_array_equal(layer.backward(np.array([[[[1.0, 2.0, 4.0]]]])), [[[[0.0, 3.0, 4.0, 0.0]]]])


def test_average_pooling_does_not_count_padded_cells():
    x = np.ones((1, 1, 3, 3))
    y = nn.AvgPool2D(3, strides=1, padding="same").forward(x)
    np.testing.assert_allclose(y, np.ones((1, 1, 3, 3)))   # zero padding would give 4/9 in the corners


def test_pool_strides_default_to_the_pool_size():
    assert nn.MaxPool2D(2).forward(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 1, 14, 14)
    assert nn.AvgPool2D(3).forward(np.zeros((1, 1, 9, 10), np.float32)).shape == (1, 1, 3, 3)


def test_max_pool_argmax_indexes_the_window():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    _, argmax = F.max_pool2d(x, reference.window(x.shape, (2, 2), (2, 2), (0, 0, 0, 0)))
    np.testing.assert_array_equal(argmax[0, 0], [[3, 3], [3, 3]])


def naive_max_pool(x, kh, kw, sh, sw, pads):
    """The definition cell by cell: y = numpy.maximum over the window in row-major order (so y's bits, signed zeros and
    NaN payloads included, are those of that chain), argmax = the first NaN of the window, else its first maximum."""
    xpad = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:]), constant_values=-np.inf)
    n, c = x.shape[:2]
    oh, ow = (xpad.shape[2] - kh) // sh + 1, (xpad.shape[3] - kw) // sw + 1
    y, argmax = np.empty((n, c, oh, ow), x.dtype), np.empty((n, c, oh, ow), np.int64)
    for idx in np.ndindex(n, c, oh, ow):
        a, b, p, q = idx
        cells = xpad[a, b, p * sh:p * sh + kh, q * sw:q * sw + kw].reshape(-1)
        best = cells[0]
        for cell in cells[1:]:
            best = np.maximum(best, cell)
        y[idx] = best
        argmax[idx] = next(k for k, cell in enumerate(cells) if cell == best or (np.isnan(best) and np.isnan(cell)))
    return y, argmax


def naive_max_pool_backward(dy, argmax, x_shape, kh, kw, sh, sw, pads):
    top, bottom, left, right = pads
    dx = np.zeros((x_shape[0], x_shape[1], x_shape[2] + top + bottom, x_shape[3] + left + right), dy.dtype)
    for k in range(kh * kw):                    # offset by offset: the order in which overlapping windows sum
        i, j = divmod(k, kw)
        for idx in zip(*np.nonzero(argmax == k)):
            dx[idx[0], idx[1], idx[2] * sh + i, idx[3] * sw + j] += dy[idx]
    return dx[:, :, top:top + x_shape[2], left:left + x_shape[3]]


def tied_images(shape, dtype, seed):
    """Few distinct values (ties in most windows), with signed zeros, infinities and NaNs of different payloads."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    x[rng.random(shape) < 0.3] = -0.0
    x[rng.random(shape) < 0.03] = -np.inf
    x[rng.random(shape) < 0.03] = np.inf
    nans = rng.random(shape) < 0.04
    bits = x.view(np.uint32 if dtype == np.float32 else np.uint64)
    bits[nans] = np.array(np.nan, dtype).view(bits.dtype) + rng.integers(1, 100, size=nans.sum()).astype(bits.dtype)
    bits[nans & (rng.random(shape) < 0.5)] |= np.array(-0.0, dtype).view(bits.dtype)   # negative NaNs too
    return x


MAX_GEOMETRIES = [  # (h, w, kernel, strides, padding): the LeNet shapes, overlap, padding, cells left over
    (28, 28, (2, 2), (2, 2), "valid"), (10, 10, (2, 2), (2, 2), "valid"), (7, 9, (2, 2), (2, 2), "valid"),
    (7, 8, (3, 3), (1, 1), "same"), (8, 7, (3, 2), (2, 1), "same"), (6, 6, (2, 3), (3, 2), "valid"),
    (5, 6, (3, 3), (2, 2), 1), (4, 5, (1, 1), (1, 1), "valid"), (13, 12, (12, 12), (1, 1), "valid"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nan", [False, True])
@pytest.mark.parametrize("h,w,kernel,strides,padding", MAX_GEOMETRIES)
def test_max_pool_matches_the_definition_bit_for_bit(h, w, kernel, strides, padding, nan, dtype):
    x = tied_images((3, 2, h, w), dtype, seed=h * w)
    if not nan:
        x[np.isnan(x)] = 1.0
    pads = reference.pads_of(h, w, kernel, strides, padding)
    window = reference.window(x.shape, kernel, strides, pads)
    y, argmax = F.max_pool2d(x, window)
    y_ref, argmax_ref = naive_max_pool(x, *kernel, *strides, pads)
    np.testing.assert_array_equal(y.view(np.uint8), y_ref.view(np.uint8))
    np.testing.assert_array_equal(argmax, argmax_ref)
    assert argmax.dtype == F.pooling.argmax_type(*kernel)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    dx = F.max_pool2d_backward(dy, argmax, x.shape, window)
    np.testing.assert_array_equal(dx, naive_max_pool_backward(dy, argmax_ref, x.shape, *kernel, *strides, pads))


def test_max_pool_argmax_past_127_needs_a_wider_type():
    x = np.zeros((1, 1, 12, 12))
    x[0, 0, 11, 10] = 1.0                       # cell 11 * 12 + 10 = 142 of the one window
    window = reference.window(x.shape, (12, 12), (12, 12), (0, 0, 0, 0))
    y, argmax = F.max_pool2d(x, window)
    assert y.item() == 1.0 and argmax.item() == 142 and argmax.dtype == np.int16
    dx = F.max_pool2d_backward(np.full((1, 1, 1, 1), 3.0), argmax, x.shape, window)
    np.testing.assert_array_equal(dx, 3.0 * x)
