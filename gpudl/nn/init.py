"""Random initial weights, drawn on the host from a seeded generator and moved with the model.

Each thread has its own default generator (`manual_seed` seeds the calling thread's), so two threads that build
models at the same time, each after its own manual_seed, get the weights they would get alone; a thread that never
called manual_seed draws from fresh, unseeded randomness.
"""
import math
import threading

import numpy

_local = threading.local()


def manual_seed(seed):
    """Seed this thread's generator behind every new layer's initial weights."""
    _local.rng = numpy.random.default_rng(seed)


def generator(rng=None):
    """The generator to draw from: a given one, else this thread's seeded default."""
    if rng is not None:
        return rng
    if getattr(_local, "rng", None) is None:
        _local.rng = numpy.random.default_rng()
    return _local.rng


def uniform(shape, bound, dtype, rng=None):
    """U(-bound, bound) of the given shape."""
    return generator(rng).uniform(-bound, bound, size=shape).astype(dtype)


def he_uniform(shape, fan_in, dtype, rng=None):
    """U(-sqrt(6/fan_in), sqrt(6/fan_in)): keeps the activations' variance through ReLU layers."""
    return uniform(shape, math.sqrt(6.0 / fan_in), dtype, rng)
