"""Max and average pooling layers over NCHW images; strides default to the pool size."""
from .. import functional as F
from .conv import check_window_args, window_geometry
from .module import Module, check_input


class _Pool2D(Module):
    def __init__(self, pool_size, strides=None, padding="valid"):
        name = f"{type(self).__name__}({pool_size})"
        self.pool_size, self.strides, self.padding = check_window_args(
            name, pool_size, pool_size if strides is None else strides, padding)

    def _geometry(self, x):
        check_input(self, x, 4, "(N, C, H, W)")
        pads, _ = window_geometry(self, x.shape, self.pool_size, self.strides, self.padding)
        if max(pads[:2]) >= self.pool_size[0] or max(pads[2:]) >= self.pool_size[1]:
            raise ValueError(f"{self!r}: padding {self.padding} must be smaller than the pool size {self.pool_size}")
        self._pads, self._x_shape = pads, x.shape
        return (*self.pool_size, *self.strides, pads)

    def output_shape(self, input_shape):
        _, (oh, ow) = window_geometry(self, input_shape, self.pool_size, self.strides, self.padding)
        return (input_shape[0], input_shape[1], oh, ow)

    def __repr__(self):
        return f"{type(self).__name__}({self.pool_size}, strides={self.strides}, padding={self.padding!r})"


class MaxPool2D(_Pool2D):
    """y = the maximum of each window; the gradient goes to the window's first maximum."""

    def forward(self, x):
        geometry = self._geometry(x)
        y, self._argmax = F.max_pool2d(x, *geometry)
        return y

    def backward(self, dy):
        return F.max_pool2d_backward(dy, self._argmax, self._x_shape, *self.pool_size, *self.strides, self._pads)


class AvgPool2D(_Pool2D):
    """y = the mean of each window's real cells (padded cells are not counted)."""

    def forward(self, x):
        return F.avg_pool2d(x, *self._geometry(x))

    def backward(self, dy):
        return F.avg_pool2d_backward(dy, self._x_shape, *self.pool_size, *self.strides, self._pads)

