"""Run gpudl's .cu kernels on the CPU: build each source for the host with cuda_host.h and call it through ctypes."""
from .host import HostKernels, build_library, compiler

__all__ = ["HostKernels", "build_library", "compiler"]
