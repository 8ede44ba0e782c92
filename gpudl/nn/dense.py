"""Fully connected layer y = x W + b (W[i, j] is the lecture's w_ij, input i to neuron j)."""
import numpy

from .. import functional as F
from . import init
from .activation import fused_activation
from .module import Module, Parameter, check_input


class Dense(Module):
    applies_activation = True   # forward(x, activation=...): phi(x W + b) in one op (see forward)

    def __init__(self, in_features, out_features, dtype=numpy.float32, rng=None):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Dense: feature counts must be positive, got ({in_features}, {out_features})")
        self.in_features, self.out_features = in_features, out_features
        self.W = Parameter(init.he_uniform((in_features, out_features), in_features, dtype, rng))
        self.b = Parameter(numpy.zeros(out_features, dtype=dtype))

    def forward(self, x, activation=None):
        """y = x W + b; with `activation` (the activation layer after this one, whose fused() names its phi),
        y = phi(x W + b) in one op: that layer is then neither run nor back-propagated, this one does both."""
        check_input(self, x, 2, f"(N, {self.in_features})")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.in_features}), got {tuple(x.shape)}")
        self._x, self._fused = x, fused_activation(self, activation)
        if self._fused is None:
            self._y = None
            return self._forward_output(F.dense(x, self.W.data, self.b.data))
        self._y = F.dense_activation(x, self.W.data, self.b.data, *self._fused)
        return self._forward_output(self._y)

    def backward(self, dy, input_grad=True):
        """dx = dy W^T (dy times phi' first when the forward applied an activation); dW and db add into W.grad and
        b.grad. input_grad=False skips dx (returns None)."""
        dy = self._backward_input(dy)
        into = (self.W.grad, self.b.grad)
        if self._fused is None:
            dx, _, _ = F.dense_backward(self._x, self.W.data, dy, into=into, input_grad=input_grad)
        else:
            dx, _, _ = F.dense_activation_backward(self._x, self.W.data, self._y, dy, *self._fused, into=into,
                                                   input_grad=input_grad)
        self._x = self._y = None
        return dx

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features})"
