"""The `kernel_path` fixture: one test body runs through gpudl.kernels on two targets. tests/conftest.py registers
this module as a plugin, so every test module can ask for its fixtures by name.

"host": numpy arrays, the kernel path forced in gpudl.functional (its one seam, dispatch.takes_kernel_path), every
launch run by the host build of the .cu file (cuda_host.h + g++ + ctypes) on small grids, every GEMM by gpudl's own
cuBLAS code (kernels.blas, kernels.cublas) on a stand-in libcublas (cuda_host/cublas.py, `path.cublas`), and every
recorded step under the capture guard (cuda_host/capture.py, `path.guard`): what a GPU's stream capture refuses, the
host refuses while a step is recorded. "cupy": cupy arrays on a usable GPU (marked gpu; skipped without one). Tests
compute their NumPy references inside `with path.reference():`, where the host target lets numpy arrays take the
NumPy reference again (not the CPU kernels: the CUDA kernels are checked against the reference).
"""
import contextlib

import numpy
import pytest
from gpudl.kernels import blas, loader
from gpudl.kernels.blas import CublasGemm
from gpudl.kernels.cublas import Cublas

from gpudl.functional import dispatch

from . import capture
from .cublas import StandInCublas, aligned_workspace
from .host import HostKernels, compiler

SMALL_BLOCK, SMALL_GRID = 8, 3      # 24 threads per launch: fewer than the elements of almost every test array
HOST_WORKSPACE_BYTES = 64 * 1024    # the stand-in computes without it; cuBLAS wants 16 KiB at least


class HostPath:
    name = "host"
    xp = numpy

    def __init__(self, host_kernels):
        self.counter = host_kernels.counter
        self.forced = True

    def is_device_array(self, array):
        return self.forced and isinstance(array, numpy.ndarray)

    @contextlib.contextmanager
    def reference(self):
        self.forced, cpu_kernels = False, dispatch.use_cpu_kernels
        dispatch.use_cpu_kernels = False            # the NumPy reference itself, not the CPU kernels
        try:
            yield
        finally:
            self.forced, dispatch.use_cpu_kernels = True, cpu_kernels

    def asarray(self, array):
        return numpy.array(array)

    def move(self, layer):
        return layer.to("cpu")


def host_blas(library=None):
    """gpudl's own GEMM (kernels.blas.CublasGemm through the ctypes binding kernels.cublas.Cublas) over the host
    stand-in for libcublas, on the host's emulated streams: what the host target puts in place of get_blas(cupy)."""
    return CublasGemm(Cublas(library or StandInCublas()), aligned_workspace(HOST_WORKSPACE_BYTES),
                      capture.current_stream)


class CupyPath:
    name = "cupy"
    counter = None

    def __init__(self, cupy):
        self.xp = cupy

    @contextlib.contextmanager
    def reference(self):
        cpu_kernels, dispatch.use_cpu_kernels = dispatch.use_cpu_kernels, False
        try:
            yield
        finally:
            dispatch.use_cpu_kernels = cpu_kernels

    def asarray(self, array):
        return self.xp.asarray(array)

    def move(self, layer):
        return layer.to("cuda")


@pytest.fixture(scope="session")
def host_kernels(tmp_path_factory):
    if compiler() is None:
        pytest.skip("no host C++ compiler (g++) to build the kernels for the CPU")
    return HostKernels(loader.KERNEL_DIR, str(tmp_path_factory.mktemp("cuda_host")))


@pytest.fixture
def small_launches(monkeypatch):
    """Launch SMALL_GRID blocks of SMALL_BLOCK threads at most, so the grid-stride loops go round."""
    monkeypatch.setattr(loader, "BLOCK", SMALL_BLOCK)
    monkeypatch.setattr(loader, "max_blocks", lambda xp: SMALL_GRID)


@pytest.fixture(params=["host", pytest.param("cupy", marks=pytest.mark.gpu)])
def kernel_path(request, monkeypatch):
    if request.param == "cupy":
        return CupyPath(request.getfixturevalue("cupy"))
    return host_target(request, monkeypatch)


def host_target(request, monkeypatch, guard=True):
    """The host target, set up with `monkeypatch`: host kernels on small grids, gpudl's GEMM on the stand-in
    libcublas, the kernel path for numpy arrays and (guard=True) the capture guard."""
    host_kernels = request.getfixturevalue("host_kernels")
    request.getfixturevalue("small_launches")
    path = HostPath(host_kernels)
    monkeypatch.setattr(loader, "get_kernel", host_kernels.get_kernel)
    path.cublas = StandInCublas()
    gemm = host_blas(path.cublas)
    monkeypatch.setattr(blas, "get_blas", lambda xp: gemm)
    monkeypatch.setattr(dispatch, "takes_kernel_path", path.is_device_array)
    path.guard = capture.CaptureGuard().install(monkeypatch) if guard else None
    return path
