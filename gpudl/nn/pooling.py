"""Max and average pooling layers over NCHW images; strides default to the pool size."""
from .. import functional as F
from ..geometry import Window, check_window_args
from .module import Module, check_input


class _Pool2D(Module):
    def __init__(self, pool_size, strides=None, padding="valid"):
        name = f"{type(self).__name__}({pool_size})"
        self.pool_size, self.strides, self.padding = check_window_args(
            name, pool_size, pool_size if strides is None else strides, padding)
        self._window = None         # the Window of the last input size (made again when it changes)

    def _window_over(self, x):
        """The checked Window over x (N, C, H, W); the input's shape is kept for the backward."""
        check_input(self, x, 4, "(N, C, H, W)")
        window = self._window
        if window is None or (window.h, window.w) != tuple(x.shape[2:]):
            window = self._window = Window.of(x.shape, self.pool_size, self.strides, self.padding, what=self,
                                              pooling=True)
        self._x_shape = x.shape
        return window

    def __repr__(self):
        return f"{type(self).__name__}({self.pool_size}, strides={self.strides}, padding={self.padding!r})"


class MaxPool2D(_Pool2D):
    """y = the maximum of each window; the gradient goes to the window's first maximum."""

    def forward(self, x):
        y, self._argmax = F.max_pool2d(x, self._window_over(x))
        return self._forward_output(y)

    def backward(self, dy, input_grad=True):
        dy = self._backward_input(dy)
        argmax, self._argmax = self._argmax, None
        return F.max_pool2d_backward(dy, argmax, self._x_shape, self._window) if input_grad else None


class AvgPool2D(_Pool2D):
    """y = the mean of each window's real cells (padded cells are not counted)."""

    def forward(self, x):
        return self._forward_output(F.avg_pool2d(x, self._window_over(x)))

    def backward(self, dy, input_grad=True):
        dy = self._backward_input(dy, consume=False)
        return F.avg_pool2d_backward(dy, self._x_shape, self._window) if input_grad else None
