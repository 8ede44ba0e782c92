"""Sums on the CPU: over axes (bias gradients), a scaled sum to a 0-d array (a loss's mean), and clipping by the
global norm. Every sum runs in one fixed order (channels are split over the threads, each summed whole by one), so
its bits do not depend on the thread count."""
import numpy
from numba import prange

from .loader import GRAIN, kernel, real_arrays, threads_for


@kernel
def _sum_axes(x, target, outer, channels, inner, add, parts):
    for part in prange(parts):
        first, last = part * channels // parts, (part + 1) * channels // parts
        sums = numpy.zeros(last - first, dtype=target.dtype)
        for o in range(outer):
            if inner == 1:
                at = o * channels
                for c in range(first, last):
                    sums[c - first] += x[at + c]
            else:
                for c in range(first, last):
                    at, total = (o * channels + c) * inner, sums[c - first]
                    for k in range(inner):
                        total += x[at + k]
                    sums[c - first] = total
        for c in range(first, last):
            target[c] = target[c] + sums[c - first] if add else sums[c - first]


def sum_axes(x, out=None, into=None, inner=1):
    """The sums s[c] over o and i of x viewed as (outer, C, inner): written to `out`, or added into `into` (one of
    them, of C elements); returns it."""
    if (out is None) == (into is None):
        raise TypeError("sum_axes: give one of out= (written) and into= (added into)")
    target = out if out is not None else into
    x, _ = real_arrays("sum_axes", x, target)
    c = target.size
    if x.size % (c * inner) or not target.flags.c_contiguous:
        raise ValueError(f"sum_axes: x of shape {tuple(x.shape)} does not split into (outer, {c}, {inner}), or the "
                         f"target is not C-contiguous")
    _sum_axes(x.reshape(-1), target.reshape(-1), x.size // (c * inner), c, inner, into is not None,
              min(c, threads_for(x.size)))
    return target


def scaled_sum(x, scale, divisor):
    """scale * sum(x) / divisor as a 0-d array of x's dtype (the mean: scale 1, divisor x.size)."""
    return numpy.asarray(x.dtype.type(scale * x.sum(dtype=numpy.float64) / divisor))


@kernel
def _sum_squares(g, parts):
    blocks = parts.size
    for block in prange(blocks):
        total = 0.0
        for k in range(block * g.size // blocks, (block + 1) * g.size // blocks):
            total += numpy.float64(g[k]) * g[k]
        parts[block] = total


def clip_by_global_norm(grads, max_norm):
    """Scale every array of grads (one dtype) in place by min(1, max_norm / (||g|| + 1e-6)), ||g|| the L2 norm of
    all of them together, summed in double (fixed blocks, in order); returns ||g|| as a 0-d float64 array."""
    total = 0.0
    for g in grads:
        (flat,) = real_arrays("clip_by_global_norm", g)
        parts = numpy.empty(max(1, min(64, g.size // GRAIN)))
        threads_for(g.size)
        _sum_squares(flat.reshape(-1), parts)
        total += parts.sum()
    norm = numpy.sqrt(numpy.float64(total))
    scale = min(1.0, max_norm / (norm + 1e-6))
    for g in grads:
        g *= g.dtype.type(scale)
    return numpy.asarray(norm)
