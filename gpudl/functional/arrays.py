"""Array plumbing that a layer's step needs besides its math: zeros, copies, in-place adds, the (0, 1) axis swap
between batch-major (N, T, .) and time-major (T, N, .) sequences, and one-hot rows.

On the kernel path each is one launch of kernels/elementwise.cu, so a step that uses them can be recorded and
replayed whole (kernels.loader.recording); on numpy arrays they are plain NumPy (the CPU kernel set's are NumPy's
own fill and copy).
"""
import contextlib
import threading

import numpy

from ..backend import get_array_module
from .dispatch import kernels_for


def _contiguous(a):
    """a itself when C-contiguous (numpy's ascontiguousarray would make a 0-d array 1-d), else a contiguous copy."""
    return a if a.flags.c_contiguous else get_array_module(a).ascontiguousarray(a)


def zeros(shape, like):
    """A new array of zeros of `shape`, like's dtype and device."""
    xp = get_array_module(like)
    kernels = kernels_for(like)
    if kernels is not None:
        return kernels.fill(xp.empty(shape, dtype=like.dtype), 0)
    return xp.zeros(shape, dtype=like.dtype)


def fill_(out, value):
    """out[...] = value, in place (C-contiguous out); returns out."""
    kernels = kernels_for(out)
    if kernels is not None:
        return kernels.fill(out, value)
    out.fill(value)
    return out


def copy_into(out, src):
    """out[...] = src (same shape; out C-contiguous), in place; returns out."""
    kernels = kernels_for(out)
    if kernels is not None:
        return kernels.copy(out, _contiguous(src))
    out[...] = src
    return out


def copied(src):
    """A new C-contiguous copy of src."""
    return copy_into(get_array_module(src).empty(src.shape, dtype=src.dtype), src)


def add_into(out, src):
    """out += src (same shape; out C-contiguous), in place; returns out."""
    kernels = kernels_for(out)
    if kernels is not None:
        kernels.add_bias(out.reshape(1, -1), _contiguous(src).reshape(-1))
        return out
    out += src
    return out


_settings = threading.local()      # this thread's value_checks setting


def value_checks_enabled():
    """Whether checks that read array values back to the host (NaN in a loss's input, a label's range) run now."""
    return getattr(_settings, "value_checks", True)


@contextlib.contextmanager
def value_checks(enabled):
    """Within the block (on this thread), checks that read values back to the host run only when `enabled`: a
    recorded step turns them off, since a CUDA graph capture cannot read the device."""
    previous = value_checks_enabled()
    _settings.value_checks = bool(enabled)
    try:
        yield
    finally:
        _settings.value_checks = previous


def all_finite(a):
    """Whether every element of a is a finite number (no NaN, no infinity), as a Python bool: a read to the host."""
    return bool(get_array_module(a).isfinite(a).all())


def swap01(x):
    """x (A, B, C) -> a new C-contiguous (B, A, C) (never a view of x): batch-major to time-major and back."""
    kernels = kernels_for(x)
    if kernels is not None:
        return kernels.swap01(_contiguous(x))
    return x.transpose(1, 0, 2).copy()


def one_hot_rows(indices, classes, dtype):
    """Integer indices (R,) as rows of a (R, classes) identity; an index outside [0, classes) gives a zero row."""
    xp = get_array_module(indices)
    kernels = kernels_for(indices)
    if kernels is not None:
        return kernels.one_hot(_contiguous(indices.astype(numpy.int64, copy=False)), classes, dtype)
    return (indices[:, None] == xp.arange(classes)[None, :]).astype(dtype)
