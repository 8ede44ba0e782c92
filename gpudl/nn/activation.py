"""Activation functions as layers: y = phi(v) elementwise, dv = dy * phi'(v)."""
from .. import functional as F
from .module import Module


class Activation(Module):
    """An elementwise phi with no parameters; subclasses name the forward and backward functions."""

    keeps_output = False  # backward needs y (sigmoid, tanh) instead of v
    _kept = None

    def forward(self, v):
        if not hasattr(v, "dtype"):
            raise TypeError(f"{self!r}: expected an array, got {type(v).__name__}")
        y = self._phi(v)
        self._kept = y if self.keeps_output else v
        return y

    def backward(self, dy):
        if self._kept is None:
            raise RuntimeError(f"{self!r}.backward() called before forward()")
        return self._dphi(self._kept, dy)


class Step(Activation):
    """Threshold: 1 for v >= 0, else 0 (no gradient)."""
    _phi = staticmethod(F.step)
    _dphi = staticmethod(F.step_backward)


class Sign(Activation):
    """Signum: -1, 0 or +1 (no gradient)."""
    _phi = staticmethod(F.sign)
    _dphi = staticmethod(F.sign_backward)


class Sigmoid(Activation):
    """Logistic 1 / (1 + exp(-alpha v))."""
    keeps_output = True

    def __init__(self, alpha=1.0):
        self.alpha = float(alpha)

    def _phi(self, v):
        return F.sigmoid(v, self.alpha)

    def _dphi(self, y, dy):
        return F.sigmoid_backward(y, dy, self.alpha)

    def __repr__(self):
        return f"Sigmoid(alpha={self.alpha})"


class Tanh(Activation):
    keeps_output = True
    _phi = staticmethod(F.tanh)
    _dphi = staticmethod(F.tanh_backward)


class ReLU(Activation):
    _phi = staticmethod(F.relu)
    _dphi = staticmethod(F.relu_backward)


class Softplus(Activation):
    _phi = staticmethod(F.softplus)
    _dphi = staticmethod(F.softplus_backward)
