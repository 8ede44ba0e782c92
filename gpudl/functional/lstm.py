"""One LSTM time step from its pre-activations (lecture eqs. 45-48), gate blocks in the order i, f, g, o.

a = x_t W_x + h_{t-1} W_h + b, shape (N, 4H);  i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o);
c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t).

Both ops take optional output arrays (`out=`), so a layer can write every step straight into its sequence buffers
and allocate nothing inside its time loop; the kernels (dispatch.kernels_for: one fused kernel each way on either
device) and the NumPy reference here accept and check the same `out` (backend.output_arrays). lstm_forward_loop and
lstm_backward_loop run a layer's whole time loop over such buffers; on the CUDA kernels the loop is recorded once per
set of buffers and replayed from then on (kernels.loops), so the host launches it once.
"""
import numpy

from ..backend import output_arrays
from .dispatch import kernels_for
from .linear import matmul_add


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


def _check_loop(what, a, states, W):
    """a (T, N, 4H) and each state buffer (T + 1, N, H) of one dtype and module, W (H, 4H) or its transpose."""
    if a.ndim != 3 or a.shape[2] % 4 or not a.flags.c_contiguous:
        raise ValueError(f"{what}: a must be a C-contiguous (T, N, 4H) array (it is written in place), got shape "
                         f"{tuple(a.shape)}{'' if a.flags.c_contiguous else ', not contiguous'}")
    t, n, h = a.shape[0], a.shape[1], a.shape[2] // 4
    for name, buffer in states:
        if tuple(buffer.shape) != (t + 1, n, h) or buffer.dtype != a.dtype or not buffer.flags.c_contiguous:
            raise ValueError(f"{what}: {name} must be a C-contiguous {a.dtype} array of shape {(t + 1, n, h)}, got "
                             f"{buffer.dtype} {tuple(buffer.shape)}")
    if W.ndim != 2 or sorted(W.shape) != sorted((h, 4 * h)):
        raise ValueError(f"{what}: W_h of shape {tuple(W.shape)} does not fit H = {h}")
    return t


def lstm_forward_loop(a, hs, cs, W_h):
    """An LSTM layer's forward time loop, in place: for t = 0 .. T-1, a[t] += hs[t] W_h (the pre-activations of
    step t, a (T, N, 4H) holding x_t W_x + b), then (hs[t + 1], cs[t + 1]) = lstm_step(a[t], cs[t]); hs and cs
    (T + 1, N, H) hold the initial state in row 0.

    On the kernel path the T GEMMs and T launches are recorded once per set of buffers and replayed (kernels.loops);
    the results are those of the loop run step by step."""
    t = _check_loop("lstm_forward_loop", a, (("hs", hs), ("cs", cs)), W_h)

    def loop():
        for step in range(t):
            matmul_add(hs[step], W_h, a[step])
            lstm_step(a[step], cs[step], out=(hs[step + 1], cs[step + 1]))
    kernels = kernels_for(a)
    if kernels is not None:
        kernels.replayed("lstm_forward_loop", (a, hs, cs, W_h), loop)
        return
    loop()


def lstm_backward_loop(a, cs, dh, dc, W_h_T):
    """An LSTM layer's backward time loop, in place, from what lstm_forward_loop left (a, cs): for t = T-1 .. 0,
    (da_t, dc) = lstm_step_backward(dh[t], dc, a[t], cs[t], cs[t + 1]) with da_t written over a[t], then
    dh[t - 1] += da_t W_h^T. dh (T, N, H) holds dL/dh_t from above (each row completed by the step after it), dc
    (N, H) dL/dc_T, and at the end dL/dc_0; a holds every da_t. W_h_T: W_h^T (transpose_for_products).

    On the kernel path the loop is recorded once per set of buffers and replayed, like lstm_forward_loop."""
    t = _check_loop("lstm_backward_loop", a, (("cs", cs),), W_h_T)
    if tuple(dh.shape) != tuple(a.shape[:2]) + (a.shape[2] // 4,) or tuple(dc.shape) != tuple(dh.shape[1:]):
        raise ValueError(f"lstm_backward_loop: dh {tuple(dh.shape)} and dc {tuple(dc.shape)} do not fit a of shape "
                         f"{tuple(a.shape)}")
    if not (dh.flags.c_contiguous and dc.flags.c_contiguous) or dh.dtype != a.dtype or dc.dtype != a.dtype:
        raise ValueError(f"lstm_backward_loop: dh and dc must be C-contiguous {a.dtype} arrays (they are written in "
                         f"place), got {dh.dtype} and {dc.dtype}")

    def loop():
        for step in reversed(range(t)):
            lstm_step_backward(dh[step], dc, a[step], cs[step], cs[step + 1], out=(a[step], dc))
            if step:
                matmul_add(a[step], W_h_T, dh[step - 1])
    kernels = kernels_for(a)
    if kernels is not None:
        kernels.replayed("lstm_backward_loop", (a, cs, dh, dc, W_h_T), loop)
        return
    loop()
