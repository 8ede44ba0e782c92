"""The ops of pooling.cu: max and average pooling over KH x KW windows of NCHW images, forward and backward.

Both poolings launch the same way: a forward reads x and writes (N, C, OH, OW) outputs (max pooling also the argmax,
the first maximum's index i*KW + j within its window); a backward reads dy, and whatever the forward saved, and
writes dx (N, C, H, W).
"""
from ..backend import get_array_module
from ..geometry import pool_output
from .loader import INDEX_TYPE, launch, real_input, window_ints, window_variant


def _forward(op, kernel, x, window, index_outputs):
    """Launch pooling.cu's `kernel` for op: y (N, C, OH, OW) of x's dtype, then `index_outputs` int64 arrays."""
    x = real_input(x, f"{op}: x", 4)
    oh, ow = pool_output(op, x.shape, *window)
    xp = get_array_module(x)
    shape = (x.shape[0], x.shape[1], oh, ow)
    outputs = (xp.empty(shape, dtype=x.dtype),) + tuple(xp.empty(shape, dtype=INDEX_TYPE)
                                                         for _ in range(index_outputs))
    kh, kw, sh, sw, pads = window
    sizes = (kh, kw, oh, ow, sh, sw, pads)
    launch("pooling.cu", window_variant(kernel, x.shape, *sizes, (x.size, outputs[0].size)), outputs[0].size,
           (x,) + outputs + window_ints(x.shape, *sizes))
    return outputs


def _backward(op, kernel, dy, saved, x_shape, window):
    """Launch pooling.cu's `kernel` for op: dx (N, C, H, W) from dy and the arrays `saved` by the forward."""
    dy = real_input(dy, f"{op}: dy", 4)
    oh, ow = pool_output(op, x_shape, *window)
    expected = (x_shape[0], x_shape[1], oh, ow)
    if tuple(dy.shape) != expected:
        raise ValueError(f"{op}: dy has shape {tuple(dy.shape)}, expected {expected} for input shape "
                         f"{tuple(x_shape)}")
    for name, array in saved:
        if tuple(array.shape) != expected:
            raise ValueError(f"{op}: {name} has shape {tuple(array.shape)}, dy {tuple(dy.shape)}")
    dx = get_array_module(dy).empty(tuple(x_shape), dtype=dy.dtype)
    kh, kw, sh, sw, pads = window
    sizes = (kh, kw, oh, ow, sh, sw, pads)
    launch("pooling.cu", window_variant(kernel, x_shape, *sizes, (dy.size, dx.size)), dx.size,
           (dy,) + tuple(array for _, array in saved) + (dx,) + window_ints(x_shape, *sizes))
    return dx


def max_pool2d(x, kh, kw, sh, sw, pads):
    """y (N, C, OH, OW) and argmax (int64, the first maximum's index i*KW + j within its window)."""
    return _forward("max_pool2d", "max_pool_forward", x, (kh, kw, sh, sw, pads), 1)


def max_pool2d_backward(dy, argmax, x_shape, kh, kw, sh, sw, pads):
    """dx (N, C, H, W): each cell sums dy of the windows whose first maximum it is."""
    return _backward("max_pool2d_backward", "max_pool_backward", dy, (("argmax", argmax),), x_shape,
                     (kh, kw, sh, sw, pads))


def avg_pool2d(x, kh, kw, sh, sw, pads):
    """y (N, C, OH, OW): the mean of each window's real (unpadded) cells."""
    (y,) = _forward("avg_pool2d", "avg_pool_forward", x, (kh, kw, sh, sw, pads), 0)
    return y


def avg_pool2d_backward(dy, x_shape, kh, kw, sh, sw, pads):
    """dx (N, C, H, W): each real cell sums dy / count over the windows that cover it."""
    return _backward("avg_pool2d_backward", "avg_pool_backward", dy, (), x_shape, (kh, kw, sh, sw, pads))
