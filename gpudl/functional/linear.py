"""The fully connected layer: y_j = sum_i x_i w_ij + b_j, for a batch of rows x."""
import functools
import importlib

from ..backend import get_array_module
from .dispatch import on_kernel_path


def dense(x, W, b):
    """y = x W + b, with x (N, in), W (in, out), b (out,)."""
    return x @ W + b


def dense_backward(x, W, dy):
    """Gradients of y = x W + b: dx = dy W^T, dW = x^T dy, db = sum over the batch of dy."""
    return dy @ W.T, x.T @ dy, dy.sum(axis=0)


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
    out += x @ W
    return out
