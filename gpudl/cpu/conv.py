"""2-D convolution on the CPU, one call each way, sample by sample while the sample's data is in cache.

Forward, per sample: its col (C*KH*KW, T), y_n = W (F, C*KH*KW) col in one BLAS call, then + b. Backward, per
sample: the col again (rebuilt from x, which costs less than keeping it), dW^T += col dy_n^T, db += the sums of dy_n's
rows, and with input_grad dcol = W^T dy_n folded back into dx_n. The forward saves x itself for the backward (the CUDA
kernels keep the col). dW and db are summed in fixed blocks of samples, then the blocks' sums in block order: the
same bits for every thread count.

At stride 1 the col is made of "row strips" of the sample's zero-padded image, laid out as flat rows of the padded
width WP: window offset (i, j) reads the T = OH*WP contiguous cells from i*WP + j, so output (oh, ow) sits at
t = oh*WP + ow, and the WP - OW columns past OW of each row are wasted (dropped from y, zero in dy). Contiguous
copies and adds of T cells cost far less than OH*KH*KW*C short rows. Other strides use im2col (T = OH*OW).
"""
import numpy
from numba import prange, uint64

from .blas import call_with_blas_on_one_thread, gemm_at
from .im2col import col2im_plane, im2col_plane, window_ints
from .loader import GRAIN, check_overflow, helper, kernel, real_arrays, threads_for

SUM_BLOCKS = 8      # fixed blocks of samples for dW and db


@helper
def _layout(channels, geometry):
    """(strips, pitch, T, the padded image's size per channel) of a sample's col."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    strips = sh == 1 and sw == 1
    pitch = ow_count + kw - 1 if strips else ow_count       # the padded width WP at stride 1
    return strips, pitch, oh_count * pitch, (oh_count + kh) * pitch


@helper
def _sample_col(x, n, channels, col, image, geometry):
    """col (C*KH*KW, T) of sample n of the flat x; `image` holds the padded image of the strips (its pads zero: only
    the cells of the image are written)."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    strips, pitch, t, plane = _layout(channels, geometry)
    if not strips:
        for c in range(channels):
            im2col_plane(x, (n * channels + c) * h * w, col, c * kh * kw * t, geometry, 0.0)
        return
    for c in range(channels):
        for y in range(h):
            source, target = uint64((n * channels + c) * h * w + y * w), uint64(c * plane + (y + top) * pitch + left)
            for k in range(uint64(w)):
                image[target + k] = x[source + k]
    for row in range(channels * kh * kw):
        c, i, j = row // (kh * kw), row // kw % kh, row % kw
        source, target = uint64(c * plane + i * pitch + j), uint64(row * t)
        for k in range(uint64(t)):
            col[target + k] = image[source + k]


