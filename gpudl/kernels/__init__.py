"""Our CUDA kernels: the sources beside this file (im2col.cu, pooling.cu, lstm.cu, optim.cu, softmax.cu), compiled
at run time by CuPy.

Each op here takes and returns cupy arrays and gives the results of the NumPy path of the same name in
gpudl.functional, which calls it when its input is a cupy array. The LSTM step ops can also write into arrays the
caller gives (out=, checked by output_arrays), so a time loop allocates nothing. A .cu file is compiled into a cupy.RawModule once
per (file, dtype, device), with -Dreal_t=float or -Dreal_t=double, lazily on its first launch; CuPy keeps the
binary in its disk cache (CUPY_CACHE_DIR), so a second process loads it without compiling. Every launch is checked
first (dtypes, C-contiguity, shapes) and raises a clear error instead of computing garbage. Nothing here reads a
device value back to the host, so a forward or backward never waits for the GPU.
"""
import functools
import os

import numpy

from ..backend import get_array_module
from ..functional.padding import output_size

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))
COMMON_HEADER = "common.cuh"     # element type, math functions and the gather rule shared by every .cu file
BLOCK = 256             # threads per block
BLOCKS_PER_SM = 32      # grid cap per multiprocessor; grid-stride loops cover the rest
REAL_TYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}
INDEX_TYPE = numpy.dtype(numpy.int64)   # `long long` in the kernels: argmax and every size and index

_modules = {}           # (file, dtype, device id) -> cupy.RawModule
_kernels = {}           # (file, dtype, device id, name) -> cupy.RawKernel
_max_blocks = {}        # device id -> grid cap


@functools.lru_cache(maxsize=None)
def read_source(file):
    """The CUDA C source of kernels/<file>, with common.cuh spliced in where it is included.

    CuPy then compiles one self-contained source, and its disk cache, keyed on the source text, notices a change to
    the shared header too.
    """
    with open(os.path.join(KERNEL_DIR, file), encoding="utf-8") as handle:
        source = handle.read()
    if file == COMMON_HEADER:
        return source
    return source.replace(f'#include "{COMMON_HEADER}"', read_source(COMMON_HEADER))


def compile_options(dtype):
    """The compiler options that build a .cu file for one dtype."""
    return (f"-Dreal_t={REAL_TYPES[numpy.dtype(dtype)]}",)


def get_kernel(xp, file, name, dtype):
    """The kernel `name` of kernels/<file> for `dtype` on the current device, compiled on first use only."""
    key = (file, numpy.dtype(dtype), xp.cuda.runtime.getDevice())
    kernel = _kernels.get(key + (name,))
    if kernel is None:
        module = _modules.get(key)
        if module is None:
            module = _modules[key] = xp.RawModule(code=read_source(file), options=compile_options(dtype))
        kernel = _kernels[key + (name,)] = module.get_function(name)
    return kernel


def max_blocks(xp):
    """The largest grid we launch on the current device: BLOCKS_PER_SM blocks per multiprocessor."""
    dev = xp.cuda.runtime.getDevice()
    if dev not in _max_blocks:
        _max_blocks[dev] = BLOCKS_PER_SM * xp.cuda.Device(dev).attributes["MultiProcessorCount"]
    return _max_blocks[dev]


