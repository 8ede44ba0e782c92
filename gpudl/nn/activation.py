"""Activation functions as layers: y = phi(v) elementwise, dv = dy * phi'(v).

Each layer is one (phi, phi') pair of gpudl.functional; the backward takes the input v, or the output y where phi'
is cheaper from it (sigmoid, tanh). ReLU, Sigmoid and Tanh can also be applied by the Dense or Conv2D layer before
them, in that layer's last launch (`fused()`; models.FusedSequential hands them over).
"""
from .. import functional as F
from .module import Module


class Activation(Module):
    """An elementwise phi with no parameters; a subclass names the forward and backward functions."""

    keeps_output = False  # backward needs y (sigmoid, tanh) instead of v
    fused_name = None     # phi's name among functional.FUSABLE, when a layer before it can apply it itself
    _kept = None

    def fused(self):
        """(name, alpha) of phi for a Dense or Conv2D layer that applies it itself (forward(x, activation=self)),
        or None when phi has no fused kernel."""
        return None if self.fused_name is None else (self.fused_name, getattr(self, "alpha", 1.0))

    def forward(self, v):
        if not hasattr(v, "dtype"):
            raise TypeError(f"{self!r}: expected an array, got {type(v).__name__}")
        y = self._phi(v)
        self._kept = y if self.keeps_output else v
        return self._forward_output(y)

    def backward(self, dy, input_grad=True):
        dy = self._backward_input(dy, consume=False)
        return self._dphi(self._kept, dy) if input_grad else None


def _activation(name, phi, dphi, doc, keeps_output=False, fused_name=None):
    """The Activation subclass `name` of the pair (phi, phi'); keeps_output: phi' is computed from y."""
    return type(name, (Activation,), {"__doc__": doc, "__module__": __name__, "keeps_output": keeps_output,
                                      "fused_name": fused_name, "_phi": staticmethod(phi),
                                      "_dphi": staticmethod(dphi)})


Step = _activation("Step", F.step, F.step_backward, "Threshold: 1 for v >= 0, else 0 (no gradient).")
Sign = _activation("Sign", F.sign, F.sign_backward, "Signum: -1, 0 or +1 (no gradient).")
Tanh = _activation("Tanh", F.tanh, F.tanh_backward, "Hyperbolic tangent; phi' = 1 - y^2.", keeps_output=True,
                   fused_name="tanh")
ReLU = _activation("ReLU", F.relu, F.relu_backward, "Rectified linear unit max(0, v).", fused_name="relu")
Softplus = _activation("Softplus", F.softplus, F.softplus_backward, "ln(1 + e^v), the smooth ReLU.")


class Sigmoid(Activation):
    """Logistic 1 / (1 + exp(-alpha v)); phi' = alpha y (1 - y)."""
    keeps_output = True
    fused_name = "sigmoid"

    def __init__(self, alpha=1.0):
        self.alpha = F.check_slope(alpha)

    def _phi(self, v):
        return F.sigmoid(v, self.alpha)

    def _dphi(self, y, dy):
        return F.sigmoid_backward(y, dy, self.alpha)

    def __repr__(self):
        return f"Sigmoid(alpha={self.alpha})"


def fused_activation(layer, activation):
    """(name, alpha) of the activation layer that `layer` is asked to apply itself, None for none, or a ValueError
    when it has no fused kernel."""
    if activation is None:
        return None
    fused = activation.fused() if isinstance(activation, Activation) else None
    if fused is None:
        raise ValueError(f"{layer!r}: cannot apply {activation!r} itself (only ReLU, Sigmoid and Tanh)")
    return fused
