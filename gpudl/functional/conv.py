"""2-D convolution (cross-correlation, NCHW) through im2col and one matrix product, over a geometry.Window.

im2col unrolls every kernel window into a column: col[n, c, i, j, oh, ow] = x_padded[n, c, oh*sh + i, ow*sw + j].
Then y[n, f, :] = W[f, :] @ col[n, :, :] + b[f], with W flattened to (F, C*KH*KW) and col to (N, C*KH*KW, OH*OW).
col2im is the adjoint: each image cell receives the sum of the column entries that read it.

The NumPy path computes stride-1 convolutions (the common case) from "row strips" of the padded image instead, in
blocks of samples (see below); the kernel path and other strides use im2col as above.
"""
from typing import Any, NamedTuple

import numpy

from ..backend import get_array_module
from ..geometry import Window, blank_padded, padded, unpadded, window_views
from .activations import activate, activate_backward, check_fusable
from .dispatch import kernels_for
from .threads import parallel_chunks


class ConvSaved(NamedTuple):
    """What conv2d_backward needs of its forward: the window, the input's shape, and the unrolled input as the path
    that ran the forward keeps it (the col on the kernel path and at other strides, the strip image at stride 1 on
    the NumPy path)."""
    window: Window
    x_shape: tuple
    unrolled: Any


