"""How many CPU threads gpudl uses: the threads of the CPU kernels (gpudl.cpu, Numba's pool), which also split the
matrix products (NumPy's BLAS set to one thread from their first product on, so the two never compete for the cores).

The number: set_num_threads(n), else the environment variable GPUDL_NUM_THREADS, else the cores this process may run
on, capped by OMP_NUM_THREADS (or OPENBLAS_NUM_THREADS, MKL_NUM_THREADS) when one is set; never more than Numba's pool
(NUMBA_NUM_THREADS, the cores by default). Work too small to share runs on one thread whatever the setting.
"""
import operator
import os

ENV_VAR = "GPUDL_NUM_THREADS"
_CAPS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_num_threads = None     # None: not decided yet (the environment is read on first use)


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
    """The number of threads the CPU kernels use."""
    global _num_threads
    if _num_threads is None:
        _num_threads = default_num_threads()
    return _num_threads


def set_num_threads(n):
    """Use n threads (a positive int) on the CPU from now on; returns the previous number."""
    global _num_threads
    n = _positive_int(n, "set_num_threads: the number of threads")
    previous = get_num_threads()
    _num_threads = n
    return previous
