"""2-D convolution on the kernel path, one call each way: im2col (im2col.cu), one batched GEMM (cuBLAS) and the
bias (elementwise.cu) forward; two GEMMs, the sums over the batch (reduce.cu) and col2im backward."""
from ..backend import get_array_module
from .blas import gemm
from .elementwise import add_bias
from .im2col import col2im, im2col
from .loader import real_input
from .reduce import sum_axes


def conv2d(x, W, b, window):
    """y (N, F, OH, OW) = W * x + b over `window`, and the col (N, C, KH, KW, OH, OW) the backward reads."""
    xp = get_array_module(x)
    col = im2col(x, window)
    n, f, positions = x.shape[0], W.shape[0], window.oh * window.ow
    y = gemm("N", "N", W.reshape(f, -1), col.reshape(n, -1, positions), xp.empty((n, f, positions), dtype=x.dtype))
    return add_bias(y, b, inner=positions).reshape(n, f, window.oh, window.ow), col


def conv2d_backward(dy, col, W, window, into, input_grad=True):
    """dW and db added into `into` = (dW, db); returns dx (N, C, H, W), or None without input_grad.

    dW = sum_n dy_n col_n^T, db = sum of dy over the batch and positions, dcol = W^T dy, dx = col2im(dcol).
    """
    dy = real_input(dy, "conv2d_backward: dy", 4)
    xp = get_array_module(dy)
    n, f = dy.shape[:2]
    positions = window.oh * window.ow
    dy3, col3, W2 = dy.reshape(n, f, positions), col.reshape(n, -1, positions), W.reshape(f, -1)
    per_sample = gemm("N", "T", dy3, col3, xp.empty((n,) + W2.shape, dtype=W.dtype))
    sum_axes(per_sample, into=into[0])
    sum_axes(dy3, into=into[1], inner=positions)
    if not input_grad:
        return None
    dcol = gemm("T", "N", W2, dy3, xp.empty(col3.shape, dtype=dy.dtype))
    return col2im(dcol.reshape(col.shape), window)
