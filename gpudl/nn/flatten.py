"""Flatten: images to feature vectors for the dense layers that follow."""
from .module import Module


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W), e.g. LeNet-5's 16x5x5 maps into 400 features."""

    def forward(self, x):
        if not hasattr(x, "ndim") or x.ndim < 2:
            raise ValueError(f"Flatten: expected an array of rank >= 2, got {getattr(x, 'shape', type(x).__name__)}")
        if x.shape[0] == 0:
            raise ValueError(f"Flatten: empty batch (input shape {tuple(x.shape)}); a batch needs at least one "
                             f"sample")
        self._shape = x.shape
        return self._forward_output(x.reshape(x.shape[0], -1))

    def backward(self, dy, input_grad=True):
        dy = self._backward_input(dy, consume=False)
        return dy.reshape(self._shape) if input_grad else None
