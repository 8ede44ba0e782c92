"""Matrix products on the kernel path: out = alpha op(a) op(b) + beta out, one cuBLAS GEMM (batched when 3-D).

Every product of a training step goes through `gemm`, and gemm through a cuBLAS handle of our own (CublasGemm),
called through ctypes (kernels/cublas.py), never through CuPy's wrappers, which refuse to run while a stream
captures a CUDA graph. The handle follows the current stream: when the stream changes, cublasSetStream_v2 binds it,
and cublasSetWorkspace_v2 gives it back our workspace (setting the stream resets cuBLAS to its own pool, which would
have to allocate inside a capture). So a step recorded as a CUDA graph (kernels/graph.py) holds its GEMMs too.

Row-major arrays are column-major transposes, so C = op(A) op(B) runs as C^T = op(B)^T op(A)^T: cuBLAS gets B
first, with the same transpose flags, and leading dimensions equal to each array's row length.

The tests' host target runs this same code over numpy arrays, on a stand-in for libcublas that computes with NumPy
and enforces cuBLAS's rules (tests/cuda_host/cublas.py).
"""
import ctypes
import os

import numpy

from ..backend import get_array_module
from .cublas import Cublas
from .loader import check_args

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
        get_blas(xp).gemm(transa, transb, a, b, out, alpha, beta)
    return out


def get_blas(xp):
    """The GEMM provider for arrays of xp on the current device (the tests' host target puts a CublasGemm over a
    stand-in library in its place)."""
    device = xp.cuda.runtime.getDevice()
    if device not in _handles:
        _handles[device] = CublasGemm(Cublas(_libcublas()), xp.empty(WORKSPACE_BYTES, dtype=xp.uint8),
                                      lambda: xp.cuda.get_current_stream().ptr)
    return _handles[device]


def address(array):
    """Where an array's first element lives: device memory for a cupy array, host memory for a numpy one."""
    return array.ctypes.data if isinstance(array, numpy.ndarray) else array.data.ptr


def _libcublas():
    """The libcublas CuPy loads, as a ctypes library (CuPy finds and loads it when its cublas module is first asked
    for; none of that module's functions is called)."""
    from cupy_backends.cuda.libs import cublas  # noqa: F401
    path = _loaded_library("libcublas.so")
    if path is None:
        raise RuntimeError("gemm: cannot find the libcublas CuPy loaded (no libcublas.so* in /proc/self/maps)")
    return ctypes.CDLL(path)


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
    """A cuBLAS handle of our own, bound to the current stream with our workspace, doing gemm's products.

    cublas: a kernels.cublas.Cublas; workspace: an array of at least 16 KiB on the handle's device, 256-byte aligned;
    current_stream(): the address of the stream the caller's work goes on.
    """

    def __init__(self, cublas, workspace, current_stream):
        self.cublas, self.workspace, self.current_stream = cublas, workspace, current_stream
        self.handle = cublas.create()
        self.stream = None          # the stream the handle is bound to

    def _bind(self):
        stream = self.current_stream()
        if stream != self.stream:
            self.cublas.set_stream(self.handle, stream)
            self.cublas.set_workspace(self.handle, address(self.workspace), self.workspace.nbytes)
            self.stream = stream

    def gemm(self, transa, transb, a, b, out, alpha, beta):
        """out = alpha op(a) op(b) + beta out, row-major (gemm checked the arguments)."""
        self._bind()
        m, n = out.shape[-2:]
        k = a.shape[-1] if transa == "N" else a.shape[-2]
        scalars = numpy.array([alpha, beta], dtype=out.dtype)      # host pointer mode: read during the call
        alpha_at, beta_at = scalars.ctypes.data, scalars.ctypes.data + scalars.itemsize
        head = (out.dtype, self.handle, transb, transa, n, m, k, alpha_at)
        if out.ndim == 2:
            self.cublas.gemm(*head, address(b), b.shape[-1], address(a), a.shape[-1], beta_at, address(out), n)
            return
        stride_a, stride_b = (x.shape[-1] * x.shape[-2] if x.ndim == 3 else 0 for x in (a, b))    # 0: shared
        self.cublas.gemm_strided_batched(*head, address(b), b.shape[-1], stride_b, address(a), a.shape[-1],
                                         stride_a, beta_at, address(out), n, m * n, out.shape[0])
