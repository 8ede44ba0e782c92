"""gpudl's cuBLAS binding (kernels/cublas.py) and GEMM (kernels/blas.py CublasGemm) on the host's stand-in libcublas
(tests/cuda_host/cublas.py), which keeps cuBLAS's rules; the products themselves are checked against NumPy for every
transpose and batch form in tests/test_kernels_step_ops.py, through the same code. Tier 3 (gpu): the same binding
on the libcublas CuPy loaded."""
import ctypes

import numpy
import pytest
from cuda_host import capture
from cuda_host.cublas import PROTOTYPES, StandInCublas, aligned_workspace
from cuda_host.fixtures import HOST_WORKSPACE_BYTES
from gpudl.kernels import blas, loader
from gpudl.kernels.blas import CublasGemm, address
from gpudl.kernels.cublas import Cublas, CublasError


def host_gemm(library=None, workspace_bytes=HOST_WORKSPACE_BYTES):
    library = library or StandInCublas()
    return library, CublasGemm(Cublas(library), aligned_workspace(workspace_bytes), capture.current_stream)


def product(gemm, dtype=numpy.float64, transa="N", transb="N", beta=0.0):
    rng = numpy.random.default_rng(0)
    a = rng.standard_normal((3, 4) if transa == "N" else (4, 3)).astype(dtype)
    b = rng.standard_normal((4, 5) if transb == "N" else (5, 4)).astype(dtype)
    out = numpy.ones((3, 5), dtype)
    gemm.gemm(transa, transb, a, b, out, 2.0, beta)
    want = 2.0 * (a if transa == "N" else a.T) @ (b if transb == "N" else b.T) + beta
    return out, want


def test_the_binding_declares_cublas_prototypes_and_checks_every_status():
    library = StandInCublas()
    Cublas(library)
    for name, argtypes in PROTOTYPES.items():
        function = getattr(library, name)
        assert tuple(function.argtypes) == argtypes and function.restype is ctypes.c_int, name
    cublas = Cublas(library)
    with pytest.raises(CublasError, match=r"cublasSetStream_v2 failed: CUBLAS_STATUS_NOT_INITIALIZED \(1\)"):
        cublas.set_stream(0xdead, 0)
    assert "handle 57005 was not made by cublasCreate_v2" in library.refusals[-1]


def test_a_declaration_that_differs_from_the_prototype_is_refused():
    library = StandInCublas()
    cublas = Cublas(library)
    handle = cublas.create()
    library.cublasSetStream_v2.argtypes = [ctypes.c_void_p, ctypes.c_int]      # a stream is a pointer, not an int
    with pytest.raises(CublasError, match="CUBLAS_STATUS_NOT_SUPPORTED"):
        cublas.set_stream(handle, 0)
    assert "not cuBLAS's prototype" in library.refusals[-1]


def test_a_handle_follows_the_current_stream_and_gets_its_workspace_back_after_each_change():
    library, gemm = host_gemm()
    for _ in range(2):
        out, want = product(gemm)
        numpy.testing.assert_allclose(out, want, rtol=1e-13)
    assert library.calls["cublasSetStream_v2"] == library.calls["cublasSetWorkspace_v2"] == 1
    state = library.handles[gemm.handle]
    assert state == {"stream": capture.DEFAULT_STREAM, "workspace": (address(gemm.workspace), HOST_WORKSPACE_BYTES)}
    with loader.recording() as tape:
        out, _ = product(gemm)
    assert len(tape) == 1 and library.calls["cublasSetStream_v2"] == library.calls["cublasSetWorkspace_v2"] == 2
    assert state["stream"] == capture.CAPTURE_STREAM
    assert (out == 1).all(), "recorded, not run"
    loader.replay(tape)
    numpy.testing.assert_allclose(out, want, rtol=1e-13)


