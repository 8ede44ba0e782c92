"""The M-P neuron's activation functions (lecture eqs. 3-9): values, corrected definitions, stability."""
import numpy as np
import pytest

from gpudl import functional as F
from gpudl import nn


def test_threshold_is_one_at_zero_and_above():
    v = np.array([-2.0, -1e-9, 0.0, 1e-9, 3.0])
    np.testing.assert_array_equal(nn.Step().forward(v), [0, 0, 1, 1, 1])


def test_sign_of_zero_is_zero():
    np.testing.assert_array_equal(nn.Sign().forward(np.array([-3.0, 0.0, 2.0])), [-1, 0, 1])


@pytest.mark.parametrize("alpha", [0.5, 1.0, 4.0])
def test_logistic_matches_its_formula_and_slope(alpha):
    v = np.linspace(-5, 5, 41)
    layer = nn.Sigmoid(alpha)
    y = layer.forward(v)
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-alpha * v)))
    np.testing.assert_allclose(layer.backward(np.ones_like(v)), alpha * y * (1 - y))
    assert layer.backward(np.ones(41))[20] == pytest.approx(alpha / 4)   # slope alpha/4 at the origin


def test_activations_are_stable_for_large_inputs():
    v = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = F.sigmoid(v)
        sp = F.softplus(v)
    np.testing.assert_allclose(s, [0, 1.9287e-22, 0.5, 1, 1], rtol=1e-3, atol=1e-30)
    np.testing.assert_allclose(sp, [0, 0, np.log(2), 50, 1000], rtol=1e-6, atol=1e-20)
    assert s.dtype == sp.dtype == np.float32


def test_tanh_relu_softplus_values():
    v = np.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(nn.Tanh().forward(v), np.tanh(v))
    np.testing.assert_array_equal(nn.ReLU().forward(v), [0, 0, 1.5])
    softplus = nn.Softplus()
    np.testing.assert_allclose(softplus.forward(v), np.log1p(np.exp(v)))
    np.testing.assert_allclose(softplus.backward(np.ones(3)), 1 / (1 + np.exp(-v)))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Tanh().backward(np.ones(3))
    relu = nn.ReLU()
    relu.forward(v)
    np.testing.assert_array_equal(relu.backward(np.ones(3)), [0, 0, 1])


@pytest.mark.parametrize("layer", [nn.Step(), nn.Sign(), nn.Sigmoid(), nn.Tanh(), nn.ReLU(), nn.Softplus()], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_keep_the_dtype(layer, dtype):
    v = np.linspace(-3, 3, 7).astype(dtype)
    assert layer.forward(v).dtype == dtype
    assert layer.backward(np.ones_like(v)).dtype == dtype


def awkward_values(size, dtype, seed):
    """Normal values with signed zeros, infinities, huge values and NaNs of both signs and several payloads."""
    rng = np.random.default_rng(seed)
    v = (rng.standard_normal(size) * 4).astype(dtype)
    for value, share in ((-0.0, 0.05), (0.0, 0.05), (np.inf, 0.01), (-np.inf, 0.01), (1e30, 0.01), (-1e30, 0.01)):
        v[rng.random(size) < share] = value
    bits = v.view(np.uint32 if dtype == np.float32 else np.uint64)
    nans = rng.random(size) < 0.03
    bits[nans] = np.array(np.nan, dtype).view(bits.dtype) + rng.integers(0, 50, nans.sum()).astype(bits.dtype)
    bits[nans & (rng.random(size) < 0.5)] |= np.array(-0.0, dtype).view(bits.dtype)
    return v


def assert_same_bits(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(actual.view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [7, 4096, 3 * 4096 + 5, 40000])     # below, at and past the NumPy path's rows
def test_relu_is_maximum_with_zero_bit_for_bit(size, dtype):
    v, dy = awkward_values(size, dtype, size), awkward_values(size, dtype, size + 1)
    assert_same_bits(F.relu(v), np.maximum(v, 0))
    with np.errstate(invalid="ignore"):                                     # 0 * inf
        assert_same_bits(F.relu_backward(v, dy), np.multiply(dy, v > 0))
    image, dimage = v[:size // 2 * 2].reshape(2, -1), dy[:size // 2 * 2].reshape(2, -1)
    assert_same_bits(F.relu(image[:, ::2]), np.maximum(image[:, ::2], 0))        # strided: no flat rows
    with np.errstate(invalid="ignore"):
        assert_same_bits(F.relu_backward(image[:, ::2], dimage[:, ::2]), np.multiply(dimage[:, ::2], image[:, ::2] > 0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_logistic_keeps_its_two_branch_formula_bit_for_bit(alpha, dtype):
    v = awkward_values(5000, dtype, 7)
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.exp(-np.abs(v * dtype(alpha)))
        expected = np.where(v >= 0, 1 / (1 + z), z / (1 + z))
        y = F.sigmoid(v, alpha)
    assert_same_bits(y, expected)


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan")])
def test_sigmoid_refuses_a_slope_that_is_not_positive(alpha):
    # the overflow-free formula picks its branch by the sign of v, right only for alpha > 0
    with pytest.raises(ValueError, match="slope alpha must be positive"):
        nn.Sigmoid(alpha)
    with pytest.raises(ValueError, match="slope alpha must be positive"):
        F.sigmoid(np.zeros(3), alpha)
