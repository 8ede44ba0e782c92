"""Max and average pooling over the KH x KW windows of NCHW images (a geometry.Window); the NumPy path loops over the
KH*KW window offsets.

Max pooling keeps, per window, the index of its first maximum (row-major within the window), so ties resolve the
same way on every device. Average pooling divides by the number of real (unpadded) cells in each window.
"""
import numpy

from ..geometry import blank_padded, padded, unpadded, window_views
from .dispatch import kernels_for
from .threads import parallel_chunks


def argmax_type(kh, kw):
    """The NumPy path's argmax dtype: the smallest signed integer that holds every index 0 .. KH*KW - 1."""
    return next(t for t in (numpy.int8, numpy.int16, numpy.int32, numpy.int64) if numpy.iinfo(t).max >= kh * kw - 1)


def _max_pool_into(y, argmax, x, window):
    # Each window offset's cells, copied once into a contiguous plane: NumPy is several times faster on contiguous
    # arrays than on the strided views, which it would otherwise read twice.
    cells = numpy.empty((window.kh * window.kw,) + y.shape, dtype=x.dtype)
    for k, view in window_views(padded(x, window, -numpy.inf), window):
        cells[k] = view
    y[...] = cells[0]
    for plane in cells[1:]:
        numpy.maximum(y, plane, out=y)      # a NaN, once in y, stays: the first NaN wins
    # The winner is the first offset whose cell equals the maximum (or is NaN where the maximum is NaN), so argmax
    # counts the leading offsets that missed it: argmax = sum over k < KH*KW - 1 of [offsets 0..k all missed].
    nan_windows = y.size > 0 and numpy.isnan(y.max())
    missed, missed_all = numpy.empty(y.shape, dtype=bool), numpy.ones(y.shape, dtype=bool)
    argmax[...] = 0
    for plane in cells[:-1]:
        numpy.not_equal(plane, y, out=missed)
        if nan_windows:
            missed &= plane == plane        # a NaN cell is the maximum of its window
        missed_all &= missed
        argmax += missed_all.view(numpy.int8)


def max_pool2d(x, window):
    """Forward: y (N, C, OH, OW) and argmax (N, C, OH, OW), the winning cell's index within its window.

    A running maximum over the KH*KW window offsets; the first cell equal to it wins (the first NaN where there is
    one). On the NumPy path argmax has the small integer type argmax_type(kh, kw); the kernel path's is int8 up to
    128 cells (as here), else int32.
    """
    kernels = kernels_for(x)
    if kernels is not None:
        return kernels.max_pool2d(x, window)
    n, c = x.shape[:2]
    y = numpy.empty((n, c, window.oh, window.ow), dtype=x.dtype)
    argmax = numpy.empty(y.shape, dtype=argmax_type(window.kh, window.kw))
    parallel_chunks(n, lambda start, stop: _max_pool_into(y[start:stop], argmax[start:stop], x[start:stop], window),
                    x[0].size)
    return y, argmax


def _gather_windows(img, window, part_of):
    """img (zeros, padded) += each window offset k's part_of(k) of the window gradients, at that offset's cells."""
    if window.sh >= window.kh and window.sw >= window.kw:   # each cell in at most one window: write, no read-add-write
        for k, view in window_views(img, window):
            part_of(k, view)
    else:
        for k, view in window_views(img, window):
            view += part_of(k, None)


def max_pool2d_backward(dy, argmax, x_shape, window):
    """Route each window's gradient to the cell that won it; cells in several windows sum them."""
    kernels = kernels_for(dy)
    if kernels is not None:
        return kernels.max_pool2d_backward(dy, argmax, x_shape, window)
    img = blank_padded(*x_shape[:2], window, numpy, dy.dtype)

    def route(start, stop):
        dy_part, argmax_part = dy[start:stop], argmax[start:stop]
        _gather_windows(img[start:stop], window, lambda k, out: numpy.multiply(argmax_part == k, dy_part, out=out))
    parallel_chunks(dy.shape[0], route, dy[0].size * window.kh * window.kw)
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
    n, c = x.shape[:2]
    counts = pool_counts(window, numpy, x.dtype)
    y = numpy.empty((n, c, window.oh, window.ow), dtype=x.dtype)

    def mean(start, stop):
        total = y[start:stop]
        views = window_views(padded(x[start:stop], window, 0), window)
        _, first = next(views)
        total[...] = first
        for _, view in views:
            total += view
        total /= counts
    parallel_chunks(n, mean, x[0].size)
    return y


def avg_pool2d_backward(dy, x_shape, window):
    """Each real cell of a window receives dy / count; padded cells are dropped with the padding."""
    kernels = kernels_for(dy)
    if kernels is not None:
        return kernels.avg_pool2d_backward(dy, x_shape, window)
    counts = pool_counts(window, numpy, dy.dtype)
    img = blank_padded(*x_shape[:2], window, numpy, dy.dtype)

    def spread(start, stop):
        share = dy[start:stop] / counts
        _gather_windows(img[start:stop], window, lambda k, out: share if out is None else numpy.copyto(out, share))
    parallel_chunks(dy.shape[0], spread, dy[0].size * window.kh * window.kw)
    return unpadded(img, window)
