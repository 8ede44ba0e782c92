"""The one seam of dispatch: does an op take its kernel path (our CUDA kernels, cuBLAS) or its NumPy path?

Every op in gpudl.functional that has a kernel path asks `kernels_for(array)` (or `on_kernel_path(array)`) and
nothing else. The answer comes from `takes_kernel_path`, which is cupy's array type; tests that run the kernels on the
host (tests/cuda_host) set this one attribute to route numpy arrays through the kernel path of every op at once.
The CUDA kernels' package is imported only when an array takes that path: the NumPy path never loads it.
"""
from ..backend import get_array_module, is_cupy_array

takes_kernel_path = is_cupy_array


def on_kernel_path(array):
    """True when `array` takes the kernel path: a cupy array (or whatever the test harness says)."""
    return takes_kernel_path(array)


def kernels_for(array):
    """The package of CUDA kernels (gpudl.kernels) when `array` takes the kernel path, else None (the NumPy path)."""
    if not takes_kernel_path(array):
        return None
    from .. import kernels
    return kernels


def step_recorder(array):
    """A recorder (kernels.graph: a CUDA graph on cupy, the tape of the host build) for a step over `array`, or None
    when `array` does not take the kernel path (there is nothing to capture on the NumPy path)."""
    kernels = kernels_for(array)
    if kernels is None:
        return None
    return kernels.graph.recorder_for(get_array_module(array))
