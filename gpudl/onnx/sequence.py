"""Layers for sequences as other frameworks arrange them: SequenceDense and SwapBatchTime.

ONNX's MatMul + Add on a rank-3 tensor (N, T, F) compute y_t = x_t W + b at each step; gpudl's Dense takes (N, F).
The char-LSTM's head is that layer, and the import builds one wherever a graph applies a dense layer to a sequence.
gpudl's recurrent layers read batch-first sequences (N, T, F); a graph whose input or output is time-major (T, N, F),
as PyTorch's nn.LSTM without batch_first writes it, gets a SwapBatchTime at that end.
"""
from .. import nn
from ..nn.module import Module, check_input


class SequenceDense(nn.Dense):
    """(N, T, in) -> (N, T, out): y[n, t] = x[n, t] W + b, the weights shared across steps (W (in, out), b (out,))."""

    def forward(self, x):
        check_input(self, x, 3, f"(N, T, {self.in_features})")
        n, t, f = x.shape
        return super().forward(x.reshape(n * t, f)).reshape(n, t, self.out_features)

    def backward(self, dy, input_grad=True):
        n, t, _ = dy.shape
        dx = super().backward(dy.reshape(n * t, self.out_features), input_grad=input_grad)
        return None if dx is None else dx.reshape(n, t, self.in_features)

    def __repr__(self):
        return f"SequenceDense({self.in_features}, {self.out_features})"


class SwapBatchTime(Module):
    """(A, B, F) -> (B, A, F): y[b, a] = x[a, b]; time-major sequences to batch-first ones and back (a view)."""

    def forward(self, x):
        check_input(self, x, 3, "(A, B, F)")
        return self._forward_output(x.transpose(1, 0, 2))

    def backward(self, dy, input_grad=True):
        dy = self._backward_input(dy, consume=False)
        return dy.transpose(1, 0, 2) if input_grad else None

    def __repr__(self):
        return "SwapBatchTime()"
