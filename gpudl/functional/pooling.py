"""Max and average pooling over KH x KW windows (NCHW); the NumPy path is built on im2col/col2im.

Max pooling keeps, per window, the index of its first maximum (row-major within the window), so ties resolve the
same way on every device. Average pooling divides by the number of real (unpadded) cells in each window.
"""
from .. import kernels
from ..backend import get_array_module, is_cupy_array
from .conv import col2im, im2col


def max_pool2d(x, kh, kw, sh, sw, pads):
    """Forward: y (N, C, OH, OW) and argmax (N, C, OH, OW), the winning cell's index within its window."""
    if is_cupy_array(x):
        return kernels.max_pool2d(x, kh, kw, sh, sw, pads)
    xp = get_array_module(x)
    col = im2col(x, kh, kw, sh, sw, pads, fill=-xp.inf)
    n, c, _, _, oh, ow = col.shape
    col = col.reshape(n, c, kh * kw, oh, ow)
    argmax = col.argmax(axis=2)
    y = xp.take_along_axis(col, argmax[:, :, None], axis=2)[:, :, 0]
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape, kh, kw, sh, sw, pads):
    """Route each window's gradient to the cell that won it; cells in several windows sum them."""
    if is_cupy_array(dy):
        return kernels.max_pool2d_backward(dy, argmax, x_shape, kh, kw, sh, sw, pads)
    xp = get_array_module(dy)
    n, c, oh, ow = dy.shape
    window = xp.arange(kh * kw).reshape(1, 1, kh * kw, 1, 1)
    dcol = (window == argmax[:, :, None]) * dy[:, :, None]
    return col2im(dcol.reshape(n, c, kh, kw, oh, ow), x_shape[2], x_shape[3], sh, sw, pads)


def pool_counts(h, w, kh, kw, sh, sw, pads, xp, dtype):
    """Number of real input cells in each window, shape (OH, OW)."""
    ones = xp.ones((1, 1, h, w), dtype=dtype)
    return im2col(ones, kh, kw, sh, sw, pads).sum(axis=(2, 3))[0, 0]


def avg_pool2d(x, kh, kw, sh, sw, pads):
    """Forward: y (N, C, OH, OW), the mean of each window's real cells."""
    if is_cupy_array(x):
        return kernels.avg_pool2d(x, kh, kw, sh, sw, pads)
    xp = get_array_module(x)
    col = im2col(x, kh, kw, sh, sw, pads)
    counts = pool_counts(x.shape[2], x.shape[3], kh, kw, sh, sw, pads, xp, x.dtype)
    return col.sum(axis=(2, 3)) / counts


def avg_pool2d_backward(dy, x_shape, kh, kw, sh, sw, pads):
    """Each real cell of a window receives dy / count; padded cells are dropped by col2im."""
    if is_cupy_array(dy):
        return kernels.avg_pool2d_backward(dy, x_shape, kh, kw, sh, sw, pads)
    xp = get_array_module(dy)
    n, c, oh, ow = dy.shape
    counts = pool_counts(x_shape[2], x_shape[3], kh, kw, sh, sw, pads, xp, dy.dtype)
    share = (dy / counts)[:, :, None, None]
    dcol = xp.broadcast_to(share, (n, c, kh, kw, oh, ow))
    return col2im(dcol, x_shape[2], x_shape[3], sh, sw, pads)
