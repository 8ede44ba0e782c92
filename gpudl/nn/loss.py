"""Losses: forward(pred, target) returns the loss as a 0-d array on the data's device; backward() returns dpred.

With check=True (the default) the inputs are validated: shapes, label range, and NaN or infinity in the
prediction or target. On a GPU the value checks read one value back to the host per call; pass check=False in a
hot loop that watches the loss itself. Inside F.value_checks(False) (a recorded step) they are skipped too.
"""
import numpy

from .. import functional as F
from ..backend import get_array_module


class Loss:
    def __init__(self, check=True):
        self.check = check

    def _checks_values(self):
        """Whether this call validates values (label range, NaN): check=True, and not turned off for the thread."""
        return self.check and F.value_checks_enabled()

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def backward(self):
        """dL/dpred of the last forward."""
        if getattr(self, "_dpred", None) is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward()")
        return self._dpred

    def _check_finite(self, pred, target):
        if not F.all_finite(pred):
            raise ValueError(f"{type(self).__name__}: the prediction contains NaN or infinity "
                             f"(shape {tuple(pred.shape)}); the model has diverged or its input holds NaN")
        if numpy.issubdtype(target.dtype, numpy.floating) and not F.all_finite(target):
            raise ValueError(f"{type(self).__name__}: the target contains NaN or infinity")


def _check_pred(loss, pred, target):
    for name, a in (("prediction", pred), ("target", target)):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(f"{type(loss).__name__}: the {name} must be an array, got {type(a).__name__}")
    if not numpy.issubdtype(pred.dtype, numpy.floating):
        raise TypeError(f"{type(loss).__name__}: the prediction must be floating-point, got dtype {pred.dtype}")
    if pred.ndim and pred.shape[0] == 0:
        raise ValueError(f"{type(loss).__name__}: empty batch (prediction shape {tuple(pred.shape)}); the mean "
                         f"loss of no samples is undefined")
    if get_array_module(pred) is not get_array_module(target):
        raise TypeError(f"{type(loss).__name__}: prediction and target are on different devices "
                        f"({get_array_module(pred).__name__} vs {get_array_module(target).__name__})")


class MSELoss(Loss):
    """J = 1/m sum over samples of 1/2 ||f(x) - y||^2 (the lecture's eqs. 19-20)."""

    def forward(self, pred, target):
        _check_pred(self, pred, target)
        if pred.shape != target.shape:
            raise ValueError(f"MSELoss: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        if pred.ndim == 0:
            raise ValueError("MSELoss: expected a batch (N, ...), got a 0-d prediction")
        if self._checks_values():
            self._check_finite(pred, target)
        loss, self._dpred = F.mse(pred, target.astype(pred.dtype, copy=False))
        return get_array_module(pred).asarray(loss)


class SoftmaxCrossEntropy(Loss):
    """L = -1/m sum_k log softmax(z_k)[y_k], for logits (N, K) and integer labels (N,) or one-hot targets (N, K)."""

    def forward(self, pred, target):
        _check_pred(self, pred, target)
        if pred.ndim != 2:
            raise ValueError(f"SoftmaxCrossEntropy: expected logits of shape (N, K), got {tuple(pred.shape)}")
        n, k = pred.shape
        if target.ndim == 1 and numpy.issubdtype(target.dtype, numpy.integer):
            if target.shape[0] != n:
                raise ValueError(f"SoftmaxCrossEntropy: {target.shape[0]} labels for {n} rows of logits")
            if self._checks_values() and n and (bool((target < 0).any()) or bool((target >= k).any())):
                raise ValueError(f"SoftmaxCrossEntropy: labels must lie in [0, {k}), got values from "
                                 f"{int(target.min())} to {int(target.max())}")
            if self._checks_values():
                self._check_finite(pred, target)
            loss, self._dpred = F.softmax_cross_entropy_labels(pred, target)
            return get_array_module(pred).asarray(loss)
        if target.shape != pred.shape:
            raise ValueError(f"SoftmaxCrossEntropy: expected integer labels of shape ({n},) or one-hot targets of "
                             f"shape ({n}, {k}), got {tuple(target.shape)} of dtype {target.dtype}")
        if self._checks_values():
            self._check_finite(pred, target)
        loss, self._dpred = F.softmax_cross_entropy(pred, target.astype(pred.dtype, copy=False))
        return get_array_module(pred).asarray(loss)


class SequenceCrossEntropy(Loss):
    """Mean cross-entropy per step: logits (N, T, V) against integer targets (N, T), taken as N*T rows of
    SoftmaxCrossEntropy: L = -1/(N T) sum_{n,t} log softmax(z_nt)[y_nt]."""

    def __init__(self, check=True):
        super().__init__(check)
        self.rows = SoftmaxCrossEntropy(check=check)

    def forward(self, pred, target):
        _check_pred(self, pred, target)
        if pred.ndim != 3 or tuple(target.shape) != tuple(pred.shape[:2]):
            raise ValueError(f"SequenceCrossEntropy: expected logits (N, T, V) and integer targets (N, T), got "
                             f"{tuple(pred.shape)} and {tuple(target.shape)}")
        n, t, v = pred.shape
        loss = self.rows.forward(pred.reshape(n * t, v), target.reshape(n * t))
        self._dpred = self.rows.backward().reshape(pred.shape)
        return loss
