"""One LSTM time step from its pre-activations (lecture eqs. 45-48), gate blocks in the order i, f, g, o.

a = x_t W_x + h_{t-1} W_h + b, shape (N, 4H);  i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o);
c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t).

Both ops take optional output arrays (`out=`), so a layer can write every step straight into its sequence buffers
and allocate nothing inside its time loop; the kernels (dispatch.kernels_for: one fused kernel each way on either
device) and the NumPy reference here accept and check the same `out` (backend.output_arrays).
"""
import numpy

from ..backend import output_arrays
from .dispatch import kernels_for


def _gates(a):
    """(i, f, g, o) from a (N, 4H); sigma(x) = 1/2 + 1/2 tanh(x/2), which never overflows."""
    i, f, g, o = numpy.split(a, 4, axis=1)
    return (*(0.5 + 0.5 * numpy.tanh(0.5 * s) for s in (i, f)), numpy.tanh(g), 0.5 + 0.5 * numpy.tanh(0.5 * o))


def lstm_step(a, c_prev, out=None):
    """Forward: (h_t, c_t) from the pre-activations a (N, 4H) and c_{t-1} (N, H).

    out=(h_out, c_out), each C-contiguous (N, H) of a's dtype: the results go there (c_out may be c_prev).
    """
    kernels = kernels_for(a)
    if kernels is not None:
        return kernels.lstm_step(a, c_prev, out)
    n, h = a.shape[0], a.shape[1] // 4
    h_out, c_out = output_arrays("lstm_step", out, ((n, h), (n, h)), a)
    i, f, g, o = _gates(a)
    c_out[...] = f * c_prev + i * g
    h_out[...] = o * numpy.tanh(c_out)
    return h_out, c_out


def lstm_step_backward(dh, dc, a, c_prev, c, out=None):
    """Backward: (da (N, 4H), dc_{t-1}) from dL/dh_t, dL/dc_t (from step t+1), and what the forward saw.

    The gates are recomputed from a rather than stored: dc_t += dh_t * o * (1 - tanh^2 c_t); then
    da_i = dc_t g i(1-i), da_f = dc_t c_{t-1} f(1-f), da_g = dc_t i (1-g^2), da_o = dh_t tanh(c_t) o(1-o),
    and dc_{t-1} = dc_t f. out=(da, dc_prev): the results go there; da may be a and dc_prev may be dc (in place:
    the layer writes da_t over a_t).
    """
    kernels = kernels_for(a)
    if kernels is not None:
        return kernels.lstm_step_backward(dh, dc, a, c_prev, c, out)
    n, h = a.shape[0], a.shape[1] // 4
    da, dc_prev = output_arrays("lstm_step_backward", out, ((n, 4 * h), (n, h)), a)
    i, f, g, o = _gates(a)
    tanh_c = numpy.tanh(c)
    dc_t = dc + dh * o * (1 - tanh_c * tanh_c)
    gates = (dc_t * g * i * (1 - i), dc_t * c_prev * f * (1 - f), dc_t * i * (1 - g * g), dh * tanh_c * o * (1 - o))
    dc_prev[...] = dc_t * f
    da[...] = numpy.concatenate(gates, axis=1)
    return da, dc_prev
