"""im2col and its adjoint col2im on the CPU, over a geometry.Window, one image plane at a time.

col[n, c, i, j, oh, ow] = x[n, c, oh*SH + i - top, ow*SW + j - left] (`fill` outside the image); col2im adds each
column entry back into the cell it read. The planes (n, c) are split over the threads; conv.py calls the per-plane
helpers on one sample at a time, while its data is in cache. Inner loops run over unsigned indices: with signed
ones Numba checks each index for wraparound and the loop does not vectorize.
"""
import numpy
from numba import prange, uint64

from .loader import helper, kernel, real_arrays, threads_for


def window_ints(window):
    """The window as the array of ints the kernels take (h, w, kh, kw, sh, sw, top, left, oh, ow): an array, not a
    tuple, as a part body's arguments must be (loader.Part)."""
    w = window
    return numpy.array((w.h, w.w, w.kh, w.kw, w.sh, w.sw, w.top, w.left, w.oh, w.ow), dtype=numpy.int64)


@helper
def valid_columns(j, geometry):
    """[lo, hi): the output columns ow whose input column ow*SW + j - left lies inside the image."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    lo = max(0, (left - j + sw - 1) // sw)
    hi = min(ow_count, max(0, (w - 1 + left - j) // sw + 1))
    return lo, max(lo, hi)


@helper
def im2col_plane(x, x_at, col, col_at, geometry, fill):
    """The KH*KW rows of col (each OH*OW long, from col_at) of the image plane at x_at of the flat arrays."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    step = uint64(sw)
    for i in range(kh):
        for j in range(kw):
            lo, hi = valid_columns(j, geometry)
            row = col_at + (i * kw + j) * oh_count * ow_count
            for oh in range(oh_count):
                y = oh * sh + i - top
                out = uint64(row + oh * ow_count)
                if y < 0 or y >= h:
                    for ow in range(uint64(ow_count)):
                        col[out + ow] = fill
                    continue
                source = uint64(x_at + y * w + lo * sw + j - left)
                for ow in range(uint64(lo)):
                    col[out + ow] = fill
                inside = out + uint64(lo)
                for ow in range(uint64(hi - lo)):
                    col[inside + ow] = x[source + ow * step]
                for ow in range(uint64(hi), uint64(ow_count)):
                    col[out + ow] = fill


@helper
def col2im_plane(col, col_at, img, img_at, geometry):
    """img's plane at img_at = the sum of the KH*KW rows of col (from col_at) over the cells they read."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    step = uint64(sw)
    for k in range(uint64(h * w)):
        img[uint64(img_at) + k] = 0
    for i in range(kh):
        for j in range(kw):
            lo, hi = valid_columns(j, geometry)
            row = col_at + (i * kw + j) * oh_count * ow_count
            for oh in range(oh_count):
                y = oh * sh + i - top
                if y < 0 or y >= h:
                    continue
                source = uint64(row + oh * ow_count + lo)
                target = uint64(img_at + y * w + lo * sw + j - left)
                for ow in range(uint64(hi - lo)):
                    img[target + ow * step] += col[source + ow]


@kernel
def _im2col(x, col, planes, geometry, fill):
    h, w, kh, kw = geometry[0], geometry[1], geometry[2], geometry[3]
    rows = kh * kw * geometry[8] * geometry[9]
    for plane in prange(planes):
        im2col_plane(x, plane * h * w, col, plane * rows, geometry, fill)


@kernel
def _col2im(col, img, planes, geometry):
    h, w, kh, kw = geometry[0], geometry[1], geometry[2], geometry[3]
    rows = kh * kw * geometry[8] * geometry[9]
    for plane in prange(planes):
        col2im_plane(col, plane * rows, img, plane * h * w, geometry)


def im2col(x, window, fill=0.0):
    """col (N, C, KH, KW, OH, OW) from x (N, C, H, W); padded cells read `fill`."""
    (x,) = real_arrays("im2col", x)
    window.check_input("im2col", x.shape)
    n, c = x.shape[:2]
    col = numpy.empty((n, c, window.kh, window.kw, window.oh, window.ow), dtype=x.dtype)
    threads_for(col.size)
    _im2col(x.reshape(-1), col.reshape(-1), n * c, window_ints(window), x.dtype.type(fill))
    return col


def col2im(col, window):
    """Image (N, C, H, W) where each cell sums the column entries that read it (the adjoint of im2col)."""
    (col,) = real_arrays("col2im", col)
    if col.ndim != 6 or tuple(col.shape[2:]) != (window.kh, window.kw, window.oh, window.ow):
        raise ValueError(f"col2im: col of shape {tuple(col.shape)} does not fit {window}")
    n, c = col.shape[:2]
    img = numpy.empty((n, c, window.h, window.w), dtype=col.dtype)
    threads_for(col.size)
    _col2im(col.reshape(-1), img.reshape(-1), n * c, window_ints(window))
    return img
