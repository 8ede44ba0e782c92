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
    _, argmax = F.max_pool2d(x, 2, 2, 2, 2, (0, 0, 0, 0))
    np.testing.assert_array_equal(argmax[0, 0], [[3, 3], [3, 3]])
