"""2-D convolution layer (cross-correlation over NCHW images), computed by im2col and one matrix product.

y[n, f, oh, ow] = b[f] + sum_{c, i, j} W[f, c, i, j] * x_padded[n, c, oh*sh + i, ow*sw + j]
"""
import numpy

from .. import functional as F
from . import init
from .module import Module, Parameter, check_input


def window_geometry(layer, x_shape, kernel, strides, padding):
    """Padding (top, bottom, left, right) and output size (OH, OW) for a window layer, or a clear error."""
    (kh, kw), (sh, sw) = kernel, strides
    h, w = x_shape[2], x_shape[3]
    top, bottom = F.pad_amounts(h, kh, sh, padding)
    left, right = F.pad_amounts(w, kw, sw, padding)
    if h + top + bottom < kh or w + left + right < kw:
        raise ValueError(f"{layer!r}: kernel {kh}x{kw} is larger than the padded input "
                         f"{h + top + bottom}x{w + left + right} (input shape {tuple(x_shape)})")
    oh = F.output_size(h, kh, sh, top, bottom)
    ow = F.output_size(w, kw, sw, left, right)
    return (top, bottom, left, right), (oh, ow)


def check_window_args(name, kernel, strides, padding):
    """Validate kernel size, strides and padding of a window layer; return them normalized."""
    kernel = F.pair(kernel, f"{name}: kernel size")
    strides = F.pair(strides, f"{name}: strides")
    if min(kernel) < 1:
        raise ValueError(f"{name}: kernel size must be positive, got {kernel}")
    if min(strides) < 1:
        raise ValueError(f"{name}: strides must be positive, got {strides}")
    try:
        padding = F.check_padding(padding)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return kernel, strides, padding


class Conv2D(Module):
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
        self._pads, _ = window_geometry(self, x.shape, self.kernel_size, self.strides, self.padding)
        self._x_shape = x.shape
        y, self._col = F.conv2d(x, self.W.data, self.b.data, self.strides, self._pads)
        return y

    def backward(self, dy):
        dx, dW, db = F.conv2d_backward(dy, self._col, self.W.data, self._x_shape, self.strides, self._pads)
        self._col = None
        self.W.grad += dW
        self.b.grad += db
        return dx

    def output_shape(self, input_shape):
        """(N, F, OH, OW) for an input of shape (N, C, H, W)."""
        _, (oh, ow) = window_geometry(self, input_shape, self.kernel_size, self.strides, self.padding)
        return (input_shape[0], self.filters, oh, ow)

    def __repr__(self):
        return (f"Conv2D({self.in_channels}, {self.filters}, kernel_size={self.kernel_size}, "
                f"strides={self.strides}, padding={self.padding!r})")
