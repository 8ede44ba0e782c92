"""Activation functions of the M-P neuron, y = phi(v), and their derivatives (lecture eqs. 3-9).

Each `*_backward` takes what its forward kept (the input v or the output y) and the upstream gradient dy,
and returns dv = dy * phi'(v). Sigmoid, tanh and ReLU run the kernels of their array (dispatch.kernels_for: one
launch each on the GPU, one loop on the CPU) and else the NumPy reference here.
"""
from ..backend import get_array_module
from .dispatch import kernels_for


def _elementwise(into, *arrays, out=None, **options):
    """out filled by into(*arrays, out=out, **options): a new array of the inputs' (floating) result type, or `out`
    (C-contiguous, of the inputs' shape) written in place."""
    xp = get_array_module(*arrays)
    shape = xp.broadcast(*arrays).shape
    if out is None:
        dtype = xp.result_type(*arrays)
        if dtype.kind != "f":
            dtype = xp.result_type(dtype, 0.0)
        out = xp.empty(shape, dtype=dtype)
    elif tuple(out.shape) != tuple(shape) or not out.flags.c_contiguous:
        raise ValueError(f"out of shape {tuple(out.shape)} must be C-contiguous and of the inputs' shape "
                         f"{tuple(shape)}")
    into(*arrays, out=out, **options)
    return out


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


def check_slope(alpha):
    """The logistic slope alpha as a float, or a ValueError: alpha must be a positive number."""
    if not alpha > 0:       # also refuses NaN
        raise ValueError(f"sigmoid: the slope alpha must be positive, got {alpha!r}")
    return float(alpha)


def sigmoid(v, alpha=1.0):
    """Logistic function phi(v) = 1 / (1 + exp(-alpha v)), computed without overflow for large |v|."""
    check_slope(alpha)
    kernels = kernels_for(v)
    if kernels is not None:
        return kernels.activation("sigmoid", v, alpha)
    return _elementwise(_sigmoid_into, v, alpha=alpha).astype(v.dtype, copy=False)


def _sigmoid_into(v, out, alpha):
    xp = get_array_module(v)
    z = xp.multiply(v, alpha, out=out)
    xp.exp(xp.negative(xp.abs(z, out=z), out=z), out=z)      # z = exp(-|alpha v|), in out
    denominator = 1 + z
    numerator = xp.maximum(z, v >= 0)                        # 1 for v >= 0 (z <= 1 there), z for v < 0
    xp.divide(numerator, denominator, out=out)               # 1 / (1 + z) for v >= 0, z / (1 + z) for v < 0


def sigmoid_backward(y, dy, alpha=1.0):
    """phi'(v) = alpha * y * (1 - y), from the output y."""
    kernels = kernels_for(dy)
    if kernels is not None:
        return kernels.activation_backward("sigmoid", y, dy, alpha)
    return _elementwise(_sigmoid_backward_into, y, dy, alpha=alpha)


def _sigmoid_backward_into(y, dy, out, alpha):
    xp = get_array_module(y)
    xp.multiply(y, alpha, out=out)
    out *= 1 - y
    xp.multiply(dy, out, out=out)


def tanh(v, out=None):
    """Hyperbolic tangent phi(v) = (e^v - e^-v) / (e^v + e^-v); out: written there instead of a new array."""
    kernels = kernels_for(v)
    if kernels is not None:
        return kernels.activation("tanh", v, out=None if out is None else (out,))
    return _elementwise(get_array_module(v).tanh, v, out=out)


def tanh_backward(y, dy, out=None):
    """phi'(v) = 1 - y^2, from the output y; out: written there instead of a new array."""
    kernels = kernels_for(dy)
    if kernels is not None:
        return kernels.activation_backward("tanh", y, dy, out=None if out is None else (out,))
    return _elementwise(_tanh_backward_into, y, dy, out=out)


def _tanh_backward_into(y, dy, out):
    xp = get_array_module(y)
    xp.multiply(y, y, out=out)
    xp.subtract(1, out, out=out)
    xp.multiply(dy, out, out=out)


def relu(v):
    """Rectified linear unit phi(v) = max(0, v)."""
    kernels = kernels_for(v)
    if kernels is not None:
        return kernels.activation("relu", v)
    return _elementwise(_relu_into, v)


def _relu_into(v, out):
    get_array_module(v).maximum(v, 0, out=out)


def relu_backward(v, dy):
    """phi'(v) = 1 for v > 0, else 0."""
    kernels = kernels_for(dy)
    if kernels is not None:
        return kernels.activation_backward("relu", v, dy)
    return _elementwise(_relu_backward_into, v, dy)


def _relu_backward_into(v, dy, out):
    xp = get_array_module(v)
    xp.greater(v, 0, out=out)                  # the mask as 0.0 and 1.0: cheaper to multiply than booleans
    xp.multiply(out, dy, out=out)


def softplus(v):
    """Softplus phi(v) = ln(1 + e^v), the smooth ReLU; stable for large |v|."""
    return get_array_module(v).logaddexp(0, v).astype(v.dtype, copy=False)


def softplus_backward(v, dy):
    """phi'(v) = 1 / (1 + e^-v), the logistic function."""
    return dy * sigmoid(v)


# The activations a kernel can fuse with the bias add before it (kernels.bias_activation) and, backward, with the bias
# gradient (kernels.activation_backward_sum): phi by name, and phi' from the output y = phi(v).
FUSABLE = ("relu", "sigmoid", "tanh")


def check_fusable(name):
    """name, when it names an activation of FUSABLE; else a ValueError."""
    if name not in FUSABLE:
        raise ValueError(f"unknown fused activation {name!r}; expected one of {FUSABLE}")
    return name


def activate(name, v, alpha=1.0):
    """phi(v) for the activation `name` of FUSABLE (the logistic function with its slope alpha)."""
    if check_fusable(name) == "sigmoid":
        return sigmoid(v, alpha)
    return relu(v) if name == "relu" else tanh(v)


def activate_backward(name, y, dy, alpha=1.0):
    """dv = dy * phi'(v), from the output y = phi(v) of the activation `name` (ReLU's y > 0 exactly where v > 0)."""
    if check_fusable(name) == "sigmoid":
        return sigmoid_backward(y, dy, alpha)
    return relu_backward(y, dy) if name == "relu" else tanh_backward(y, dy)
