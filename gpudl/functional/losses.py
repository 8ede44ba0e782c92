"""Loss functions: the lecture's mean squared error J and the softmax cross-entropy."""
from ..backend import get_array_module
from .arrays import one_hot_rows
from .dispatch import kernels_for


def mse(pred, target):
    """J = 1/m sum_k 1/2 ||f(x_k) - y_k||^2 (eqs. 19-20); returns (J, dJ/dpred).

    Where kernels run: one kernel for dJ/dpred and the rows' squared errors, one for their sum (J 0-d, on the device).
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

    Where kernels run, one kernel computes every row's loss and gradient in one pass and the loss is the mean of the
    row losses (a second one). A label outside [0, K) matches no class on every path.
    """
    kernels = kernels_for(logits)
    if kernels is not None:
        loss_rows, dlogits = kernels.softmax_cross_entropy(logits, labels)
        return kernels.scaled_sum(loss_rows, 1, loss_rows.size), dlogits
    return softmax_cross_entropy(logits, one_hot(labels, logits.shape[1], logits.dtype))
