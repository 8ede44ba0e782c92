"""Conv2D against a naive loop, the padding rules, and the lecture's convolution facts."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudl import functional as F
from gpudl import nn
from gpudl.geometry import output_size, pad_amounts

import reference

SHAPES = [
    # kernel, strides, padding, channels, (H, W)
    (k, s, p, c, hw)
    for k in (1, 2, 3, 4, 5)
    for s in (1, 2, 3)
    for p in ("valid", "same", 1)
    for c in (1, 3)
    for hw in ((7, 7), (8, 5))
    if not (p == 1 and k == 1 and s == 3)
]


def conv_with(W, b, **kwargs):
    layer = nn.Conv2D(W.shape[1], W.shape[0], W.shape[2:], dtype=np.float64, **kwargs)
    layer.W.data[...] = W
    layer.b.data[...] = b
    return layer


@pytest.mark.parametrize("kernel,strides,padding,channels,hw", SHAPES)
def test_conv2d_matches_naive_loops(kernel, strides, padding, channels, hw):
    rng = np.random.default_rng(kernel * 100 + strides)
    x = rng.standard_normal((2, channels, *hw))
    W = rng.standard_normal((3, channels, kernel, kernel))
    b = rng.standard_normal(3)
    y = conv_with(W, b, strides=strides, padding=padding).forward(x)
    np.testing.assert_allclose(y, reference.conv2d(x, W, b, (strides, strides), padding), rtol=1e-10, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), f=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       padding=st.sampled_from(["valid", "same", 0, 1, 2]), seed=st.integers(0, 2**16))
def test_conv2d_property_random_shapes(n, c, f, h, w, kh, kw, sh, sw, padding, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    W, b = rng.standard_normal((f, c, kh, kw)), rng.standard_normal(f)
    layer = conv_with(W, b, strides=(sh, sw), padding=padding)
    pads = reference.pads_of(h, w, (kh, kw), (sh, sw), padding)
    if h + pads[0] + pads[1] < kh or w + pads[2] + pads[3] < kw:
        with pytest.raises(ValueError, match="larger than the padded input"):
            layer.forward(x)
        return
    y = layer.forward(x)
    np.testing.assert_allclose(y, reference.conv2d(x, W, b, (sh, sw), padding), rtol=1e-9, atol=1e-9)
    # col2im is the adjoint of im2col: <im2col(x), c> = <x, col2im(c)>
    window = reference.window(x.shape, (kh, kw), (sh, sw), pads)
    col = F.im2col(x, window)
    probe = rng.standard_normal(col.shape)
    lhs = (col * probe).sum()
    rhs = (x * F.col2im(probe, window)).sum()
    assert np.isclose(lhs, rhs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kh,kw,padding,hw", [
    (1, 1, "valid", (5, 4)), (3, 3, "same", (7, 7)), (4, 2, "same", (8, 5)), (2, 5, 1, (6, 9)), (5, 5, "valid", (5, 5)),
])
def test_conv2d_stride_one_backward_matches_naive_loops(kh, kw, padding, hw):
    # stride 1 takes the row-strip dx on the NumPy path; this pins it, and dW, db, to plain loops
    rng = np.random.default_rng(kh * 10 + kw)
    x = rng.standard_normal((3, 2, *hw))
    W, b = rng.standard_normal((4, 2, kh, kw)), rng.standard_normal(4)
    layer = conv_with(W, b, padding=padding)
    y = layer.forward(x)
    np.testing.assert_allclose(y, reference.conv2d(x, W, b, (1, 1), padding), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    # the adjoint identities: <dy, conv(x)> is linear in x and in W, so dx and dW are its exact gradients
    pads = reference.pads_of(*hw, (kh, kw), (1, 1), padding)
    xp_ = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:]))
    naive_dx = np.zeros_like(xp_)
    naive_dW = np.zeros_like(W)
    for i in range(kh):
        for j in range(kw):
            window = xp_[:, :, i:i + y.shape[2], j:j + y.shape[3]]
            naive_dW[:, :, i, j] = np.einsum("nfpq,ncpq->fc", dy, window)
            naive_dx[:, :, i:i + y.shape[2], j:j + y.shape[3]] += np.einsum("nfpq,fc->ncpq", dy, W[:, :, i, j])
    np.testing.assert_allclose(dx, naive_dx[:, :, pads[0]:pads[0] + hw[0], pads[2]:pads[2] + hw[1]], atol=1e-9)
    np.testing.assert_allclose(layer.W.grad, naive_dW, atol=1e-9)
    np.testing.assert_allclose(layer.b.grad, dy.sum(axis=(0, 2, 3)), atol=1e-9)


@pytest.mark.parametrize("size,kernel,stride,expected", [
    (7, 3, 1, (1, 1)), (28, 5, 1, (2, 2)), (6, 4, 1, (1, 2)), (7, 3, 2, (1, 1)), (8, 3, 2, (0, 1)), (5, 2, 3, (0, 0)),
])
def test_same_padding_follows_tensorflow(size, kernel, stride, expected):
    before, after = pad_amounts(size, kernel, stride, "same")
    assert (before, after) == expected
    assert output_size(size, kernel, stride, before, after) == -(-size // stride)


def test_same_keeps_the_size_at_stride_one():
    for k in range(1, 8):
        layer = nn.Conv2D(2, 3, k, padding="same")
        assert layer.forward(np.zeros((1, 2, 11, 9), np.float32)).shape == (1, 3, 11, 9)


def test_valid_output_size_is_x_minus_m_plus_one():
    x, y, m, n = 12, 9, 4, 3
    layer = nn.Conv2D(1, 1, (m, n), padding="valid")
    assert layer.forward(np.zeros((1, 1, x, y), np.float32)).shape[2:] == (x - m + 1, y - n + 1)


def test_two_dice_convolution():
    """(f * g)(4) = sum_k f(k) g(4 - k) = P(two dice sum to 4) = 3/36 = 1/12 (a 1-D true convolution)."""
    die = np.full(6, 1 / 6)                              # f(k) for k = 1..6
    g_flipped = die[::-1].reshape(1, 1, 1, 6).copy()     # a true convolution is a cross-correlation with g flipped
    layer = conv_with(g_flipped, np.zeros(1), padding=5)
    f = die.reshape(1, 1, 1, 6)
    sums = layer.forward(f)[0, 0, 5]    # row 5 is the image's row (padding 5 adds rows too); index t: sum is t + 2
    assert sums[4 - 2] == pytest.approx(1 / 12)
    assert sums.sum() == pytest.approx(1.0)
    assert sums[7 - 2] == pytest.approx(1 / 6)


EQ34 = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], float),
    "edge": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], float),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], float),
    "gaussian_blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], float) / 16,
}


def apply_filter(kernel, image):
    layer = conv_with(kernel.reshape(1, 1, 3, 3), np.zeros(1), padding="valid")
    return layer.forward(image.reshape(1, 1, *image.shape))[0, 0]


def test_identity_filter_leaves_an_image_unchanged():
    image = np.random.default_rng(0).random((8, 9))
    layer = conv_with(EQ34["identity"].reshape(1, 1, 3, 3), np.zeros(1), padding="same")
    np.testing.assert_array_equal(layer.forward(image.reshape(1, 1, 8, 9))[0, 0], image)


@pytest.mark.parametrize("name,expected", [("edge", 0.0), ("sharpen", 0.7), ("gaussian_blur", 0.7)])
def test_filters_on_a_constant_image(name, expected):
    out = apply_filter(EQ34[name], np.full((6, 6), 0.7))
    np.testing.assert_allclose(out, np.full((4, 4), expected), atol=1e-12)


def test_edge_filter_responds_to_an_edge():
    image = np.zeros((5, 6))
    image[:, 3:] = 1.0
    out = apply_filter(EQ34["edge"], image)
    assert np.abs(out).max() > 0
    np.testing.assert_allclose(out[:, 0], 0.0)


def test_rgb_input_uses_every_channel():
    layer = nn.Conv2D(3, 1, 1, dtype=np.float64)
    layer.W.data[...] = np.array([1.0, 10.0, 100.0]).reshape(1, 3, 1, 1)
    x = np.ones((1, 3, 2, 2))
    np.testing.assert_allclose(layer.forward(x), np.full((1, 1, 2, 2), 111.0))


def test_lenet5_flatten_is_400():
    x = np.zeros((2, 1, 28, 28), np.float32)
    features = nn.Sequential(nn.Conv2D(1, 6, 5, padding="same"), nn.ReLU(), nn.MaxPool2D(2),
                             nn.Conv2D(6, 16, 5), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten())
    assert features.forward(x).shape == (2, 16 * 5 * 5) == (2, 400)


@pytest.mark.parametrize("n,c,f,hw,kernel,strides,pads", [
    (5, 2, 3, (7, 6), (3, 3), (1, 1), (1, 1, 1, 1)), (7, 1, 4, (9, 9), (5, 5), (1, 1), (2, 2, 2, 2)),
    (4, 3, 2, (6, 8), (2, 4), (1, 1), (0, 1, 2, 1)), (3, 2, 2, (5, 5), (5, 5), (1, 1), (0, 0, 0, 0)),
    (6, 2, 3, (4, 7), (1, 1), (1, 1), (0, 0, 0, 0)), (9, 2, 3, (8, 9), (3, 2), (2, 3), (1, 0, 1, 1)),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_cpu_kernels_blocks_of_samples_change_nothing(monkeypatch, n, c, f, hw, kernel, strides, pads, dtype):
    # the CPU kernels sum dW and db in fixed blocks of samples (at stride 1 from row strips of the padded image):
    # one block, blocks of one sample, and blocks of two with a shorter last one give the same results to rounding,
    # and those agree with the definition in float64
    cpu = pytest.importorskip("gpudl.cpu", reason="the CPU kernels need numba")
    rng = np.random.default_rng(n * 100 + c)
    x = rng.standard_normal((n, c, *hw)).astype(dtype)
    W, b = rng.standard_normal((f, c, *kernel)).astype(dtype), rng.standard_normal(f).astype(dtype)
    window = reference.window(x.shape, kernel, strides, pads)
    results = []
    for blocks in (1, n, 2):
        monkeypatch.setattr(cpu.conv, "SUM_BLOCKS", blocks)
        y, saved = F.conv2d(x, W, b, window)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        results.append((y, *F.conv2d_backward(dy, saved, W)))
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b_, rtol=tol, atol=tol)
    y, dx, dW, db = results[0]
    col = F.conv._im2col_reference(x.astype(np.float64), window, 0.0)     # checked against plain loops above
    np.testing.assert_allclose(y, np.einsum("fcij,ncijpq->nfpq", W.astype(np.float64), col) + b[:, None, None],
                               rtol=tol, atol=tol)
    dy64 = np.random.default_rng(1).standard_normal(y.shape).astype(dtype).astype(np.float64)
    naive_dW = np.einsum("nfpq,ncijpq->fcij", dy64, col)
    naive_dx = F.conv._col2im_reference(np.einsum("nfpq,fcij->ncijpq", dy64, W.astype(np.float64)), window)
    np.testing.assert_allclose(dW, naive_dW, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(dx, naive_dx, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(db, dy64.sum(axis=(0, 2, 3)), rtol=tol, atol=tol * 10)
