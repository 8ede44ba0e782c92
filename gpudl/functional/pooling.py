"""Max and average pooling over KH x KW windows (NCHW); the NumPy path loops over the KH*KW window offsets.

Max pooling keeps, per window, the index of its first maximum (row-major within the window), so ties resolve the
same way on every device. Average pooling divides by the number of real (unpadded) cells in each window.
"""
from .. import kernels
from ..backend import get_array_module
from ..geometry import blank_padded, output_hw, padded, unpadded, window_views
from .dispatch import on_kernel_path


def max_pool2d(x, kh, kw, sh, sw, pads):
    """Forward: y (N, C, OH, OW) and argmax (N, C, OH, OW), the winning cell's index within its window.

    A running maximum over the KH*KW window offsets; a later cell wins only when strictly greater (or the first NaN).
    """
    if on_kernel_path(x):
        return kernels.max_pool2d(x, kh, kw, sh, sw, pads)
    xp = get_array_module(x)
    oh, ow = output_hw(x.shape[2], x.shape[3], kh, kw, sh, sw, pads)
    views = window_views(padded(x, pads, -xp.inf), kh, kw, sh, sw, oh, ow)
    _, first = next(views)
    y = first.copy()
    # The winner is the last offset that beat the running maximum, so argmax = max over k of k * beat_k;
    # a small index type keeps that cheap.
    index_type = xp.int8 if kh * kw < 128 else xp.int64
    argmax = xp.zeros(y.shape, dtype=index_type)
    for k, view in views:
        beat = ~(view <= y) & (y == y)      # view > y, or view is NaN while y is not
        xp.maximum(argmax, beat * index_type(k), out=argmax)
        xp.maximum(y, view, out=y)          # a NaN, once in y, stays: the first NaN wins
    return y, argmax.astype(xp.int64)


def max_pool2d_backward(dy, argmax, x_shape, kh, kw, sh, sw, pads):
    """Route each window's gradient to the cell that won it; cells in several windows sum them."""
    if on_kernel_path(dy):
        return kernels.max_pool2d_backward(dy, argmax, x_shape, kh, kw, sh, sw, pads)
    xp = get_array_module(dy)
    img = blank_padded(x_shape, pads, xp, dy.dtype)
    disjoint = sh >= kh and sw >= kw        # each cell in at most one window: write, no read-add-write
    for k, view in window_views(img, kh, kw, sh, sw, *dy.shape[2:]):
        if disjoint:
            xp.multiply(argmax == k, dy, out=view)
        else:
            view += (argmax == k) * dy
    return unpadded(img, x_shape[2], x_shape[3], pads)


def pool_counts(h, w, kh, kw, sh, sw, pads, xp, dtype):
    """Number of real input cells in each window, shape (OH, OW): real rows times real columns."""
    oh, ow = output_hw(h, w, kh, kw, sh, sw, pads)

    def real(size, k, s, before, out):
        start = xp.arange(out) * s - before
        return xp.minimum(start + k, size) - xp.maximum(start, 0)

    return xp.outer(real(h, kh, sh, pads[0], oh), real(w, kw, sw, pads[2], ow)).astype(dtype)


def avg_pool2d(x, kh, kw, sh, sw, pads):
    """Forward: y (N, C, OH, OW), the mean of each window's real cells."""
    if on_kernel_path(x):
        return kernels.avg_pool2d(x, kh, kw, sh, sw, pads)
    xp = get_array_module(x)
    oh, ow = output_hw(x.shape[2], x.shape[3], kh, kw, sh, sw, pads)
    views = window_views(padded(x, pads, 0), kh, kw, sh, sw, oh, ow)
    _, first = next(views)
    total = first.copy()
    for _, view in views:
        total += view
    return total / pool_counts(x.shape[2], x.shape[3], kh, kw, sh, sw, pads, xp, x.dtype)


def avg_pool2d_backward(dy, x_shape, kh, kw, sh, sw, pads):
    """Each real cell of a window receives dy / count; padded cells are dropped with the padding."""
    if on_kernel_path(dy):
        return kernels.avg_pool2d_backward(dy, x_shape, kh, kw, sh, sw, pads)
    xp = get_array_module(dy)
    share = dy / pool_counts(x_shape[2], x_shape[3], kh, kw, sh, sw, pads, xp, dy.dtype)
    img = blank_padded(x_shape, pads, xp, dy.dtype)
    disjoint = sh >= kh and sw >= kw        # each cell in at most one window: write, no read-add-write
    for _, view in window_views(img, kh, kw, sh, sw, *dy.shape[2:]):
        if disjoint:
            view[...] = share
        else:
            view += share
    return unpadded(img, x_shape[2], x_shape[3], pads)
