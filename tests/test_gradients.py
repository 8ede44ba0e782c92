"""Every layer's and loss's backward against central differences, in float64, inputs and parameters together."""
import numpy as np
import pytest

from gpudl import nn
from gpudl.gradient_check import check_layer, directional_derivatives

F64 = np.float64


def rand(xp, *shape, seed=0):
    return xp.asarray(np.random.default_rng(seed).standard_normal(shape))


def on(xp, layer):
    return layer.to("cuda" if xp.__name__ == "cupy" else "cpu", dtype=F64)


ACTIVATIONS = [nn.Sigmoid(), nn.Sigmoid(alpha=2.5), nn.Tanh(), nn.ReLU(), nn.Softplus()]


@pytest.mark.parametrize("layer", ACTIVATIONS, ids=repr)
def test_activation_gradients(xp, layer):
    x = rand(xp, 5, 7)
    x[xp.abs(x) < 1e-3] = 0.5   # keep ReLU's kink out of the finite differences
    check_layer(layer, x)


@pytest.mark.parametrize("layer", [nn.Step(), nn.Sign()], ids=repr)
def test_threshold_activations_pass_no_gradient(xp, layer):
    x = rand(xp, 4, 3)
    layer.forward(x)
    assert float(xp.abs(layer.backward(xp.ones_like(x))).max()) == 0.0


def test_dense_gradients(xp):
    check_layer(on(xp, nn.Dense(6, 4)), rand(xp, 5, 6))


@pytest.mark.parametrize("kernel,strides,padding,channels", [
    (3, 1, "valid", 1), (3, 1, "same", 3), (4, 2, "same", 2), (2, 3, "valid", 3), (3, 2, 1, 1),
    ((2, 3), (1, 2), "same", 2),
    (5, 1, "same", 3), (4, 1, "same", 4),
])
def test_conv2d_gradients(xp, kernel, strides, padding, channels):
    layer = on(xp, nn.Conv2D(channels, 3, kernel, strides=strides, padding=padding))
    check_layer(layer, rand(xp, 2, channels, 7, 6))


@pytest.mark.parametrize("pool", [nn.MaxPool2D, nn.AvgPool2D])
@pytest.mark.parametrize("size,strides,padding", [(2, None, "valid"), (3, 2, "same"), (3, 1, "same"), (2, 3, 1)])
def test_pooling_gradients(xp, pool, size, strides, padding):
    # distinct values so no two cells of a window tie: max pooling is differentiable there
    x = xp.asarray(np.random.default_rng(3).permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) / 10.0)
    check_layer(pool(size, strides=strides, padding=padding), x)


def test_flatten_and_sequential_gradients(xp):
    model = on(xp, nn.Sequential(nn.Conv2D(1, 2, 3, padding="same"), nn.Tanh(), nn.AvgPool2D(2), nn.Flatten(),
                                 nn.Dense(2 * 3 * 3, 4), nn.Softplus(), nn.Dense(4, 3)))
    check_layer(model, rand(xp, 3, 1, 6, 6))


@pytest.mark.parametrize("target_kind", ["labels", "one_hot", "probabilities"])
def test_softmax_cross_entropy_gradient(xp, target_kind):
    logits = rand(xp, 6, 4) * 3
    labels = xp.asarray([0, 3, 1, 2, 3, 0])
    if target_kind == "labels":
        target = labels
    elif target_kind == "one_hot":
        target = xp.eye(4)[labels]
    else:
        p = xp.abs(rand(xp, 6, 4, seed=1))
        target = p / p.sum(axis=1, keepdims=True)
    loss = nn.SoftmaxCrossEntropy()
    analytic, numeric = directional_derivatives(
        lambda z: loss(z, target), lambda w: (loss.backward() * w,), [logits], [])
    assert np.isclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_mse_gradient(xp):
    pred, target = rand(xp, 5, 3), rand(xp, 5, 3, seed=1)
    loss = nn.MSELoss()
    analytic, numeric = directional_derivatives(
        lambda p: loss(p, target), lambda w: (loss.backward() * w,), [pred], [])
    assert np.isclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_gradient_check_catches_a_wrong_backward():
    layer = nn.Dense(3, 2, dtype=F64)
    layer.backward = lambda dy, original=layer.backward: 1.01 * original(dy)
    with pytest.raises(AssertionError, match="central differences"):
        check_layer(layer, np.random.default_rng(0).standard_normal((4, 3)))
