"""Bad input raises ValueError or TypeError naming the layer and the shapes; dtypes are kept."""
import numpy as np
import pytest

from gpudl import nn


def zeros(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("layer,x,error,match", [
    (nn.Dense(4, 2), zeros(3, 5), ValueError, r"Dense\(4, 2\): expected input of shape \(N, 4\), got \(3, 5\)"),
    (nn.Dense(4, 2), zeros(3, 4, 1), ValueError, r"Dense\(4, 2\): expected input of rank 2"),
    (nn.Dense(4, 2), np.zeros((3, 4), np.int64), TypeError, "floating-point"),
    (nn.Dense(4, 2), zeros(3, 4, dtype=np.float64), TypeError, "dtype float64 does not match"),
    (nn.Dense(4, 2), [[0.0] * 4], TypeError, "expected an array"),
    (nn.Conv2D(3, 4, 3), zeros(2, 1, 8, 8), ValueError,
     r"expected 3 input channel\(s\), got input of shape \(2, 1, 8, 8\)"),
    (nn.Conv2D(1, 4, 3), zeros(1, 8, 8), ValueError, "expected input of rank 4"),
    (nn.Conv2D(1, 4, 5), zeros(1, 1, 3, 8), ValueError, r"kernel 5x5 is larger than the padded input 3x8"),
    (nn.MaxPool2D(4), zeros(1, 1, 2, 2), ValueError, "larger than the padded input"),
    (nn.AvgPool2D(2, padding=2), zeros(1, 1, 6, 6), ValueError, "must be smaller than the pool size"),
    (nn.Flatten(), np.zeros(3), ValueError, "rank >= 2"),
])
def test_bad_input_names_the_layer_and_shapes(layer, x, error, match):
    with pytest.raises(error, match=match):
        layer.forward(x)


@pytest.mark.parametrize("make,error,match", [
    (lambda: nn.Conv2D(1, 2, 3, strides=0), ValueError, "strides must be positive"),
    (lambda: nn.Conv2D(1, 2, 3, strides=-1), ValueError, "strides must be positive"),
    (lambda: nn.Conv2D(1, 2, 0), ValueError, "kernel size must be positive"),
    (lambda: nn.Conv2D(1, 2, 3, padding="full"), ValueError, "unknown padding 'full'"),
    (lambda: nn.Conv2D(1, 2, 3, padding=-1), ValueError, "non-negative int"),
    (lambda: nn.MaxPool2D(2, padding="half"), ValueError, "unknown padding"),
    (lambda: nn.AvgPool2D(2, strides=0), ValueError, "strides must be positive"),
    (lambda: nn.Conv2D(1, 2, 2.5), TypeError, "kernel size must be an int"),
    (lambda: nn.Dense(0, 3), ValueError, "must be positive"),
    (lambda: nn.Sequential(nn.ReLU(), "relu"), TypeError, "Sequential takes layers"),
])
def test_bad_construction_is_rejected(make, error, match):
    with pytest.raises(error, match=match):
        make()


def lenet_like(dtype):
    return nn.Sequential(nn.Conv2D(1, 6, 5, padding="same", dtype=dtype), nn.Sigmoid(), nn.AvgPool2D(2),
                         nn.Conv2D(6, 16, 5, dtype=dtype), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(),
                         nn.Dense(400, 10, dtype=dtype), nn.Softplus())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_through_every_layer(dtype):
    model = lenet_like(dtype)
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(dtype)
    y = x
    for layer in model.layers:
        y = layer.forward(y)
        assert y.dtype == dtype, repr(layer)
    dy = np.ones_like(y)
    for layer in reversed(model.layers):
        dy = layer.backward(dy)
        assert dy.dtype == dtype, repr(layer)
    assert all(p.grad.dtype == dtype for p in model.parameters())


def test_default_dtype_is_float32_and_to_casts():
    model = lenet_like(np.float32)
    assert model.dtype == np.float32
    model.to(dtype=np.float64)
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in model.parameters())
    assert model.forward(np.zeros((1, 1, 28, 28))).dtype == np.float64