def test_the_scalars_are_read_when_the_call_is_made_as_in_host_pointer_mode():
    _, gemm = host_gemm()
    a, b, out = numpy.eye(2), numpy.full((2, 2), 3.0), numpy.ones((2, 2))
    with loader.recording() as tape:
        gemm.gemm("N", "N", a, b, out, 0.5, 2.0)        # the scalars' host array is gone before the replay
    loader.replay(tape)
    numpy.testing.assert_array_equal(out, 0.5 * 3.0 + 2.0)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_beta_zero_never_reads_out(dtype):
    _, gemm = host_gemm()
    out = numpy.full((3, 5), numpy.nan, dtype)
    a, b = numpy.ones((3, 4), dtype), numpy.ones((4, 5), dtype)
    gemm.gemm("N", "N", a, b, out, 1.0, 0.0)
    numpy.testing.assert_array_equal(out, 4)


def test_cublas_refuses_what_cublas_refuses():
    library = StandInCublas()
    cublas = Cublas(library)
    handle = cublas.create()
    with pytest.raises(CublasError, match="cublasSetWorkspace_v2 failed: CUBLAS_STATUS_INVALID_VALUE"):
        cublas.set_workspace(handle, address(aligned_workspace(1024)) + 8, 1024)
    assert "not aligned to 256 bytes" in library.refusals[-1]
    a = numpy.ones((3, 4))
    scalars = numpy.array([1.0, 0.0])
    with pytest.raises(CublasError, match="cublasDgemm_v2 failed: CUBLAS_STATUS_INVALID_VALUE"):
        cublas.gemm(numpy.float64, handle, "N", "N", 3, 3, 4, scalars.ctypes.data, address(a), 2, address(a), 4,
                    scalars.ctypes.data + 8, address(a), 3)
    assert "lda 2 < max(1, 3)" in library.refusals[-1]
    cublas.destroy(handle)
    with pytest.raises(CublasError, match="CUBLAS_STATUS_NOT_INITIALIZED"):
        cublas.set_stream(handle, 0)
    with pytest.raises(TypeError, match="no routine for dtype float16"):
        cublas.gemm(numpy.float16, handle, "N", "N", 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1)


def test_a_gemm_on_a_stream_that_is_not_the_callers_is_refused():
    """A handle bound once and never again would run a captured step's GEMMs outside the capture."""
    library, gemm = host_gemm()
    product(gemm)
    gemm._bind = lambda: None           # as if the handle were never bound again
    with loader.recording(), pytest.raises(CublasError, match="CUBLAS_STATUS_EXECUTION_FAILED"):
        product(gemm)
    assert "the GEMM would run outside the capture" in library.refusals[-1]


def test_a_captured_gemm_needs_a_workspace_of_the_handles_own():
    """cublasSetStream_v2 gives the handle back cuBLAS's pool: without the workspace set again, cuBLAS would allocate
    inside the capture."""
    library, gemm = host_gemm()
    set_workspace = gemm.cublas.set_workspace
    gemm.cublas.set_workspace = lambda *args: None
    product(gemm)                                   # eager: the pool is fine
    with loader.recording(), pytest.raises(CublasError, match="CUBLAS_STATUS_ALLOC_FAILED"):
        product(gemm)
    assert "no workspace of the handle's own" in library.refusals[-1]
    _, small = host_gemm(library, workspace_bytes=4096)
    with loader.recording(), pytest.raises(CublasError, match="CUBLAS_STATUS_ALLOC_FAILED"):
        product(small)
    gemm.cublas.set_workspace = set_workspace
    gemm.stream = None
    with loader.recording():
        product(gemm)


@pytest.mark.gpu
def test_the_binding_runs_on_the_libcublas_cupy_loaded(cupy):
    """Tier 3: the handle of blas.get_blas, through ctypes, against cupy.matmul (outside any capture)."""
    gemm = blas.get_blas(cupy)
    assert isinstance(gemm.cublas.library, ctypes.CDLL)
    rng = numpy.random.default_rng(0)
    for dtype in (numpy.float32, numpy.float64):
        a, b = (cupy.asarray(rng.standard_normal(shape).astype(dtype)) for shape in ((3, 4), (5, 4)))
        out = cupy.ones((3, 5), dtype)
        gemm.gemm("N", "T", a, b, out, 2.0, 1.0)
        numpy.testing.assert_allclose(cupy.asnumpy(out), cupy.asnumpy(2 * a @ b.T + 1), rtol=1e-5)
    assert address(out) == out.data.ptr
