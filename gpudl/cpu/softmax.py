"""Softmax cross-entropy against integer labels on the CPU: every row's loss and gradient in one pass over the row,
the rows split over the threads. A label outside [0, K) matches no class."""
import math

import numpy
from numba import prange, uint64

from .loader import kernel, real_arrays, threads_for


@kernel
def _softmax_cross_entropy(logits, labels, loss_rows, dlogits, n, k):
    width = uint64(k)
    for r in prange(n):
        at = uint64(r) * width
        top = logits[at]
        for j in range(width):
            top = max(top, logits[at + j])
        total = 0.0
        for j in range(width):
            e = math.exp(logits[at + j] - top)          # at most 1: no overflow
            dlogits[at + j] = e
            total += e
        label = labels[r]
        inside = 0 <= label < k
        loss_rows[r] = math.log(total) - (logits[at + uint64(label)] - top) if inside else 0.0
        scale = 1.0 / (total * n)
        for j in range(width):
            dlogits[at + j] = dlogits[at + j] * scale
        if inside:
            dlogits[at + uint64(label)] -= 1.0 / n


def softmax_cross_entropy(logits, labels):
    """(loss_rows (N,), dlogits (N, K)): -log softmax(z_n)[y_n] per row and (softmax(z) - onehot(y)) / N."""
    (logits,) = real_arrays("softmax_cross_entropy", logits)
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: expected logits of shape (N, K), got {tuple(logits.shape)}")
    n, k = logits.shape
    if tuple(labels.shape) != (n,) or not numpy.issubdtype(labels.dtype, numpy.integer):
        raise ValueError(f"softmax_cross_entropy: expected {n} integer labels, got shape {tuple(labels.shape)} "
                         f"of dtype {labels.dtype}")
    if k == 0:
        raise ValueError(f"softmax_cross_entropy: logits of shape {tuple(logits.shape)} have no class")
    loss_rows = numpy.empty(n, dtype=logits.dtype)
    dlogits = numpy.empty((n, k), dtype=logits.dtype)
    threads_for(logits.size * 4)
    _softmax_cross_entropy(logits.reshape(-1), numpy.ascontiguousarray(labels, dtype=numpy.int64), loss_rows,
                           dlogits.reshape(-1), n, k)
    return loss_rows, dlogits
