"""Activation functions as layers: y = phi(v) elementwise, dv = dy * phi'(v).

Each layer is one (phi, phi') pair of gpudl.functional; the backward takes the input v, or the output y where phi'
is cheaper from it (sigmoid, tanh).
"""
from .. import functional as F
from .module import Module


class Activation(Module):
    """An elementwise phi with no parameters; a subclass names the forward and backward functions."""

    keeps_output = False  # backward needs y (sigmoid, tanh) instead of v
    _kept = None

    def forward(self, v):
        if not hasattr(v, "dtype"):
            raise TypeError(f"{self!r}: expected an array, got {type(v).__name__}")
        y = self._phi(v)
        self._kept = y if self.keeps_output else v
        return self._forward_output(y)

    def backward(self, dy, input_grad=True):
        dy = self._backward_input(dy, consume=False)
        return self._dphi(self._kept, dy) if input_grad else None


def _activation(name, phi, dphi, doc, keeps_output=False):
    """The Activation subclass `name` of the pair (phi, phi'); keeps_output: phi' is computed from y."""
    return type(name, (Activation,), {"__doc__": doc, "__module__": __name__, "keeps_output": keeps_output,
                                      "_phi": staticmethod(phi), "_dphi": staticmethod(dphi)})


Step = _activation("Step", F.step, F.step_backward, "Threshold: 1 for v >= 0, else 0 (no gradient).")
Sign = _activation("Sign", F.sign, F.sign_backward, "Signum: -1, 0 or +1 (no gradient).")
Tanh = _activation("Tanh", F.tanh, F.tanh_backward, "Hyperbolic tangent; phi' = 1 - y^2.", keeps_output=True)
ReLU = _activation("ReLU", F.relu, F.relu_backward, "Rectified linear unit max(0, v).")
Softplus = _activation("Softplus", F.softplus, F.softplus_backward, "ln(1 + e^v), the smooth ReLU.")


class Sigmoid(Activation):
    """Logistic 1 / (1 + exp(-alpha v)); phi' = alpha y (1 - y)."""
    keeps_output = True

    def __init__(self, alpha=1.0):
        self.alpha = F.check_slope(alpha)

    def _phi(self, v):
        return F.sigmoid(v, self.alpha)

    def _dphi(self, y, dy):
        return F.sigmoid_backward(y, dy, self.alpha)

    def __repr__(self):
        return f"Sigmoid(alpha={self.alpha})"
