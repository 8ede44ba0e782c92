"""Rosenblatt's perceptron: one M-P neuron y = phi(x . w + b) trained by the perceptron rule (lecture eq. 17).

w(n+1) = w(n) + eta (d(n) - y(n)) x(n),  b(n+1) = b(n) + eta (d(n) - y(n)),
applied to one misclassified point at a time, 0 < eta <= 1. The rule converges in finitely many updates when the two
classes are linearly separable; otherwise (XOR) it cycles for ever, so fitting stops at an epoch limit and says so.
"""
from typing import NamedTuple

import numpy

from .. import functional as F
from ..backend import device_of, to_device, to_numpy
from ..nn.activation import Sign, Step
from ..nn.module import Module, Parameter, check_input


class PerceptronFit(NamedTuple):
    """What `Perceptron.fit` did: whether an epoch passed with no mistake, how many epochs ran, updates made."""
    converged: bool
    epochs: int
    updates: int

    def __str__(self):
        if self.converged:
            return f"converged after {self.epochs} epoch(s), {self.updates} update(s)"
        return (f"did not converge within {self.epochs} epoch(s) ({self.updates} updates): "
                f"the classes are probably not linearly separable")


class Perceptron(Module):
    """A single threshold neuron. Labels are 0/1 (Step activation) or -1/+1 (Sign activation), chosen by `fit`."""

    def __init__(self, n_features, lr=1.0, max_epochs=100, dtype=numpy.float64):
        if not (isinstance(n_features, int) and n_features >= 1):
            raise ValueError(f"Perceptron: n_features must be a positive int, got {n_features!r}")
        if not (isinstance(lr, (int, float)) and 0 < lr <= 1):
            raise ValueError(f"Perceptron: the learning rate must lie in (0, 1], got {lr!r}")
        if not (isinstance(max_epochs, int) and max_epochs >= 1):
            raise ValueError(f"Perceptron: max_epochs must be a positive int, got {max_epochs!r}")
        self.n_features, self.lr, self.max_epochs = n_features, float(lr), max_epochs
        self.W = Parameter(numpy.zeros((n_features, 1), dtype=dtype))
        self.b = Parameter(numpy.zeros(1, dtype=dtype))
        self.signed = False  # True once fit on -1/+1 labels: the Sign activation instead of Step

    @property
    def activation(self):
        """The threshold of the neuron: Step (0/1 labels) or Sign (-1/+1 labels)."""
        return Sign() if self.signed else Step()

    def forward(self, x):
        check_input(self, x, 2, f"(N, {self.n_features})")
        if x.shape[1] != self.n_features:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.n_features}), got {tuple(x.shape)}")
        return self.activation.forward(F.dense(x, self.W.data, self.b.data))

    def backward(self, dy, input_grad=True):
        raise TypeError(f"{self!r}: the perceptron learns by its own rule (fit), not by back-propagation; "
                        f"its threshold has no useful gradient")

    def predict(self, X):
        """Class labels (N,) in the label set the perceptron was fit on."""
        X = to_device(X, device_of(self.W.data))
        return self.forward(X.astype(self.W.data.dtype, copy=False))[:, 0]

    def fit(self, X, y, shuffle_seed=None):
        """Run the perceptron rule until an epoch has no mistake or `max_epochs` is reached.

        Points are visited in order (or in a seeded shuffled order each epoch when `shuffle_seed` is given).
        Returns PerceptronFit(converged, epochs, updates).
        """
        X = to_numpy(X).astype(numpy.float64)
        y = to_numpy(y)
        if X.ndim != 2 or X.shape[1] != self.n_features or y.shape != (X.shape[0],):
            raise ValueError(f"{self!r}: expected X of shape (N, {self.n_features}) and y of shape (N,), "
                             f"got {X.shape} and {y.shape}")
        labels = set(y.tolist())
        if labels <= {0, 1}:
            self.signed = False
        elif labels <= {-1, 1}:
            self.signed = True
        else:
            raise ValueError(f"{self!r}: labels must be 0/1 or -1/+1, got {sorted(labels)}")
        # The rule is sequential, one point at a time: it runs on the host and the result is copied back.
        w = to_numpy(self.W.data)[:, 0].astype(numpy.float64)
        b = float(to_numpy(self.b.data)[0])
        rng = numpy.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        updates = 0
        for epoch in range(1, self.max_epochs + 1):
            order = rng.permutation(len(X)) if rng is not None else range(len(X))
            mistakes = 0
            for k in order:
                v = X[k] @ w + b
                out = float(F.sign(v) if self.signed else F.step(v))    # Sign / Step on one point
                error = y[k] - out
                if error != 0:
                    w += self.lr * error * X[k]
                    b += self.lr * error
                    mistakes += 1
            updates += mistakes
            if mistakes == 0:
                break
        self.W.data[...] = to_device(w[:, None].astype(self.W.data.dtype), device_of(self.W.data))
        self.b.data[...] = to_device(numpy.array([b], dtype=self.b.data.dtype), device_of(self.b.data))
        return PerceptronFit(mistakes == 0, epoch, updates)

    def __repr__(self):
        return f"Perceptron({self.n_features}, lr={self.lr}, max_epochs={self.max_epochs})"
