"""LeNet-5 (LeCun et al., 1998) for 28x28 images.

conv 6@5x5 (padding "same": 28 -> 28), pool 2x2 (-> 14), conv 16@5x5 (-> 10), pool 2x2 (-> 5), flatten 16*5*5 = 400,
dense 120, dense 84, dense num_classes (logits, for SoftmaxCrossEntropy). 61,706 parameters for one input channel
and ten classes. The activations are ReLU and the pooling is max pooling, the modern choice that trains fastest; the
1998 paper used scaled tanh and trainable average pooling (`activation="tanh", pooling="avg"` comes close).
"""
import numpy

from .. import nn
from .fused import FusedSequential

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
_POOLING = {"max": nn.MaxPool2D, "avg": nn.AvgPool2D}


class LeNet5(FusedSequential):
    def __init__(self, in_channels=1, num_classes=10, dtype=numpy.float32, activation="relu", pooling="max", rng=None):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"LeNet5: unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}")
        if pooling not in _POOLING:
            raise ValueError(f"LeNet5: unknown pooling {pooling!r}; expected one of {sorted(_POOLING)}")
        act, pool = _ACTIVATIONS[activation], _POOLING[pooling]
        super().__init__(
            nn.Conv2D(in_channels, 6, 5, padding="same", dtype=dtype, rng=rng), act(), pool(2),
            nn.Conv2D(6, 16, 5, dtype=dtype, rng=rng), act(), pool(2),
            nn.Flatten(),
            nn.Dense(16 * 5 * 5, 120, dtype=dtype, rng=rng), act(),
            nn.Dense(120, 84, dtype=dtype, rng=rng), act(),
            nn.Dense(84, num_classes, dtype=dtype, rng=rng),
        )
        self.in_channels, self.num_classes = in_channels, num_classes

    def __repr__(self):
        return "LeNet5" + super().__repr__()[len("Sequential"):]