def grid_size(n, block, cap):
    """Blocks for n elements at `block` threads each, at most `cap` (the kernels loop over the rest)."""
    return max(1, min(-(-n // block), cap))


def check_args(what, args):
    """The real dtype shared by the array arguments of one launch, or a TypeError/ValueError naming `what`.

    Arrays must be C-contiguous; floating arrays all float32 or all float64; integer arrays int64; scalars int64 or
    the real dtype.
    """
    real = None
    for k, arg in enumerate(args):
        if type(arg) is numpy.int64:                  # most arguments are sizes: the quick way out
            continue
        dtype = getattr(arg, "dtype", None)
        if dtype is None or not hasattr(arg, "ndim"):
            raise TypeError(f"{what}: argument {k} must be an array or a numpy scalar, got {type(arg).__name__}")
        if dtype in REAL_TYPES:
            if real is not None and dtype != real:
                raise TypeError(f"{what}: arrays must share one dtype, got {real} and {dtype} (argument {k})")
            real = dtype
        elif dtype.kind == "f":
            raise TypeError(f"{what}: arrays must be float32 or float64, got {dtype} (argument {k})")
        elif dtype != INDEX_TYPE:
            raise TypeError(f"{what}: integer arguments must be int64, got {dtype} (argument {k})")
        if arg.ndim and not arg.flags.c_contiguous:
            raise ValueError(f"{what}: argument {k} of shape {tuple(arg.shape)} is not C-contiguous")
    if real is None:
        raise TypeError(f"{what}: no float32/float64 array among the arguments")
    return real


def _check_device(xp, what, args):
    """Cupy arrays must live on the current device, where the kernel runs and the outputs were allocated."""
    if xp is numpy:
        return
    current = xp.cuda.runtime.getDevice()
    for arg in args:
        if isinstance(arg, xp.ndarray) and arg.data.device_id != current:   # .device would build a Device
            raise ValueError(f"{what}: an array lives on cuda:{arg.data.device_id} but the current device is "
                             f"cuda:{current}; run under `with cupy.cuda.Device({arg.data.device_id}):`")


def launch(file, name, n, args):
    """Check `args`, then run kernel `name` of kernels/<file> with one thread per output element (n of them)."""
    what = f"kernel {name} ({file})"
    real = check_args(what, args)
    xp = get_array_module(*args)
    _check_device(xp, what, args)
    if n == 0:
        return
    kernel = get_kernel(xp, file, name, real)
    kernel((grid_size(n, BLOCK, max_blocks(xp)),), (BLOCK,), tuple(args))


@functools.lru_cache(maxsize=4096)
def _ints(*values):
    """Sizes and indices as numpy.int64 scalars, the kernels' `long long` (cached: a time loop asks for the same)."""
    return tuple(numpy.array(values, dtype=INDEX_TYPE))


def _real_input(x, what, ndim):
    """x as a C-contiguous float32/float64 array of rank `ndim`, or a clear error."""
    xp = get_array_module(x)
    if not hasattr(x, "dtype") or numpy.dtype(x.dtype) not in REAL_TYPES:
        raise TypeError(f"{what}: expected a float32 or float64 array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim != ndim:
        raise ValueError(f"{what}: expected an array of rank {ndim}, got shape {tuple(x.shape)}")
    return xp.ascontiguousarray(x)


def output_arrays(what, out, shapes, like):
    """Arrays for an op's results: new ones of `shapes` (like's dtype and device) when out is None, else `out`.

    out is a tuple of one array per shape, of like's array type and dtype, of exactly that shape, and C-contiguous;
    anything else is a TypeError/ValueError naming `what`. The NumPy paths use this too, so both paths accept the
    same `out`. An output may only overlap an input where the op says so.
    """
    xp = get_array_module(like)
    if out is None:
        return tuple(xp.empty(shape, dtype=like.dtype) for shape in shapes)
    if not isinstance(out, (tuple, list)) or len(out) != len(shapes):
        raise TypeError(f"{what}: out must be a tuple of {len(shapes)} arrays, got {type(out).__name__}")
    for k, (array, shape) in enumerate(zip(out, shapes)):
        if get_array_module(array) is not xp or getattr(array, "dtype", None) != like.dtype:
            raise TypeError(f"{what}: out[{k}] must be a {xp.__name__} array of dtype {like.dtype}, got "
                            f"{type(array).__name__} of dtype {getattr(array, 'dtype', None)}")
        if tuple(array.shape) != shape or not array.flags.c_contiguous:
            raise ValueError(f"{what}: out[{k}] must be C-contiguous of shape {shape}, got shape "
                             f"{tuple(array.shape)}{'' if array.flags.c_contiguous else ' (not C-contiguous)'}")
    return tuple(out)


def _window_output(what, h, w, kh, kw, sh, sw, pads):
    """(OH, OW) of KH x KW windows over an H x W image, or a ValueError when the geometry is impossible."""
    top, bottom, left, right = pads
    if min(kh, kw, sh, sw) < 1 or min(pads) < 0:
        raise ValueError(f"{what}: window {kh}x{kw}, strides {sh}x{sw} and pads {tuple(pads)} must be positive "
                         f"(pads non-negative)")
    oh, ow = output_size(h, kh, sh, top, bottom), output_size(w, kw, sw, left, right)
    if oh < 1 or ow < 1:
        raise ValueError(f"{what}: window {kh}x{kw} is larger than the padded image "
                         f"{h + top + bottom}x{w + left + right}")
    return oh, ow


def _geometry_args(n, c, h, w, kh, kw, oh, ow, sh, sw, pads):
    return _ints(n, c, h, w, kh, kw, oh, ow, sh, sw, pads[0], pads[2])


# -- im2col.cu ----------------------------------------------------------------------------------------------------

def im2col(x, kh, kw, sh, sw, pads, fill=0.0):
    """col (N, C, KH, KW, OH, OW) from x (N, C, H, W); padded cells read `fill`. pads = (top, bottom, left, right)."""
    x = _real_input(x, "im2col: x", 4)
    n, c, h, w = x.shape
    oh, ow = _window_output("im2col", h, w, kh, kw, sh, sw, pads)
    col = get_array_module(x).empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    launch("im2col.cu", "im2col", col.size,
           (x, col) + _geometry_args(n, c, h, w, kh, kw, oh, ow, sh, sw, pads) + (x.dtype.type(fill),))
    return col


def col2im(col, h, w, sh, sw, pads):
    """Image (N, C, H, W) where each cell sums the column entries that read it (the adjoint of im2col)."""
    col = _real_input(col, "col2im: col", 6)
    n, c, kh, kw, oh, ow = col.shape
    if (oh, ow) != _window_output("col2im", h, w, kh, kw, sh, sw, pads):
        raise ValueError(f"col2im: col of shape {tuple(col.shape)} does not fit an image {h}x{w} with strides "
                         f"{sh}x{sw} and pads {tuple(pads)}")
    img = get_array_module(col).empty((n, c, h, w), dtype=col.dtype)
    launch("im2col.cu", "col2im", img.size, (col, img) + _geometry_args(n, c, h, w, kh, kw, oh, ow, sh, sw, pads))
    return img


# -- pooling.cu ---------------------------------------------------------------------------------------------------

def _pool_geometry(what, x_shape, kh, kw, sh, sw, pads):
    n, c, h, w = x_shape
    oh, ow = _window_output(what, h, w, kh, kw, sh, sw, pads)
    if max(pads[:2]) >= kh or max(pads[2:]) >= kw:
        raise ValueError(f"{what}: pads {tuple(pads)} must be smaller than the window {kh}x{kw}")
    return oh, ow


def _check_grad(dy, what, x_shape, oh, ow):
    expected = (x_shape[0], x_shape[1], oh, ow)
    if tuple(dy.shape) != expected:
        raise ValueError(f"{what}: dy has shape {tuple(dy.shape)}, expected {expected} for input shape "
                         f"{tuple(x_shape)}")


def max_pool2d(x, kh, kw, sh, sw, pads):
    """y (N, C, OH, OW) and argmax (int64, the first maximum's index i*KW + j within its window)."""
    x = _real_input(x, "max_pool2d: x", 4)
    n, c, h, w = x.shape
    oh, ow = _pool_geometry("max_pool2d", x.shape, kh, kw, sh, sw, pads)
    xp = get_array_module(x)
    y = xp.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = xp.empty((n, c, oh, ow), dtype=INDEX_TYPE)
    launch("pooling.cu", "max_pool_forward", y.size,
           (x, y, argmax) + _geometry_args(n, c, h, w, kh, kw, oh, ow, sh, sw, pads))
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape, kh, kw, sh, sw, pads):
    """dx (N, C, H, W): each cell sums dy of the windows whose first maximum it is."""
    dy = _real_input(dy, "max_pool2d_backward: dy", 4)
    n, c, h, w = x_shape
    oh, ow = _pool_geometry("max_pool2d_backward", x_shape, kh, kw, sh, sw, pads)
    _check_grad(dy, "max_pool2d_backward", x_shape, oh, ow)
    if tuple(argmax.shape) != tuple(dy.shape):
        raise ValueError(f"max_pool2d_backward: argmax has shape {tuple(argmax.shape)}, dy {tuple(dy.shape)}")
    dx = get_array_module(dy).empty((n, c, h, w), dtype=dy.dtype)
    launch("pooling.cu", "max_pool_backward", dx.size,
           (dy, argmax, dx) + _geometry_args(n, c, h, w, kh, kw, oh, ow, sh, sw, pads))
    return dx


def avg_pool2d(x, kh, kw, sh, sw, pads):
    """y (N, C, OH, OW): the mean of each window's real (unpadded) cells."""
    x = _real_input(x, "avg_pool2d: x", 4)
    n, c, h, w = x.shape
    oh, ow = _pool_geometry("avg_pool2d", x.shape, kh, kw, sh, sw, pads)
    y = get_array_module(x).empty((n, c, oh, ow), dtype=x.dtype)
    launch("pooling.cu", "avg_pool_forward", y.size, (x, y) + _geometry_args(n, c, h, w, kh, kw, oh, ow, sh, sw, pads))
    return y


def avg_pool2d_backward(dy, x_shape, kh, kw, sh, sw, pads):
    """dx (N, C, H, W): each real cell sums dy / count over the windows that cover it."""
    dy = _real_input(dy, "avg_pool2d_backward: dy", 4)
    n, c, h, w = x_shape
    oh, ow = _pool_geometry("avg_pool2d_backward", x_shape, kh, kw, sh, sw, pads)
    _check_grad(dy, "avg_pool2d_backward", x_shape, oh, ow)
    dx = get_array_module(dy).empty((n, c, h, w), dtype=dy.dtype)
    launch("pooling.cu", "avg_pool_backward", dx.size,
           (dy, dx) + _geometry_args(n, c, h, w, kh, kw, oh, ow, sh, sw, pads))
    return dx


# -- lstm.cu ------------------------------------------------------------------------------------------------------

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
    a = _real_input(a, "lstm_step: a", 2)
    n, h = _lstm_size(a, "lstm_step")
    c_prev = _lstm_state(c_prev, "lstm_step: c_prev", n, h, a)
    h_out, c_out = output_arrays("lstm_step", out, ((n, h), (n, h)), a)
    launch("lstm.cu", "lstm_step_forward", n * h, (a, c_prev, h_out, c_out) + _ints(n, h))
    return h_out, c_out


def lstm_step_backward(dh, dc, a, c_prev, c, out=None):
    """(da (N, 4H), dc_{t-1}) from dL/dh_t, dL/dc_t and what the forward saw, in one launch.

    out=(da, dc_prev): write there instead of allocating; da may be a and dc_prev may be dc (in place).
    """
    a = _real_input(a, "lstm_step_backward: a", 2)
    n, h = _lstm_size(a, "lstm_step_backward")
    dh, dc, c_prev, c = (_lstm_state(v, f"lstm_step_backward: {name}", n, h, a)
                         for v, name in ((dh, "dh"), (dc, "dc"), (c_prev, "c_prev"), (c, "c")))
    da, dc_prev = output_arrays("lstm_step_backward", out, ((n, 4 * h), (n, h)), a)
    launch("lstm.cu", "lstm_step_backward", n * h, (dh, dc, a, c_prev, c, da, dc_prev) + _ints(n, h))
    return da, dc_prev


# -- optim.cu -----------------------------------------------------------------------------------------------------

def _optim_arrays(what, w, *others):
    """Check that a parameter and its gradient and buffers are alike (shape, dtype, C-contiguous); n = w.size."""
    for name, a in others:
        if tuple(a.shape) != tuple(w.shape) or a.dtype != w.dtype:
            raise ValueError(f"{what}: {name} has shape {tuple(a.shape)} and dtype {a.dtype}, the parameter "
                             f"{tuple(w.shape)} and {w.dtype}")
    return w.dtype.type


def sgd_step(w, grad, velocity, lr, momentum, weight_decay):
    """In place: w -= lr g (g = grad + weight_decay w), or with momentum v = momentum v + g, w -= lr v."""
    if velocity is None:
        real = _optim_arrays("sgd_step", w, ("grad", grad))
        launch("optim.cu", "sgd_step", w.size, (w, grad) + _ints(w.size) + (real(lr), real(weight_decay)))
    else:
        real = _optim_arrays("sgd_step", w, ("grad", grad), ("velocity", velocity))
        launch("optim.cu", "sgd_momentum_step", w.size,
               (w, grad, velocity) + _ints(w.size) + (real(lr), real(momentum), real(weight_decay)))


def adam_step(w, grad, m, v, step_size, betas, correction2, eps, weight_decay):
    """In place: the moments m, v and the bias-corrected Adam step of w (step_size = lr / (1 - beta1^t))."""
    real = _optim_arrays("adam_step", w, ("grad", grad), ("m", m), ("v", v))
    b1, b2 = betas
    launch("optim.cu", "adam_step", w.size,
           (w, grad, m, v) + _ints(w.size) + tuple(real(s) for s in (step_size, b1, 1 - b1, b2, 1 - b2,
                                                                     correction2, eps, weight_decay)))


# -- softmax.cu ---------------------------------------------------------------------------------------------------

def softmax_cross_entropy(logits, labels):
    """(loss_rows (N,), dlogits (N, K)): -log softmax(z_n)[y_n] per row and (softmax(z) - onehot(y)) / N."""
    logits = _real_input(logits, "softmax_cross_entropy: logits", 2)
    n, k = logits.shape
    xp = get_array_module(logits)
    if tuple(labels.shape) != (n,) or not numpy.issubdtype(labels.dtype, numpy.integer):
        raise ValueError(f"softmax_cross_entropy: expected {n} integer labels, got shape {tuple(labels.shape)} "
                         f"of dtype {labels.dtype}")
    labels = xp.ascontiguousarray(labels.astype(INDEX_TYPE, copy=False))
    if k == 0:
        raise ValueError(f"softmax_cross_entropy: logits of shape {tuple(logits.shape)} have no class")
    loss_rows = xp.empty((n,), dtype=logits.dtype)
    dlogits = xp.empty((n, k), dtype=logits.dtype)
    launch("softmax.cu", "softmax_cross_entropy", n,
           (logits, labels, loss_rows, dlogits) + _ints(n, k) + (logits.dtype.type(n),))
    return loss_rows, dlogits
