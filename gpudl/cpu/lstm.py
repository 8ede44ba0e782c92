"""One LSTM time step on the CPU, forward and backward, fused as lstm.cu is (lecture eqs. 45-48), gates i, f, g, o.

The pre-activations a (N, 4H) are read once per element and the whole gate arithmetic done in registers, in double
precision, the rows split over the threads. tanh is libm's for float64 data; for float32 data it is a rational
function (x P(x^2) / Q(x^2) on [-10, 10], its coefficients fitted for gpudl, relative error below 2.1e-8, a sixth of
float32's rounding), because libm's tanh is a call per element that stops the loop from vectorizing; the
logistic function is sigma(x) = 1/2 + 1/2 tanh(x/2). The backward recomputes the gates from a, as the forward
computed them: first into a scratch row, then da from it, so that da may be a (in place) and still vectorize.
"""
import math

import numpy
from numba import prange, types, uint64
from numba.extending import overload

from ..backend import output_arrays
from .loader import inline, kernel, real_arrays, threads_for

_CLAMP = 10.0   # past 10, tanh rounds to +-1 in float32
_P = (0.9999999804420362, 0.13039312863341437, 0.0030542514342077674, 1.0642258400691717e-05,
      -1.8207484400257744e-08, 4.346143542369018e-11, -6.215290130350547e-14)
_Q = (1.0, 0.4637262896926949, 0.02429660130514078, 0.0002474193569181333)


@inline
def rational_tanh(x):
    """tanh(x) to a relative error below 2.1e-8 (float64 arithmetic); NaN stays NaN, +-inf gives +-1. Branch-free,
    so a loop that calls it vectorizes."""
    u = x * x
    p = ((((((_P[6] * u + _P[5]) * u + _P[4]) * u + _P[3]) * u + _P[2]) * u + _P[1]) * u + _P[0])
    q = (((_Q[3] * u + _Q[2]) * u + _Q[1]) * u + _Q[0])
    t = x * p / q
    return 1.0 if x > _CLAMP or t > 1.0 else (-1.0 if x < -_CLAMP or t < -1.0 else t)


def tanh_of(x):
    """tanh(x) in double precision for the kernels: libm's for float64 x, rational_tanh for float32 x (the choice is
    made by the type, when the kernel is compiled)."""
    return math.tanh(x)


def sigmoid_of(x):
    """sigma(x) = 1/2 + 1/2 tanh(x/2) in double precision for the kernels, tanh as in tanh_of."""
    return 0.5 + 0.5 * math.tanh(0.5 * x)


@overload(tanh_of)
def _tanh_of(x):
    if x == types.float32:
        return lambda x: rational_tanh(numpy.float64(x))
    return lambda x: math.tanh(x)


@overload(sigmoid_of)
def _sigmoid_of(x):
    if x == types.float32:
        return lambda x: 0.5 + 0.5 * rational_tanh(0.5 * numpy.float64(x))
    return lambda x: 0.5 + 0.5 * math.tanh(0.5 * x)


@kernel
def _forward(a, c_prev, h_out, c_out, n, hidden):
    h = uint64(hidden)
    for r in prange(n):
        at, row = uint64(r) * uint64(4) * h, uint64(r) * h
        for k in range(h):
            i, f = sigmoid_of(a[at + k]), sigmoid_of(a[at + h + k])
            g, o = tanh_of(a[at + uint64(2) * h + k]), sigmoid_of(a[at + uint64(3) * h + k])
            c_out[row + k] = f * c_prev[row + k] + i * g
            h_out[row + k] = o * tanh_of(c_out[row + k])


