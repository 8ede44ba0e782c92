"""Tables of arrays: one launch over several arrays (every parameter of a model, every gradient).

A table is an int64 array on the arrays' device, as common.cuh describes it: the offsets of the arrays laid end to
end (n + 1 of them), then one list of n pointers per group of arrays that go together (parameters, gradients,
momentum buffers, ...). It is built on the host and copied to the device once per set of arrays, then kept: a step
recorded as a CUDA graph reads it at every replay, and copying it anew would not be allowed during a capture (nor
needed: a table only depends on where its arrays live and how long they are). So the tables live as long as the
process, one per set of addresses ever used (a few hundred bytes each).
"""
import numpy

from ..backend import get_array_module
from .loader import INDEX_TYPE, REAL_TYPES

_tables = {}        # (array module, device, addresses, sizes) -> the table


def _address(a):
    """The address of a C-contiguous array's first element: a device pointer (cupy) or a host one (numpy)."""
    pointer = getattr(a.data, "ptr", None)
    return pointer if pointer is not None else a.ctypes.data


def _device(xp, a):
    return a.data.device_id if xp is not numpy else None


def array_table(what, *groups):
    """The table of `groups`, each a list of arrays (C-contiguous, one real dtype, array k of every group of the shape
    of array k of the first group, all on one device); returns (table, n, total elements, dtype)."""
    first = groups[0]
    if not first:
        raise ValueError(f"{what}: no arrays")
    xp = get_array_module(first[0])
    dtype = first[0].dtype
    for name_k, group in enumerate(groups):
        if len(group) != len(first):
            raise ValueError(f"{what}: {len(group)} arrays in group {name_k}, {len(first)} in the first")
        for k, (a, like) in enumerate(zip(group, first)):
            if get_array_module(a) is not xp or a.dtype != dtype or numpy.dtype(a.dtype) not in REAL_TYPES:
                raise TypeError(f"{what}: array {k} of group {name_k} is a {get_array_module(a).__name__} "
                                f"{a.dtype} array; every array must be a float32 or float64 {xp.__name__} array of "
                                f"one dtype ({dtype})")
            if tuple(a.shape) != tuple(like.shape):
                raise ValueError(f"{what}: array {k} of group {name_k} has shape {tuple(a.shape)}, its parameter "
                                 f"{tuple(like.shape)}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{what}: array {k} of group {name_k} of shape {tuple(a.shape)} is not "
                                 f"C-contiguous")
    devices = {_device(xp, a) for group in groups for a in group}
    if len(devices) != 1:
        raise ValueError(f"{what}: the arrays live on several devices ({sorted(devices)})")
    sizes = tuple(int(a.size) for a in first)
    addresses = tuple(_address(a) for group in groups for a in group)
    key = (xp.__name__, devices.pop(), addresses, sizes)
    table = _tables.get(key)
    if table is None:
        host = numpy.concatenate([numpy.cumsum((0,) + sizes), addresses]).astype(INDEX_TYPE)
        table = _tables[key] = host if xp is numpy else xp.asarray(host)
    return table, len(first), sum(sizes), dtype
