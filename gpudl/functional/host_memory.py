"""Host memory of CPU training: glibc's malloc asked to keep the arrays a step frees for the next step.

By default glibc hands the top of its heap back to the operating system whenever more than its trim threshold is
free there (twice the largest array freed so far), and serves arrays above its mmap threshold from fresh mappings.
A training step frees tens of MB of arrays at its end, so every step faults its pages back in, one fault per 4 KiB
page: hundreds to thousands of faults a step, which cost more on a virtual machine (RESULTS.md, "page faults").

keep_freed_memory() raises the trim threshold to TRIM_BYTES and the mmap threshold to MMAP_BYTES (the most glibc
accepts): up to TRIM_BYTES of freed memory stays in the process, and arrays up to MMAP_BYTES come from the heap. The
peak memory of a step is unchanged; what changes is that the process does not shrink between steps. It is a setting
of the whole process, so it is opt-in: the `gpudl` command makes it (GPUDL_KEEP_FREED_MEMORY=0 stops it), a program
calls keep_freed_memory() or sets GPUDL_KEEP_FREED_MEMORY=1 (then importing gpudl makes it). glibc only; elsewhere
there is nothing to do.
"""
import ctypes
import os
import platform

ENV_VAR = "GPUDL_KEEP_FREED_MEMORY"
TRIM_BYTES = 256 << 20
MMAP_BYTES = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # mallopt's parameter numbers in glibc's malloc.h

_done = False


def setting():
    """GPUDL_KEEP_FREED_MEMORY: None when unset or empty, else True (1) or False (0); anything else is an error."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"the environment variable {ENV_VAR} must be 0 or 1, got {value!r}")
    return None if value == "" else value == "1"


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory (see the module doc), once per process; returns True when malloc is
    tuned (now or before)."""
    global _done
    if _done or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return _done
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES))
    return _done


def keep_freed_memory_if_asked(default=False):
    """keep_freed_memory() when GPUDL_KEEP_FREED_MEMORY says 1, or is unset and `default` is true (the command line's
    default); returns whether malloc is tuned."""
    wanted = setting()
    if wanted is None:
        wanted = default
    return keep_freed_memory() if wanted else _done
