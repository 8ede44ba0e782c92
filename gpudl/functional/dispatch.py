"""The one seam of dispatch: which kernels run an op on a given array.

Every op in gpudl.functional that has kernels asks `kernels_for(array)` and nothing else. The answer is a kernel set,
a package of ops with one name and signature on both devices:
- gpudl.kernels (our CUDA kernels, cuBLAS) for arrays that take the kernel path: cupy's array type, or whatever
  `takes_kernel_path` says (tests that run the CUDA kernels on the host, tests/cuda_host, set it to route numpy arrays
  through them);
- gpudl.cpu (the CPU kernels, compiled by Numba) for float32 and float64 numpy arrays;
- None otherwise, and where the CPU kernels cannot be imported (no numba; one notice) or are switched off
  (GPUDL_CPU_KERNELS=0, or `use_cpu_kernels = False`): the op's NumPy reference runs.
Each package is imported only when an array takes it: the NumPy reference never loads either. A child forked from a
process whose CPU kernels ran on GNU OpenMP threads cannot use them (OpenMP does not survive a fork): it runs the
NumPy reference, after one notice.
"""
import os
import sys

import numpy

from ..backend import get_array_module, is_cupy_array
from .threads import get_num_threads

takes_kernel_path = is_cupy_array
CPU_KERNELS_ENV = "GPUDL_CPU_KERNELS"


def _cpu_kernels_wanted():
    setting = os.environ.get(CPU_KERNELS_ENV, "1").strip()
    if setting not in ("0", "1"):
        raise ValueError(f"the environment variable {CPU_KERNELS_ENV} must be 0 or 1, got {setting!r}")
    return setting == "1"


use_cpu_kernels = _cpu_kernels_wanted()
_cpu = None             # gpudl.cpu once imported
_cpu_error = None       # why it could not be, once tried


def _forked():
    """In a forked child: give up the CPU kernels where the parent's threads were OpenMP's (they are lost)."""
    global _cpu, _cpu_error
    if _cpu is not None and _cpu.loader.lost_in_fork():
        _cpu, _cpu_error = None, "this process was forked from one that ran them on OpenMP threads"
        print(f"gpudl: the CPU kernels are not available ({_cpu_error}); the CPU runs the NumPy reference, which is "
              f"slower", file=sys.stderr)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def cpu_kernels():
    """gpudl.cpu, imported on first use (it imports numba), or None where it cannot be imported (said once)."""
    global _cpu, _cpu_error
    if _cpu is None and _cpu_error is None:
        try:
            from .. import cpu
        except Exception as exc:        # no numba, no BLAS it can call, a failing LLVM: the reference still works
            _cpu_error = f"{type(exc).__name__}: {exc}"
            print(f"gpudl: the CPU kernels are not available ({_cpu_error}); the CPU runs the NumPy reference, "
                  f"which is slower", file=sys.stderr)
            return None
        cpu.loader.thread_setting = get_num_threads
        _cpu = cpu
    return _cpu


def cpu_kernels_error():
    """Why the CPU kernels could not be imported (None when they were, or were not tried)."""
    return _cpu_error


def kernels_for(array):
    """The kernel set that runs ops on `array` (gpudl.kernels or gpudl.cpu), or None: the NumPy reference."""
    if takes_kernel_path(array):
        from .. import kernels
        return kernels
    if use_cpu_kernels and isinstance(array, numpy.ndarray) and array.dtype in (numpy.float32, numpy.float64):
        return cpu_kernels()
    return None


def on_kernel_path(array):
    """True when kernels run ops on `array` (see kernels_for), False where the NumPy reference does."""
    return kernels_for(array) is not None


def step_recorder(array):
    """A recorder (kernels.graph: a CUDA graph on cupy, the tape of the host build) for a step over `array`, or None
    when `array` does not take the CUDA kernel path (there is nothing to capture on the CPU)."""
    if not takes_kernel_path(array):
        return None
    from .. import kernels
    return kernels.graph.recorder_for(get_array_module(array))
