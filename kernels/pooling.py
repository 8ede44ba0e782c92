"""The ops of pooling.cu: max and average pooling over the windows of NCHW images (a geometry.Window), forward and
backward.

Both poolings launch the same way: a forward reads x and writes (N, C, OH, OW) outputs (max pooling also the argmax,
the first maximum's index i*KW + j within its window, as int8 for windows of up to 128 cells, else int32: the bytes
a backward reads); a backward reads dy, and whatever the forward saved, and writes dx (N, C, H, W). Windows that
tile the image (`tiles`) take the `_tiled` kernels, which give the general kernels' bits with far fewer instructions.
"""
import numpy

from ..backend import get_array_module
from .loader import launch, real_input, runs, window_ints, window_variant


def argmax_dtype(window):
    """The dtype of max pooling's argmax over `window`, and the suffix of its kernels: int8 up to 128 cells."""
    return (numpy.dtype(numpy.int8), "_a8") if window.kh * window.kw <= 128 else (numpy.dtype(numpy.int32), "_a32")


def tiles(window):
    """Do the windows tile the image: stride = window, no padding, every cell in one window? (pooling.cu's top.)"""
    return ((window.sh, window.sw) == (window.kh, window.kw) and window.pads == (0, 0, 0, 0)
            and (window.h, window.w) == (window.oh * window.kh, window.ow * window.kw))


def _kernel(name, window):
    """The kernel `name`, or its `_tiled` twin when the windows tile the image."""
    return f"{name}_tiled" if tiles(window) else name


def _forward(op, kernel, x, window, index_dtype=None):
    """Launch pooling.cu's `kernel` for op: y (N, C, OH, OW) of x's dtype, and an argmax of index_dtype if any."""
    x = real_input(x, f"{op}: x", 4)
    window.check_input(op, x.shape)
    xp = get_array_module(x)
    n, c = x.shape[:2]
    shape = (n, c, window.oh, window.ow)
    outputs = (xp.empty(shape, dtype=x.dtype),) + (() if index_dtype is None else (xp.empty(shape, index_dtype),))
    launch("pooling.cu", window_variant(kernel, n, c, window, (x.size, outputs[0].size)),
           runs(outputs[0].size, x.dtype), (x,) + outputs + window_ints(n, c, window))
    return outputs


def _backward(op, kernel, dy, saved, x_shape, window):
    """Launch pooling.cu's `kernel` for op: dx (N, C, H, W) from dy and the arrays `saved` by the forward."""
    dy = real_input(dy, f"{op}: dy", 4)
    window.check_input(op, x_shape)
    window.check_output(op, "dy", dy.shape, x_shape)
    for name, array in saved:
        window.check_output(op, name, array.shape, x_shape)
    n, c = x_shape[:2]
    dx = get_array_module(dy).empty(tuple(x_shape), dtype=dy.dtype)
    walked = dy.size if tiles(window) else dx.size      # a thread takes a run of windows (scatter) or cells (gather)
    launch("pooling.cu", window_variant(kernel, n, c, window, (dy.size, dx.size)), runs(walked, dy.dtype),
           (dy,) + tuple(array for _, array in saved) + (dx,) + window_ints(n, c, window))
    return dx


def max_pool2d(x, window):
    """y (N, C, OH, OW) and argmax (the first maximum's index i*KW + j within its window, of argmax_dtype)."""
    dtype, suffix = argmax_dtype(window)
    return _forward("max_pool2d", _kernel("max_pool_forward", window) + suffix, x, window, dtype)


def max_pool2d_backward(dy, argmax, x_shape, window):
    """dx (N, C, H, W): each cell sums dy of the windows whose first maximum it is."""
    dtype, suffix = argmax_dtype(window)
    if argmax.dtype != dtype:
        raise TypeError(f"max_pool2d_backward: argmax must be {dtype} for {window.kh}x{window.kw} windows (what "
                        f"max_pool2d gives), got {argmax.dtype}")
    return _backward("max_pool2d_backward", _kernel("max_pool_backward", window) + suffix, dy, (("argmax", argmax),),
                     x_shape, window)


def avg_pool2d(x, window):
    """y (N, C, OH, OW): the mean of each window's real (unpadded) cells."""
    (y,) = _forward("avg_pool2d", _kernel("avg_pool_forward", window), x, window)
    return y


def avg_pool2d_backward(dy, x_shape, window):
    """dx (N, C, H, W): each real cell sums dy / count over the windows that cover it."""
    return _backward("avg_pool2d_backward", _kernel("avg_pool_backward", window), dy, (), x_shape, window)
