"""The fully connected layer: y_j = sum_i x_i w_ij + b_j, for a batch of rows x; and the matrix products of the
layers above.

Where kernels run (dispatch.kernels_for) every product is one GEMM of the kernel set (cuBLAS through our own handle
on the GPU, so a step of a dense layer can be recorded and replayed; NumPy's BLAS split over the CPU kernels'
threads on the CPU) and the bias and its gradient one kernel each; elsewhere the NumPy reference runs.
"""
from ..backend import get_array_module, output_arrays
from . import dispatch
from .activations import activate, activate_backward, check_fusable
from .dispatch import kernels_for, on_kernel_path


def gemm_operand(a):
    """(array, 'N') for a C-contiguous matrix, (a.T, 'T') for a transposed view of one, else a C-contiguous copy."""
    if a.flags.c_contiguous:
        return a, "N"
    if a.ndim == 2 and a.flags.f_contiguous:
        return a.T, "T"
    return get_array_module(a).ascontiguousarray(a), "N"


def _gemm(a, b, out=None, beta=0.0):
    """out = a @ b (+ beta * out), 2-D, in one GEMM of the kernel set; a new out unless one is given."""
    (a, ta), (b, tb) = gemm_operand(a), gemm_operand(b)
    m = a.shape[0] if ta == "N" else a.shape[1]
    n = b.shape[1] if tb == "N" else b.shape[0]
    if out is None:
        out = get_array_module(a).empty((m, n), dtype=a.dtype)
    return kernels_for(out).gemm(ta, tb, a, b, out, 1.0, beta)


def matmul(a, b):
    """a @ b for 2-D a (N, K), b (K, M): one GEMM of the kernel set into a new array where kernels run."""
    if a.ndim == 2 and b.ndim == 2 and on_kernel_path(a):
        return _gemm(a, b)
    return a @ b


def dense(x, W, b, out=None):
    """y = x W + b, with x (N, in), W (in, out), b (out,).

    out: a C-contiguous (N, out) array of x's dtype and device to write y into (backend.output_arrays), else a new one.
    """
    if out is not None:
        (out,) = output_arrays("dense", (out,), ((x.shape[0], W.shape[1]),), x)
    kernels = kernels_for(x)
    if kernels is not None:
        return kernels.add_bias(_gemm(x, W, out=out), b)
    if out is None:
        return x @ W + b
    get_array_module(x).matmul(x, W, out=out)
    out += b
    return out


def dense_backward(x, W, dy, into=None, input_grad=True):
    """Gradients of y = x W + b: dx = dy W^T, dW = x^T dy, db = sum over the batch of dy.

    into=(dW_acc, db_acc): add dW and db into these (a layer's .grad) and return them in their place.
    input_grad=False: dx is not computed (None); dW and db are the same.
    """
    kernels = kernels_for(dy)
    if kernels is not None:
        dy = get_array_module(dy).ascontiguousarray(dy)
        if into is None:
            into = (get_array_module(W).zeros_like(W), get_array_module(W).zeros(W.shape[1], dtype=W.dtype))
        _gemm(x.T, dy, out=into[0], beta=1.0)
        kernels.sum_axes(dy, into=into[1])
        return _gemm(dy, W.T) if input_grad else None, into[0], into[1]
    dx = dy @ W.T if input_grad else None
    dW, db = x.T @ dy, dy.sum(axis=0)
    if into is not None:
        into[0][...] += dW
        into[1][...] += db
        dW, db = into
    return dx, dW, db


def dense_activation(x, W, b, activation, alpha=1.0):
    """y = phi(x W + b), phi the activation named `activation` (functional.FUSABLE; sigmoid with its alpha): a dense
    layer and the activation after it. On the kernel path the bias and phi are one launch after the GEMM."""
    kernels = kernels_for(x)
    if kernels is not None:
        return kernels.bias_activation(_gemm(x, W), b, check_fusable(activation), alpha)
    return activate(activation, dense(x, W, b), alpha)


def dense_activation_backward(x, W, y, dy, activation, alpha=1.0, into=None, input_grad=True):
    """The backward of dense_activation from its output y and dy = dL/dy: dv = dy * phi'(v), then dense_backward's
    (dx, dW, db) of dv (into= and input_grad= as there). On the kernel path dv and db are one pass (reduce.cu)."""
    kernels = kernels_for(dy)
    if kernels is not None:
        xp = get_array_module(dy)
        if into is None:
            into = (xp.zeros_like(W), xp.zeros(W.shape[1], dtype=W.dtype))
        dv = kernels.activation_backward_sum(check_fusable(activation), y, dy, alpha, into=into[1])
        _gemm(x.T, dv, out=into[0], beta=1.0)
        return _gemm(dv, W.T) if input_grad else None, into[0], into[1]
    return dense_backward(x, W, activate_backward(activation, y, dy, alpha), into, input_grad)


def transpose_for_products(W):
    """W^T (2-D) for many products x W^T in a row, such as da_t W_h^T at every step of a recurrent backward.

    On the CUDA kernels the view itself, which cuBLAS reads as op T without a copy; on the CPU (kernels or reference)
    a C-contiguous copy, which NumPy's BLAS multiplies faster than the transposed view (one copy for the whole loop).
    """
    if dispatch.takes_kernel_path(W):
        return W.T
    return get_array_module(W).ascontiguousarray(W.T)


def matmul_add(x, W, out):
    """out += x W in place, for x (N, K), W (K, M) (a transposed view such as W.T works too), out (N, M).

    Where kernels run this is one GEMM with beta = 1 (out = x W + 1 * out) instead of a product, a temporary and
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
        return _gemm(x, W, out=out, beta=1.0)
    out += x @ W
    return out
