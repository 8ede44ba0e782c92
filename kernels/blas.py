"""Matrix products on the kernel path: out = alpha op(a) op(b) + beta out, one cuBLAS GEMM (batched when 3-D).

Every product of a training step goes through `gemm`, and gemm through the loader's `run`, the same seam as our
kernel launches, so a recorded step holds its GEMMs too (loader.recording). On a GPU the product runs through a
cuBLAS handle of our own, bound to the current stream at each call and given its own workspace: CuPy refuses its
cuBLAS handle while a stream is being captured into a CUDA graph, but cuBLAS itself can be captured, provided the
workspace exists before the capture. CuPy binds cublasCreate, cublasSetStream and the GEMMs, not
cublasSetWorkspace_v2, which we reach through ctypes in the libcublas CuPy loaded.

Row-major arrays are column-major transposes, so C = op(A) op(B) runs as C^T = op(B)^T op(A)^T: cuBLAS gets B
first, with the same transpose flags, and leading dimensions equal to each array's row length.
"""
import ctypes
import os

import numpy

from ..backend import get_array_module
from .loader import check_args, run

WORKSPACE_BYTES = 32 * 1024 * 1024      # cuBLAS's recommendation for Hopper
_handles = {}                           # device id -> CublasGemm


def _operand(what, name, a, trans, batch):
    """(rows, cols) of op(a), checking its rank against the batch (a 2-D operand is shared by every product)."""
    if trans not in ("N", "T"):
        raise ValueError(f"{what}: trans{name} must be 'N' or 'T', got {trans!r}")
    if a.ndim not in ((2, 3) if batch is not None else (2,)) or (a.ndim == 3 and a.shape[0] != batch):
        raise ValueError(f"{what}: {name} of shape {tuple(a.shape)} does not fit a product of batch {batch}")
    rows, cols = a.shape[-2:]
    return (rows, cols) if trans == "N" else (cols, rows)


def gemm(transa, transb, a, b, out, alpha=1.0, beta=0.0):
    """out = alpha op(a) op(b) + beta out in place (op: 'N' as is, 'T' transposed); returns out.

    2-D: a, b, out matrices. 3-D: out (B, M, N) is a batch of products; a and b are (B, ., .) or 2-D, shared by the
    batch. All C-contiguous, of one dtype (float32 or float64); beta = 0 never reads out.
    """
    what = "gemm"
    check_args(what, (a, b, out))
    batch = out.shape[0] if out.ndim == 3 else None
    if out.ndim not in (2, 3):
        raise ValueError(f"{what}: out must be 2-D or 3-D, got shape {tuple(out.shape)}")
    (m, k), (k2, n) = _operand(what, "a", a, transa, batch), _operand(what, "b", b, transb, batch)
    if k != k2 or tuple(out.shape[-2:]) != (m, n):
        raise ValueError(f"{what}: cannot multiply op(a) {(m, k)} by op(b) {(k2, n)} into out {tuple(out.shape)}")
    xp = get_array_module(out)
    if get_array_module(a) is not xp or get_array_module(b) is not xp:
        raise TypeError(f"{what}: a, b and out must be arrays of one module")
    if out.size:
        run(get_blas(xp).gemm, transa, transb, a, b, out, alpha, beta)
    return out


def get_blas(xp):
    """The GEMM provider for arrays of xp on the current device (the tests' host target stands in for it)."""
    device = xp.cuda.runtime.getDevice()
    if device not in _handles:
        _handles[device] = CublasGemm(xp)
    return _handles[device]


def _loaded_library(prefix):
    """The path of the shared library `prefix`* this process has loaded (Linux), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                path = line.split()[-1]
                if os.path.basename(path).startswith(prefix):
                    return path
    except OSError:
        pass
    return None


class CublasGemm:
    """A cuBLAS handle of our own on the current device, with a workspace set before any capture."""

    def __init__(self, xp):
        from cupy_backends.cuda.libs import cublas
        self.cublas, self.xp = cublas, xp
        self.handle = cublas.create()
        self.workspace = xp.empty(WORKSPACE_BYTES, dtype=xp.uint8)
        path = _loaded_library("libcublas.so")
        if path is None:
            raise RuntimeError("gemm: cannot find the libcublas CuPy loaded, to give our handle a workspace")
        status = ctypes.CDLL(path).cublasSetWorkspace_v2(ctypes.c_void_p(self.handle),
                                                         ctypes.c_void_p(self.workspace.data.ptr),
                                                         ctypes.c_size_t(WORKSPACE_BYTES))
        if status != 0:
            raise RuntimeError(f"gemm: cublasSetWorkspace_v2 failed with status {status}")
        self.ops = {"N": cublas.CUBLAS_OP_N, "T": cublas.CUBLAS_OP_T}

    def gemm(self, transa, transb, a, b, out, alpha, beta):
        cublas = self.cublas
        cublas.setStream(self.handle, self.xp.cuda.get_current_stream().ptr)
        m, n = out.shape[-2:]
        k = a.shape[-1] if transa == "N" else a.shape[-2]
        scalars = numpy.array([alpha, beta], dtype=out.dtype)      # host pointer mode: read at the call
        alpha_ptr, beta_ptr = scalars.ctypes.data, scalars.ctypes.data + scalars.itemsize
        single = out.dtype == numpy.float32
        head = (self.handle, self.ops[transb], self.ops[transa], n, m, k, alpha_ptr)
        if out.ndim == 2:
            (cublas.sgemm if single else cublas.dgemm)(
                *head, b.data.ptr, b.shape[-1], a.data.ptr, a.shape[-1], beta_ptr, out.data.ptr, n)
            return
        stride = lambda x: x.shape[-1] * x.shape[-2] if x.ndim == 3 else 0      # noqa: E731
        (cublas.sgemmStridedBatched if single else cublas.dgemmStridedBatched)(
            *head, b.data.ptr, b.shape[-1], stride(b), a.data.ptr, a.shape[-1], stride(a), beta_ptr, out.data.ptr,
            n, m * n, out.shape[0])
