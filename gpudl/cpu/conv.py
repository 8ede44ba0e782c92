"""2-D convolution on the CPU, one call each way.

At stride 1 (the common case) one fused kernel each way works sample by sample while the sample's data is in cache.
Forward: the sample's col (C*KH*KW, T), y_n = W (F, C*KH*KW) col in one BLAS call, then + b. Backward: the col again
(rebuilt from x, which costs less than keeping it), dW^T += col dy_n^T, db += the sums of dy_n's rows, and with
input_grad dcol = W^T dy_n added back into dx_n. The forward saves x itself for the backward (the CUDA kernels keep the
col). dW and db are summed in fixed blocks of samples, then the blocks' sums in block order: the same bits for every
thread count. The col is made of "row strips" of the sample's zero-padded image, laid out as flat rows of the padded
width WP: window offset (i, j) reads the T = OH*WP contiguous cells from i*WP + j, so output (oh, ow) sits at
t = oh*WP + ow, and the WP - OW columns past OW of each row are wasted (dropped from y, zero in dy). Contiguous copies
and adds of T cells cost far less than OH*KH*KW*C short rows.

Other strides go the way of the CUDA twin (kernels/conv.py): im2col, one batched product, the bias; backward two
products, the sums over the batch and col2im. The forward saves the col then.
"""
import numpy
from numba import uint64

from .blas import blas_on_one_thread, gemm, gemm_at
from .elementwise import ACTIVATIONS, activation as apply_activation, activation_backward, bias_activation
from .im2col import col2im, im2col, window_ints
from .loader import GRAIN, check_overflow, inline, part, real_arrays, threads_for
from .reduce import sum_axes

SUM_BLOCKS = 8      # fixed blocks of samples for dW and db


@inline
def _strips(channels, geometry):
    """(WP, T, the padded image's cells per channel, with a spare row so that every strip fits)."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    pitch = ow_count + kw - 1
    return pitch, oh_count * pitch, (oh_count + kh) * pitch


@inline
def _sample_col(x, n, channels, col, image, geometry):
    """col (C*KH*KW, T) of sample n of the flat x; `image` holds the padded image (its pads zero: only the cells of
    the image are written)."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    pitch, t, plane = _strips(channels, geometry)
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


@inline
def _fold_col(dcol, n, channels, dx, image, geometry):
    """dx's sample n = dcol (C*KH*KW, T) added back into the cells each entry read (the adjoint of _sample_col), in
    `image`, a padded image of scratch."""
    h, w, kh, kw, sh, sw, top, left, oh_count, ow_count = geometry
    pitch, t, plane = _strips(channels, geometry)
    for k in range(uint64(channels * plane)):
        image[k] = 0
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


@inline
def _forward_samples(x, W, b, y, first, last, channels, filters, geometry, relu, zero):
    """y of samples first..last-1 (with relu: max(y, 0) as numpy.maximum gives it), one at a time, on the calling
    thread."""
    pitch, t, plane = _strips(channels, geometry)
    depth, oh_count, ow_count = channels * geometry[2] * geometry[3], geometry[8], geometry[9]
    col = numpy.empty(depth * t, dtype=x.dtype)
    wide = numpy.empty(filters * t, dtype=x.dtype)
    image = numpy.zeros(channels * plane, dtype=x.dtype)
    for n in range(first, last):
        _sample_col(x, n, channels, col, image, geometry)
        gemm_at(False, False, filters, t, depth, 1.0, W, 0, depth, col, 0, t, 0.0, wide, 0, t)
        for f in range(filters):
            bias = b[f]
            for oh in range(oh_count):
                source = uint64(f * t + oh * pitch)
                target = uint64(((n * filters + f) * oh_count + oh) * ow_count)
                for k in range(uint64(ow_count)):
                    v = wide[source + k] + bias
                    y[target + k] = v if not relu or v > zero or v != v else zero