@kernel
def _backward(dh, dc, a, c_prev, c, da, dc_prev, n, hidden, parts):
    h = uint64(hidden)
    for part in prange(parts):
        scratch = numpy.empty(5 * hidden)      # per row: the four gates' slopes times their factors, then dc_t
        for r in range(part * n // parts, (part + 1) * n // parts):
            at, row = uint64(r) * uint64(4) * h, uint64(r) * h
            for k in range(h):
                i, f = sigmoid_of(a[at + k]), sigmoid_of(a[at + h + k])
                g, o = tanh_of(a[at + uint64(2) * h + k]), sigmoid_of(a[at + uint64(3) * h + k])
                tc = tanh_of(c[row + k])
                total = dc[row + k] + dh[row + k] * o * (1.0 - tc * tc)      # dL/dc_t: carried and through h_t
                scratch[k] = total * g * i * (1.0 - i)
                scratch[h + k] = total * c_prev[row + k] * f * (1.0 - f)
                scratch[uint64(2) * h + k] = total * i * (1.0 - g * g)
                scratch[uint64(3) * h + k] = dh[row + k] * tc * o * (1.0 - o)
                scratch[uint64(4) * h + k] = total * f
            for k in range(uint64(4) * h):
                da[at + k] = scratch[k]
            for k in range(h):
                dc_prev[row + k] = scratch[uint64(4) * h + k]


def _state(v, what, n, h, like):
    """A state array (N, H) of like's dtype, C-contiguous, broadcast from v (a number, a row, ...) when needed."""
    if hasattr(v, "dtype") and v.dtype != like.dtype:
        raise TypeError(f"{what}: expected a {like.dtype} array like a, got {v.dtype}")
    if isinstance(v, numpy.ndarray) and v.shape == (n, h) and v.flags.c_contiguous and v.flags.writeable:
        return v
    try:
        return numpy.array(numpy.broadcast_to(numpy.asarray(v, dtype=like.dtype), (n, h)), order="C")
    except ValueError:
        raise ValueError(f"{what}: expected shape {(n, h)} for a of shape {tuple(like.shape)}, got "
                         f"{tuple(numpy.shape(v))}") from None


def _size(a, what):
    if a.ndim != 2 or a.shape[1] % 4:
        raise ValueError(f"{what}: a must be (N, 4H) with the gates i, f, g, o; got shape {tuple(a.shape)}")
    return a.shape[0], a.shape[1] // 4


def lstm_step(a, c_prev, out=None):
    """(h_t, c_t), each (N, H), from the pre-activations a (N, 4H) and c_{t-1}.

    out=(h_out, c_out): write there instead of allocating (c_out may be c_prev); see backend.output_arrays.
    """
    (a,) = real_arrays("lstm_step", a)
    n, h = _size(a, "lstm_step")
    c_prev = _state(c_prev, "lstm_step: c_prev", n, h, a)
    h_out, c_out = output_arrays("lstm_step", out, ((n, h), (n, h)), a)
    threads_for(a.size * 8)
    _forward(a.reshape(-1), c_prev.reshape(-1), h_out.reshape(-1), c_out.reshape(-1), n, h)
    return h_out, c_out


def lstm_step_backward(dh, dc, a, c_prev, c, out=None):
    """(da (N, 4H), dc_{t-1}) from dL/dh_t, dL/dc_t and what the forward saw.

    out=(da, dc_prev): write there instead of allocating; da may be a and dc_prev may be dc (in place).
    """
    (a,) = real_arrays("lstm_step_backward", a)
    n, h = _size(a, "lstm_step_backward")
    dh, dc, c_prev, c = (_state(v, f"lstm_step_backward: {name}", n, h, a)
                         for v, name in ((dh, "dh"), (dc, "dc"), (c_prev, "c_prev"), (c, "c")))
    da, dc_prev = output_arrays("lstm_step_backward", out, ((n, 4 * h), (n, h)), a)
    _backward(dh.reshape(-1), dc.reshape(-1), a.reshape(-1), c_prev.reshape(-1), c.reshape(-1), da.reshape(-1),
              dc_prev.reshape(-1), n, h, min(n, threads_for(a.size * 12)))
    return da, dc_prev
