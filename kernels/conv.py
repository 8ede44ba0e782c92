"""2-D convolution on the kernel path, one call each way: im2col (im2col.cu), one batched GEMM (cuBLAS) and the
bias with an activation (elementwise.cu) forward; the activation's backward with the bias gradient (reduce.cu), two
GEMMs, the sum of the per-sample weight gradients (reduce.cu) and col2im backward."""
from ..backend import get_array_module
from .blas import gemm
from .elementwise import bias_activation
from .im2col import col2im, im2col
from .loader import real_input
from .reduce import activation_backward_sum, sum_axes


def conv2d(x, W, b, window, activation=None, alpha=1.0):
    """y (N, F, OH, OW) = phi(W * x + b) over `window` (phi: None, the identity, or an activation of
    elementwise.ACTIVATIONS), and the col (N, C, KH, KW, OH, OW) the backward reads."""
    xp = get_array_module(x)
    col = im2col(x, window)
    n, f, positions = x.shape[0], W.shape[0], window.oh * window.ow
    y = gemm("N", "N", W.reshape(f, -1), col.reshape(n, -1, positions), xp.empty((n, f, positions), dtype=x.dtype))
    return bias_activation(y, b, activation, alpha, inner=positions).reshape(n, f, window.oh, window.ow), col


def conv2d_backward(dy, col, W, window, into, input_grad=True, activation=None, y=None, alpha=1.0):
    """dW and db added into `into` = (dW, db); returns dx (N, C, H, W), or None without input_grad.

    With an activation (the forward's phi, and its output y), dy is the gradient of y: dv = dy * phi'(v) comes first,
    in one pass with db. dW = sum_n dv_n col_n^T, db = sum of dv over the batch and positions, dcol = W^T dv,
    dx = col2im(dcol).
    """
    dy = real_input(dy, "conv2d_backward: dy", 4)
    xp = get_array_module(dy)
    n, f = dy.shape[:2]
    positions = window.oh * window.ow
    if activation is None:
        dy3 = dy.reshape(n, f, positions)
        sum_axes(dy3, into=into[1], inner=positions)
    else:
        dy3 = activation_backward_sum(activation, y, dy, alpha, into=into[1], inner=positions).reshape(n, f, positions)
    col3, W2 = col.reshape(n, -1, positions), W.reshape(f, -1)
    per_sample = gemm("N", "T", dy3, col3, xp.empty((n,) + W2.shape, dtype=W.dtype))
    sum_axes(per_sample, into=into[0])
    if not input_grad:
        return None
    dcol = gemm("T", "N", W2, dy3, xp.empty(col3.shape, dtype=dy.dtype))
    return col2im(dcol.reshape(col.shape), window)
