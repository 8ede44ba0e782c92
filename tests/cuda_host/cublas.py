"""A stand-in for libcublas on the host, so that gpudl's cuBLAS binding (kernels/cublas.py) and GEMM (kernels/blas.py)
run their real code over numpy arrays.

StandInCublas has the functions gpudl calls, as C functions: ctypes callbacks with cuBLAS's prototypes (from
cublas_api.h), so the binding's declarations convert the arguments as they would for libcublas, and a declaration
that differs from the prototype is refused. Memory is addressed as on a GPU (host addresses stand for device ones),
matrices are column-major with leading dimensions, alpha and beta are read through host pointers when the call is
made (CUBLAS_POINTER_MODE_HOST). A GEMM's product is computed with NumPy as the stream's work: through
gpudl.kernels.loader.run, so while a step is recorded it goes onto the tape, like the launches around it.

The rules of cuBLAS it keeps (a call that breaks one returns cuBLAS's status, and `refusals` says why):
- a handle must come from cublasCreate_v2 and not be destroyed (CUBLAS_STATUS_NOT_INITIALIZED);
- m, n, k, the batch count >= 0, lda >= max(1, rows of A as stored), the same for B and C, transposes N, T or C,
  a workspace aligned to 256 bytes (CUBLAS_STATUS_INVALID_VALUE);
- cublasSetStream_v2 gives the handle back cuBLAS's own workspace pool (cuBLAS's documentation of
  cublasSetWorkspace); a GEMM captured on a handle without a workspace of its own (at least 16 KiB, the size cuBLAS
  names) would allocate from that pool inside the capture, which cuBLAS's notes on CUDA graphs advise against and
  gpudl never does: CUBLAS_STATUS_ALLOC_FAILED here;
- the work goes on the handle's stream, which must be the caller's current stream (tests/cuda_host/capture.py): a
  GEMM on another stream would run outside the capture, or race the launches around it
  (CUBLAS_STATUS_EXECUTION_FAILED).
"""
import ctypes

import numpy
from gpudl.kernels import loader

from . import capture

SUCCESS, NOT_INITIALIZED, ALLOC_FAILED, INVALID_VALUE, EXECUTION_FAILED, INTERNAL_ERROR, NOT_SUPPORTED = \
    0, 1, 3, 7, 13, 14, 15
WORKSPACE_ALIGNMENT, WORKSPACE_MINIMUM = 256, 16 * 1024

_h, _p, _i, _i64 = ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
_GEMM = (_h, _i, _i, _i, _i, _i, _p, _p, _i, _p, _i, _p, _p, _i)
_GEMM_STRIDED = (_h, _i, _i, _i, _i, _i, _p, _p, _i, _i64, _p, _i, _i64, _p, _p, _i, _i64, _i)
PROTOTYPES = {      # cublas_api.h (cuBLAS 12/13): every function returns cublasStatus_t
    "cublasCreate_v2": (ctypes.POINTER(_h),),
    "cublasDestroy_v2": (_h,),
    "cublasSetStream_v2": (_h, _p),
    "cublasSetWorkspace_v2": (_h, _p, ctypes.c_size_t),
    "cublasSgemm_v2": _GEMM,
    "cublasDgemm_v2": _GEMM,
    "cublasSgemmStridedBatched": _GEMM_STRIDED,
    "cublasDgemmStridedBatched": _GEMM_STRIDED,
}
ELEMENTS = {"S": numpy.dtype(numpy.float32), "D": numpy.dtype(numpy.float64)}
OP_N, OP_T, OP_C = 0, 1, 2

# NumPy's own functions, as they were before a test's capture guard wrapped them: this is the device's arithmetic.
_matmul, _empty = numpy.matmul, numpy.empty


class Refused(Exception):
    def __init__(self, status, why):
        super().__init__(why)
        self.status = status


def aligned_workspace(nbytes):
    """A uint8 numpy array of nbytes whose address is a multiple of 256, as cuBLAS wants a workspace."""
    raw = _empty(nbytes + WORKSPACE_ALIGNMENT, dtype=numpy.uint8)
    start = -raw.ctypes.data % WORKSPACE_ALIGNMENT
    return raw[start:start + nbytes]


