"""Max and average pooling on the CPU over the windows of NCHW images (a geometry.Window), forward and backward; the
image planes (n, c) are split over the threads.

Max: the running maximum of the window's cells in row-major order, numpy.maximum's way (a NaN, once there, stays;
of equal cells the later one's bits), padded cells reading -inf; argmax is the first cell equal to it (the first NaN).
Average: the sum of the window's real cells over their count. Both backwards add, offset by offset (k = i*KW + j
ascending), each window's share into the cell it came from: the order the NumPy reference sums in.
"""
import numpy
from numba import prange, uint64

from .im2col import valid_columns, window_ints
from .loader import helper, inline, kernel, real_arrays, threads_for


def argmax_type(kh, kw):
    """The smallest signed integer type that holds every index 0 .. KH*KW - 1 of a window (the reference's too)."""
    return numpy.min_scalar_type(-kh * kw)


@helper
def _offset(k, geometry):
    """Window offset k = i*KW + j: (i, j) and the output columns [lo, hi) whose cell of that offset is real."""
    i, j = k // geometry[3], k % geometry[3]
    lo, hi = valid_columns(j, geometry)
    return i, j, lo, hi


@inline
def _max_update(y, argmax, q, v, k):
    """One step of window q's chain: numpy.maximum(y, v) (a NaN stays, a tie takes v's bits), and argmax = k where
    v is the first cell equal to the maximum so far."""
    best = y[q]
    argmax[q] = k if best == best and (v != v or v > best) else argmax[q]
    y[q] = v if best == best and (v != v or not best > v) else best


def in_pairs(window):
    """Windows two cells wide moved two cells along each row, none reaching past the row's ends (LeNet's 2x2 / 2 and
    the like): the rows of x and dx are then read and written in pairs of cells, loops that vectorize (their own
    kernels, compiled only where a run pools so)."""
    return window.kw == 2 and window.sw == 2 and window.left == 0 and 2 * window.ow <= window.w


@inline
def _max_plane(x, y, argmax, plane, geometry, lowest):
    """One image plane's windows, offset by offset: every window's chain in row-major order."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    source, out = plane * h * w, uint64(plane * oh_count * ow_count)
    for q in range(uint64(oh_count * ow_count)):
        y[out + q], argmax[out + q] = lowest, 0
    for k in range(kh * kw):
        i, j, lo, hi = _offset(k, geometry)
        for oh in range(oh_count):
            row = oh * sh + i - top
            first, last = (lo, hi) if 0 <= row < h else (0, 0)      # padded cells read -inf
            at, o = uint64(source + row * w + first * sw + j - left), out + uint64(oh * ow_count)
            for ow in range(uint64(first)):
                _max_update(y, argmax, o + ow, lowest, k)
            for ow in range(uint64(last - first)):
                _max_update(y, argmax, o + uint64(first) + ow, x[at + uint64(sw) * ow], k)
            for ow in range(uint64(last), uint64(ow_count)):
                _max_update(y, argmax, o + ow, lowest, k)


@inline
def _max_plane_in_pairs(x, y, argmax, plane, geometry, lowest):
    """_max_plane for windows in_pairs: the offsets (i, 0) and (i, 1) of a row together."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    source, out = plane * h * w, uint64(plane * oh_count * ow_count)
    for q in range(uint64(oh_count * ow_count)):
        y[out + q], argmax[out + q] = lowest, 0
    for i in range(kh):
        for oh in range(oh_count):
            row = oh * sh + i - top
            inside = 0 <= row < h
            at, o = uint64(source + row * w), out + uint64(oh * ow_count)
            for ow in range(uint64(ow_count)):
                _max_update(y, argmax, o + ow, x[at + uint64(2) * ow] if inside else lowest, 2 * i)
                _max_update(y, argmax, o + ow, x[at + uint64(2) * ow + uint64(1)] if inside else lowest, 2 * i + 1)


@kernel
def _max_forward(x, y, argmax, planes, geometry, lowest):
    for plane in prange(planes):
        _max_plane(x, y, argmax, plane, geometry, lowest)


@kernel
def _max_forward_in_pairs(x, y, argmax, planes, geometry, lowest):
    for plane in prange(planes):
        _max_plane_in_pairs(x, y, argmax, plane, geometry, lowest)


@inline
def _route_plane(dy, argmax, dx, plane, geometry, zero):
    """One image plane of dx: each window's gradient added, offset by offset, into the cell that won it."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    target, source = plane * h * w, uint64(plane * oh_count * ow_count)
    for q in range(uint64(h * w)):
        dx[uint64(target) + q] = zero
    for k in range(kh * kw):
        i, j, lo, hi = _offset(k, geometry)
        for oh in range(oh_count):
            row = oh * sh + i - top
            if 0 <= row < h:
                at, o = uint64(target + row * w + lo * sw + j - left), source + uint64(oh * ow_count + lo)
                for ow in range(uint64(hi - lo)):
                    dx[at + uint64(sw) * ow] += dy[o + ow] if argmax[o + ow] == k else zero


@inline
def _route_plane_in_pairs(dy, argmax, dx, plane, geometry, zero):
    """_route_plane for windows in_pairs that do not overlap (SH >= KH): each cell is written, not added."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    target, source = plane * h * w, uint64(plane * oh_count * ow_count)
    for q in range(uint64(h * w)):
        dx[uint64(target) + q] = zero
    for oh in range(oh_count):
        o = source + uint64(oh * ow_count)
        for i in range(kh):
            row = oh * sh + i - top
            if 0 <= row < h:
                at, k = uint64(target + row * w), i * 2
                for ow in range(uint64(ow_count)):
                    gradient, wins = dy[o + ow], argmax[o + ow]
                    dx[at + uint64(2) * ow] = gradient if wins == k else zero
                    dx[at + uint64(2) * ow + uint64(1)] = gradient if wins == k + 1 else zero


