"""The op of softmax.cu: softmax cross-entropy against integer labels, every row's loss and gradient in one pass."""
import numpy

from ..backend import get_array_module
from .loader import INDEX_TYPE, ints, launch, real_input


def softmax_cross_entropy(logits, labels):
    """(loss_rows (N,), dlogits (N, K)): -log softmax(z_n)[y_n] per row and (softmax(z) - onehot(y)) / N."""
    logits = real_input(logits, "softmax_cross_entropy: logits", 2)
    n, k = logits.shape
    xp = get_array_module(logits)
    if tuple(labels.shape) != (n,) or not numpy.issubdtype(labels.dtype, numpy.integer):
        raise ValueError(f"softmax_cross_entropy: expected {n} integer labels, got shape {tuple(labels.shape)} "
                         f"of dtype {labels.dtype}")
    labels = xp.ascontiguousarray(labels.astype(INDEX_TYPE, copy=False))
    if k == 0:
        raise ValueError(f"softmax_cross_entropy: logits of shape {tuple(logits.shape)} have no class")
    loss_rows = xp.empty((n,), dtype=logits.dtype)
    dlogits = xp.empty((n, k), dtype=logits.dtype)
    launch("softmax.cu", "softmax_cross_entropy", n,
           (logits, labels, loss_rows, dlogits) + ints(n, k) + (logits.dtype.type(n),))
    return loss_rows, dlogits