@part
def _forward(p, parts, x, W, b, y, samples, channels, filters, geometry, relu, zero):
    _forward_samples(x, W, b, y, p * samples // parts, (p + 1) * samples // parts, channels, filters, geometry, relu,
                     zero)


@inline
def _backward_samples(x, W, dy, y, dx, dW_t, db, first, last, channels, filters, geometry, input_grad, relu, zero,
                      one):
    """dW^T (into dW_t) and db of samples first..last-1 added up in sample order, and their dx (with input_grad), on
    the calling thread; with relu, dy is the gradient of y = max(v, 0) and dv = dy * (y > 0) comes first."""
    pitch, t, plane = _strips(channels, geometry)
    depth, oh_count, ow_count = channels * geometry[2] * geometry[3], geometry[8], geometry[9]
    col = numpy.empty(depth * t, dtype=x.dtype)
    wide = numpy.zeros(filters * t, dtype=x.dtype)     # dy_n in strip positions: the wasted columns stay zero
    ones = numpy.ones(t, dtype=x.dtype)
    image = numpy.zeros(channels * plane, dtype=x.dtype)
    folded = numpy.empty(channels * plane if input_grad else 0, dtype=x.dtype)
    dcol = numpy.empty(depth * t if input_grad else 0, dtype=x.dtype)
    for n in range(first, last):
        _sample_col(x, n, channels, col, image, geometry)
        for f in range(filters):
            for oh in range(oh_count):
                source = uint64(((n * filters + f) * oh_count + oh) * ow_count)
                target = uint64(f * t + oh * pitch)
                for k in range(uint64(ow_count)):
                    g = dy[source + k]
                    wide[target + k] = g * (one if y[source + k] > zero else zero) if relu else g
        # dW^T += col wide^T: this orientation of the product runs about 1.6x faster in OpenBLAS than wide col^T
        gemm_at(False, True, depth, filters, t, 1.0, col, 0, t, wide, 0, t, 1.0, dW_t, 0, filters)
        gemm_at(False, False, filters, 1, t, 1.0, wide, 0, t, ones, 0, 1, 1.0, db, 0, 1)
        if input_grad:
            gemm_at(True, False, depth, t, filters, 1.0, W, 0, depth, wide, 0, t, 0.0, dcol, 0, t)
            _fold_col(dcol, n, channels, dx, folded, geometry)


@part
def _backward(p, parts, x, W, dy, y, dx, dW_parts, db_parts, samples, channels, filters, geometry, input_grad, relu,
              zero, one):
    _backward_samples(x, W, dy, y, dx, dW_parts[p], db_parts[p], p * samples // parts, (p + 1) * samples // parts,
                      channels, filters, geometry, input_grad, relu, zero, one)


def conv2d(x, W, b, window, activation=None, alpha=1.0):
    """y (N, F, OH, OW) = phi(W * x + b) over `window` (phi: None, the identity, or one of elementwise.ACTIVATIONS:
    ReLU inside the kernel, the others after it), and what the backward reads (x itself at stride 1, else the col)."""
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"conv2d: unknown activation {activation!r}; expected None or one of {ACTIVATIONS}")
    x, W, b = real_arrays("conv2d", x, W, b)
    window.check_input("conv2d", x.shape)
    n, c = x.shape[:2]
    f = W.shape[0]
    if W.shape[1:] != (c, window.kh, window.kw) or b.shape != (f,):
        raise ValueError(f"conv2d: W {tuple(W.shape)} and b {tuple(b.shape)} do not fit input {tuple(x.shape)} "
                         f"and a {window.kh}x{window.kw} window")
    if (window.sh, window.sw) != (1, 1):
        col = im2col(x, window)
        positions = window.oh * window.ow
        y = gemm("N", "N", W.reshape(f, -1), col.reshape(n, -1, positions), numpy.empty((n, f, positions), x.dtype))
        return bias_activation(y, b, activation, alpha, positions).reshape(n, f, window.oh, window.ow), col
    y = numpy.empty((n, f, window.oh, window.ow), dtype=x.dtype)
    parts = min(n, threads_for(n * c * window.kh * window.kw * window.oh * window.ow))
    blas_on_one_thread()
    _forward.run(parts, x.reshape(-1), W.reshape(-1), b, y.reshape(-1), n, c, f, window_ints(window),
                 activation == "relu", x.dtype.type(0))
    check_overflow("conv2d", y, x, W, b)
    if activation in ("sigmoid", "tanh"):
        numpy.copyto(y, apply_activation(activation, y, alpha))
    return y, x