@kernel
def _max_backward(dy, argmax, dx, planes, geometry, zero):
    for plane in prange(planes):
        _route_plane(dy, argmax, dx, plane, geometry, zero)


@kernel
def _max_backward_in_pairs(dy, argmax, dx, planes, geometry, zero):
    for plane in prange(planes):
        _route_plane_in_pairs(dy, argmax, dx, plane, geometry, zero)


@kernel
def _avg_forward(x, y, counts, planes, geometry):
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    step, positions = uint64(sw), uint64(oh_count * ow_count)
    for plane in prange(planes):
        source, out = plane * h * w, uint64(plane * oh_count * ow_count)
        for q in range(positions):
            y[out + q] = 0
        for k in range(kh * kw):
            i, j, lo, hi = _offset(k, geometry)
            for oh in range(oh_count):
                row = oh * sh + i - top
                if 0 <= row < h:
                    at, o = uint64(source + row * w + lo * sw + j - left), out + uint64(oh * ow_count + lo)
                    for ow in range(uint64(hi - lo)):
                        y[o + ow] += x[at + ow * step]
        for q in range(positions):
            y[out + q] /= counts[q]


@kernel
def _avg_backward(dy, counts, dx, planes, geometry):
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    step = uint64(sw)
    for plane in prange(planes):
        target, source = plane * h * w, uint64(plane * oh_count * ow_count)
        for q in range(uint64(h * w)):
            dx[uint64(target) + q] = 0
        for k in range(kh * kw):
            i, j, lo, hi = _offset(k, geometry)
            for oh in range(oh_count):
                row = oh * sh + i - top
                if 0 <= row < h:
                    at, o = uint64(target + row * w + lo * sw + j - left), uint64(oh * ow_count + lo)
                    for ow in range(uint64(hi - lo)):
                        dx[at + ow * step] += dy[source + o + ow] / counts[o + ow]


def _counts(window, dtype):
    """The number of real cells of each window (OH*OW,), of `dtype`."""
    rows = [min(oh * window.sh - window.top + window.kh, window.h) - max(oh * window.sh - window.top, 0)
            for oh in range(window.oh)]
    columns = [min(ow * window.sw - window.left + window.kw, window.w) - max(ow * window.sw - window.left, 0)
               for ow in range(window.ow)]
    return numpy.outer(rows, columns).astype(dtype).reshape(-1)


def _planes(what, x_shape, window):
    window.check_input(what, x_shape)
    return x_shape[0] * x_shape[1]


def max_pool2d(x, window):
    """y (N, C, OH, OW) and argmax (the first maximum's index i*KW + j within its window, of argmax_type)."""
    (x,) = real_arrays("max_pool2d", x)
    planes = _planes("max_pool2d", x.shape, window)
    y = numpy.empty(x.shape[:2] + (window.oh, window.ow), dtype=x.dtype)
    argmax = numpy.empty(y.shape, dtype=argmax_type(window.kh, window.kw))
    threads_for(y.size * window.kh * window.kw)
    forward = _max_forward_in_pairs if in_pairs(window) else _max_forward
    forward(x.reshape(-1), y.reshape(-1), argmax.reshape(-1), planes, window_ints(window), x.dtype.type(-numpy.inf))
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape, window):
    """dx (N, C, H, W): each cell sums dy of the windows whose first maximum it is."""
    (dy,) = real_arrays("max_pool2d_backward", dy)
    planes = _planes("max_pool2d_backward", x_shape, window)
    for name, array in (("dy", dy), ("argmax", argmax)):
        window.check_output("max_pool2d_backward", name, array.shape, x_shape)
    dx = numpy.empty(tuple(x_shape), dtype=dy.dtype)
    threads_for(dx.size + dy.size * window.kh * window.kw)
    backward = _max_backward_in_pairs if in_pairs(window) and window.sh >= window.kh else _max_backward
    backward(dy.reshape(-1), numpy.ascontiguousarray(argmax).reshape(-1), dx.reshape(-1), planes, window_ints(window),
             dy.dtype.type(0))
    return dx


def avg_pool2d(x, window):
    """y (N, C, OH, OW): the mean of each window's real (unpadded) cells."""
    (x,) = real_arrays("avg_pool2d", x)
    planes = _planes("avg_pool2d", x.shape, window)
    y = numpy.empty(x.shape[:2] + (window.oh, window.ow), dtype=x.dtype)
    threads_for(y.size * window.kh * window.kw)
    _avg_forward(x.reshape(-1), y.reshape(-1), _counts(window, x.dtype), planes, window_ints(window))
    return y


def avg_pool2d_backward(dy, x_shape, window):
    """dx (N, C, H, W): each real cell sums dy / count over the windows that cover it."""
    (dy,) = real_arrays("avg_pool2d_backward", dy)
    planes = _planes("avg_pool2d_backward", x_shape, window)
    window.check_output("avg_pool2d_backward", "dy", dy.shape, x_shape)
    dx = numpy.empty(tuple(x_shape), dtype=dy.dtype)
    threads_for(dx.size + dy.size * window.kh * window.kw)
    _avg_backward(dy.reshape(-1), _counts(window, dy.dtype), dx.reshape(-1), planes, window_ints(window))
    return dx
