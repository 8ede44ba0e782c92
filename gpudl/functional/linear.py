"""The fully connected layer: y_j = sum_i x_i w_ij + b_j, for a batch of rows x; and the matrix products of the
layers above, split over the threads on the NumPy path."""
import functools
import importlib

import numpy

from ..backend import get_array_module
from .dispatch import on_kernel_path
from .threads import parallel_chunks


def _row_cost(a, b):
    """Elements' worth of work per row of a @ b (a product row costs K*M multiply-adds, ~1/16 of an element's pass
    each on a vectorized core), for parallel_chunks' grain."""
    return max(1, a.shape[1] * b.shape[1] // 16)


def matmul(a, b):
    """a @ b for 2-D a (N, K), b (K, M). On the NumPy path the rows of a are split over the threads, each row
    computed by the same BLAS product as without threads."""
    if on_kernel_path(a) or a.ndim != 2 or b.ndim != 2:
        return a @ b
    out = numpy.empty((a.shape[0], b.shape[1]), dtype=numpy.result_type(a, b))
    parallel_chunks(a.shape[0], lambda start, stop: numpy.matmul(a[start:stop], b, out=out[start:stop]),
                    _row_cost(a, b))
    return out


def dense(x, W, b):
    """y = x W + b, with x (N, in), W (in, out), b (out,)."""
    y = matmul(x, W)
    if y.dtype != numpy.result_type(y, b):
        return y + b
    y += b
    return y


def dense_backward(x, W, dy):
    """Gradients of y = x W + b: dx = dy W^T, dW = x^T dy, db = sum over the batch of dy."""
    return matmul(dy, W.T), matmul(x.T, dy), dy.sum(axis=0)


@functools.lru_cache(maxsize=None)
def _cublas(xp):
    """cupy.cublas, a submodule that `import cupy` does not load."""
    return importlib.import_module(xp.__name__ + ".cublas")


def matmul_add(x, W, out):
    """out += x W in place, for x (N, K), W (K, M) (a transposed view such as W.T works too), out (N, M).

    On the GPU this is one cuBLAS GEMM with beta = 1 (out = x W + 1 * out) instead of a product, a temporary and
    an addition; recurrent layers add h_{t-1} W_h into each step's pre-activations this way. out must be
    C-contiguous and of x's dtype; returns out.
    """
    if x.ndim != 2 or W.ndim != 2 or out.ndim != 2 or x.shape[1] != W.shape[0] or \
            tuple(out.shape) != (x.shape[0], W.shape[1]):
        raise ValueError(f"matmul_add: cannot add x {tuple(x.shape)} @ W {tuple(W.shape)} into out "
                         f"{tuple(out.shape)}")
    xp = get_array_module(out)
    if not (x.dtype == W.dtype == out.dtype and get_array_module(x) is xp and get_array_module(W) is xp):
        raise TypeError(f"matmul_add: x, W and out must be arrays of one module and dtype, got "
                        f"{', '.join(f'{get_array_module(v).__name__} {v.dtype}' for v in (x, W, out))}")
    if not out.flags.c_contiguous:
        raise ValueError(f"matmul_add: out of shape {tuple(out.shape)} must be C-contiguous")
    if on_kernel_path(out):
        return _cublas(xp).gemm("N", "N", x, W, out=out, alpha=1.0, beta=1.0)
    def add_rows(start, stop):
        out[start:stop] += x[start:stop] @ W
    parallel_chunks(x.shape[0], add_rows, _row_cost(x, W))
    return out
