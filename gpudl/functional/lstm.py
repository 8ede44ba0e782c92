"""One LSTM time step from its pre-activations (lecture eqs. 45-48), gate blocks in the order i, f, g, o.

a = x_t W_x + h_{t-1} W_h + b, shape (N, 4H);  i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o);
c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t).

Both ops take optional output arrays (`out=`), so a layer can write every step straight into its sequence buffers
and allocate nothing inside its time loop; both paths accept and check the same `out` (kernels.output_arrays).
"""
import functools

import numpy

from .. import kernels
from .dispatch import on_kernel_path
from .threads import parallel_chunks


@functools.lru_cache(maxsize=32)
def _gate_scale(h, dtype):
    """(4H,): 1/2 on the sigmoid blocks i, f, o and 1 on the tanh block g."""
    scale = numpy.full(4 * h, 0.5, dtype=dtype)
    scale[2 * h:3 * h] = 1
    return scale


def _gates_into(gates, a):
    """The NumPy path's gates (i, f, g, o) into gates (rows, 4H): one tanh over all blocks, with
    sigma(x) = 1/2 + 1/2 tanh(x/2) on the sigmoid blocks (no overflow for any x)."""
    h = a.shape[1] // 4
    numpy.multiply(a, _gate_scale(h, a.dtype), out=gates)
    numpy.tanh(gates, out=gates)
    for block in (gates[:, :2 * h], gates[:, 3 * h:]):
        block *= 0.5
        block += 0.5
    return gates[:, :h], gates[:, h:2 * h], gates[:, 2 * h:3 * h], gates[:, 3 * h:]


def _rows(value, start, stop, n):
    """Rows start:stop of a per-row array; a scalar or a broadcast row (1, H) stays as it is."""
    return value[start:stop] if getattr(value, "ndim", 0) >= 1 and value.shape[0] == n else value


def _step_rows(a, c_prev, h_out, c_out):
    i, f, g, o = _gates_into(numpy.empty_like(a), a)
    numpy.multiply(f, c_prev, out=c_out)        # c_out may be c_prev: each element is read before it is written
    c_out += numpy.multiply(i, g, out=i)
    numpy.tanh(c_out, out=h_out)
    h_out *= o


def _step_backward_rows(dh, dc, a, c_prev, c, da, dc_prev):
    h = c.shape[1]
    gates = numpy.empty_like(a)
    i, f, g, o = _gates_into(gates, a)          # from here on, a may be overwritten (da may be a)
    slopes = numpy.subtract(1, gates)           # sigma' = s (1 - s) on i, f, o; tanh' = 1 - g^2 on g
    slopes[:, :2 * h] *= gates[:, :2 * h]
    slopes[:, 3 * h:] *= o
    slope_g = numpy.multiply(g, g, out=slopes[:, 2 * h:3 * h])
    numpy.subtract(1, slope_g, out=slope_g)
    tc = numpy.tanh(c)
    dc_total = numpy.multiply(tc, tc)
    numpy.subtract(1, dc_total, out=dc_total)
    dc_total *= o
    dc_total *= dh
    dc_total += dc                              # dc_t + dh_t o (1 - tanh^2 c_t); dc_prev may be dc
    for block, first, second in ((slice(0, h), g, dc_total), (slice(h, 2 * h), c_prev, dc_total),
                                 (slice(2 * h, 3 * h), i, dc_total), (slice(3 * h, 4 * h), tc, dh)):
        numpy.multiply(slopes[:, block], first, out=da[:, block])
        da[:, block] *= second
    numpy.multiply(dc_total, f, out=dc_prev)


def lstm_step(a, c_prev, out=None):
    """Forward: (h_t, c_t) from the pre-activations a (N, 4H) and c_{t-1} (N, H).

    out=(h_out, c_out), each C-contiguous (N, H) of a's dtype: the results go there (c_out may be c_prev).
    """
    if on_kernel_path(a):
        return kernels.lstm_step(a, c_prev, out)
    n, h = a.shape[0], a.shape[1] // 4
    h_out, c_out = kernels.output_arrays("lstm_step", out, ((n, h), (n, h)), a)
    rows = (a, c_prev, h_out, c_out)
    parallel_chunks(n, lambda start, stop: _step_rows(*(_rows(r, start, stop, n) for r in rows)), 4 * h)
    return h_out, c_out


def lstm_step_backward(dh, dc, a, c_prev, c, out=None):
    """Backward: (da (N, 4H), dc_{t-1}) from dL/dh_t, dL/dc_t (from step t+1), and what the forward saw.

    The gates are recomputed from a rather than stored: dc_t += dh_t * o * (1 - tanh^2 c_t); then
    da_i = dc_t g i(1-i), da_f = dc_t c_{t-1} f(1-f), da_g = dc_t i (1-g^2), da_o = dh_t tanh(c_t) o(1-o),
    and dc_{t-1} = dc_t f. out=(da, dc_prev): the results go there; da may be a and dc_prev may be dc (in place:
    the layer writes da_t over a_t).
    """
    if on_kernel_path(a):
        return kernels.lstm_step_backward(dh, dc, a, c_prev, c, out)
    n, h = a.shape[0], a.shape[1] // 4
    da, dc_prev = kernels.output_arrays("lstm_step_backward", out, ((n, 4 * h), (n, h)), a)
    rows = (dh, dc, a, c_prev, c, da, dc_prev)
    parallel_chunks(n, lambda start, stop: _step_backward_rows(*(_rows(r, start, stop, n) for r in rows)), 8 * h)
    return da, dc_prev
