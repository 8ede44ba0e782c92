"""The loader of our CUDA kernels: compile once, check the arguments, launch.

A .cu file is compiled into a cupy.RawModule once per (file, dtype, device), with -Dreal_t=float or -Dreal_t=double,
lazily on its first launch; CuPy keeps the binary in its disk cache (CUPY_CACHE_DIR), so a second process loads it
without compiling. Every launch is checked first (dtypes, C-contiguity, device) and raises a clear error instead of
computing garbage. Nothing here reads a device value back to the host, so a forward or backward never waits for the
GPU. The op wrappers (one module per .cu file) build on launch, real_input, ints and backend.output_arrays.

Every op of a training step on the kernel path reaches the device through `run` (our launches here; the GEMMs
through cuBLAS, whose host stand-in in the tests runs its products through `run` too), the one seam where a step can
be recorded: inside `recording()` the calls are appended to a tape instead of run, over the same (static) buffers,
and `replay(tape)` runs them again. The Python around them runs while recording, as it does while a stream captures.
That is the host stand-in for capturing a CUDA graph (kernels/graph.py), and what lets the tests check a captured
step on the CPU; `is_recording()` tells the tests' emulation of the capture's restrictions when a step is recorded.
"""
import contextlib
import functools
import os

import numpy

from ..backend import get_array_module

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))
COMMON_HEADER = "common.cuh"     # element type, math functions and the gather rule shared by every .cu file
BLOCK = 256             # threads per block
BLOCKS_PER_SM = 32      # grid cap per multiprocessor; grid-stride loops cover the rest
REAL_TYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}
INDEX_TYPE = numpy.dtype(numpy.int64)   # `long long` in the kernels: every size and index
INDEX_TYPES = (INDEX_TYPE, numpy.dtype(numpy.int32), numpy.dtype(numpy.int8))   # also int, signed char: small ones

_modules = {}           # (file, dtype, device id) -> cupy.RawModule
_kernels = {}           # (file, dtype, device id, name) -> cupy.RawKernel
_max_blocks = {}        # device id -> grid cap
_tape = None            # a list while a step is recorded (recording()), else None


@functools.cache
def read_source(file):
    """The CUDA C source of kernels/<file>, with common.cuh spliced in where it is included.

    CuPy then compiles one self-contained source, and its disk cache, keyed on the source text, notices a change to
    the shared header too.
    """
    with open(os.path.join(KERNEL_DIR, file), encoding="utf-8") as handle:
        source = handle.read()
    if file == COMMON_HEADER:
        return source
    return source.replace(f'#include "{COMMON_HEADER}"', read_source(COMMON_HEADER))


def compile_options(dtype):
    """The compiler options that build a .cu file for one dtype."""
    return (f"-Dreal_t={REAL_TYPES[numpy.dtype(dtype)]}",)


def get_kernel(xp, file, name, dtype):
    """The kernel `name` of kernels/<file> for `dtype` on the current device, compiled on first use only."""
    key = (file, numpy.dtype(dtype), xp.cuda.runtime.getDevice())
    kernel = _kernels.get(key + (name,))
    if kernel is None:
        module = _modules.get(key)
        if module is None:
            module = _modules[key] = xp.RawModule(code=read_source(file), options=compile_options(dtype))
        kernel = _kernels[key + (name,)] = module.get_function(name)
    return kernel


def max_blocks(xp):
    """The largest grid we launch on the current device: BLOCKS_PER_SM blocks per multiprocessor."""
    dev = xp.cuda.runtime.getDevice()
    if dev not in _max_blocks:
        _max_blocks[dev] = BLOCKS_PER_SM * xp.cuda.Device(dev).attributes["MultiProcessorCount"]
    return _max_blocks[dev]


