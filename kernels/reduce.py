"""The ops of reduce.cu: sums over axes (bias gradients, with an activation's backward fused in front), a scaled sum
to a 0-d array (a loss's mean), and clipping by the global norm. Nothing is read back to the host.

A sum over axes takes one launch when one piece is the whole sum per output (SHORT_COLUMN or ROWS_PER_PART rows of a
column, CHUNK elements of a channel), else two: the pieces' sums, then their sum. The piece sizes are constants, so a
given shape always sums in the same order (reduce.cu), whatever the device.
"""
import numpy

from ..backend import get_array_module
from . import loader
from .loader import INDEX_TYPE, ints, launch, real_input
from .tables import array_table

SHORT_COLUMN = 32       # columns of at most this many rows are summed by one thread each (sum_columns)
ROWS_PER_PART = 256     # rows of a column one block sums (sum_rows): 32 per row lane
CHUNK = 8192            # elements of a channel one block sums (sum_planes): 32 per thread of a 256-thread block
NORM_CHUNK = 8192       # elements of the gradients one block squares and sums (clip_by_global_norm)
ROW_LANES = 8           # reduce.cu's ROW_LANES
ACTIVATION_CODES = {None: 0, "relu": 1, "sigmoid": 2, "tanh": 3}      # common.cuh's ACT_*


def _block():
    """The threads of a block of the reduce.cu kernels: the loader's block, a multiple of ROW_LANES up to 1024."""
    block = loader.BLOCK
    if block % ROW_LANES or not 0 < block <= 1024:
        raise ValueError(f"reduce.cu needs blocks of a multiple of {ROW_LANES} threads up to 1024, not {block}")
    return block


def _launch_blocks(name, blocks, args, dtype=None):
    """Launch `name` with `blocks` blocks (at most the grid cap; the kernels walk their pieces in a block loop)."""
    launch("reduce.cu", name, blocks * _block(), args, dtype)


