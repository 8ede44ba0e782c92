"""Matrix products on the CPU: out = alpha op(a) op(b) + beta out through NumPy's own BLAS, called from the kernels.

The kernels call CBLAS's sgemm/dgemm of the BLAS library NumPy loaded (found through threadpoolctl, bound by name for
LLVM), not Numba's np.dot, which calls another build. One pool of threads does all the work: the products are split
over Numba's threads in fixed pieces (rows or columns), and NumPy's BLAS is set to one thread from the first product
on, so that BLAS threads never compete with Numba's (blas_on_one_thread says why).
The pieces are fixed by the product's shape whatever the thread count, so results do not depend on it.
"""
import ctypes
import os

import llvmlite.binding
import numpy
from numba import types

from .loader import GRAIN, MAX_THREADS, check_overflow, inline, part, real_arrays, set_up_cache, threads_for

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
BLOCK_ROWS = 32             # rows (or columns) of a product per piece, at least: enough for BLAS's blocked kernels


def numpy_blas():
    """threadpoolctl's controller of the BLAS NumPy loaded (not PyTorch's or another library's), or None."""
    from threadpoolctl import ThreadpoolController
    numpy_dir = os.path.dirname(os.path.dirname(numpy.__file__))
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and lib.filepath.startswith(numpy_dir) and \
                os.path.basename(os.path.dirname(lib.filepath)).startswith("numpy"):
            return lib
    return None


# (prefix, suffix, integer type): OpenBLAS as NumPy ships it (scipy-openblas, ILP64), then the plain CBLAS names
_NAMINGS = (("scipy_cblas_", "64_", types.int64), ("cblas_", "64_", types.int64), ("scipy_cblas_", "", types.int32),
            ("cblas_", "", types.int32))
_THREAD_CALLS = ("scipy_openblas_{}_num_threads64_", "openblas_{}_num_threads64_", "scipy_openblas_{}_num_threads",
                 "openblas_{}_num_threads")


def _bind():
    """Bind NumPy's CBLAS sgemm and dgemm for LLVM (as gpudl_sgemm, gpudl_dgemm); returns (library, symbol naming,
    BLAS integer type, get/set of its thread count or None), or raises ImportError."""
    controller = numpy_blas()
    if controller is None:
        raise ImportError("threadpoolctl finds no BLAS library loaded by NumPy")
    library = ctypes.CDLL(controller.filepath)
    for prefix, suffix, integer in _NAMINGS:
        if all(hasattr(library, f"{prefix}{t}gemm{suffix}") for t in "sd"):
            for t in "sd":
                function = getattr(library, f"{prefix}{t}gemm{suffix}")
                llvmlite.binding.add_symbol(f"gpudl_{t}gemm", ctypes.cast(function, ctypes.c_void_p).value)
            break
    else:
        raise ImportError(f"NumPy's BLAS ({controller.filepath}) has no CBLAS sgemm/dgemm that gpudl knows")
    threads = None
    for name in _THREAD_CALLS:
        if hasattr(library, name.format("get")) and hasattr(library, name.format("set")):
            get, put = getattr(library, name.format("get")), getattr(library, name.format("set"))
            put.argtypes, put.restype, get.restype = (ctypes.c_int,), None, ctypes.c_int
            threads = (get, put)
            break
    return controller.filepath, f"{prefix}gemm{suffix}", integer, threads


LIBRARY, NAMING, _INT, _BLAS_THREADS = _bind()
set_up_cache(f"{LIBRARY} {NAMING}")


def _gemm_signature(real):
    pointer, enum = types.uintp, types.int32
    return types.void(enum, enum, enum, _INT, _INT, _INT, real, pointer, _INT, pointer, _INT, real, pointer, _INT)


_sgemm = types.ExternalFunction("gpudl_sgemm", _gemm_signature(types.float32))
_dgemm = types.ExternalFunction("gpudl_dgemm", _gemm_signature(types.float64))


@inline
def gemm_at(trans_a, trans_b, m, n, k, alpha, a, a_offset, lda, b, b_offset, ldb, beta, c, c_offset, ldc):
    """C = alpha op(A) op(B) + beta C for the m x n block of C at element c_offset of c (row-major, leading dimension
    ldc), A and B at their offsets of a and b: one CBLAS call on the calling thread."""
    ta, tb = TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS
    if c.itemsize == 4:
        _sgemm(ROW_MAJOR, ta, tb, m, n, k, alpha, a.ctypes.data + 4 * a_offset, lda, b.ctypes.data + 4 * b_offset,
               ldb, beta, c.ctypes.data + 4 * c_offset, ldc)
    else:
        _dgemm(ROW_MAJOR, ta, tb, m, n, k, alpha, a.ctypes.data + 8 * a_offset, lda, b.ctypes.data + 8 * b_offset,
               ldb, beta, c.ctypes.data + 8 * c_offset, ldc)


