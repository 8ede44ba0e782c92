"""The CPU thread pool of the NumPy path: the batch split into contiguous chunks, one per thread.

BLAS threads the matrix products by itself; the rest of the NumPy path (im2col, the strips of a convolution's input
gradient, pooling, activations, the LSTM gate arithmetic) runs on one thread unless split. `parallel_chunks(n, work)`
calls work(start, stop) on contiguous chunks of range(n), one per thread, the calling thread taking the first; NumPy
releases the GIL inside its loops, so the chunks run at once. Each output element is computed by one chunk with the
same arithmetic as without threads, so results do not depend on the thread count.

The number of threads: set_num_threads(n), else the environment variable GPUDL_NUM_THREADS, else the cores this
process may run on, capped by OMP_NUM_THREADS (or OPENBLAS_NUM_THREADS, MKL_NUM_THREADS) when one is set.

While a split runs, NumPy's BLAS is held to one thread (through threadpoolctl), so BLAS threads do not compete with
the pool; work too small to split runs on the calling thread with BLAS's own threads, so a lone product (an LSTM
step's h W_h) still uses every core through BLAS, whose native threads need no GIL. Python threads do: every
NumPy call a chunk makes hands the GIL over, so on a machine where waking a thread is slow (a VM) only chunks of
large calls gain from the pool (RESULTS.md, "CPU threads").
"""
import operator
import os
import threading
from concurrent.futures import ThreadPoolExecutor

ENV_VAR = "GPUDL_NUM_THREADS"
_CAPS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Elements below which a chunk is not worth a thread: handing small work to a second thread costs more than it
# saves on a 2-core machine (RESULTS.md, "CPU threads"), so only large batches split.
GRAIN = 1 << 20

_lock = threading.Lock()
_num_threads = None     # None: not decided yet (the environment is read on first use)
_pool = None            # workers for chunks 2..n; the calling thread runs chunk 1
_blas = None            # threadpoolctl's controllers of NumPy's BLAS, found on first use


def _positive_int(value, what):
    """value as an int >= 1, or a ValueError naming `what`."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return number


def available_cores():
    """The cores this process may run on (its CPU affinity where the OS says it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_num_threads():
    """GPUDL_NUM_THREADS when set (checked), else the available cores capped by OMP_NUM_THREADS or BLAS's setting."""
    setting = os.environ.get(ENV_VAR, "").strip()
    if setting:
        return _positive_int(int(setting) if setting.isdigit() else setting, f"the environment variable {ENV_VAR}")
    cores = available_cores()
    for name in _CAPS:
        first = os.environ.get(name, "").split(",")[0].strip()     # OMP's nested form "4,2" means 4 here
        if first.isdigit() and int(first) >= 1:
            return min(cores, int(first))
    return cores


def get_num_threads():
    """The number of threads the NumPy path splits its work over."""
    global _num_threads
    if _num_threads is None:
        with _lock:
            if _num_threads is None:
                _num_threads = default_num_threads()
    return _num_threads


def set_num_threads(n):
    """Use n threads (a positive int) on the NumPy path from now on; returns the previous number."""
    global _num_threads, _pool
    n = _positive_int(n, "set_num_threads: the number of threads")
    previous = get_num_threads()
    with _lock:
        _num_threads = n
        old, _pool = _pool, None
    if old is not None:
        old.shutdown(wait=True)
    return previous


def _numpy_blas():
    """threadpoolctl's controllers of the BLAS that NumPy loaded (not PyTorch's or another library's)."""
    global _blas
    if _blas is None:
        import numpy
        from threadpoolctl import ThreadpoolController
        numpy_dir = os.path.dirname(os.path.dirname(numpy.__file__))
        _blas = tuple(lib for lib in ThreadpoolController().lib_controllers
                      if lib.user_api == "blas" and os.path.basename(os.path.dirname(lib.filepath)).startswith("numpy")
                      and lib.filepath.startswith(numpy_dir))
    return _blas


class _SingleThreadedBlas:
    """NumPy's BLAS held to one thread inside the block, its setting restored after."""

    def __enter__(self):
        self.saved = [(lib, lib.get_num_threads()) for lib in _numpy_blas()]
        for lib, threads in self.saved:
            if threads != 1:
                lib.set_num_threads(1)

    def __exit__(self, *exc):
        for lib, threads in self.saved:
            if threads != 1:
                lib.set_num_threads(threads)


def _workers():
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_num_threads - 1, thread_name_prefix="gpudl")
        return _pool


def _forget_pool_after_fork():
    """A forked child has none of the parent's threads: it starts a pool of its own when it needs one."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def chunk_bounds(n, chunks):
    """`chunks` contiguous (start, stop) ranges covering range(n), sizes differing by at most one."""
    base, extra = divmod(n, chunks)
    bounds, start = [], 0
    for k in range(chunks):
        stop = start + base + (k < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def parallel_chunks(n, work, item_size=1):
    """Call work(start, stop) over contiguous chunks of range(n), one per thread.

    item_size: elements each index stands for; a chunk covers at least GRAIN elements, so small work stays on the
    calling thread. The chunks depend only on n, item_size and the thread count. An exception in any chunk is raised
    here once every chunk has finished.
    """
    threads = get_num_threads()
    chunks = max(1, min(threads, n, n * item_size // GRAIN))
    if chunks == 1:
        work(0, n)          # unsplit: its products keep BLAS's own threads
        return
    with _SingleThreadedBlas():
        first, *rest = chunk_bounds(n, chunks)
        futures = [_workers().submit(work, start, stop) for start, stop in rest]
        try:
            work(*first)
        finally:
            for future in futures:
                future.exception()          # wait for every chunk before anything is raised
        for future in futures:
            future.result()