def _sum(x, target, accumulate, outer, c, inner, activation=None):
    """target (C,) = or += the sums over o and i of x (outer, C, inner); `activation` = (name, y, dv, alpha) sums
    dv = x * phi'(y) instead, writing dv too."""
    xp = get_array_module(x)
    flag = ints(1 if accumulate else 0)

    def first(name, out, sizes, last):
        """The first pass: the plain or activation kernel into `out` (the target when `last`)."""
        acc = flag if last else ints(0)
        if activation is None:
            return (name, (out, x) + sizes + acc)
        act, y, dv, alpha = activation
        return (name + "_activation", (out, x, y, dv) + sizes + acc + ints(ACTIVATION_CODES[act]) +
                (x.dtype.type(alpha),))

    if inner == 1:                                  # columns of x (outer, C)
        if outer <= SHORT_COLUMN:                   # one thread per column
            name, args = first("sum_columns", target, ints(outer, c, outer), True)
            launch("reduce.cu", name, c, args)
            return target
        tiles = -(-c // (_block() // ROW_LANES))
        parts = -(-outer // ROWS_PER_PART)
        partial = target if parts == 1 else xp.empty((parts, c), dtype=x.dtype)
        name, args = first("sum_rows", partial, ints(outer, c, ROWS_PER_PART), parts == 1)
        _launch_blocks(name, tiles * parts, args)
        if parts > 1:                               # the parts' sums: a few dozen per column
            launch("reduce.cu", "sum_columns", c, (target, partial) + ints(parts, c, parts) + flag)
        return target
    count = outer * inner                           # planes of x (outer, C, inner): sum_planes
    if count <= CHUNK:
        name, args = first("sum_planes", target, ints(outer, c, inner, max(count, 1)), True)
        _launch_blocks(name, c, args)
        return target
    parts = -(-count // CHUNK)
    partial = xp.empty((c, parts), dtype=x.dtype)
    name, args = first("sum_planes", partial, ints(outer, c, inner, CHUNK), False)
    _launch_blocks(name, c * parts, args)
    _launch_blocks("sum_planes", c, (target, partial) + ints(1, c, parts, parts) + flag)
    return target


def _target(what, out, into):
    if (out is None) == (into is None):
        raise TypeError(f"{what}: give one of out= (written) and into= (added into)")
    return (out, False) if out is not None else (into, True)


def _split(what, x, c, inner):
    """outer for x viewed as (outer, C, inner), or a ValueError."""
    if c < 1 or inner < 1 or x.size % (c * inner):
        raise ValueError(f"{what}: x of shape {tuple(x.shape)} does not split into (outer, {c}, {inner})")
    return x.size // (c * inner)


def sum_axes(x, out=None, into=None, inner=1):
    """The sums s[c] over o and i of x viewed as (outer, C, inner): written to `out`, or added into `into` (one of
    them, of C elements); returns it."""
    target, accumulate = _target("sum_axes", out, into)
    outer = _split("sum_axes", x, target.size, inner)
    if x.size == 0:
        if not accumulate:
            target[...] = 0
        return target
    return _sum(x, target, accumulate, outer, target.size, inner)


def activation_backward_sum(name, y, dy, alpha=1.0, out=None, into=None, inner=1):
    """dv = dy * phi'(v) from the forward's output y (phi one of relu, sigmoid, tanh), and the sums of dv over o and i
    of dv viewed as (outer, C, inner) written to `out` or added into `into`: an activation's backward and the bias
    gradient of the layer it follows, in one pass. Returns dv."""
    target, accumulate = _target("activation_backward_sum", out, into)
    if name not in ACTIVATION_CODES or name is None:
        raise ValueError(f"activation_backward_sum: unknown activation {name!r}")
    dy = real_input(dy, "activation_backward_sum: dy", dy.ndim)
    y = real_input(y, "activation_backward_sum: y", y.ndim)
    if tuple(y.shape) != tuple(dy.shape):
        raise ValueError(f"activation_backward_sum: dy has shape {tuple(dy.shape)}, the forward's output "
                         f"{tuple(y.shape)}")
    outer = _split("activation_backward_sum", dy, target.size, inner)
    dv = get_array_module(dy).empty(dy.shape, dtype=dy.dtype)
    if dy.size == 0:
        if not accumulate:
            target[...] = 0
        return dv
    _sum(dy, target, accumulate, outer, target.size, inner, (name, y, dv, alpha))
    return dv


def scaled_sum(x, scale, divisor):
    """scale * sum(x) / divisor as a 0-d array of x's dtype (the mean: scale 1, divisor x.size); one block."""
    out = get_array_module(x).empty((), dtype=x.dtype)
    real = x.dtype.type
    _launch_blocks("scaled_sum", 1, (out, x) + ints(x.size) + (real(scale), real(divisor)))
    return out


def clip_by_global_norm(grads, max_norm):
    """Scale every array of grads (one dtype) in place by min(1, max_norm / (||g|| + 1e-6)), ||g|| the L2 norm of
    all of them together, summed in double; returns ||g|| as a 0-d float64 array. Three launches for any number of
    arrays (a table of them)."""
    table, n, total, dtype = array_table("clip_by_global_norm", list(grads))
    xp = get_array_module(grads[0])
    real = dtype.type
    parts = -(-total // NORM_CHUNK)
    partial = xp.empty((parts,), dtype=numpy.float64)
    norms = xp.empty((2,), dtype=numpy.float64)
    _launch_blocks("sum_squares_table", parts, (partial.view(INDEX_TYPE), table) + ints(n, NORM_CHUNK), dtype)
    hi = real(max_norm)
    _launch_blocks("norm_scale", 1, (norms.view(INDEX_TYPE), partial.view(INDEX_TYPE)) + ints(parts) +
                   (hi, real(max_norm - float(hi))))
    launch("reduce.cu", "scale_table", total, (table,) + ints(n) + (norms.view(INDEX_TYPE),), dtype)
    return norms[0]
