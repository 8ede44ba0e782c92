"""The ops of lstm.cu: one fused LSTM time step, forward and backward (lecture eqs. 45-48), gates i, f, g, o.

Both can write into arrays the caller gives (out=, checked by output_arrays), so a time loop allocates nothing.
"""
import numpy

from ..backend import get_array_module, output_arrays
from .loader import ints, launch, real_input


def _lstm_state(v, what, n, h, like):
    """A state array (N, H) of a's dtype, broadcast from v when needed (a number like 0 included), or an error."""
    if type(v) is type(like) and v.dtype == like.dtype and v.shape == (n, h) and v.flags.c_contiguous:
        return v                                      # the common case, quickly
    xp = get_array_module(like)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return xp.full((n, h), v, dtype=like.dtype)
    if not hasattr(v, "dtype") or numpy.dtype(v.dtype) != numpy.dtype(like.dtype):
        raise TypeError(f"{what}: expected a {like.dtype} array like a, got {getattr(v, 'dtype', type(v).__name__)}")
    if tuple(v.shape) != (n, h):
        try:
            v = xp.broadcast_to(v, (n, h))
        except ValueError:
            raise ValueError(f"{what}: expected shape {(n, h)} for a of shape {tuple(like.shape)}, got "
                             f"{tuple(v.shape)}") from None
    return xp.ascontiguousarray(v)


def _lstm_size(a, what):
    if a.shape[1] % 4:
        raise ValueError(f"{what}: a must be (N, 4H) with the gates i, f, g, o; got shape {tuple(a.shape)}")
    return a.shape[0], a.shape[1] // 4


def lstm_step(a, c_prev, out=None):
    """(h_t, c_t), each (N, H), from the pre-activations a (N, 4H) and c_{t-1}, in one launch (eqs. 45-48).

    out=(h_out, c_out): write there instead of allocating (c_out may be c_prev); see output_arrays.
    """
    a = real_input(a, "lstm_step: a", 2)
    n, h = _lstm_size(a, "lstm_step")
    c_prev = _lstm_state(c_prev, "lstm_step: c_prev", n, h, a)
    h_out, c_out = output_arrays("lstm_step", out, ((n, h), (n, h)), a)
    launch("lstm.cu", "lstm_step_forward", n * h, (a, c_prev, h_out, c_out) + ints(n, h))
    return h_out, c_out


def lstm_step_backward(dh, dc, a, c_prev, c, out=None):
    """(da (N, 4H), dc_{t-1}) from dL/dh_t, dL/dc_t and what the forward saw, in one launch.

    out=(da, dc_prev): write there instead of allocating; da may be a and dc_prev may be dc (in place).
    """
    a = real_input(a, "lstm_step_backward: a", 2)
    n, h = _lstm_size(a, "lstm_step_backward")
    dh, dc, c_prev, c = (_lstm_state(v, f"lstm_step_backward: {name}", n, h, a)
                         for v, name in ((dh, "dh"), (dc, "dc"), (c_prev, "c_prev"), (c, "c")))
    da, dc_prev = output_arrays("lstm_step_backward", out, ((n, 4 * h), (n, h)), a)
    launch("lstm.cu", "lstm_step_backward", n * h, (dh, dc, a, c_prev, c, da, dc_prev) + ints(n, h))
    return da, dc_prev
