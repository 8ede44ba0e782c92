"""Activation functions of the M-P neuron, y = phi(v), and their derivatives (lecture eqs. 3-9).

Each `*_backward` takes what its forward kept (the input v or the output y) and the upstream gradient dy,
and returns dv = dy * phi'(v). Sigmoid, tanh and ReLU have a kernel path (kernels/elementwise.cu): one launch each.
"""
from .. import kernels
from ..backend import get_array_module
from .dispatch import on_kernel_path


def step(v):
    """Threshold function: phi(v) = 1 for v >= 0, 0 for v < 0 (the slide's strict/non-strict typo corrected)."""
    return (v >= 0).astype(v.dtype)


def step_backward(v, dy):
    """phi'(v) = 0 almost everywhere: no gradient flows through a threshold."""
    return get_array_module(dy).zeros_like(dy)


def sign(v):
    """Signum: +1 for v > 0, 0 at v = 0, -1 for v < 0."""
    return get_array_module(v).sign(v)


def sign_backward(v, dy):
    """phi'(v) = 0 almost everywhere."""
    return get_array_module(dy).zeros_like(dy)


def sigmoid(v, alpha=1.0):
    """Logistic function phi(v) = 1 / (1 + exp(-alpha v)), computed without overflow for large |v|."""
    if on_kernel_path(v):
        return kernels.activation("sigmoid", v, alpha)
    xp = get_array_module(v)
    z = xp.exp(-xp.abs(alpha * v))
    return xp.where(v >= 0, 1 / (1 + z), z / (1 + z)).astype(v.dtype, copy=False)


def sigmoid_backward(y, dy, alpha=1.0):
    """phi'(v) = alpha * y * (1 - y), from the output y."""
    if on_kernel_path(dy):
        return kernels.activation_backward("sigmoid", y, dy, alpha)
    return dy * (alpha * y * (1 - y))


def tanh(v):
    """Hyperbolic tangent phi(v) = (e^v - e^-v) / (e^v + e^-v)."""
    if on_kernel_path(v):
        return kernels.activation("tanh", v)
    return get_array_module(v).tanh(v)


def tanh_backward(y, dy):
    """phi'(v) = 1 - y^2, from the output y."""
    if on_kernel_path(dy):
        return kernels.activation_backward("tanh", y, dy)
    return dy * (1 - y * y)


def relu(v):
    """Rectified linear unit phi(v) = max(0, v)."""
    if on_kernel_path(v):
        return kernels.activation("relu", v)
    return get_array_module(v).maximum(v, 0)


def relu_backward(v, dy):
    """phi'(v) = 1 for v > 0, else 0."""
    if on_kernel_path(dy):
        return kernels.activation_backward("relu", v, dy)
    return dy * (v > 0)


def softplus(v):
    """Softplus phi(v) = ln(1 + e^v), the smooth ReLU; stable for large |v|."""
    return get_array_module(v).logaddexp(0, v).astype(v.dtype, copy=False)


def softplus_backward(v, dy):
    """phi'(v) = 1 / (1 + e^-v), the logistic function."""
    return dy * sigmoid(v)
