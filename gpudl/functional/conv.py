"""2-D convolution (cross-correlation, NCHW) through im2col and one matrix product.

im2col unrolls every kernel window into a column: col[n, c, i, j, oh, ow] = x_padded[n, c, oh*sh + i, ow*sw + j].
Then y[n, f, :] = W[f, :] @ col[n, :, :] + b[f], with W flattened to (F, C*KH*KW) and col to (N, C*KH*KW, OH*OW).
col2im is the adjoint: each image cell receives the sum of the column entries that read it.
"""
import numpy

from .. import kernels
from ..backend import get_array_module
from ..geometry import blank_padded, output_hw, padded, unpadded, window_views
from .dispatch import on_kernel_path
from .threads import parallel_chunks


def _buffer(reuse, shape, dtype):
    """`reuse` when it is a C-contiguous numpy array of this shape and dtype, else a new empty one."""
    if isinstance(reuse, numpy.ndarray) and reuse.shape == shape and reuse.dtype == dtype and \
            reuse.flags.c_contiguous:
        return reuse
    return numpy.empty(shape, dtype=dtype)


def _im2col_into(col, x, kh, kw, sh, sw, pads, fill):
    oh, ow = col.shape[4:]
    for k, view in window_views(padded(x, pads, fill), kh, kw, sh, sw, oh, ow):
        col[:, :, k // kw, k % kw] = view


def _im2col_xp(x, kh, kw, sh, sw, pads, fill, out=None):
    n, c, h, w = x.shape
    oh, ow = output_hw(h, w, kh, kw, sh, sw, pads)
    col = _buffer(out, (n, c, kh, kw, oh, ow), x.dtype)
    parallel_chunks(n, lambda start, stop: _im2col_into(col[start:stop], x[start:stop], kh, kw, sh, sw, pads, fill),
                    col[0].size)
    return col


def _col2im_xp(col, h, w, sh, sw, pads):
    n, c, kh, kw, oh, ow = col.shape
    img = blank_padded((n, c, h, w), pads, numpy, col.dtype)

    def fold(start, stop):
        for k, view in window_views(img[start:stop], kh, kw, sh, sw, oh, ow):
            view += col[start:stop, :, k // kw, k % kw]
    parallel_chunks(n, fold, col[0].size)
    return unpadded(img, h, w, pads)


def im2col(x, kh, kw, sh, sw, pads, fill=0.0):
    """Unroll the windows of x (N, C, H, W) into col (N, C, KH, KW, OH, OW).

    pads = (top, bottom, left, right); padded cells read `fill` (0 for convolution, -inf for max pooling).
    """
    if on_kernel_path(x):
        return kernels.im2col(x, kh, kw, sh, sw, pads, fill)
    return _im2col_xp(x, kh, kw, sh, sw, pads, fill)


def col2im(col, h, w, sh, sw, pads):
    """Fold col (N, C, KH, KW, OH, OW) back to an image (N, C, H, W), summing overlapping windows."""
    if on_kernel_path(col):
        return kernels.col2im(col, h, w, sh, sw, pads)
    return _col2im_xp(col, h, w, sh, sw, pads)


# The input gradient of a stride-1 convolution, on the NumPy path, by "row strips": the padded image is laid out as
# flat rows of pitch WP (the padded width), img (N, C, (HP + 1) * WP). Window offset (i, j) covers the contiguous strip
# img[n, c, o : o + T], o = i*WP + j, T = OH*WP, with output cell (oh, ow) at t = oh*WP + ow; the WP - OW entries
# per row past OW are wasted columns whose gradients are zero. So col2im's KH*KW strided adds with OW-long rows
# become contiguous adds of T-long strips, and computing the strips one kernel row at a time into a reused buffer
# never allocates a col-sized dcol (fresh pages cost more than the arithmetic here).
def _strip_geometry(x_shape, kh, kw, pads):
    """Padded height and width (HP, WP), output size (OH, OW), and the strip length T = OH * WP."""
    top, bottom, left, right = pads
    hp, wp = x_shape[2] + top + bottom, x_shape[3] + left + right
    oh, ow = output_hw(x_shape[2], x_shape[3], kh, kw, 1, 1, pads)
    return hp, wp, oh, ow, oh * wp


def _conv2d_dx_strips(dy, W, dx, pads):
    """dx of a stride-1 convolution by row strips, one kernel row at a time (no col-sized dcol), written into dx."""
    n, f, oh, ow = dy.shape
    _, c, kh, kw = W.shape
    hp, wp, _, _, t = _strip_geometry(dx.shape, kh, kw, pads)
    dy_strips = numpy.zeros((n, f, oh, wp), dtype=dy.dtype)        # zero on the wasted columns
    dy_strips[..., :ow] = dy
    dy3 = dy_strips.reshape(n, f, t)
    img = numpy.zeros((n, c, (hp + 1) * wp), dtype=dx.dtype)
    part = numpy.empty((n, c * kw, t), dtype=dx.dtype)
    rows = part.reshape(n, c, kw, t)
    for i in range(kh):
        numpy.matmul(W[:, :, i, :].reshape(f, c * kw).T, dy3, out=part)
        for j in range(kw):
            img[:, :, i * wp + j:i * wp + j + t] += rows[:, :, j]
    dx[...] = img.reshape(n, c, hp + 1, wp)[:, :, pads[0]:pads[0] + dx.shape[2], pads[2]:pads[2] + dx.shape[3]]


def _conv2d_xp(x, W, b, stride, pads, col):
    """The NumPy path of conv2d: im2col and the product sample by sample, the batch split over the threads."""
    n = x.shape[0]
    f, _, kh, kw = W.shape
    oh, ow = output_hw(x.shape[2], x.shape[3], kh, kw, stride[0], stride[1], pads)
    col = _buffer(col, (n, x.shape[1], kh, kw, oh, ow), x.dtype)
    y = numpy.empty((n, f, oh * ow), dtype=numpy.result_type(x, W))
    W2 = W.reshape(f, -1)

    def forward(start, stop):
        _im2col_into(col[start:stop], x[start:stop], kh, kw, stride[0], stride[1], pads, 0.0)
        numpy.matmul(W2, col[start:stop].reshape(stop - start, -1, oh * ow), out=y[start:stop])
        y[start:stop] += b.reshape(1, f, 1)
    parallel_chunks(n, forward, col[0].size)
    return y.reshape(n, f, oh, ow), col


def _conv2d_backward_xp(dy, col, W, x_shape, stride, pads, input_grad):
    """The NumPy path of conv2d_backward, the per-sample products split over the threads (same sums as unsplit)."""
    n, f, oh, ow = dy.shape
    dtype = numpy.result_type(dy, W)
    dy3 = dy.reshape(n, f, oh * ow)
    col3 = col.reshape(n, -1, oh * ow)
    per_sample = numpy.empty((n, col3.shape[1], f), dtype=dtype)
    strips = input_grad and tuple(stride) == (1, 1)        # contiguous adds, no col-sized dcol
    folds = input_grad and not strips
    dx = numpy.empty(x_shape, dtype=dtype) if strips else None
    dcol = numpy.empty(col3.shape, dtype=dtype) if folds else None

    def backward(start, stop):
        # col3 @ dy3^T, summed over the batch below: no transposed copy of col, and the faster order for BLAS
        numpy.matmul(col3[start:stop], dy3[start:stop].transpose(0, 2, 1), out=per_sample[start:stop])
        if strips:
            _conv2d_dx_strips(dy[start:stop], W, dx[start:stop], pads)
        elif folds:
            numpy.matmul(W.reshape(f, -1).T, dy3[start:stop], out=dcol[start:stop])
    parallel_chunks(n, backward, col3[0].size)
    dW = per_sample.sum(axis=0).T.reshape(W.shape)
    db = dy3.sum(axis=(0, 2))
    if folds:
        dx = _col2im_xp(dcol.reshape(col.shape), x_shape[2], x_shape[3], stride[0], stride[1], pads)
    return dx, dW, db


def conv2d(x, W, b, stride, pads, col=None):
    """Forward: y (N, F, OH, OW) and the col it was computed from (kept for the backward).

    col: the col of an earlier call that is no longer needed; the NumPy path writes into it when its shape and dtype
    fit (a layer reuses its buffer from step to step).
    """
    if not on_kernel_path(x):
        return _conv2d_xp(x, W, b, stride, pads, col)
    xp = get_array_module(x)
    f, _, kh, kw = W.shape
    col = im2col(x, kh, kw, stride[0], stride[1], pads)
    n, _, _, _, oh, ow = col.shape
    # one batched GEMM (W shared by the batch), one bias launch
    y = kernels.gemm("N", "N", W.reshape(f, -1), col.reshape(n, -1, oh * ow), xp.empty((n, f, oh * ow), dtype=x.dtype))
    return kernels.add_bias(y, b, inner=oh * ow).reshape(n, f, oh, ow), col


def conv2d_backward(dy, col, W, x_shape, stride, pads, into=None, input_grad=True):
    """Backward: dx (N, C, H, W), dW (F, C, KH, KW), db (F,).

    into=(dW_acc, db_acc): add dW and db into these (a layer's .grad) and return them in their place.
    input_grad=False: dx is not computed (None); dW and db are the same.
    """
    if on_kernel_path(dy):
        return _conv2d_backward_kernels(get_array_module(dy).ascontiguousarray(dy), col, W, x_shape, stride, pads,
                                        into, input_grad)
    dx, dW, db = _conv2d_backward_xp(dy, col, W, x_shape, stride, pads, input_grad)
    if into is not None:
        into[0][...] += dW
        into[1][...] += db
        dW, db = into
    return dx, dW, db


def _conv2d_backward_kernels(dy, col, W, x_shape, stride, pads, into, input_grad):
    """The kernel path of conv2d_backward: three batched GEMMs, two sums over the batch, and col2im (the last GEMM
    and col2im make dx, left out without input_grad)."""
    xp = get_array_module(dy)
    n, f, oh, ow = dy.shape
    dy3 = dy.reshape(n, f, oh * ow)
    col3 = col.reshape(n, -1, oh * ow)
    W2 = W.reshape(f, -1)
    if into is None:
        into = (xp.zeros_like(W), xp.zeros((f,), dtype=W.dtype))
    per_sample = kernels.gemm("N", "T", dy3, col3, xp.empty((n,) + W2.shape, dtype=W.dtype))   # dy_n col_n^T
    kernels.sum_axes(per_sample, into[0], accumulate=True)
    kernels.sum_axes(dy3, into[1], inner=oh * ow, accumulate=True)
    if not input_grad:
        return None, into[0], into[1]
    dcol = kernels.gemm("T", "N", W2, dy3, xp.empty(col3.shape, dtype=dy.dtype))
    dx = col2im(dcol.reshape(col.shape), x_shape[2], x_shape[3], stride[0], stride[1], pads)
    return dx, into[0], into[1]
