"""2-D convolution (cross-correlation, NCHW) through im2col and one matrix product, over a geometry.Window.

im2col unrolls every kernel window into a column: col[n, c, i, j, oh, ow] = x_padded[n, c, oh*sh + i, ow*sw + j].
Then y[n, f, :] = W[f, :] @ col[n, :, :] + b[f], with W flattened to (F, C*KH*KW) and col to (N, C*KH*KW, OH*OW).
col2im is the adjoint: each image cell receives the sum of the column entries that read it. The backward:
dW = sum_n dy_n col_n^T, db = the sums of dy over the batch and positions, dx = col2im(W^T dy).

Each op runs the kernels of its array (dispatch.kernels_for: CUDA, or the CPU's) and else the NumPy reference here.
"""
from typing import Any, NamedTuple

import numpy

from ..backend import get_array_module
from ..geometry import Window, blank_padded, padded, unpadded, window_views
from .activations import activate, activate_backward, check_fusable
from .dispatch import kernels_for


class ConvSaved(NamedTuple):
    """What conv2d_backward needs of its forward: the window, the input's shape, and what the code that ran the
    forward keeps for its backward (`unrolled`: the col for the CUDA kernels and the reference, x itself for the CPU
    kernels, which rebuild each sample's col in cache)."""
    window: Window
    x_shape: tuple
    unrolled: Any


def _im2col_reference(x, window, fill):
    col = numpy.empty(x.shape[:2] + (window.kh, window.kw, window.oh, window.ow), dtype=x.dtype)
    for k, view in window_views(padded(x, window, fill), window):
        col[:, :, k // window.kw, k % window.kw] = view
    return col


def _col2im_reference(col, window):
    img = blank_padded(*col.shape[:2], window, numpy, col.dtype)
    for k, view in window_views(img, window):
        view += col[:, :, k // window.kw, k % window.kw]
    return unpadded(img, window)


def im2col(x, window, fill=0.0):
    """Unroll the windows of x (N, C, H, W) into col (N, C, KH, KW, OH, OW); padded cells read `fill` (0 for
    convolution, -inf for max pooling)."""
    kernels = kernels_for(x)
    if kernels is not None:
        return kernels.im2col(x, window, fill)
    return _im2col_reference(x, window, fill)


def col2im(col, window):
    """Fold col (N, C, KH, KW, OH, OW) back to an image (N, C, H, W), summing overlapping windows."""
    kernels = kernels_for(col)
    if kernels is not None:
        return kernels.col2im(col, window)
    return _col2im_reference(col, window)


def _conv2d_reference(x, W, b, window):
    n, f = x.shape[0], W.shape[0]
    col = _im2col_reference(x, window, 0.0)
    y = W.reshape(f, -1) @ col.reshape(n, -1, window.oh * window.ow) + b.reshape(f, 1)
    return y.reshape(n, f, window.oh, window.ow), col


def _conv2d_backward_reference(dy, col, W, window, input_grad):
    n, f = dy.shape[:2]
    dy3, W2 = dy.reshape(n, f, -1), W.reshape(f, -1)
    col3 = col.reshape(n, W2.shape[1], -1)
    dW = (dy3 @ col3.transpose(0, 2, 1)).sum(axis=0).reshape(W.shape)
    dx = _col2im_reference((W2.T @ dy3).reshape(col.shape), window) if input_grad else None
    return dx, dW, dy3.sum(axis=(0, 2))


def conv2d(x, W, b, window):
    """Forward: y (N, F, OH, OW) = W * x + b over `window`, and the ConvSaved that conv2d_backward reads."""
    kernels = kernels_for(x)
    if kernels is not None:
        y, col = kernels.conv2d(x, W, b, window)
    else:
        y, col = _conv2d_reference(x, W, b, window)
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
    dx, dW, db = _conv2d_backward_reference(dy, saved.unrolled, W, saved.window, input_grad)
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
