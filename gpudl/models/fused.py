"""FusedSequential: a Sequential whose layers hand each activation to the layer before it when that layer can apply
it itself, so that on the GPU a Dense or Conv2D layer and its ReLU (Sigmoid, Tanh) cost one launch after the GEMM
forward (bias and phi together) and one pass backward (phi' and the bias gradient together).

The layers, their parameters and the results are those of nn.Sequential over the same list (the NumPy path runs the
same functional ops one after another); only who runs the activation changes. A layer applies the activation after
it when it says so (`applies_activation`, and forward(x, activation=layer)) and the activation has a fused kernel
(`fused()`); that activation layer is then neither run nor back-propagated on its own.
"""
from .. import nn
from ..nn.activation import Activation


def fusion_plan(layers):
    """((index of a layer, whether it applies the activation after it), ...) for running `layers` in order."""
    plan, k = [], 0
    while k < len(layers):
        following = layers[k + 1] if k + 1 < len(layers) else None
        fuse = (getattr(layers[k], "applies_activation", False) and isinstance(following, Activation) and
                following.fused() is not None)
        plan.append((k, fuse))
        k += 2 if fuse else 1
    return tuple(plan)


class FusedSequential(nn.Sequential):
    """nn.Sequential, with each activation that a Dense or Conv2D layer can apply run by that layer."""

    _plan = ()      # the fusion_plan of the last forward, which its backward walks back

    def forward(self, x):
        self._plan = fusion_plan(self.layers)
        for k, fuse in self._plan:
            layer = self.layers[k]
            x = layer.forward(x, activation=self.layers[k + 1]) if fuse else layer.forward(x)
        return x

    def backward(self, dy, input_grad=True):
        """dx from dy through the layers of the last forward, in reverse; input_grad=False as nn.Sequential's."""
        if not self._plan:
            return super().backward(dy, input_grad)
        for k, _ in reversed(self._plan[1:]):
            dy = self.layers[k].backward(dy)
        first = self.layers[self._plan[0][0]]
        return first.backward(dy) if input_grad else first.backward(dy, input_grad=False)
