"""2-D convolution layer (cross-correlation over NCHW images), computed by im2col and one matrix product.

y[n, f, oh, ow] = b[f] + sum_{c, i, j} W[f, c, i, j] * x_padded[n, c, oh*sh + i, ow*sw + j]
"""
import numpy

from .. import functional as F
from ..geometry import check_window_args, window_pads
from . import init
from .module import Module, Parameter, check_input


class Conv2D(Module):
    _spare_col = None       # the col of the last backward, free to be written over by the next forward

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

    def forward(self, x):
        check_input(self, x, 4, f"(N, {self.in_channels}, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected {self.in_channels} input channel(s), got input of shape "
                             f"{tuple(x.shape)}")
        self._pads = window_pads(self, x.shape, self.kernel_size, self.strides, self.padding)
        self._x_shape = x.shape
        # the col of the last step, released by its backward, is written over: no new col-sized array per step
        y, self._col = F.conv2d(x, self.W.data, self.b.data, self.strides, self._pads, col=self._spare_col)
        self._spare_col = None
        return self._forward_output(y)

    def backward(self, dy, input_grad=True):
        """dx (N, C, H, W) from dy; dW and db add into W.grad and b.grad. input_grad=False skips dx (returns None),
        as for the first layer of a training step, whose input gradient nothing reads."""
        dx, _, _ = F.conv2d_backward(self._backward_input(dy), self._col, self.W.data, self._x_shape, self.strides,
                                     self._pads, into=(self.W.grad, self.b.grad), input_grad=input_grad)
        self._spare_col, self._col = self._col, None
        return dx

    def __repr__(self):
        return (f"Conv2D({self.in_channels}, {self.filters}, kernel_size={self.kernel_size}, "
                f"strides={self.strides}, padding={self.padding!r})")