def grid_size(n, block, cap):
    """Blocks for n elements at `block` threads each, at most `cap` (the kernels loop over the rest)."""
    return max(1, min(-(-n // block), cap))


def check_args(what, args, real=None):
    """The real dtype shared by the array arguments of one launch, or a TypeError/ValueError naming `what`.

    Arrays must be C-contiguous; floating arrays all float32 or all float64; integer arrays int64 (int8 and int32
    for the small indices some kernels store, INDEX_TYPES); scalars int64 or the real dtype. `real`: the real dtype
    of the launch when it is known (a kernel over a table of arrays may take none as an argument).
    """
    real = None if real is None else numpy.dtype(real)
    for k, arg in enumerate(args):
        if type(arg) is numpy.int64:                  # most arguments are sizes: the quick way out
            continue
        dtype = getattr(arg, "dtype", None)
        if dtype is None or not hasattr(arg, "ndim"):
            raise TypeError(f"{what}: argument {k} must be an array or a numpy scalar, got {type(arg).__name__}")
        if dtype in REAL_TYPES:
            if real is not None and dtype != real:
                raise TypeError(f"{what}: arrays must share one dtype, got {real} and {dtype} (argument {k})")
            real = dtype
        elif dtype.kind == "f":
            raise TypeError(f"{what}: arrays must be float32 or float64, got {dtype} (argument {k})")
        elif dtype not in INDEX_TYPES:
            raise TypeError(f"{what}: integer arguments must be int64 (or int32, int8), got {dtype} (argument {k})")
        if arg.ndim and not arg.flags.c_contiguous:
            raise ValueError(f"{what}: argument {k} of shape {tuple(arg.shape)} is not C-contiguous")
    if real is None:
        raise TypeError(f"{what}: no float32/float64 array among the arguments")
    return real


def _check_device(xp, what, args):
    """Cupy arrays must live on the current device, where the kernel runs and the outputs were allocated."""
    if xp is numpy:
        return
    current = xp.cuda.runtime.getDevice()
    for arg in args:
        if isinstance(arg, xp.ndarray) and arg.data.device_id != current:   # .device would build a Device
            raise ValueError(f"{what}: an array lives on cuda:{arg.data.device_id} but the current device is "
                             f"cuda:{current}; run under `with cupy.cuda.Device({arg.data.device_id}):`")


def launch(file, name, n, args, dtype=None):
    """Check `args`, then run kernel `name` of kernels/<file> with one thread per output element (n of them).

    dtype: the build (float32 or float64) to launch when no argument says it (the arrays of a table)."""
    what = f"kernel {name} ({file})"
    real = check_args(what, args, dtype)
    xp = get_array_module(*args)
    _check_device(xp, what, args)
    if n == 0:
        return
    kernel = get_kernel(xp, file, name, real)
    run(kernel, (grid_size(n, BLOCK, max_blocks(xp)),), (BLOCK,), tuple(args))


def run(function, *args):
    """function(*args), or, while a step is recorded, that call appended to the tape (nothing runs)."""
    if _tape is None:
        function(*args)
    else:
        _tape.append((function, args))


def is_recording():
    """True inside `recording()`: the calls that reach `run` go onto a tape, as a capturing stream records them."""
    return _tape is not None


class Recording(list):
    """The calls of a recorded step, in order, and in `memory` what was allocated while recording (kept alive with
    the calls, as a CUDA graph's private memory pool keeps its buffers: see hold)."""

    def __init__(self):
        super().__init__()
        self.memory = []


def hold(array):
    """While a step is recorded, keep `array` alive as long as the recording: its calls may reach it by address only
    (a stand-in for a library, as cuBLAS takes pointers)."""
    if _tape is not None:
        _tape.memory.append(array)


@contextlib.contextmanager
def recording():
    """Record every call that reaches `run` inside the block onto the Recording it yields, instead of running them."""
    global _tape
    if _tape is not None:
        raise RuntimeError("recording(): a step is already being recorded")
    _tape = Recording()
    try:
        yield _tape
    finally:
        _tape = None


def replay(tape):
    """Run the calls of a recorded tape again, in order, over the buffers they were recorded with."""
    for function, args in tape:
        function(*args)


@functools.lru_cache(maxsize=4096)
def ints(*values):
    """Sizes and indices as numpy.int64 scalars, the kernels' `long long` (cached: a time loop asks for the same)."""
    return tuple(numpy.array(values, dtype=INDEX_TYPE))


def real_input(x, what, ndim):
    """x as a C-contiguous float32/float64 array of rank `ndim`, or a clear error."""
    xp = get_array_module(x)
    if not hasattr(x, "dtype") or numpy.dtype(x.dtype) not in REAL_TYPES:
        raise TypeError(f"{what}: expected a float32 or float64 array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim != ndim:
        raise ValueError(f"{what}: expected an array of rank {ndim}, got shape {tuple(x.shape)}")
    return xp.ascontiguousarray(x)


def window_ints(n, c, window):
    """The 12 sizes of a window kernel (common.cuh's WINDOW_PARAMS): N, C, H, W, KH, KW, OH, OW, SH, SW, top, left.

    The bottom and right pads only show in OH and OW.
    """
    return ints(n, c, window.h, window.w, window.kh, window.kw, window.oh, window.ow, window.sh, window.sw,
                window.top, window.left)


INT32_LIMIT = 2 ** 31   # a window kernel takes its 32-bit entry point when every size it sees is below this
RUN_BYTES = 16          # a window kernel's thread writes a run of this many bytes of outputs (common.cuh's VEC)


def runs(count, dtype):
    """The threads of a window kernel over `count` outputs of `dtype`: one per run of RUN_BYTES (common.cuh)."""
    per_run = RUN_BYTES // numpy.dtype(dtype).itemsize
    return -(-count // per_run)


def window_variant(name, n, c, window, element_counts):
    """The entry point of window kernel `name` for one launch: `name` (32-bit index math) when every one of its 12
    sizes, the padded image height and width, and every array's element count (`element_counts`) are below 2^31,
    else `name_i64` (64-bit). Every index and intermediate the kernel forms is bounded by one of these."""
    sizes = (n, c, window.h, window.w, window.kh, window.kw, window.oh, window.ow, window.sh, window.sw,
             window.top, window.left) + window.padded_hw
    return name if max(*sizes, *element_counts) < INT32_LIMIT else f"{name}_i64"
