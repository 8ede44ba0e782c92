"""The ops of reduce.cu: sums over axes (bias gradients), a scaled sum to a 0-d array (a loss's mean), and clipping
by the global norm. Nothing is read back to the host."""
from ..backend import get_array_module
import numpy

from .loader import INDEX_TYPE, ints, launch

NORM_PARTS = 256        # partial sums per parameter in clip_by_global_norm


def sum_axes(x, out=None, into=None, inner=1):
    """The sums s[c] over o and i of x viewed as (outer, C, inner): written to `out`, or added into `into` (one of
    them, of C elements); returns it.

    With both outer and inner above 1 the sum takes two launches (over inner first, then outer), so that the
    threads are outer * C, not C, for the long part of a convolution's channel sums.
    """
    if (out is None) == (into is None):
        raise TypeError("sum_axes: give one of out= (written) and into= (added into)")
    target = out if out is not None else into
    c = target.size
    if x.size % (c * inner):
        raise ValueError(f"sum_axes: x of shape {tuple(x.shape)} does not split into (outer, {c}, {inner})")
    outer = x.size // (c * inner)
    if outer > 1 and inner > 1:
        partial = get_array_module(x).empty((outer * c,), dtype=x.dtype)
        launch("reduce.cu", "sum_axes", partial.size, (partial, x) + ints(1, outer * c, inner, 0))
        x, inner = partial, 1
    launch("reduce.cu", "sum_axes", c, (target, x) + ints(outer, c, inner, 0 if out is not None else 1))
    return target


def scaled_sum(x, scale, divisor):
    """scale * sum(x) / divisor as a 0-d array of x's dtype (the mean: scale 1, divisor x.size)."""
    out = get_array_module(x).empty((), dtype=x.dtype)
    real = x.dtype.type
    launch("reduce.cu", "scaled_sum", 1, (out, x) + ints(x.size) + (real(scale), real(divisor)))
    return out


def clip_by_global_norm(grads, max_norm):
    """Scale every array of grads (one dtype) in place by min(1, max_norm / (||g|| + 1e-6)), ||g|| the L2 norm of
    all of them together, summed in double; returns ||g|| as a 0-d float64 array. 2 launches per array, plus one."""
    xp = get_array_module(grads[0])
    real = grads[0].dtype.type
    partial = xp.empty((len(grads), NORM_PARTS), dtype=numpy.float64)
    norms = xp.empty((2,), dtype=numpy.float64)
    for g, share in zip(grads, partial):
        launch("reduce.cu", "sum_squares", NORM_PARTS, (share.view(INDEX_TYPE), g) + ints(g.size, NORM_PARTS))
    hi = real(max_norm)
    launch("reduce.cu", "norm_scale", 1, (norms.view(INDEX_TYPE), partial.view(INDEX_TYPE)) + ints(partial.size) +
           (hi, real(max_norm - float(hi))))
    for g in grads:
        launch("reduce.cu", "scale_by", g.size, (g,) + ints(g.size) + (norms.view(INDEX_TYPE),))
    return norms[0]
