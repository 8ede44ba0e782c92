"""Max and average pooling over the KH x KW windows of NCHW images (a geometry.Window).

Max pooling keeps, per window, the index of its first maximum (row-major within the window), so ties resolve the
same way on every device: y is the running numpy.maximum over the window's cells in row-major order (a NaN, once
there, stays), padded cells reading -inf, and argmax the first cell equal to y (the first NaN where y is NaN).
Average pooling divides by the number of real (unpadded) cells in each window. Each backward sends every window's
gradient to the cells it came from, offset by offset. Each op runs the kernels of its array (dispatch.kernels_for)
and else the NumPy reference here, which loops over the KH*KW window offsets.
"""
import numpy

from ..geometry import blank_padded, padded, unpadded, window_views
from .dispatch import kernels_for


def argmax_type(kh, kw):
    """The reference's argmax dtype: the smallest signed integer that holds every index 0 .. KH*KW - 1."""
    return next(t for t in (numpy.int8, numpy.int16, numpy.int32, numpy.int64) if numpy.iinfo(t).max >= kh * kw - 1)


def _max_pool2d_reference(x, window):
    cells = [view for _, view in window_views(padded(x, window, -numpy.inf), window)]
    y = cells[0].copy()
    for cell in cells[1:]:
        numpy.maximum(y, cell, out=y)
    argmax = numpy.zeros(y.shape, dtype=argmax_type(window.kh, window.kw))
    found = numpy.zeros(y.shape, dtype=bool)
    for k, cell in enumerate(cells):
        first = ~found & ((cell == y) | ((cell != cell) & (y != y)))
        argmax[first] = k
        found |= first
    return y, argmax


def max_pool2d(x, window):
    """Forward: y (N, C, OH, OW) and argmax (N, C, OH, OW), the winning cell's index within its window.

    On the NumPy reference and the CPU kernels argmax has the small integer type argmax_type(kh, kw); on the CUDA
    kernels it is int8 up to 128 cells (as here), else int32.
    """
    kernels = kernels_for(x)
    if kernels is not None:
        return kernels.max_pool2d(x, window)
    return _max_pool2d_reference(x, window)


def max_pool2d_backward(dy, argmax, x_shape, window):
    """Route each window's gradient to the cell that won it; cells in several windows sum them."""
    kernels = kernels_for(dy)
    if kernels is not None:
        return kernels.max_pool2d_backward(dy, argmax, x_shape, window)
    img = blank_padded(*x_shape[:2], window, numpy, dy.dtype)
    for k, view in window_views(img, window):
        view += numpy.where(argmax == k, dy, 0)
    return unpadded(img, window)


def pool_counts(window, xp, dtype):
    """Number of real input cells in each window, shape (OH, OW): real rows times real columns."""
    def real(size, k, s, before, out):
        start = xp.arange(out) * s - before
        return xp.minimum(start + k, size) - xp.maximum(start, 0)

    w = window
    return xp.outer(real(w.h, w.kh, w.sh, w.top, w.oh), real(w.w, w.kw, w.sw, w.left, w.ow)).astype(dtype)


def avg_pool2d(x, window):
    """Forward: y (N, C, OH, OW), the mean of each window's real cells."""
    kernels = kernels_for(x)
    if kernels is not None:
        return kernels.avg_pool2d(x, window)
    total = sum(view for _, view in window_views(padded(x, window, 0), window))
    return (total / pool_counts(window, numpy, x.dtype)).astype(x.dtype, copy=False)


def avg_pool2d_backward(dy, x_shape, window):
    """Each real cell of a window receives dy / count; padded cells are dropped with the padding."""
    kernels = kernels_for(dy)
    if kernels is not None:
        return kernels.avg_pool2d_backward(dy, x_shape, window)
    share = dy / pool_counts(window, numpy, dy.dtype)
    img = blank_padded(*x_shape[:2], window, numpy, dy.dtype)
    for _, view in window_views(img, window):
        view += share
    return unpadded(img, window)
