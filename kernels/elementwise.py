"""The ops of elementwise.cu: fill (one array, or all arrays of a list in one launch), copy, bias add with an
activation, activations forward and backward, the (0, 1) axis swap of a 3-D array, one-hot rows and the mean squared
error's rows; plus the mean squared error itself (with reduce.cu).

Each op writes into an array it is given or allocates its result; none reads a value back to the host.
"""
from ..backend import get_array_module, output_arrays
from . import loader
from .loader import INDEX_TYPE, check_args, ints, launch, real_input
from .reduce import ACTIVATION_CODES, scaled_sum
from .tables import array_table

ACTIVATIONS = ("relu", "sigmoid", "tanh")


def fill(out, value):
    """out[...] = value, in place; returns out."""
    launch("elementwise.cu", "fill", out.size, (out,) + ints(out.size) + (out.dtype.type(value),))
    return out


def copy(out, src):
    """out[...] = src (same shape and dtype, both C-contiguous), in place; returns out."""
    if tuple(out.shape) != tuple(src.shape):
        raise ValueError(f"copy: out has shape {tuple(out.shape)}, src {tuple(src.shape)}")
    launch("elementwise.cu", "copy", out.size, (out, src) + ints(out.size))
    return out


def fill_all(arrays, value):
    """a[...] = value for every array of the list (one dtype), in place, in one launch."""
    table, n, total, dtype = array_table("fill_all", list(arrays))
    launch("elementwise.cu", "fill_table", total, (table,) + ints(n) + (dtype.type(value),))
    return arrays


def bias_activation(y, b, activation=None, alpha=1.0, inner=1):
    """y = phi(y + b) along axis 1 of y viewed as (outer, C, inner), C = b.size, in place; returns y.

    phi: None (the identity: a bias add), or one of ACTIVATIONS (sigmoid with its alpha)."""
    if activation not in ACTIVATION_CODES:
        raise ValueError(f"bias_activation: unknown activation {activation!r}; expected None or one of {ACTIVATIONS}")
    c = b.size
    if c == 0 or y.size % (c * inner) or (y.ndim > 1 and y.shape[1] != c):
        raise ValueError(f"bias_activation: y of shape {tuple(y.shape)} has no axis of {c} channels for b")
    name = "bias_activation" if y.size < loader.INT32_LIMIT else "bias_activation_i64"
    launch("elementwise.cu", name, y.size, (y, b) + ints(y.size // (c * inner), c, inner,
                                                         ACTIVATION_CODES[activation]) + (y.dtype.type(alpha),))
    return y


def add_bias(y, b, inner=1):
    """y += b along axis 1 of y viewed as (outer, C, inner), C = b.size, in place; returns y."""
    return bias_activation(y, b, None, 1.0, inner)


def _alpha(name, dtype, alpha):
    return (dtype.type(alpha),) if name == "sigmoid" else ()


def activation(name, v, alpha=1.0, out=None):
    """y = phi(v) for phi one of ACTIVATIONS (sigmoid with its alpha)."""
    v = real_input(v, f"{name}_forward: v", v.ndim)
    (y,) = output_arrays(f"{name}_forward", out, (tuple(v.shape),), v)
    launch("elementwise.cu", f"{name}_forward", v.size, (y, v) + ints(v.size) + _alpha(name, v.dtype, alpha))
    return y


def activation_backward(name, kept, dy, alpha=1.0, out=None):
    """dv = dy * phi'(.) from what the forward kept: v for relu, y for sigmoid and tanh; out=(dv,) writes there."""
    kept, dy = (real_input(a, f"{name}_backward", a.ndim) for a in (kept, dy))
    if tuple(kept.shape) != tuple(dy.shape):
        raise ValueError(f"{name}_backward: dy has shape {tuple(dy.shape)}, the forward's {tuple(kept.shape)}")
    (dv,) = output_arrays(f"{name}_backward", out, (tuple(dy.shape),), dy)
    launch("elementwise.cu", f"{name}_backward", dy.size,
           (dv, kept, dy) + ints(dy.size) + _alpha(name, dy.dtype, alpha))
    return dv


def swap01(src):
    """out (B, A, C) = src (A, B, C) with its first two axes swapped, C-contiguous."""
    a, b, c = src.shape
    out = get_array_module(src).empty((b, a, c), dtype=src.dtype)
    launch("elementwise.cu", "swap01", out.size, (out, src) + ints(a, b, c))
    return out


def one_hot(indices, classes, dtype):
    """(R, classes) rows of an identity for int64 indices (R,); an index outside [0, classes) gives a zero row."""
    if indices.ndim != 1 or indices.dtype != INDEX_TYPE:
        raise TypeError(f"one_hot: expected int64 indices of rank 1, got {indices.dtype} of shape "
                        f"{tuple(indices.shape)}")
    out = get_array_module(indices).empty((indices.shape[0], classes), dtype=dtype)
    launch("elementwise.cu", "one_hot", out.size, (out, indices) + ints(indices.shape[0], classes))
    return out


def mse(pred, target):
    """(J, dJ/dpred) with J = 1/2 sum (pred - target)^2 / m, m = pred.shape[0] (J 0-d, on the device)."""
    check_args("mse", (pred, target))
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"mse: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    xp = get_array_module(pred)
    m = pred.shape[0]
    rows = xp.empty((m,), dtype=pred.dtype)
    dpred = xp.empty(pred.shape, dtype=pred.dtype)
    launch("elementwise.cu", "mse_rows", m, (pred, target, rows, dpred) + ints(m, pred.size // max(m, 1)) +
           (pred.dtype.type(m),))
    return scaled_sum(rows, 0.5, m), dpred