def _matrices(address, dtype, rows, cols, ld, batch=None, stride=0):
    """The column-major rows x cols matrix (leading dimension ld) at `address`, or `batch` of them `stride` elements
    apart, as a NumPy view of that memory; shape (rows, cols) or (batch, rows, cols)."""
    item = dtype.itemsize
    if rows == 0 or cols == 0:
        return _empty((rows, cols) if batch is None else (batch, rows, cols), dtype=dtype)
    count = 1 if batch is None else batch
    extent = (ld * (cols - 1) + rows) + stride * (count - 1)
    memory = numpy.frombuffer((ctypes.c_char * (extent * item)).from_address(address), dtype=dtype)
    shape, strides = (rows, cols), (item, ld * item)
    if batch is not None:
        shape, strides = (batch,) + shape, (stride * item,) + strides
    return numpy.lib.stride_tricks.as_strided(memory, shape, strides)


class StandInCublas:
    """libcublas's GEMM functions on the host (see the module docstring); `calls` counts the calls by name."""

    def __init__(self):
        self.handles = {}           # handle -> {"stream": address, "workspace": (address, bytes) or None}
        self.refusals = []          # why each refused call was refused, oldest first
        self.calls = {}
        self._next_handle = 0x1000
        for name, argtypes in PROTOTYPES.items():
            prototype = ctypes.CFUNCTYPE(ctypes.c_int, *argtypes)
            setattr(self, name, prototype(self._entry(name, argtypes)))

    def _entry(self, name, argtypes):
        """The C entry point `name`: checks the caller's declaration, runs the method, returns a status; nothing
        raises through the C boundary (ctypes would print the error and return garbage)."""
        method = getattr(self, "_" + name)

        def entry(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            try:
                declared = getattr(self, name)
                if tuple(declared.argtypes or ()) != argtypes or declared.restype is not ctypes.c_int:
                    raise Refused(NOT_SUPPORTED, f"{name} was declared with argtypes {declared.argtypes} and restype "
                                                 f"{declared.restype}, not cuBLAS's prototype {argtypes} -> c_int")
                method(*args)
                return SUCCESS
            except Refused as refusal:
                self.refusals.append(f"{name}: {refusal}")
                return refusal.status
            except Exception as exc:    # noqa: BLE001  a bug of the stand-in: visible, never a silent success
                self.refusals.append(f"{name}: {type(exc).__name__}: {exc}")
                return INTERNAL_ERROR
        return entry

    def _state(self, handle):
        if handle not in self.handles:
            raise Refused(NOT_INITIALIZED, f"handle {handle} was not made by cublasCreate_v2 (or was destroyed)")
        return self.handles[handle]

    def _cublasCreate_v2(self, handle_out):
        handle, self._next_handle = self._next_handle, self._next_handle + 0x10
        self.handles[handle] = {"stream": capture.DEFAULT_STREAM, "workspace": None}
        handle_out[0] = handle

    def _cublasDestroy_v2(self, handle):
        self._state(handle)
        del self.handles[handle]

    def _cublasSetStream_v2(self, handle, stream):
        state = self._state(handle)
        state["stream"], state["workspace"] = stream or 0, None     # cuBLAS resets the workspace to its pool

    def _cublasSetWorkspace_v2(self, handle, address, nbytes):
        state = self._state(handle)
        if (address or 0) % WORKSPACE_ALIGNMENT:
            raise Refused(INVALID_VALUE, f"the workspace at {address:#x} is not aligned to {WORKSPACE_ALIGNMENT} bytes")
        state["workspace"] = (address or 0, nbytes)

    def _cublasSgemm_v2(self, *args):
        self._gemm("S", *args)

    def _cublasDgemm_v2(self, *args):
        self._gemm("D", *args)

    def _cublasSgemmStridedBatched(self, *args):
        self._gemm_strided_batched("S", *args)

    def _cublasDgemmStridedBatched(self, *args):
        self._gemm_strided_batched("D", *args)

    def _gemm(self, letter, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        self._gemm_strided_batched(letter, handle, transa, transb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc,
                                   0, None)

    def _gemm_strided_batched(self, letter, handle, transa, transb, m, n, k, alpha, a, lda, stride_a, b, ldb,
                              stride_b, beta, c, ldc, stride_c, batch):
        """C_i = alpha op(A_i) op(B_i) + beta C_i for each of `batch` products (batch None: one, unbatched)."""
        state = self._state(handle)
        self._check_sizes(transa, transb, m, n, k, lda, ldb, ldc, batch)
        self._check_stream_and_workspace(state)
        dtype = ELEMENTS[letter]
        scalar = ctypes.c_float if letter == "S" else ctypes.c_double
        alpha, beta = scalar.from_address(alpha).value, scalar.from_address(beta).value    # read now: host mode
        if m == 0 or n == 0 or batch == 0:
            return
        stored_a = (m, k) if transa == OP_N else (k, m)
        stored_b = (k, n) if transb == OP_N else (n, k)
        A = _matrices(a, dtype, *stored_a, lda, batch, stride_a)
        B = _matrices(b, dtype, *stored_b, ldb, batch, stride_b)
        C = _matrices(c, dtype, m, n, ldc, batch, stride_c)
        # In NumPy's row-major frame: C^T = op(B)^T op(A)^T, every view then a plain or transposed row-major matrix.
        op_a_t = A.swapaxes(-1, -2) if transa == OP_N else A
        op_b_t = B.swapaxes(-1, -2) if transb == OP_N else B
        c_t = C.swapaxes(-1, -2)
        scratch = None if (alpha == 1 and beta == 0) else _empty(c_t.shape, dtype=dtype)
        loader.run(_product, op_b_t, op_a_t, c_t, alpha, beta, scratch)

    @staticmethod
    def _check_sizes(transa, transb, m, n, k, lda, ldb, ldc, batch):
        if transa not in (OP_N, OP_T, OP_C) or transb not in (OP_N, OP_T, OP_C):
            raise Refused(INVALID_VALUE, f"transa {transa} / transb {transb}: not a cublasOperation_t")
        if min(m, n, k) < 0 or (batch is not None and batch < 0):
            raise Refused(INVALID_VALUE, f"negative size: m {m}, n {n}, k {k}, batch {batch}")
        for name, ld, rows in (("lda", lda, m if transa == OP_N else k), ("ldb", ldb, k if transb == OP_N else n),
                               ("ldc", ldc, m)):
            if ld < max(1, rows):
                raise Refused(INVALID_VALUE, f"{name} {ld} < max(1, {rows}) (m {m}, n {n}, k {k})")

    @staticmethod
    def _check_stream_and_workspace(state):
        current = capture.current_stream()
        if state["stream"] != current:
            where = "outside the capture" if capture.capturing() else "racing the launches on the current stream"
            raise Refused(EXECUTION_FAILED, f"the handle's stream is {state['stream']:#x} but the caller's work "
                                            f"goes on {current:#x}: the GEMM would run {where} "
                                            f"(cublasSetStream_v2 with the current stream first)")
        workspace = state["workspace"]
        if capture.capturing() and (workspace is None or workspace[1] < WORKSPACE_MINIMUM):
            raise Refused(ALLOC_FAILED, "no workspace of the handle's own while the stream captures: cuBLAS would "
                                        "allocate inside the capture (cublasSetWorkspace_v2 after cublasSetStream_v2)")


def _product(op_b_t, op_a_t, c_t, alpha, beta, scratch):
    """The stream's work of one GEMM: c_t = alpha op_b_t op_a_t + beta c_t (beta 0 never reads c_t)."""
    if scratch is None:
        _matmul(op_b_t, op_a_t, out=c_t)
        return
    _matmul(op_b_t, op_a_t, out=scratch)
    if alpha != 1:
        scratch *= alpha
    if beta == 0:
        c_t[...] = scratch
    else:
        c_t *= beta
        c_t += scratch
