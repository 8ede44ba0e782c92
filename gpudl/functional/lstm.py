"""One LSTM time step from its pre-activations (lecture eqs. 45-48), gate blocks in the order i, f, g, o.

a = x_t W_x + h_{t-1} W_h + b, shape (N, 4H);  i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o);
c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t).

Both ops take optional output arrays (`out=`), so a layer can write every step straight into its sequence buffers
and allocate nothing inside its time loop; both paths accept and check the same `out` (kernels.output_arrays).
"""
from .. import kernels
from ..backend import get_array_module
from .activations import sigmoid
from .dispatch import on_kernel_path


def _gates(a):
    xp = get_array_module(a)
    ai, af, ag, ao = xp.split(a, 4, axis=1)
    return sigmoid(ai), sigmoid(af), xp.tanh(ag), sigmoid(ao)


def lstm_step(a, c_prev, out=None):
    """Forward: (h_t, c_t) from the pre-activations a (N, 4H) and c_{t-1} (N, H).

    out=(h_out, c_out), each C-contiguous (N, H) of a's dtype: the results go there (c_out may be c_prev).
    """
    if on_kernel_path(a):
        return kernels.lstm_step(a, c_prev, out)
    xp = get_array_module(a)
    n, h = a.shape[0], a.shape[1] // 4
    h_out, c_out = kernels.output_arrays("lstm_step", out, ((n, h), (n, h)), a)
    i, f, g, o = _gates(a)
    xp.add(f * c_prev, i * g, out=c_out)
    xp.multiply(o, xp.tanh(c_out), out=h_out)
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
    xp = get_array_module(a)
    n, h = a.shape[0], a.shape[1] // 4
    da, dc_prev = kernels.output_arrays("lstm_step_backward", out, ((n, 4 * h), (n, h)), a)
    i, f, g, o = _gates(a)          # new arrays: from here on, a may be overwritten
    tc = xp.tanh(c)
    dc_total = dc + dh * o * (1 - tc * tc)
    da[:, :h] = dc_total * g * i * (1 - i)
    da[:, h:2 * h] = dc_total * c_prev * f * (1 - f)
    da[:, 2 * h:3 * h] = dc_total * i * (1 - g * g)
    da[:, 3 * h:] = dh * tc * o * (1 - o)
    xp.multiply(dc_total, f, out=dc_prev)
    return da, dc_prev
