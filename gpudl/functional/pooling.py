"""Max and average pooling over KH x KW windows (NCHW); the NumPy path loops over the KH*KW window offsets.

Max pooling keeps, per window, the index of its first maximum (row-major within the window), so ties resolve the
same way on every device. Average pooling divides by the number of real (unpadded) cells in each window.
"""
import numpy

from .. import kernels
from ..geometry import blank_padded, output_hw, padded, unpadded, window_views
from .dispatch import on_kernel_path
from .threads import parallel_chunks


def _max_pool_into(y, argmax, x, kh, kw, sh, sw, pads):
    views = window_views(padded(x, pads, -numpy.inf), kh, kw, sh, sw, *y.shape[2:])
    _, first = next(views)
    y[...] = first
    # The winner is the last offset that beat the running maximum, so argmax = max over k of k * beat_k;
    # a small index type keeps that cheap.
    index_type = numpy.int8 if kh * kw < 128 else numpy.int64
    winner = numpy.zeros(y.shape, dtype=index_type)
    beat = numpy.empty(y.shape, dtype=bool)
    for k, view in views:
        numpy.less_equal(view, y, out=beat)
        numpy.logical_not(beat, out=beat)
        beat &= y == y                      # view > y, or view is NaN while y is not
        numpy.maximum(winner, beat * index_type(k), out=winner)
        numpy.maximum(y, view, out=y)       # a NaN, once in y, stays: the first NaN wins
    argmax[...] = winner


def max_pool2d(x, kh, kw, sh, sw, pads):
    """Forward: y (N, C, OH, OW) and argmax (N, C, OH, OW), the winning cell's index within its window.

    A running maximum over the KH*KW window offsets; a later cell wins only when strictly greater (or the first NaN).
    """
    if on_kernel_path(x):
        return kernels.max_pool2d(x, kh, kw, sh, sw, pads)
    n, c = x.shape[:2]
    oh, ow = output_hw(x.shape[2], x.shape[3], kh, kw, sh, sw, pads)
    y = numpy.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = numpy.empty((n, c, oh, ow), dtype=numpy.int64)
    parallel_chunks(n, lambda start, stop: _max_pool_into(y[start:stop], argmax[start:stop], x[start:stop], kh, kw,
                                                          sh, sw, pads), x[0].size)
    return y, argmax


def _gather_windows(img, kh, kw, sh, sw, oh, ow, part_of):
    """img (zeros, padded) += each window offset k's part_of(k) of the window gradients, at that offset's cells."""
    if sh >= kh and sw >= kw:               # each cell in at most one window: write, no read-add-write
        for k, view in window_views(img, kh, kw, sh, sw, oh, ow):
            part_of(k, view)
    else:
        for k, view in window_views(img, kh, kw, sh, sw, oh, ow):
            view += part_of(k, None)


def max_pool2d_backward(dy, argmax, x_shape, kh, kw, sh, sw, pads):
    """Route each window's gradient to the cell that won it; cells in several windows sum them."""
    if on_kernel_path(dy):
        return kernels.max_pool2d_backward(dy, argmax, x_shape, kh, kw, sh, sw, pads)
    img = blank_padded(x_shape, pads, numpy, dy.dtype)

    def route(start, stop):
        dy_part, argmax_part = dy[start:stop], argmax[start:stop]
        _gather_windows(img[start:stop], kh, kw, sh, sw, *dy.shape[2:],
                        lambda k, out: numpy.multiply(argmax_part == k, dy_part, out=out))
    parallel_chunks(dy.shape[0], route, dy[0].size * kh * kw)
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
    n, c = x.shape[:2]
    oh, ow = output_hw(x.shape[2], x.shape[3], kh, kw, sh, sw, pads)
    counts = pool_counts(x.shape[2], x.shape[3], kh, kw, sh, sw, pads, numpy, x.dtype)
    y = numpy.empty((n, c, oh, ow), dtype=x.dtype)

    def mean(start, stop):
        total = y[start:stop]
        views = window_views(padded(x[start:stop], pads, 0), kh, kw, sh, sw, oh, ow)
        _, first = next(views)
        total[...] = first
        for _, view in views:
            total += view
        total /= counts
    parallel_chunks(n, mean, x[0].size)
    return y


def avg_pool2d_backward(dy, x_shape, kh, kw, sh, sw, pads):
    """Each real cell of a window receives dy / count; padded cells are dropped with the padding."""
    if on_kernel_path(dy):
        return kernels.avg_pool2d_backward(dy, x_shape, kh, kw, sh, sw, pads)
    counts = pool_counts(x_shape[2], x_shape[3], kh, kw, sh, sw, pads, numpy, dy.dtype)
    img = blank_padded(x_shape, pads, numpy, dy.dtype)

    def spread(start, stop):
        share = dy[start:stop] / counts
        _gather_windows(img[start:stop], kh, kw, sh, sw, *dy.shape[2:],
                        lambda k, out: share if out is None else numpy.copyto(out, share))
    parallel_chunks(dy.shape[0], spread, dy[0].size * kh * kw)
    return unpadded(img, x_shape[2], x_shape[3], pads)
