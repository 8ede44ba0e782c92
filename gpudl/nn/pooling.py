"""Max and average pooling layers over NCHW images; strides default to the pool size."""
from .. import functional as F
from ..geometry import check_window_args, pool_output, window_pads
from .module import Module, check_input


class _Pool2D(Module):
    def __init__(self, pool_size, strides=None, padding="valid"):
        name = f"{type(self).__name__}({pool_size})"
        self.pool_size, self.strides, self.padding = check_window_args(
            name, pool_size, pool_size if strides is None else strides, padding)

    def _geometry(self, x):
        check_input(self, x, 4, "(N, C, H, W)")
        self._pads = window_pads(self, x.shape, self.pool_size, self.strides, self.padding, check=pool_output)
        self._x_shape = x.shape
        return (*self.pool_size, *self.strides, self._pads)

    def __repr__(self):
        return f"{type(self).__name__}({self.pool_size}, strides={self.strides}, padding={self.padding!r})"


class MaxPool2D(_Pool2D):
    """y = the maximum of each window; the gradient goes to the window's first maximum."""

    def forward(self, x):
        geometry = self._geometry(x)
        y, self._argmax = F.max_pool2d(x, *geometry)
        return self._forward_output(y)

    def backward(self, dy):
        dy = self._backward_input(dy)
        argmax, self._argmax = self._argmax, None
        return F.max_pool2d_backward(dy, argmax, self._x_shape, *self.pool_size, *self.strides, self._pads)


class AvgPool2D(_Pool2D):
    """y = the mean of each window's real cells (padded cells are not counted)."""

    def forward(self, x):
        return self._forward_output(F.avg_pool2d(x, *self._geometry(x)))

    def backward(self, dy):
        return F.avg_pool2d_backward(self._backward_input(dy, consume=False), self._x_shape, *self.pool_size, *self.strides, self._pads)

