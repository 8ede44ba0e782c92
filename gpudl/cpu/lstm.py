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
from .blas import blas_on_one_thread, gemm_at
from .loader import GRAIN, MAX_THREADS, check_overflow, inline, kernel, part, real_arrays, threads_for

LOOP_UNITS = 32  # hidden units per piece of a time loop's step, at least (narrower products ran slower in OpenBLAS)
LOOP_ROWS = 16   # rows per piece, at least, where the pieces of hidden units are fewer than the cores
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


@inline
def _forward_row(a, a_at, c_prev, prev_at, h_out, c_out, out_at, h, units):
    """`units` hidden units of one row of the step: the gates from a[a_at:] (a gate every h elements), c_{t-1} from
    c_prev[prev_at:], h_t and c_t to [out_at:]."""
    for k in range(units):
        i, f = sigmoid_of(a[a_at + k]), sigmoid_of(a[a_at + h + k])
        g, o = tanh_of(a[a_at + uint64(2) * h + k]), sigmoid_of(a[a_at + uint64(3) * h + k])
        c_out[out_at + k] = f * c_prev[prev_at + k] + i * g
        h_out[out_at + k] = o * tanh_of(c_out[out_at + k])


@inline
def _backward_row(dh, dh_at, dc, a, a_at, c_prev, prev_at, c, c_at, da, dc_prev, dc_at, h, units, scratch):
    """`units` hidden units of one row of the step's backward: dh_t from dh[dh_at:], dc_t from dc[dc_at:], the gates
    from a[a_at:] (a gate every h elements), c_{t-1} and c_t at prev_at and c_at; da to da[a_at:] and dc_{t-1} to
    dc_prev[dc_at:] (either may be its input)."""
    u = units
    for k in range(units):
        i, f = sigmoid_of(a[a_at + k]), sigmoid_of(a[a_at + h + k])
        g, o = tanh_of(a[a_at + uint64(2) * h + k]), sigmoid_of(a[a_at + uint64(3) * h + k])
        tc = tanh_of(c[c_at + k])
        total = dc[dc_at + k] + dh[dh_at + k] * o * (1.0 - tc * tc)      # dL/dc_t: carried and through h_t
        scratch[k] = total * g * i * (1.0 - i)
        scratch[u + k] = total * c_prev[prev_at + k] * f * (1.0 - f)
        scratch[uint64(2) * u + k] = total * i * (1.0 - g * g)
        scratch[uint64(3) * u + k] = dh[dh_at + k] * tc * o * (1.0 - o)
        scratch[uint64(4) * u + k] = total * f
    for gate in range(4):
        for k in range(units):
            da[a_at + uint64(gate) * h + k] = scratch[uint64(gate) * u + k]
    for k in range(units):
        dc_prev[dc_at + k] = scratch[uint64(4) * u + k]


@kernel
def _forward(a, c_prev, h_out, c_out, n, hidden):
    h = uint64(hidden)
    for r in prange(n):
        _forward_row(a, uint64(r) * uint64(4) * h, c_prev, uint64(r) * h, h_out, c_out, uint64(r) * h, h, h)