@helper
def _fold_col(dcol, n, channels, dx, image, geometry):
    """dx's sample n = dcol (C*KH*KW, T) added back into the cells each entry read (the adjoint of _sample_col), in
    `image`, a padded image of scratch."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    strips, pitch, t, plane = _layout(channels, geometry)
    if not strips:
        for c in range(channels):
            col2im_plane(dcol, c * kh * kw * t, dx, (n * channels + c) * h * w, geometry)
        return
    image[:] = 0
    for row in range(channels * kh * kw):
        c, i, j = row // (kh * kw), row // kw % kh, row % kw
        source, target = uint64(row * t), uint64(c * plane + i * pitch + j)
        for k in range(uint64(t)):
            image[target + k] += dcol[source + k]
    for c in range(channels):
        for y in range(h):
            source, target = uint64(c * plane + (y + top) * pitch + left), uint64((n * channels + c) * h * w + y * w)
            for k in range(uint64(w)):
                dx[target + k] = image[source + k]


@kernel
def _forward(x, W, b, y, samples, channels, filters, geometry, parts):
    strips, pitch, t, plane = _layout(channels, geometry)
    depth, oh_count, ow_count = channels * geometry[2] * geometry[3], geometry[8], geometry[9]
    for part in prange(parts):
        col = numpy.empty(depth * t, dtype=x.dtype)
        wide = numpy.empty(filters * t, dtype=x.dtype)
        image = numpy.zeros(channels * plane if strips else 0, dtype=x.dtype)
        for n in range(part * samples // parts, (part + 1) * samples // parts):
            _sample_col(x, n, channels, col, image, geometry)
            gemm_at(False, False, filters, t, depth, 1.0, W, 0, depth, col, 0, t, 0.0, wide, 0, t)
            for f in range(filters):
                bias = b[f]
                for oh in range(oh_count):
                    source = uint64(f * t + oh * pitch)
                    target = uint64(((n * filters + f) * oh_count + oh) * ow_count)
                    for k in range(uint64(ow_count)):
                        y[target + k] = wide[source + k] + bias


@kernel
def _backward(x, W, dy, dx, dW, db, samples, channels, filters, geometry, blocks, input_grad):
    strips, pitch, t, plane = _layout(channels, geometry)
    depth, oh_count, ow_count = channels * geometry[2] * geometry[3], geometry[8], geometry[9]
    dW_parts = numpy.zeros((blocks, depth * filters), dtype=dW.dtype)     # each block's dW^T (C*KH*KW, F)
    db_parts = numpy.zeros((blocks, filters), dtype=db.dtype)
    for block in prange(blocks):
        col = numpy.empty(depth * t, dtype=x.dtype)
        wide = numpy.zeros(filters * t, dtype=x.dtype)     # dy_n in strip positions: the wasted columns stay zero
        ones = numpy.ones(t, dtype=x.dtype)
        image = numpy.zeros(channels * plane if strips else 0, dtype=x.dtype)
        folded = numpy.empty(channels * plane if strips and input_grad else 0, dtype=x.dtype)
        dcol = numpy.empty(depth * t if input_grad else 0, dtype=x.dtype)
        for n in range(block * samples // blocks, (block + 1) * samples // blocks):
            _sample_col(x, n, channels, col, image, geometry)
            for f in range(filters):
                for oh in range(oh_count):
                    source = uint64(((n * filters + f) * oh_count + oh) * ow_count)
                    target = uint64(f * t + oh * pitch)
                    for k in range(uint64(ow_count)):
                        wide[target + k] = dy[source + k]
            # dW^T += col wide^T: this orientation of the product runs about 1.6x faster in OpenBLAS than wide col^T
            gemm_at(False, True, depth, filters, t, 1.0, col, 0, t, wide, 0, t, 1.0, dW_parts[block], 0, filters)
            gemm_at(False, False, filters, 1, t, 1.0, wide, 0, t, ones, 0, 1, 1.0, db_parts[block], 0, 1)
            if input_grad:
                gemm_at(True, False, depth, t, filters, 1.0, W, 0, depth, wide, 0, t, 0.0, dcol, 0, t)
                _fold_col(dcol, n, channels, dx, folded, geometry)
    for block in range(blocks):
        for f in range(filters):
            for d in range(depth):
                dW[f * depth + d] += dW_parts[block, d * filters + f]
        for f in range(filters):
            db[f] += db_parts[block, f]


def conv2d(x, W, b, window):
    """y (N, F, OH, OW) = W * x + b over `window`, and what the backward reads (x itself)."""
    x, W, b = real_arrays("conv2d", x, W, b)
    window.check_input("conv2d", x.shape)
    n, c = x.shape[:2]
    f = W.shape[0]
    if W.shape[1:] != (c, window.kh, window.kw) or b.shape != (f,):
        raise ValueError(f"conv2d: W {tuple(W.shape)} and b {tuple(b.shape)} do not fit input {tuple(x.shape)} "
                         f"and a {window.kh}x{window.kw} window")
    y = numpy.empty((n, f, window.oh, window.ow), dtype=x.dtype)
    parts = min(n, threads_for(n * c * window.kh * window.kw * window.oh * window.ow))
    call_with_blas_on_one_thread(_forward, x.reshape(-1), W.reshape(-1), b, y.reshape(-1), n, c, f,
                                 window_ints(window), parts)
    check_overflow("conv2d", y, x, W, b)
    return y, x


def conv2d_backward(dy, x, W, window, into, input_grad=True):
    """dW and db added into `into` = (dW, db); returns dx (N, C, H, W), or None without input_grad. `x` is what
    conv2d returned beside y."""
    dW, db = into
    dy, x, W = real_arrays("conv2d_backward", dy, x, W)
    real_arrays("conv2d_backward", W, dW, db)
    n, c = x.shape[:2]
    f = W.shape[0]
    if dy.shape != (n, f, window.oh, window.ow) or dW.shape != W.shape or db.shape != (f,) or \
            not (dW.flags.c_contiguous and db.flags.c_contiguous):
        raise ValueError(f"conv2d_backward: dy {tuple(dy.shape)}, dW {tuple(dW.shape)} and db {tuple(db.shape)} "
                         f"do not fit W {tuple(W.shape)} and input {tuple(x.shape)}")
    dx = numpy.empty(x.shape if input_grad else 0, dtype=x.dtype)
    blocks = min(n, SUM_BLOCKS)
    threads_for(min(blocks * GRAIN, n * c * window.kh * window.kw * window.oh * window.ow))
    call_with_blas_on_one_thread(_backward, x.reshape(-1), W.reshape(-1), dy.reshape(-1), dx.reshape(-1),
                                 dW.reshape(-1), db, n, c, f, window_ints(window), blocks, bool(input_grad))
    return dx if input_grad else None
