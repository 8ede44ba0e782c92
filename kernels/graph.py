"""Record a whole step once, replay it many times: a CUDA graph on a GPU, a tape of launches on the host.

A step on the kernel path reaches the device only through our kernel launches (the loader's `run`) and the cuBLAS
GEMMs of blas.gemm (ctypes calls on the current stream), over arrays that a replay finds where the recording left
them. Two recorders share one interface:

- CudaGraph (cupy arrays): the step is captured on a stream of its own with cupy.cuda.Stream.begin_capture (relaxed
  mode), its allocations served by a memory pool private to the graph and kept alive with it, so no later
  allocation can take over a buffer the graph writes; replay() launches the graph on the current stream.
- Tape (the host build of the kernels, tests/cuda_host): loader.recording() appends the launches, and the products
  of the tests' stand-in libcublas, to a tape instead of running them, as a capture does, while the Python of the
  step runs; replay() runs the tape. It is how the tests check on the CPU that a replayed step does what the eager
  one does; tests/cuda_host/capture.py makes the host refuse, while a step is recorded, what a capture refuses.

`recorder_for(xp)` picks one. Neither runs the step while recording: after record(), call replay() for the step's
results.
"""
import contextlib

import numpy

from . import loader


class Tape:
    """The host stand-in for a CUDA graph: the step's launches, recorded over static buffers, run again in order."""

    kind = "tape"

    def __init__(self):
        self.calls = None

    def record(self, step):
        """Record step() (a function of no arguments) without running its launches; returns what step returned."""
        with loader.recording() as calls:
            result = step()
        self.calls = calls
        return result

    def replay(self):
        loader.replay(self.calls)

    def __len__(self):
        return len(self.calls or ())


class CudaGraph:
    """One step captured as a CUDA graph on a stream of its own, with a private memory pool kept alive with it."""

    kind = "cuda graph"

    def __init__(self, xp):
        self.xp = xp
        self.pool = xp.cuda.MemoryPool()
        self.graph = None

    def record(self, step):
        cuda = self.xp.cuda
        stream = cuda.Stream(non_blocking=True)
        cuda.get_current_stream().synchronize()         # the eager work before the capture is done
        with cuda.using_allocator(self.pool.malloc), stream:
            stream.begin_capture()
            try:
                result = step()
            except BaseException:
                with contextlib.suppress(Exception):    # a capture that failed may not end cleanly
                    stream.end_capture()                # end the broken capture; step()'s error is the one to see
                raise
            self.graph = stream.end_capture()
        return result

    def replay(self):
        self.graph.launch()                             # on the current stream


def recorder_for(xp):
    """A new recorder for a step whose arrays belong to xp: CudaGraph for cupy, Tape for numpy (the host build)."""
    return Tape() if xp is numpy else CudaGraph(xp)
