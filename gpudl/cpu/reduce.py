"""Sums on the CPU: over axes (bias gradients), a scaled sum to a 0-d array (a loss's mean), and clipping by the
global norm. Every sum runs in one fixed order (channels are split over the threads, each summed whole by one), so
its bits do not depend on the thread count."""
import numpy
from numba import prange, uint64

from .elementwise import activation_backward
from .loader import GRAIN, inline, kernel, part, real_arrays, threads_for


@inline
def _sum_channels(x, target, first, last, outer, channels, inner, add):
    """Channels first..last-1 of the sums, each in one fixed order (o, then i)."""
    width = uint64(last - first)
    sums = numpy.zeros(last - first, dtype=target.dtype)
    for o in range(outer):
        if inner == 1:                          # rows of channels: whole rows added, a loop that vectorizes
            at = uint64(o * channels + first)
            for c in range(width):
                sums[c] += x[at + c]
        else:
            for c in range(width):
                at, total = uint64((o * channels + first) * inner) + c * uint64(inner), sums[c]
                for k in range(uint64(inner)):
                    total += x[at + k]
                sums[c] = total
    for c in range(width):
        target[uint64(first) + c] = target[uint64(first) + c] + sums[c] if add else sums[c]


@part
def _sum_axes(p, parts, x, target, outer, channels, inner, add):
    _sum_channels(x, target, p * channels // parts, (p + 1) * channels // parts, outer, channels, inner, add)


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
    _sum_axes.run(min(c, threads_for(x.size)), x.reshape(-1), target.reshape(-1), x.size // (c * inner), c, inner,
                  into is not None)
    return target


def activation_backward_sum(name, y, dy, alpha=1.0, out=None, into=None, inner=1):
    """dv = dy * phi'(v) from the forward's output y (phi one of relu, sigmoid, tanh), and the sums of dv over o and i
    of dv viewed as (outer, C, inner) written to `out` or added into `into` (the bias gradient of the layer phi
    follows). Returns dv."""
    dv = activation_backward(name, y, dy, alpha)
    sum_axes(dv, out=out, into=into, inner=inner)
    return dv


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
