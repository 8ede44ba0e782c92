"""The ops of pooling.cu: max and average pooling over the windows of NCHW images (a geometry.Window), forward and
backward.

Both poolings launch the same way: a forward reads x and writes (N, C, OH, OW) outputs (max pooling also the argmax,
the first maximum's index i*KW + j within its window); a backward reads dy, and whatever the forward saved, and
writes dx (N, C, H, W).
"""
from ..backend import get_array_module
from .loader import INDEX_TYPE, launch, real_input, window_ints, window_variant


def _forward(op, kernel, x, window, index_outputs):
    """Launch pooling.cu's `kernel` for op: y (N, C, OH, OW) of x's dtype, then `index_outputs` int64 arrays."""
    x = real_input(x, f"{op}: x", 4)
    window.check_input(op, x.shape)
    xp = get_array_module(x)
    n, c = x.shape[:2]
    shape = (n, c, window.oh, window.ow)
    outputs = (xp.empty(shape, dtype=x.dtype),) + tuple(xp.empty(shape, dtype=INDEX_TYPE)
                                                         for _ in range(index_outputs))
    launch("pooling.cu", window_variant(kernel, n, c, window, (x.size, outputs[0].size)), outputs[0].size,
           (x,) + outputs + window_ints(n, c, window))
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
    launch("pooling.cu", window_variant(kernel, n, c, window, (dy.size, dx.size)), dx.size,
           (dy,) + tuple(array for _, array in saved) + (dx,) + window_ints(n, c, window))
    return dx


def max_pool2d(x, window):
    """y (N, C, OH, OW) and argmax (int64, the first maximum's index i*KW + j within its window)."""
    return _forward("max_pool2d", "max_pool_forward", x, window, 1)


def max_pool2d_backward(dy, argmax, x_shape, window):
    """dx (N, C, H, W): each cell sums dy of the windows whose first maximum it is."""
    return _backward("max_pool2d_backward", "max_pool_backward", dy, (("argmax", argmax),), x_shape, window)


def avg_pool2d(x, window):
    """y (N, C, OH, OW): the mean of each window's real (unpadded) cells."""
    (y,) = _forward("avg_pool2d", "avg_pool_forward", x, window, 0)
    return y


def avg_pool2d_backward(dy, x_shape, window):
    """dx (N, C, H, W): each real cell sums dy / count over the windows that cover it."""
    return _backward("avg_pool2d_backward", "avg_pool_backward", dy, (), x_shape, window)
