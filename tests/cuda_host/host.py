"""Build a kernel source for the host (g++ with the emulation header) and launch its kernels through ctypes.

A launch sets gridDim/blockDim once, then for every block and every thread sets blockIdx/threadIdx and calls the
kernel, as the GPU would run it. Most kernels share nothing between threads, and their threads run one after
another; a source that uses shared memory or barriers (`__shared__`, `__syncthreads` in the .cu file itself) runs the
threads of each block together, one host thread per CUDA thread, blocks one after another (cuda_host.h says how).
Arguments are what gpudl.kernels.launch passes: numpy arrays (pointers), numpy.int64 (`long long`) and
numpy.float32/float64 scalars (`real_t`).
"""
import ctypes
import os
import shutil
import subprocess
import threading

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
    lib.host_set_launch.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
    lib.host_set_thread.argtypes = [ctypes.c_uint, ctypes.c_uint]
    return lib


def cooperates(source):
    """Do the threads of a block of this .cu file share memory or wait at barriers (so must run together)?"""
    with open(source, encoding="utf-8") as handle:
        text = handle.read()
    return "__syncthreads" in text or "__shared__" in text


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
    """One kernel of a host library, called like a cupy.RawKernel: kernel((grid,), (block,), args).

    together: run the threads of each block at once (one host thread each; ctypes lets go of the GIL during the
    call, so they meet at the kernel's barriers), blocks one after another."""

    def __init__(self, lib, name, counter, together=False):
        self.lib, self.function, self.counter, self.together = lib, getattr(lib, name), counter, together
        self.function.restype = None

    def __call__(self, grid, block, args):
        (grid,), (block,) = grid, block
        c_args = [_c_arg(a) for a in args]
        self.lib.host_set_launch(grid, block, int(self.together))
        if self.together:
            self._run_together(grid, block, c_args)
        else:
            for b in range(grid):
                for t in range(block):
                    self.lib.host_set_thread(b, t)
                    self.function(*c_args)
        self.counter["threads"] += grid * block
        self.counter["launches"] += 1
        if self.together:
            self.counter["cooperative launches"] = self.counter.get("cooperative launches", 0) + 1

    def _run_together(self, grid, block, c_args):
        """One host thread per thread of a block; all of them finish block b before any starts block b + 1."""
        crew = _crews.get(block)
        if crew is None:
            crew = _crews[block] = _Crew(block)
        crew.run(self.lib, self.function, grid, c_args)


class _Crew:
    """`size` host threads kept for the blocks of that many threads (started once: a launch allocates nothing)."""

    def __init__(self, size):
        self.start, self.done = threading.Barrier(size + 1), threading.Barrier(size + 1)
        self.between_blocks = threading.Barrier(size)
        self.job, self.failures = None, []
        for t in range(size):
            threading.Thread(target=self._work, args=(t,), daemon=True, name=f"cuda-host-{size}-{t}").start()

    def run(self, lib, function, grid, c_args):
        self.job = (lib, function, grid, c_args)
        self.start.wait()
        self.done.wait()
        self.job = None
        if self.failures:
            failure, self.failures = self.failures[0], []
            raise failure

    def _work(self, t):
        while True:
            self.start.wait()
            lib, function, grid, c_args = self.job
            try:
                for b in range(grid):
                    lib.host_set_thread(b, t)
                    function(*c_args)
                    self.between_blocks.wait()
            except BaseException as exc:      # noqa: BLE001 - raised on the launching thread
                self.failures.append(exc)
            self.done.wait()


_crews = {}     # block size -> _Crew


class HostKernels:
    """Host builds of every kernels/*.cu, one library per (file, dtype), built on first use into `out_dir`."""

    def __init__(self, kernel_dir, out_dir):
        self.kernel_dir, self.out_dir = kernel_dir, out_dir
        self.libraries = {}
        self.counter = {"threads": 0, "launches": 0}

    def get_kernel(self, xp, file, name, dtype):
        """Stands in for gpudl.kernels.get_kernel: the same lookup, for numpy arrays on the host."""
        key = (file, numpy.dtype(dtype))
        source = os.path.join(self.kernel_dir, file)
        if key not in self.libraries:
            self.libraries[key] = (build_library(source, dtype, self.out_dir), cooperates(source))
        lib, together = self.libraries[key]
        return HostKernel(lib, name, self.counter, together)