def _im2col_into(col, x, window, fill):
    for k, view in window_views(padded(x, window, fill), window):
        col[:, :, k // window.kw, k % window.kw] = view


def _im2col_xp(x, window, fill):
    n, c = x.shape[:2]
    col = numpy.empty((n, c, window.kh, window.kw, window.oh, window.ow), dtype=x.dtype)
    parallel_chunks(n, lambda start, stop: _im2col_into(col[start:stop], x[start:stop], window, fill), col[0].size)
    return col


def _col2im_xp(col, window):
    n, c = col.shape[:2]
    img = blank_padded(n, c, window, numpy, col.dtype)

    def fold(start, stop):
        for k, view in window_views(img[start:stop], window):
            view += col[start:stop, :, k // window.kw, k % window.kw]
    parallel_chunks(n, fold, col[0].size)
    return unpadded(img, window)


def im2col(x, window, fill=0.0):
    """Unroll the windows of x (N, C, H, W) into col (N, C, KH, KW, OH, OW); padded cells read `fill` (0 for
    convolution, -inf for max pooling)."""
    kernels = kernels_for(x)
    if kernels is not None:
        return kernels.im2col(x, window, fill)
    return _im2col_xp(x, window, fill)


def col2im(col, window):
    """Fold col (N, C, KH, KW, OH, OW) back to an image (N, C, H, W), summing overlapping windows."""
    kernels = kernels_for(col)
    if kernels is not None:
        return kernels.col2im(col, window)
    return _col2im_xp(col, window)


# A stride-1 convolution on the NumPy path works on "row strips": the padded image is laid out as flat rows of pitch
# WP (the padded width), img (N, C, S) with S = (HP + 1) * WP. Window offset (i, j) covers the contiguous strip
# img[n, c, o : o + T], o = i*WP + j, T = OH*WP, with output cell (oh, ow) at t = oh*WP + ow; the WP - OW entries per
# row past OW are wasted columns (their outputs are dropped, their gradients are zero). NumPy then copies and adds
# T-long contiguous strips instead of OW-long rows, which costs far less than the wasted columns add to the products.
# The batch is worked through in blocks of a few samples, each block's strip col (m, C, KH, KW, T) built, multiplied
# and dropped while it is still in the core's cache; the backward rebuilds it from img, which the forward keeps.
BLOCK_ELEMENTS = 1 << 17    # strip col entries per block: a block's col stays in a core's L2 cache


class _Strips:
    """The geometry of a stride-1 convolution's strips, and the blocks of samples worked on at a time."""

    def __init__(self, x_shape, window):
        n, c = x_shape[:2]
        self.kh, self.kw, self.top, self.left = window.kh, window.kw, window.top, window.left
        self.hp, self.wp = window.padded_hw
        self.oh, self.ow = window.oh, window.ow
        self.t, self.s = self.oh * self.wp, (self.hp + 1) * self.wp
        self.depth = c * self.kh * self.kw                  # rows of a sample's col: (c, i, j)
        self.block = max(1, min(n, BLOCK_ELEMENTS // (self.depth * self.t)))
        self.blocks = -(-n // self.block)
        self.work = self.block * self.depth * self.t        # a block's elements, for parallel_chunks' grain

    def samples(self, index, n):
        """The samples (start, stop) of block `index`."""
        return index * self.block, min(n, (index + 1) * self.block)

    def image(self, x):
        """x zero-padded into flat rows of pitch WP, (N, C, S): a spare zero row, so every strip fits."""
        n, c, h, w = x.shape
        img = numpy.zeros((n, c, self.s), dtype=x.dtype)
        img.reshape(n, c, -1, self.wp)[:, :, self.top:self.top + h, self.left:self.left + w] = x
        return img

    def windows(self, img):
        """The read-only view v (N, C, KH, KW, T) of img with v[n, c, i, j, t] = img[n, c, i*WP + j + t]."""
        sn, sc, unit = img.strides
        return numpy.lib.stride_tricks.as_strided(img, (img.shape[0], img.shape[1], self.kh, self.kw, self.t),
                                                  (sn, sc, self.wp * unit, unit, unit), writeable=False)

    def crop(self, wide, m):
        """The (m, K, OH, OW) cells of a wide (m, K, OH*WP) array: its wasted columns dropped."""
        return wide.reshape(m, -1, self.oh, self.wp)[..., :self.ow]


def _conv2d_strips(x, W, b, window):
    """The NumPy path of a stride-1 conv2d, block by block, the blocks split over the threads; returns y and img.

    The bias rides in the product: W gets b as one more column and every col a row of ones."""
    n, f = x.shape[0], W.shape[0]
    strips = _Strips(x.shape, window)
    img = strips.image(x)
    windows = strips.windows(img)
    y = numpy.empty((n, f, strips.oh, strips.ow), dtype=numpy.result_type(x, W))
    W_b = numpy.concatenate([W.reshape(f, -1), b.reshape(f, 1)], axis=1)

    def forward(first, last):
        col = numpy.empty((strips.block, strips.depth + 1, strips.t), dtype=x.dtype)
        col[:, strips.depth] = 1
        wide = numpy.empty((strips.block, f, strips.t), dtype=y.dtype)
        for index in range(first, last):
            start, stop = strips.samples(index, n)
            m = stop - start
            col[:m, :strips.depth].reshape(windows[start:stop].shape)[...] = windows[start:stop]
            numpy.matmul(W_b, col[:m], out=wide[:m])
            y[start:stop] = strips.crop(wide[:m], m)
    parallel_chunks(strips.blocks, forward, strips.work)
    return y, img


def _conv2d_strips_backward(dy, img, W, x_shape, window, input_grad):
    """The NumPy path of a stride-1 conv2d_backward from img, block by block (the blocks split over the threads):
    dW sums the per-sample products over the batch, the same sums for every thread count.

    dx by kernel rows: rows[(i, c), u] = sum_{j, f} W[f, c, i, j] dy[f, u - j] (dy in strip positions, zero
    outside) is one product of W, its columns in (j, f) order, with dy shifted by 0..KW-1, and dx in strip
    positions is the sum over i of rows[i] moved down i*WP: KH contiguous adds instead of KH*KW."""
    n, f = dy.shape[:2]
    strips = _Strips(x_shape, window)
    kh, kw, t = strips.kh, strips.kw, strips.t
    windows = strips.windows(img)
    dtype = numpy.result_type(dy, W)
    per_sample = numpy.empty((n, strips.depth, f), dtype=dtype)
    dx = numpy.empty(x_shape, dtype=dtype) if input_grad else None
    c = x_shape[1]
    W_rows = W.transpose(2, 1, 3, 0).reshape(kh * c, kw * f)
    reach = t + kw - 1                                          # the positions u a kernel row's sum reaches

    def backward(first, last):
        col = numpy.empty((strips.block, strips.depth, t), dtype=img.dtype)
        # dy in strip positions after KW - 1 zeros and before KW - 1 more: (m, F, T + 2(KW - 1)); only the cells of
        # dy are ever written, every other entry stays zero
        padded = numpy.zeros((strips.block, f, t + 2 * (kw - 1)), dtype=dtype)
        shifted = numpy.empty((strips.block, kw, f, reach), dtype=dtype) if input_grad else None
        rows = numpy.zeros((kh * c, strips.block, strips.s), dtype=dtype) if input_grad else None
        for index in range(first, last):
            start, stop = strips.samples(index, n)
            m = stop - start
            col[:m].reshape(windows[start:stop].shape)[...] = windows[start:stop]
            wide = padded[:m, :, kw - 1:kw - 1 + t]
            strips.crop(wide, m)[...] = dy[start:stop]
            # col @ dy^T, summed over the batch below: no transposed copy of col
            numpy.matmul(col[:m], wide.transpose(0, 2, 1), out=per_sample[start:stop])
            if input_grad:
                # shifted[s, j, f, u] = dy[s, f, u - j]: one copy of a view stepping back one entry per j
                unit = padded.itemsize
                shifted[:m] = numpy.lib.stride_tricks.as_strided(
                    padded[:m, :, kw - 1:], (m, kw, f, reach), (padded.strides[0], -unit, padded.strides[1], unit),
                    writeable=False)
                block_rows = rows if m == strips.block else numpy.zeros((kh * c, m, strips.s), dtype=dtype)
                numpy.matmul(W_rows, shifted[:m].reshape(m, kw * f, reach),
                             out=block_rows[:, :, :reach].transpose(1, 0, 2))
                _fold_rows(block_rows, dx[start:stop], strips)
    parallel_chunks(strips.blocks, backward, strips.work)
    return dx, per_sample.sum(axis=0).T.reshape(W.shape), dy.sum(axis=(0, 2, 3))


def _fold_rows(rows, dx, strips):
    """dx of a block from its kernel rows' sums (KH*C, m, S): row i added at i*WP down the strip image, then cropped.

    The image is one flat row, channel after channel, each of m*S entries; a kernel row's sums for every channel
    are one flat row too, so each add is a single contiguous one. The entries of rows past T + KW - 1 in every S
    are zero: what they add into the next sample or channel changes nothing."""
    m, c, h, w = dx.shape
    length = c * m * strips.s
    rows = rows.reshape(strips.kh, length)
    img = numpy.zeros(length + strips.s, dtype=dx.dtype)
    for i in range(strips.kh):
        img[i * strips.wp:i * strips.wp + length] += rows[i]
    dx[...] = img[:length].reshape(c, m, -1, strips.wp)[:, :, strips.top:strips.top + h,
                                                        strips.left:strips.left + w].transpose(1, 0, 2, 3)


def _conv2d_xp(x, W, b, window):
    """The NumPy path of conv2d: im2col and the product sample by sample, the batch split over the threads; returns
    y and the col (the strip image at stride 1)."""
    if (window.sh, window.sw) == (1, 1):
        return _conv2d_strips(x, W, b, window)
    n, f = x.shape[0], W.shape[0]
    positions = window.oh * window.ow
    col = numpy.empty((n, x.shape[1], window.kh, window.kw, window.oh, window.ow), dtype=x.dtype)
    y = numpy.empty((n, f, positions), dtype=numpy.result_type(x, W))
    W2 = W.reshape(f, -1)

    def forward(start, stop):
        _im2col_into(col[start:stop], x[start:stop], window, 0.0)
        numpy.matmul(W2, col[start:stop].reshape(stop - start, -1, positions), out=y[start:stop])
        y[start:stop] += b.reshape(1, f, 1)
    parallel_chunks(n, forward, col[0].size)
    return y.reshape(n, f, window.oh, window.ow), col


def _conv2d_backward_xp(dy, saved, W, input_grad):
    """The NumPy path of conv2d_backward, the per-sample products split over the threads (same sums as unsplit)."""
    window = saved.window
    if (window.sh, window.sw) == (1, 1):
        return _conv2d_strips_backward(dy, saved.unrolled, W, saved.x_shape, window, input_grad)
    n, f = dy.shape[:2]
    positions = window.oh * window.ow
    dtype = numpy.result_type(dy, W)
    dy3 = dy.reshape(n, f, positions)
    col3 = saved.unrolled.reshape(n, -1, positions)
    per_sample = numpy.empty((n, col3.shape[1], f), dtype=dtype)
    dcol = numpy.empty(col3.shape, dtype=dtype) if input_grad else None

    def backward(start, stop):
        numpy.matmul(col3[start:stop], dy3[start:stop].transpose(0, 2, 1), out=per_sample[start:stop])
        if input_grad:
            numpy.matmul(W.reshape(f, -1).T, dy3[start:stop], out=dcol[start:stop])
    parallel_chunks(n, backward, col3[0].size)
    dW = per_sample.sum(axis=0).T.reshape(W.shape)
    db = dy3.sum(axis=(0, 2))
    dx = _col2im_xp(dcol.reshape(saved.unrolled.shape), window) if input_grad else None
    return dx, dW, db


def conv2d(x, W, b, window):
    """Forward: y (N, F, OH, OW) = W * x + b over `window`, and the ConvSaved that conv2d_backward reads."""
    kernels = kernels_for(x)
    if kernels is not None:
        y, col = kernels.conv2d(x, W, b, window)
    else:
        y, col = _conv2d_xp(x, W, b, window)
    return y, ConvSaved(window, tuple(x.shape), col)


def conv2d_backward(dy, saved, W, into=None, input_grad=True):
    """Backward: (dx (N, C, H, W), dW (F, C, KH, KW), db (F,)) from dy and what conv2d saved.

    into=(dW_acc, db_acc): add dW and db into these (a layer's .grad) and return them in their place.
    input_grad=False: dx is not computed (None); dW and db are the same.
    """
    kernels = kernels_for(dy)
    if kernels is not None:
        if into is None:
            xp = get_array_module(W)
            into = (xp.zeros_like(W), xp.zeros((W.shape[0],), dtype=W.dtype))
        dx = kernels.conv2d_backward(dy, saved.unrolled, W, saved.window, into, input_grad)
        return dx, into[0], into[1]
    dx, dW, db = _conv2d_backward_xp(dy, saved, W, input_grad)
    if into is not None:
        into[0][...] += dW
        into[1][...] += db
        dW, db = into
    return dx, dW, db


def conv2d_activation(x, W, b, window, activation, alpha=1.0):
    """y = phi(W * x + b), phi the activation named `activation` (functional.FUSABLE; sigmoid with its alpha): a
    convolution and the activation after it, and the ConvSaved of conv2d. On the kernel path the bias and phi are one
    launch after the GEMM."""
    kernels = kernels_for(x)
    if kernels is not None:
        y, col = kernels.conv2d(x, W, b, window, check_fusable(activation), alpha)
        return y, ConvSaved(window, tuple(x.shape), col)
    y, saved = conv2d(x, W, b, window)
    return activate(activation, y, alpha), saved


def conv2d_activation_backward(dy, saved, W, y, activation, alpha=1.0, into=None, input_grad=True):
    """The backward of conv2d_activation from its output y and dy = dL/dy: dv = dy * phi'(v), then conv2d_backward's
    (dx, dW, db) of dv (into= and input_grad= as there). On the kernel path dv and db are one pass (reduce.cu)."""
    kernels = kernels_for(dy)
    if kernels is not None:
        if into is None:
            xp = get_array_module(W)
            into = (xp.zeros_like(W), xp.zeros((W.shape[0],), dtype=W.dtype))
        dx = kernels.conv2d_backward(dy, saved.unrolled, W, saved.window, into, input_grad,
                                     check_fusable(activation), y, alpha)
        return dx, into[0], into[1]
    return conv2d_backward(activate_backward(activation, y, dy, alpha), saved, W, into, input_grad)
