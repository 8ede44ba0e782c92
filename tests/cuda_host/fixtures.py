"""The `kernel_path` fixture: one test body runs through gpudl.kernels on two targets. tests/conftest.py registers
this module as a plugin, so every test module can ask for its fixtures by name.

"host": numpy arrays, the kernel path forced in gpudl.functional (its one seam, dispatch.takes_kernel_path), every launch run by the host build of the .cu
file (cuda_host.h + g++ + ctypes) on small grids. "cupy": cupy arrays on a usable GPU (marked gpu; skipped without
one). Tests compute their NumPy references inside `with path.reference():`, where the host target lets numpy
arrays take the NumPy reference again (not the CPU kernels: the CUDA kernels are checked against the reference).
"""
import contextlib

import numpy
import pytest

from gpudl.functional import dispatch
from gpudl.kernels import blas, loader

from .host import HostKernels, compiler

SMALL_BLOCK, SMALL_GRID = 8, 3      # 24 threads per launch: fewer than the elements of almost every test array


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


class HostBlas:
    """Stands in for our cuBLAS handle (gpudl.kernels.blas) on the host target: out = alpha op(a) op(b) + beta out in
    NumPy, 2-D or batched. The product goes into a scratch buffer kept per shape, so a replayed step allocates
    nothing here either; beta = 0 never reads out (as cuBLAS)."""

    def __init__(self):
        self.scratch = {}

    def gemm(self, transa, transb, a, b, out, alpha, beta):
        op_a = a if transa == "N" else a.swapaxes(-1, -2)
        op_b = b if transb == "N" else b.swapaxes(-1, -2)
        if beta == 0 and alpha == 1:
            numpy.matmul(op_a, op_b, out=out)
            return out
        key = (out.shape, out.dtype)
        if key not in self.scratch:
            self.scratch[key] = numpy.empty(out.shape, dtype=out.dtype)
        product = numpy.matmul(op_a, op_b, out=self.scratch[key])
        if alpha != 1:
            product *= alpha
        if beta == 0:
            out[...] = product
        elif beta == 1:
            out += product
        else:
            out *= beta
            out += product
        return out


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
    host_kernels = request.getfixturevalue("host_kernels")
    request.getfixturevalue("small_launches")
    path = HostPath(host_kernels)
    monkeypatch.setattr(loader, "get_kernel", host_kernels.get_kernel)
    host_blas = HostBlas()
    monkeypatch.setattr(blas, "get_blas", lambda xp: host_blas)
    monkeypatch.setattr(dispatch, "takes_kernel_path", path.is_device_array)
    return path
