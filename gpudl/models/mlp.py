"""Multilayer perceptrons: Dense layers with an activation between them, trained by back-propagation.

The lecture's table, made executable: with no hidden layer (sizes [2, 1]) the network draws one line and cannot
separate XOR; one hidden layer (sizes [2, 2+, 1]) can.
"""
import itertools

import numpy

from .. import nn
from .fused import FusedSequential

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus}


def _activation(name, what):
    if name not in ACTIVATIONS:
        raise ValueError(f"MLP: unknown {what} {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(FusedSequential):
    """Dense(sizes[0], sizes[1]), activation, ..., Dense(sizes[-2], sizes[-1]), output activation.

    `output_activation` defaults to the logistic function (outputs in (0, 1), for the MSE loss of the lecture);
    pass None for raw scores (logits), e.g. with SoftmaxCrossEntropy.
    """

    def __init__(self, sizes, activation="sigmoid", output_activation="sigmoid", dtype=numpy.float32, rng=None):
        sizes = list(sizes)
        if len(sizes) < 2 or not all(isinstance(s, int) and s >= 1 for s in sizes):
            raise ValueError(f"MLP: sizes must list at least two positive ints (inputs, ..., outputs), got {sizes}")
        layers = []
        for k, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Dense(fan_in, fan_out, dtype=dtype, rng=rng))
            last = k == len(sizes) - 2
            if not last:
                layers.append(_activation(activation, "activation"))
            elif output_activation is not None:
                layers.append(_activation(output_activation, "output activation"))
        super().__init__(*layers)
        self.sizes = sizes
