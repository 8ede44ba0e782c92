"""Timing: warm up, synchronize the device before reading the clock, and report min / median / max per call.

GPU work is asynchronous: a call returns once its kernels are queued. The clock is read only after the device has
finished (cupy or torch synchronize), so a figure is the time the work took, not the time it took to queue it.
"""
import gc
import statistics
import sys
import time
from dataclasses import dataclass

from ..backend import _load_cupy


@dataclass
class Timing:
    """Seconds per call over `repeats` repeats of `number` back-to-back calls each."""
    min: float
    median: float
    max: float
    repeats: int
    number: int

    def as_ms(self):
        return {"min": self.min * 1e3, "median": self.median * 1e3, "max": self.max * 1e3}


def cupy_sync():
    """Wait until the current CUDA device has finished all queued work (CuPy)."""
    _load_cupy().cuda.Device().synchronize()


def torch_sync():
    """Wait until the current CUDA device has finished all queued work (PyTorch)."""
    import torch
    torch.cuda.synchronize()


def time_call(fn, sync=None, repeat=5, warmup_s=0.05, repeat_s=0.02, budget_s=10.0, min_warmup=2):
    """Time fn(): warm-up calls (the first ones compile kernels, autotune cuDNN, fill memory pools), then `repeat`
    timed repeats, each of as many calls as fill about `repeat_s` seconds, with the device synchronized before the
    clock is read. Slow calls get fewer repeats (at least 3) so one figure stays within about `budget_s`.
    """
    sync = sync or (lambda: None)
    clock = time.perf_counter
    start, calls, last = clock(), 0, float("inf")
    while calls < min_warmup or clock() - start < warmup_s:
        t0 = clock()
        fn()
        sync()
        last = min(last, clock() - t0)
        calls += 1
    per_call = max(last, 1e-7)
    number = max(1, int(repeat_s / per_call))
    repeat = max(3, min(repeat, int(budget_s / (per_call * number))))
    times = []
    for _ in range(repeat):
        sync()
        t0 = clock()
        for _ in range(number):
            fn()
        sync()
        times.append((clock() - t0) / number)
    return Timing(min(times), statistics.median(times), max(times), repeat, number)


def copy_bandwidth(xp, sync=None, nbytes=256 << 20, repeat=5):
    """Measured copy bandwidth of a device in bytes per second (bytes read plus bytes written, median)."""
    a = xp.ones(nbytes // 4, dtype=xp.float32)
    b = xp.empty_like(a)
    timing = time_call(lambda: xp.copyto(b, a), sync, repeat=repeat, repeat_s=0.05)
    return 2 * a.nbytes / timing.median


def _peak_hook_class(cupy):
    class PeakHook(cupy.cuda.MemoryHook):
        """Follows the bytes held from CuPy's memory pool and remembers their maximum."""
        name = "GpudlPeakHook"

        def __init__(self, used):
            self.used = self.peak = used

        def malloc_postprocess(self, **kw):
            self.used += kw["mem_size"]
            self.peak = max(self.peak, self.used)

        def free_postprocess(self, **kw):
            self.used -= kw["mem_size"]

    return PeakHook


def peak_bytes_cupy(fn):
    """Peak bytes held from CuPy's memory pool during one call of fn(), counting what was held before it."""
    cupy = _load_cupy()
    cupy_sync()
    hook = _peak_hook_class(cupy)(cupy.get_default_memory_pool().used_bytes())
    with hook:
        fn()
        cupy_sync()
    return hook.peak


def peak_bytes_torch(fn):
    """torch.cuda.max_memory_allocated over one call of fn(), counting what was allocated before it."""
    import torch
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def release_gpu_memory():
    """Return cached blocks of both allocators, so one case's arrays do not crowd the next case."""
    gc.collect()
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            cupy.get_default_memory_pool().free_all_blocks()
        except Exception:  # no usable device: nothing was allocated
            pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
