"""Build a kernel source for the host (g++ with the emulation header) and launch its kernels through ctypes.

A launch sets gridDim/blockDim once, then for every block and every thread sets blockIdx/threadIdx and calls the
kernel, as the GPU would run it (one after another instead of in parallel: our kernels share no memory and need no
barriers). Arguments are what gpudl.kernels.launch passes: numpy arrays (pointers), numpy.int64 (`long long`) and
numpy.float32/float64 scalars (`real_t`).
"""
import ctypes
import os
import shutil
import subprocess

import numpy

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_host.h")
REAL_NAMES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}


def compiler():
    """The host C++ compiler (g++ or c++), or None."""
    return shutil.which("g++") or shutil.which("c++")


def build_library(source, dtype, out_dir):
    """Compile the .cu file `source` for the host with real_t = dtype; return the loaded ctypes library."""
    name = f"{os.path.splitext(os.path.basename(source))[0]}_{REAL_NAMES[numpy.dtype(dtype)]}.so"
    path = os.path.join(out_dir, name)
    cmd = [compiler(), "-std=c++17", "-O1", "-Wall", "-Werror", "-shared", "-fPIC", "-include", HEADER, "-x", "c++",
           f"-Dreal_t={REAL_NAMES[numpy.dtype(dtype)]}", source, "-o", path]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"host build of {source} failed:\n{' '.join(cmd)}\n{done.stderr}")
    lib = ctypes.CDLL(path)
    lib.host_set_launch.argtypes = [ctypes.c_uint, ctypes.c_uint]
    lib.host_set_thread.argtypes = [ctypes.c_uint, ctypes.c_uint]
    return lib


def _c_arg(arg):
    if isinstance(arg, numpy.ndarray):
        return ctypes.c_void_p(arg.ctypes.data)
    if isinstance(arg, numpy.int64):
        return ctypes.c_longlong(int(arg))
    if isinstance(arg, numpy.float32):
        return ctypes.c_float(float(arg))
    if isinstance(arg, numpy.float64):
        return ctypes.c_double(float(arg))
    raise TypeError(f"no host equivalent for a kernel argument of type {type(arg).__name__}")


class HostKernel:
    """One kernel of a host library, called like a cupy.RawKernel: kernel((grid,), (block,), args)."""

    def __init__(self, lib, name, counter):
        self.lib, self.function, self.counter = lib, getattr(lib, name), counter
        self.function.restype = None

    def __call__(self, grid, block, args):
        (grid,), (block,) = grid, block
        c_args = [_c_arg(a) for a in args]
        self.lib.host_set_launch(grid, block)
        for b in range(grid):
            for t in range(block):
                self.lib.host_set_thread(b, t)
                self.function(*c_args)
        self.counter["threads"] += grid * block
        self.counter["launches"] += 1


class HostKernels:
    """Host builds of every kernels/*.cu, one library per (file, dtype), built on first use into `out_dir`."""

    def __init__(self, kernel_dir, out_dir):
        self.kernel_dir, self.out_dir = kernel_dir, out_dir
        self.libraries = {}
        self.counter = {"threads": 0, "launches": 0}

    def get_kernel(self, xp, file, name, dtype):
        """Stands in for gpudl.kernels.get_kernel: the same lookup, for numpy arrays on the host."""
        key = (file, numpy.dtype(dtype))
        if key not in self.libraries:
            self.libraries[key] = build_library(os.path.join(self.kernel_dir, file), dtype, self.out_dir)
        return HostKernel(self.libraries[key], name, self.counter)
