"""Loss functions: the lecture's mean squared error J and the softmax cross-entropy."""
import numpy

from ..backend import get_array_module
from .arrays import one_hot_rows
from .dispatch import kernels_for
from .threads import parallel_chunks


def mse(pred, target):
    """J = 1/m sum_k 1/2 ||f(x_k) - y_k||^2 (eqs. 19-20); returns (J, dJ/dpred).

    On the kernel path: one launch for dJ/dpred and the rows' squared errors, one for their sum (J 0-d, on the device).
    """
    kernels = kernels_for(pred)
    if kernels is not None:
        xp = get_array_module(pred)
        return kernels.mse(xp.ascontiguousarray(pred), xp.ascontiguousarray(target))
    m = pred.shape[0]
    diff = pred - target
    return 0.5 * (diff * diff).sum() / m, diff / m


def log_softmax(z):
    """log softmax along the last axis, shifted by the row maximum so exp never overflows."""
    xp = get_array_module(z)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(z):
    """softmax(z)_j = e^(z_j) / sum_k e^(z_k) along the last axis (through log_softmax: no overflow)."""
    return get_array_module(z).exp(log_softmax(z))


def one_hot(labels, classes, dtype):
    """Integer labels (N,) as rows of a (N, classes) identity (a label outside [0, classes) gives a zero row)."""
    return one_hot_rows(labels, classes, dtype)


def softmax_cross_entropy(logits, target):
    """L = -1/m sum_k sum_j t_kj log softmax(z_k)_j; target is one-hot or probabilities (N, K). Returns (L, dL/dz)."""
    xp = get_array_module(logits)
    m = logits.shape[0]
    logp = log_softmax(logits)
    loss = -(target * logp).sum() / m
    return loss, (xp.exp(logp) - target) / m


def softmax_cross_entropy_labels(logits, labels):
    """softmax_cross_entropy against integer labels (N,); returns (L, dL/dz) with dL/dz = (softmax(z) - onehot) / m.

    On cupy arrays one kernel (gpudl/kernels/softmax.cu) computes every row's loss and gradient in one pass and the
    loss is the mean of the row losses (a second launch). A label outside [0, K) matches no class on both paths.
    """
    kernels = kernels_for(logits)
    if kernels is not None:
        loss_rows, dlogits = kernels.softmax_cross_entropy(logits, labels)
        return kernels.scaled_sum(loss_rows, 1, loss_rows.size), dlogits
    return _softmax_cross_entropy_labels_xp(logits, labels)


def _softmax_cross_entropy_labels_xp(logits, labels):
    """The NumPy path, rows split over the threads: row loss log sum_j e^(z_j - max) - (z_y - max), and
    dL/dz = (softmax(z) - onehot(y)) / m written in place, without a one-hot matrix."""
    m, k = logits.shape
    dlogits = numpy.empty(logits.shape, dtype=numpy.result_type(logits, 0.0))
    loss_rows = numpy.zeros(m, dtype=dlogits.dtype)

    def rows(start, stop):
        z, d, y = logits[start:stop], dlogits[start:stop], labels[start:stop]
        numpy.subtract(z, z.max(axis=1, keepdims=True), out=d)             # shifted: every exp is at most 1
        hit = numpy.flatnonzero((y >= 0) & (y < k))                         # a label outside [0, K) adds nothing
        picked = d[hit, y[hit]]
        numpy.exp(d, out=d)
        total = d.sum(axis=1, keepdims=True)
        loss_rows[start:stop][hit] = numpy.log(total[hit, 0]) - picked
        d /= total
        d[hit, y[hit]] -= 1
        d /= m
    parallel_chunks(m, rows, k * 4)
    return loss_rows.sum() / m, dlogits
