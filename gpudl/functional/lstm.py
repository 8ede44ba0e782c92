"""One LSTM time step from its pre-activations (lecture eqs. 45-48), gate blocks in the order i, f, g, o.

a = x_t W_x + h_{t-1} W_h + b, shape (N, 4H);  i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o);
c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t).

Both ops take optional output arrays (`out=`), so a layer can write every step straight into its sequence buffers
and allocate nothing inside its time loop; both paths accept and check the same `out` (backend.output_arrays).
lstm_forward_loop and lstm_backward_loop run a layer's whole time loop over such buffers; on the kernel path the
loop is recorded once per set of buffers and replayed from then on (kernels.loops), so the host launches it once.
"""
import threading

import numpy

from ..backend import output_arrays
from .dispatch import kernels_for
from .linear import matmul_add
from .threads import parallel_chunks

_local = threading.local()     # each thread's work buffers of the NumPy path (_work)
KEEP_BYTES = 16 << 20           # larger work buffers are not kept between calls


def _work(name, shape, dtype):
    """A work buffer of this thread, reused from call to call (a step allocates nothing); contents undefined.

    One buffer per name and this thread: a call with another shape or dtype replaces it. One over KEEP_BYTES is
    made anew for each call instead of being held on to.
    """
    if numpy.prod(shape) * numpy.dtype(dtype).itemsize > KEEP_BYTES:
        return numpy.empty(shape, dtype=dtype)
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buffer = buffers.get(name)
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        buffer = buffers[name] = numpy.empty(shape, dtype=dtype)
    return buffer


def _gates_into(gates, a):
    """The NumPy path's gates into gates (4, rows, H), block-major in the order i, f, o, g (the sigmoid blocks
    first, so they are one contiguous run), from a (rows, 4H) in the order i, f, g, o.

    sigma(x) = 1/2 + 1/2 tanh(x/2) (no overflow for any x). Working on whole contiguous blocks instead of column
    slices of a keeps NumPy's inner loops long: a strided (rows, H) slice costs a loop call per row.
    """
    rows, h = a.shape[0], a.shape[1] // 4
    blocks = a.reshape(rows, 4, h)
    sigmoids = gates[0:3]
    numpy.multiply(blocks[:, 0:2].transpose(1, 0, 2), 0.5, out=gates[0:2])
    numpy.multiply(blocks[:, 3], 0.5, out=gates[2])
    numpy.tanh(sigmoids, out=sigmoids)
    sigmoids *= 0.5
    sigmoids += 0.5
    numpy.tanh(blocks[:, 2], out=gates[3])
    return gates[0], gates[1], gates[3], gates[2]


def _rows(value, start, stop, n):
    """Rows start:stop of a per-row array; a scalar or a broadcast row (1, H) stays as it is."""
    return value[start:stop] if getattr(value, "ndim", 0) >= 1 and value.shape[0] == n else value


def _step_rows(a, c_prev, h_out, c_out, gates, product):
    i, f, g, o = _gates_into(gates, a)
    numpy.multiply(f, c_prev, out=c_out)        # c_out may be c_prev: each element is read before it is written
    c_out += numpy.multiply(i, g, out=product)
    numpy.tanh(c_out, out=h_out)
    h_out *= o


def _step_backward_rows(dh, dc, a, c_prev, c, da, dc_prev, gates, slopes, tanh_c, dc_total):
    rows, h = a.shape[0], a.shape[1] // 4
    i, f, g, o = _gates_into(gates, a)          # from here on, a may be overwritten (da may be a)
    numpy.subtract(1, gates[0:3], out=slopes[0:3])
    slopes[0:3] *= gates[0:3]                   # sigma' = s (1 - s) on i, f, o
    numpy.multiply(g, g, out=slopes[3])
    numpy.subtract(1, slopes[3], out=slopes[3])  # tanh' = 1 - g^2 on g
    numpy.tanh(c, out=tanh_c)
    numpy.multiply(tanh_c, tanh_c, out=dc_total)
    numpy.subtract(1, dc_total, out=dc_total)
    dc_total *= o
    dc_total *= dh
    dc_total += dc                              # dc_t + dh_t o (1 - tanh^2 c_t); dc_prev may be dc
    slope_i, slope_f, slope_o, slope_g = slopes
    slope_i *= g
    slope_f *= c_prev
    slope_o *= tanh_c
    slope_g *= i
    da_blocks = da.reshape(rows, 4, h)
    numpy.multiply(slopes[0:2], dc_total, out=da_blocks[:, 0:2].transpose(1, 0, 2))
    numpy.multiply(slope_g, dc_total, out=da_blocks[:, 2])
    numpy.multiply(slope_o, dh, out=da_blocks[:, 3])
    numpy.multiply(dc_total, f, out=dc_prev)


def _block_rows(buffers, start, stop):
    """Rows start:stop of block-major work buffers (4, n, H) and of row-major ones (n, H)."""
    return tuple(b[:, start:stop] if b.ndim == 3 else b[start:stop] for b in buffers)


def lstm_step(a, c_prev, out=None):
    """Forward: (h_t, c_t) from the pre-activations a (N, 4H) and c_{t-1} (N, H).

    out=(h_out, c_out), each C-contiguous (N, H) of a's dtype: the results go there (c_out may be c_prev).
    """
    kernels = kernels_for(a)
    if kernels is not None:
        return kernels.lstm_step(a, c_prev, out)
    n, h = a.shape[0], a.shape[1] // 4
    h_out, c_out = output_arrays("lstm_step", out, ((n, h), (n, h)), a)
    rows = (a, c_prev, h_out, c_out)
    work = (_work("gates", (4, n, h), a.dtype), _work("product", (n, h), a.dtype))
    parallel_chunks(n, lambda start, stop: _step_rows(*(_rows(r, start, stop, n) for r in rows),
                                                      *_block_rows(work, start, stop)), 4 * h)
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
    rows = (dh, dc, a, c_prev, c, da, dc_prev)
    work = (_work("gates", (4, n, h), a.dtype), _work("slopes", (4, n, h), a.dtype),
            _work("tanh_c", (n, h), a.dtype), _work("dc_total", (n, h), a.dtype))
    parallel_chunks(n, lambda start, stop: _step_backward_rows(*(_rows(r, start, stop, n) for r in rows),
                                                               *_block_rows(work, start, stop)), 8 * h)
    return da, dc_prev


def _check_loop(what, a, states, W):
    """a (T, N, 4H) and each state buffer (T + 1, N, H) of one dtype and module, W (H, 4H) or its transpose."""
    if a.ndim != 3 or a.shape[2] % 4:
        raise ValueError(f"{what}: a must be (T, N, 4H), got shape {tuple(a.shape)}")
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
