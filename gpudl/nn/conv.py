"""2-D convolution layer (cross-correlation over NCHW images), computed by im2col and one matrix product.

y[n, f, oh, ow] = b[f] + sum_{c, i, j} W[f, c, i, j] * x_padded[n, c, oh*sh + i, ow*sw + j]
"""
import numpy

from .. import functional as F
from ..geometry import Window, check_window_args
from . import init
from .activation import fused_activation
from .module import Module, Parameter, check_input


class Conv2D(Module):
    applies_activation = True   # forward(x, activation=...): phi(W * x + b) in one op (as Dense.forward)

    def __init__(self, in_channels, filters, kernel_size, strides=1, padding="valid", dtype=numpy.float32, rng=None):
        name = f"Conv2D({in_channels}, {filters}, {kernel_size})"
        if in_channels < 1 or filters < 1:
            raise ValueError(f"{name}: channel counts must be positive")
        self.kernel_size, self.strides, self.padding = check_window_args(name, kernel_size, strides, padding)
        self.in_channels, self.filters = in_channels, filters
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw
        self.W = Parameter(init.he_uniform((filters, in_channels, kh, kw), fan_in, dtype, rng))
        self.b = Parameter(numpy.zeros(filters, dtype=dtype))
        self._window = None         # the Window of the last input size (made again when it changes)
        self._saved = None          # what the last forward saved for its backward

    def forward(self, x, activation=None):
        check_input(self, x, 4, f"(N, {self.in_channels}, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected {self.in_channels} input channel(s), got input of shape "
                             f"{tuple(x.shape)}")
        window = self._window
        if window is None or (window.h, window.w) != tuple(x.shape[2:]):
            window = self._window = Window.of(x.shape, self.kernel_size, self.strides, self.padding, what=self)
        self._fused = fused_activation(self, activation)
        if self._fused is None:
            y, self._saved = F.conv2d(x, self.W.data, self.b.data, window)
            self._y = None
        else:
            y, self._saved = F.conv2d_activation(x, self.W.data, self.b.data, window, *self._fused)
            self._y = y
        return self._forward_output(y)

    def backward(self, dy, input_grad=True):
        """dx (N, C, H, W) from dy; dW and db add into W.grad and b.grad. input_grad=False skips dx (returns None),
        as for the first layer of a training step, whose input gradient nothing reads."""
        dy, into = self._backward_input(dy), (self.W.grad, self.b.grad)
        if self._fused is None:
            dx, _, _ = F.conv2d_backward(dy, self._saved, self.W.data, into=into, input_grad=input_grad)
        else:
            dx, _, _ = F.conv2d_activation_backward(dy, self._saved, self.W.data, self._y, *self._fused, into=into,
                                                    input_grad=input_grad)
        self._saved = self._y = None
        return dx

    def __repr__(self):
        return (f"Conv2D({self.in_channels}, {self.filters}, kernel_size={self.kernel_size}, "
                f"strides={self.strides}, padding={self.padding!r})")
