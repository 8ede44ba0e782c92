"""cuBLAS through ctypes: the few functions of the library that gpudl's GEMM calls, on a library object it is given.

CuPy's own wrappers (cupy_backends.cuda.libs.cublas) set the handle's stream before every call and refuse to do so
while the stream captures a CUDA graph (NotImplementedError), although cuBLAS itself can be captured. So gpudl calls
libcublas directly: `Cublas(ctypes.CDLL(path))` on the library CuPy loaded, or, in the tests, on a stand-in object
with the same function names and C conventions (tests/cuda_host/cublas.py). Every function is declared with its C
prototype (from cublas_api.h); every call's status is checked and a failure raises CublasError naming the call.

Conventions are cuBLAS's: column-major matrices, handles, streams and memory as addresses (ints), the scalars alpha
and beta read through host pointers when the call is made (the default pointer mode, so a captured GEMM keeps their
values).
"""
import ctypes

import numpy

OPERATIONS = {"N": 0, "T": 1}       # cublasOperation_t: CUBLAS_OP_N, CUBLAS_OP_T

STATUS_NAMES = {0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
                7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
                13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR",
                15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR"}

_handle, _ptr, _int, _int64 = ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
_GEMM = [_handle, _int, _int, _int, _int, _int, _ptr, _ptr, _int, _ptr, _int, _ptr, _ptr, _int]
_GEMM_STRIDED_BATCHED = [_handle, _int, _int, _int, _int, _int, _ptr, _ptr, _int, _int64, _ptr, _int, _int64, _ptr,
                         _ptr, _int, _int64, _int]

# Every function called, with its argument types; each returns cublasStatus_t (an int).
PROTOTYPES = {
    "cublasCreate_v2": [ctypes.POINTER(_handle)],               # (cublasHandle_t *handle)
    "cublasDestroy_v2": [_handle],
    "cublasSetStream_v2": [_handle, _ptr],                      # (handle, cudaStream_t)
    "cublasSetWorkspace_v2": [_handle, _ptr, ctypes.c_size_t],  # (handle, void *workspace, size_t bytes)
    # (handle, transa, transb, m, n, k, *alpha, *A, lda, *B, ldb, *beta, *C, ldc)
    "cublasSgemm_v2": _GEMM,
    "cublasDgemm_v2": _GEMM,
    # (handle, transa, transb, m, n, k, *alpha, *A, lda, strideA, *B, ldb, strideB, *beta, *C, ldc, strideC, batch)
    "cublasSgemmStridedBatched": _GEMM_STRIDED_BATCHED,
    "cublasDgemmStridedBatched": _GEMM_STRIDED_BATCHED,
}


class CublasError(RuntimeError):
    """A cuBLAS call returned a status other than CUBLAS_STATUS_SUCCESS."""


class Cublas:
    """The functions of PROTOTYPES on `library` (a ctypes.CDLL of libcublas, or an object with the same functions),
    declared once; each method calls one and checks its status."""

    def __init__(self, library):
        self.library = library
        self.functions = {}
        for name, argtypes in PROTOTYPES.items():
            function = getattr(library, name)
            function.argtypes, function.restype = argtypes, ctypes.c_int
            self.functions[name] = function

    def call(self, name, *args):
        """library.name(*args), or CublasError naming the call and its status."""
        status = self.functions[name](*args)
        if status != 0:
            raise CublasError(f"{name} failed: {STATUS_NAMES.get(status, 'unknown status')} ({status})")

    def create(self):
        """A new handle on the current device (its address)."""
        handle = _handle()
        self.call("cublasCreate_v2", ctypes.byref(handle))
        return handle.value

    def destroy(self, handle):
        self.call("cublasDestroy_v2", handle)

    def set_stream(self, handle, stream):
        """Run the handle's later calls on `stream` (an address; 0 is the legacy default stream). cuBLAS also gives
        the handle back its default workspace pool: set the workspace again after this."""
        self.call("cublasSetStream_v2", handle, stream)

    def set_workspace(self, handle, address, nbytes):
        """Let the handle's calls use the `nbytes` of device memory at `address` (aligned to 256 bytes) instead of
        allocating their own, which a capture cannot do safely."""
        self.call("cublasSetWorkspace_v2", handle, address, nbytes)

    def gemm(self, dtype, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        """C = alpha op(A) op(B) + beta C, column-major, C m x n, op(A) m x k; dtype float32 (S) or float64 (D)."""
        self.call(f"cublas{_letter(dtype)}gemm_v2", handle, OPERATIONS[transa], OPERATIONS[transb], m, n, k,
                  alpha, a, lda, b, ldb, beta, c, ldc)

    def gemm_strided_batched(self, dtype, handle, transa, transb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b,
                             beta, c, ldc, stride_c, batch):
        """`batch` GEMMs, the i-th on A + i stride_a, B + i stride_b, C + i stride_c (strides in elements)."""
        self.call(f"cublas{_letter(dtype)}gemmStridedBatched", handle, OPERATIONS[transa], OPERATIONS[transb],
                  m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch)


def _letter(dtype):
    """cuBLAS's type letter: S for float32, D for float64."""
    letters = {numpy.dtype(numpy.float32): "S", numpy.dtype(numpy.float64): "D"}
    if numpy.dtype(dtype) not in letters:
        raise TypeError(f"cuBLAS GEMM: no routine for dtype {numpy.dtype(dtype)}; expected float32 or float64")
    return letters[numpy.dtype(dtype)]