def blas_on_one_thread():
    """Set NumPy's BLAS to one thread, and leave it so: the kernels' threads call it, and its own threads must not run
    beside them, not even between two kernels. OpenBLAS's threads spin for about 0.1 s after every product they share
    (its thread timeout), so one NumPy product of a few hundred thousand multiply-adds made a kernel of two threads on
    two cores 400 times slower than alone (RESULTS.md). Numba's threads do all the parallel work instead."""
    if _BLAS_THREADS is not None:
        get, put = _BLAS_THREADS
        if get() != 1:
            put(1)


def split(m, n, k):
    """How a product of m x n outputs over k splits into fixed pieces: (pieces, by_rows). One piece for a product too
    small to share; else one per core of this machine (Numba's pool, at most 8), each of at least BLOCK_ROWS rows or
    as many columns, cut the way that makes BLAS pack the fewest operand cells: every piece packs its own part of one
    operand and all of the other (rows: all of B, columns: all of A). The pieces depend on the shape and the machine,
    not on the thread count: OpenBLAS's bits depend on how a product is cut."""
    if m * n * k < 1 << 18:
        return 1, True
    most = min(8, MAX_THREADS)
    rows, columns = max(1, min(most, m // BLOCK_ROWS)), max(1, min(most, n // BLOCK_ROWS))
    by_rows = rows * k * n + m * k <= columns * m * k + k * n
    return (rows if by_rows else columns), by_rows


@part
def _gemm(task, tasks, trans_a, trans_b, a, b, out, alpha, beta, a_batched, b_batched, pieces, by_rows):
    batch, m, n = out.shape
    k = a.shape[1] if trans_a else a.shape[2]
    lda, ldb = a.shape[2], b.shape[2]
    a_step, b_step = a.shape[1] * a.shape[2] * a_batched, b.shape[1] * b.shape[2] * b_batched
    p, q = task // pieces, task % pieces
    if by_rows:
        first, last = q * m // pieces, (q + 1) * m // pieces
        a_at = p * a_step + (first if trans_a else first * lda)
        gemm_at(trans_a, trans_b, last - first, n, k, alpha, a, a_at, lda, b, p * b_step, ldb, beta,
                out, (p * m + first) * n, n)
    else:
        first, last = q * n // pieces, (q + 1) * n // pieces
        b_at = p * b_step + (first * ldb if trans_b else first)
        gemm_at(trans_a, trans_b, m, last - first, k, alpha, a, p * a_step, lda, b, b_at, ldb, beta,
                out, p * m * n + first, n)


def gemm(transa, transb, a, b, out, alpha=1.0, beta=0.0):
    """out = alpha op(a) op(b) + beta out in place (op: 'N' as is, 'T' transposed); returns out.

    2-D, or 3-D batched (a 2-D operand is shared by every product of the batch); a, b and out C-contiguous.
    """
    for name, trans in (("a", transa), ("b", transb)):
        if trans not in ("N", "T"):
            raise ValueError(f"gemm: trans{name} must be 'N' or 'T', got {trans!r}")
    if out.ndim not in (2, 3) or not out.flags.c_contiguous:
        raise ValueError(f"gemm: out must be C-contiguous, 2-D or 3-D, got shape {tuple(out.shape)}")
    a, b = real_arrays("gemm", a, b, out)[:2]
    batch = out.shape[0] if out.ndim == 3 else 1
    a3, b3 = (x.reshape((1,) * (3 - x.ndim) + x.shape) for x in (a, b))
    m, n = out.shape[-2:]
    k = a3.shape[1] if transa == "T" else a3.shape[2]
    rows_a = a3.shape[2] if transa == "T" else a3.shape[1]
    k_b, cols_b = (b3.shape[2], b3.shape[1]) if transb == "T" else (b3.shape[1], b3.shape[2])
    if rows_a != m or cols_b != n or k_b != k or any(x.shape[0] not in (1, batch) for x in (a3, b3)):
        raise ValueError(f"gemm: op(a) of {tuple(a.shape)} ({transa}) times op(b) of {tuple(b.shape)} ({transb}) "
                         f"does not fit out of {tuple(out.shape)}")
    if out.size == 0:
        return out
    if k == 0:
        out *= beta
        return out
    pieces, by_rows = split(m, n, k)
    blas_on_one_thread()
    if pieces == 1 and alpha == 1 and beta in (0, 1):
        # too small to share: NumPy calls the same BLAS (on one thread) without a kernel's call overhead
        product = numpy.matmul(a.swapaxes(-1, -2) if transa == "T" else a, b.swapaxes(-1, -2) if transb == "T" else b)
        if beta:
            out += product
        else:
            out[...] = product
    else:
        threads_for(batch * pieces * GRAIN)
        _gemm.run(batch * pieces, transa == "T", transb == "T", a3, b3, out.reshape(batch, m, n),
                  out.dtype.type(alpha), out.dtype.type(beta), int(a3.shape[0] > 1), int(b3.shape[0] > 1), pieces,
                  by_rows)
    check_overflow("gemm", out, a, b)
    return out
