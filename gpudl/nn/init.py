"""Random initial weights, drawn on the host from one seeded generator and moved with the model."""
import numpy

_rng = numpy.random.default_rng()


def manual_seed(seed):
    """Seed the generator behind every new layer's initial weights."""
    global _rng
    _rng = numpy.random.default_rng(seed)


def generator(rng=None):
    """The generator to draw from: a given one, else the seeded module-wide one."""
    return rng if rng is not None else _rng


def uniform(shape, bound, dtype, rng=None):
    """U(-bound, bound) of the given shape."""
    return generator(rng).uniform(-bound, bound, size=shape).astype(dtype)


def he_uniform(shape, fan_in, dtype, rng=None):
    """U(-sqrt(6/fan_in), sqrt(6/fan_in)): keeps the activations' variance through ReLU layers."""
    return uniform(shape, numpy.sqrt(6.0 / fan_in), dtype, rng)