def conv2d_backward(dy, saved, W, window, into, input_grad=True, activation=None, y=None, alpha=1.0):
    """dW and db added into `into` = (dW, db); returns dx (N, C, H, W), or None without input_grad. `saved` is what
    conv2d returned beside y. With an activation (the forward's phi and its output y), dy is the gradient of y and
    dv = dy * phi'(v) comes first (for ReLU at stride 1 inside the kernel, as the forward applies it)."""
    stride_one = (window.sh, window.sw) == (1, 1)
    relu = activation == "relu" and stride_one
    if activation is not None and not relu:
        dy = activation_backward(activation, y, dy, alpha)
    dW, db = into
    dy, saved, W = real_arrays("conv2d_backward", dy, saved, W)
    real_arrays("conv2d_backward", W, dW, db)
    n, f = dy.shape[0], W.shape[0]
    if dy.shape != (n, f, window.oh, window.ow) or dW.shape != W.shape or db.shape != (f,) or \
            not (dW.flags.c_contiguous and db.flags.c_contiguous):
        raise ValueError(f"conv2d_backward: dy {tuple(dy.shape)}, dW {tuple(dW.shape)} and db {tuple(db.shape)} "
                         f"do not fit W {tuple(W.shape)} and a {window.oh}x{window.ow} output")
    if not stride_one:
        return _strided_backward(dy, saved, W, window, into, input_grad)
    if relu:
        _, y = real_arrays("conv2d_backward", dy, y)      # y of dy's dtype, as every other input
        if y.shape != dy.shape:
            raise ValueError(f"conv2d_backward: y has shape {tuple(y.shape)}, dy {tuple(dy.shape)}")
    x = saved
    c = x.shape[1]
    dx = numpy.empty(x.shape if input_grad else 0, dtype=x.dtype)
    blocks = min(n, SUM_BLOCKS)
    depth = c * window.kh * window.kw
    dW_parts, db_parts = numpy.zeros((blocks, depth * f), dtype=dW.dtype), numpy.zeros((blocks, f), dtype=db.dtype)
    threads_for(min(blocks * GRAIN, n * depth * window.oh * window.ow))
    blas_on_one_thread()
    real = dy.dtype.type
    _backward.run(blocks, x.reshape(-1), W.reshape(-1), dy.reshape(-1), (y if relu else dy[:0]).reshape(-1),
                  dx.reshape(-1), dW_parts, db_parts, n, c, f, window_ints(window), bool(input_grad), relu, real(0),
                  real(1))
    dW.reshape(f, depth)[...] += dW_parts.reshape(blocks, depth, f).sum(axis=0).T      # the blocks in block order
    db += db_parts.sum(axis=0)
    return dx if input_grad else None


def _strided_backward(dy, col, W, window, into, input_grad):
    """conv2d_backward from the col: dW = sum_n dy_n col_n^T, db = the sums of dy, dx = col2im(W^T dy)."""
    n, f = dy.shape[:2]
    positions = window.oh * window.ow
    dy3, col3, W2 = dy.reshape(n, f, positions), col.reshape(n, -1, positions), W.reshape(f, -1)
    per_sample = gemm("N", "T", dy3, col3, numpy.empty((n,) + W2.shape, dtype=W.dtype))
    sum_axes(per_sample, into=into[0].reshape(-1))
    sum_axes(dy3, into=into[1], inner=positions)
    if not input_grad:
        return None
    return col2im(gemm("T", "N", W2, dy3, numpy.empty(col3.shape, dtype=dy.dtype)).reshape(col.shape), window)
