"""One LSTM time step from its pre-activations (lecture eqs. 45-48), gate blocks in the order i, f, g, o.

a = x_t W_x + h_{t-1} W_h + b, shape (N, 4H);  i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o);
c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t).
"""
from .. import kernels
from ..backend import get_array_module, is_cupy_array
from .activations import sigmoid


def _gates(a):
    xp = get_array_module(a)
    ai, af, ag, ao = xp.split(a, 4, axis=1)
    return sigmoid(ai), sigmoid(af), xp.tanh(ag), sigmoid(ao)


def lstm_step(a, c_prev):
    """Forward: (h_t, c_t) from the pre-activations a (N, 4H) and c_{t-1} (N, H)."""
    if is_cupy_array(a):
        return kernels.lstm_step(a, c_prev)
    xp = get_array_module(a)
    i, f, g, o = _gates(a)
    c = f * c_prev + i * g
    return o * xp.tanh(c), c


def lstm_step_backward(dh, dc, a, c_prev, c):
    """Backward: (da (N, 4H), dc_{t-1}) from dL/dh_t, dL/dc_t (from step t+1), and what the forward saw.

    The gates are recomputed from a rather than stored: dc_t += dh_t * o * (1 - tanh^2 c_t); then
    da_i = dc_t g i(1-i), da_f = dc_t c_{t-1} f(1-f), da_g = dc_t i (1-g^2), da_o = dh_t tanh(c_t) o(1-o),
    and dc_{t-1} = dc_t f.
    """
    if is_cupy_array(a):
        return kernels.lstm_step_backward(dh, dc, a, c_prev, c)
    xp = get_array_module(a)
    i, f, g, o = _gates(a)
    tc = xp.tanh(c)
    dc_total = dc + dh * o * (1 - tc * tc)
    da = xp.concatenate([
        dc_total * g * i * (1 - i),
        dc_total * c_prev * f * (1 - f),
        dc_total * i * (1 - g * g),
        dh * tc * o * (1 - o),
    ], axis=1)
    return da, dc_total * f