@kernel
def _backward(dh, dc, a, c_prev, c, da, dc_prev, n, hidden, parts):
    h = uint64(hidden)
    for piece in prange(parts):
        scratch = numpy.empty(5 * hidden)      # per row: the four gates' slopes times their factors, then dc_t
        for r in range(piece * n // parts, (piece + 1) * n // parts):
            row = uint64(r) * h
            _backward_row(dh, row, dc, a, uint64(4) * row, c_prev, row, c, row, da, dc_prev, row, h, h, scratch)


@part
def _forward_step(task, pieces, a, hs, cs, W, n, hidden, steps, one, unit_pieces):
    """Step t = task // pieces for the rows and hidden units of piece task % pieces (_block): their columns of each
    gate's a[t] += hs[t] W, then the step for them (see forward_loop)."""
    t = task // pieces
    first, last, top, bottom = _block(task % pieces, pieces, unit_pieces, n, hidden)
    for gate in range(4):
        at = gate * hidden + first
        gemm_at(False, False, bottom - top, last - first, hidden, one, hs, (t * n + top) * hidden, hidden, W, at,
                4 * hidden, one, a, (t * n + top) * 4 * hidden + at, 4 * hidden)
    h, n64, f, units = uint64(hidden), uint64(n), uint64(first), uint64(last - first)
    for r in range(uint64(top), uint64(bottom)):
        row = (uint64(t) * n64 + r) * h
        _forward_row(a, uint64(4) * row + f, cs, row + f, hs, cs, row + n64 * h + f, h, units)


@part
def _backward_step(task, pieces, a, cs, dh, dc, W_T, n, hidden, steps, one, unit_pieces):
    """Step t = T - 1 - task // pieces for the rows and hidden units of piece task % pieces (_block): dh[t] +=
    a[t + 1] W^T for them (a[t + 1] holds da by then), then the step's backward for them (see backward_loop)."""
    t = steps - 1 - task // pieces
    first, last, top, bottom = _block(task % pieces, pieces, unit_pieces, n, hidden)
    if t < steps - 1:
        gemm_at(False, False, bottom - top, last - first, 4 * hidden, one, a, ((t + 1) * n + top) * 4 * hidden,
                4 * hidden, W_T, first, hidden, one, dh, (t * n + top) * hidden + first, hidden)
    h, n64, f, units = uint64(hidden), uint64(n), uint64(first), uint64(last - first)
    scratch = numpy.empty(5 * (last - first))
    for r in range(uint64(top), uint64(bottom)):
        row = (uint64(t) * n64 + r) * h
        _backward_row(dh, row + f, dc, a, uint64(4) * row + f, cs, row + f, cs, row + n64 * h + f, a, dc, r * h + f,
                      h, units, scratch)


@inline
def _block(piece, pieces, unit_pieces, n, hidden):
    """The hidden units first .. last - 1 and the rows top .. bottom - 1 of a piece: unit_pieces pieces of hidden
    units, each cut into pieces // unit_pieces pieces of rows."""
    u, r, row_pieces = piece % unit_pieces, piece // unit_pieces, pieces // unit_pieces
    return (u * hidden // unit_pieces, (u + 1) * hidden // unit_pieces, r * n // row_pieces,
            (r + 1) * n // row_pieces)


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


def _loop_pieces(n, hidden):
    """(pieces, unit_pieces): how a time loop's steps split, fixed by the layer's size and the machine (not the thread
    count, so the results are the same at any). Pieces of LOOP_UNITS hidden units at least, one per core at most;
    where cores remain (many cores, or few hidden units), each piece of units is cut into pieces of LOOP_ROWS rows at
    least."""
    unit_pieces = max(1, min(MAX_THREADS, hidden // LOOP_UNITS))
    row_pieces = max(1, min(MAX_THREADS // unit_pieces, n // LOOP_ROWS))
    return unit_pieces * row_pieces, unit_pieces


def _run_loop(step, a, *arrays):
    """Run a time loop's step body (_forward_step or _backward_step) over its arrays for every step of a (T, N, 4H),
    in the pieces _loop_pieces gives, with NumPy's BLAS held to one thread beside the kernels' threads."""
    steps, n, h = a.shape[0], a.shape[1], a.shape[2] // 4
    pieces, unit_pieces = _loop_pieces(n, h)
    threads_for(pieces * GRAIN)
    blas_on_one_thread()
    step.run(pieces, *arrays, n, h, steps, a.dtype.type(1), unit_pieces, steps=steps)


def forward_loop(a, hs, cs, W_h):
    """functional.lstm_forward_loop's loop as one parallel kernel: for t = 0 .. T-1, a[t] += hs[t] W_h, then
    (hs[t + 1], cs[t + 1]) = lstm_step(a[t], cs[t]). A step needs all of hs[t] but gives each hidden unit from its own
    four columns of a[t], so each thread takes a piece of the hidden units (and of the rows, on more cores than such
    pieces), product and gates, and the threads join once a step (the step-by-step loop joins them twice, and a
    product split by rows alone packs all of W_h per thread)."""
    W_h = real_arrays("lstm_forward_loop", a, hs, cs, W_h)[3]
    _run_loop(_forward_step, a, a.reshape(-1), hs.reshape(-1), cs.reshape(-1), W_h)
    check_overflow("lstm_forward_loop's products", a, W_h, hs[0], cs[0])


def backward_loop(a, cs, dh, dc, W_h_T):
    """functional.lstm_backward_loop's loop as one parallel kernel: for t = T-1 .. 0, dh[t] += a[t + 1] W_h^T
    (t < T-1), then (a[t], dc) = lstm_step_backward(dh[t], dc, a[t], cs[t], cs[t + 1]); the threads take pieces of
    the hidden units, as in forward_loop."""
    W_h_T = real_arrays("lstm_backward_loop", a, cs, dh, dc, W_h_T)[4]
    _run_loop(_backward_step, a, a.reshape(-1), cs.reshape(-1), dh.reshape(-1), dc.reshape(-1), W_h_T)
    check_overflow("lstm_backward_loop's products", dh, W_h_T)
