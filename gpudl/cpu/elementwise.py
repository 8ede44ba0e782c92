"""Element-wise ops on the CPU: activations forward and backward, bias add, fill, copy, the (0, 1) axis swap and the
mean squared error; flat loops over the elements, split over the threads.

ReLU and every backward are Numba loops (each element computed as the NumPy reference computes it, so the bits are
the same). The sigmoid and tanh forwards, fill, copy and the axis swap are NumPy's own: its vectorized exp and tanh
are faster than the scalar libm calls Numba would make, and a copy is a copy.
"""
import numpy
from numba import prange, uint64

from ..backend import output_arrays
from .loader import kernel, real_arrays, threads_for

ACTIVATIONS = ("relu", "sigmoid", "tanh")


# One kernel per op, so that a run compiles only the ops it uses. Each is a flat loop over the elements.

@kernel
def _relu(v, y, zero):
    for k in prange(y.size):
        x = v[k]
        y[k] = x if x > zero or x != x else zero          # numpy.maximum(v, 0): NaN stays, -0 gives +0


@kernel
def _relu_backward(v, dy, dv, zero, one):
    for k in prange(dv.size):
        dv[k] = dy[k] * (one if v[k] > zero else zero)


@kernel
def _sigmoid_backward(y, dy, dv, alpha, one):
    for k in prange(dv.size):
        dv[k] = dy[k] * (y[k] * alpha * (one - y[k]))


@kernel
def _tanh_backward(y, dy, dv, one):
    for k in prange(dv.size):
        dv[k] = dy[k] * (one - y[k] * y[k])


def _sigmoid_into(v, y, alpha):
    """y = 1 / (1 + e^(-alpha v)) from z = e^(-|alpha v|) (never overflows): 1 / (1 + z) for v >= 0, z / (1 + z)."""
    z = numpy.multiply(v, alpha, out=y)
    numpy.exp(numpy.negative(numpy.abs(z, out=z), out=z), out=z)
    numpy.divide(numpy.maximum(z, v >= 0), 1 + z, out=y)


def activation(name, v, alpha=1.0, out=None):
    """y = phi(v) for phi one of ACTIVATIONS (sigmoid with its alpha); out=(y,) writes there."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown {name!r}, expected one of {ACTIVATIONS}")
    (v,) = real_arrays(f"{name}_forward", v)
    (y,) = output_arrays(f"{name}_forward", out, (tuple(v.shape),), v)
    if name == "relu":
        threads_for(y.size)
        _relu(v.reshape(-1), y.reshape(-1), v.dtype.type(0))
        return y
    if name == "sigmoid":
        _sigmoid_into(v, y, v.dtype.type(alpha))
    else:
        numpy.tanh(v, out=y)
    return y


def activation_backward(name, kept, dy, alpha=1.0, out=None):
    """dv = dy * phi'(.) from what the forward kept: v for relu, y for sigmoid and tanh; out=(dv,) writes there."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation_backward: unknown {name!r}, expected one of {ACTIVATIONS}")
    kept, dy = real_arrays(f"{name}_backward", kept, dy)
    if kept.shape != dy.shape:
        raise ValueError(f"{name}_backward: dy has shape {tuple(dy.shape)}, the forward's {tuple(kept.shape)}")
    (dv,) = output_arrays(f"{name}_backward", out, (tuple(dy.shape),), dy)
    real, flat = dy.dtype.type, (kept.reshape(-1), dy.reshape(-1), dv.reshape(-1))
    threads_for(dv.size)
    if name == "relu":
        _relu_backward(*flat, real(0), real(1))
    elif name == "sigmoid":
        _sigmoid_backward(*flat, real(alpha), real(1))
    else:
        _tanh_backward(*flat, real(1))
    return dv


@kernel
def _add_bias(y, b, outer, channels, inner):
    for o in prange(outer):
        if inner == 1:
            at = uint64(o * channels)
            for c in range(uint64(channels)):
                y[at + c] += b[c]
        else:
            for c in range(channels):
                bias, at = b[c], uint64((o * channels + c) * inner)
                for k in range(uint64(inner)):
                    y[at + k] += bias


def add_bias(y, b, inner=1):
    """y += b along axis 1 of y viewed as (outer, C, inner), C = b.size, in place; returns y."""
    real_arrays("add_bias", y, b)
    c = b.size
    if y.size % (c * inner) or (y.ndim > 1 and y.shape[1] != c) or not y.flags.c_contiguous:
        raise ValueError(f"add_bias: y of shape {tuple(y.shape)} has no axis of {c} channels for b (C-contiguous)")
    threads_for(y.size)
    _add_bias(y.reshape(-1), numpy.ascontiguousarray(b).reshape(-1), y.size // (c * inner), c, inner)
    return y


def bias_activation(y, b, activation=None, alpha=1.0, inner=1):
    """y = phi(y + b) along axis 1 of y viewed as (outer, C, inner), C = b.size, in place; returns y.

    phi: None (the identity: a bias add), or one of ACTIVATIONS (sigmoid with its alpha)."""
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"bias_activation: unknown activation {activation!r}; expected None or one of {ACTIVATIONS}")
    add_bias(y, b, inner)
    if activation == "relu":
        _relu(y.reshape(-1), y.reshape(-1), y.dtype.type(0))        # threads set by add_bias, for as many elements
    elif activation == "sigmoid":
        _sigmoid_into(y.copy(), y, y.dtype.type(alpha))
    elif activation == "tanh":
        numpy.tanh(y, out=y)
    return y


def fill(out, value):
    """out[...] = value, in place; returns out."""
    out.fill(value)
    return out


def fill_all(arrays, value):
    """a[...] = value for every array of the list, in place."""
    for a in arrays:
        a.fill(value)
    return arrays


def copy(out, src):
    """out[...] = src (same shape and dtype), in place; returns out."""
    if tuple(out.shape) != tuple(src.shape):
        raise ValueError(f"copy: out has shape {tuple(out.shape)}, src {tuple(src.shape)}")
    numpy.copyto(out, src)
    return out


def swap01(src):
    """out (B, A, C) = src (A, B, C) with its first two axes swapped, C-contiguous."""
    return src.transpose(1, 0, 2).copy()


@kernel
def _mse_rows(pred, target, rows, dpred, m, width, scale):
    for r in prange(m):
        total, at = 0.0, uint64(r * width)
        for k in range(uint64(width)):
            diff = pred[at + k] - target[at + k]
            dpred[at + k] = diff / scale
            total += diff * diff
        rows[r] = total


def mse(pred, target):
    """(J, dJ/dpred) with J = 1/2 sum (pred - target)^2 / m, m = pred.shape[0] (J 0-d)."""
    pred, target = real_arrays("mse", pred, target)
    if pred.shape != target.shape:
        raise ValueError(f"mse: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    m = pred.shape[0]
    rows, dpred = numpy.empty(m, dtype=pred.dtype), numpy.empty(pred.shape, dtype=pred.dtype)
    threads_for(pred.size)
    _mse_rows(pred.reshape(-1), target.reshape(-1), rows, dpred.reshape(-1), m, pred.size // max(m, 1),
              pred.dtype.type(m))
    return numpy.asarray(pred.dtype.type(0.5) * rows.sum(dtype=pred.dtype) / pred.dtype.type(m)), dpred
