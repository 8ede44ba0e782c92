"""The optimizers' update rules (PyTorch's), applied in place to one parameter array.

g = grad + lambda w (weight decay, the lecture's lambda r(w) with r(w) = 1/2 ||w||^2);
SGD: v = mu v + g, w -= lr v (w -= lr g without momentum);
Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, w -= lr m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - b1^t),
v_hat = v / (1 - b2^t).
The NumPy path is the reference; on cupy arrays one kernel of gpudl/kernels/optim.cu does a whole update in one pass,
with every scalar passed by value (no value is read back from the device).
"""
from .. import kernels
from ..backend import get_array_module
from .dispatch import on_kernel_path


def _decayed(w, grad, weight_decay):
    return grad + weight_decay * w if weight_decay else grad


def sgd_step(w, grad, velocity, lr, momentum=0.0, weight_decay=0.0):
    """Update w in place; returns the velocity buffer (None without momentum; created on the first step)."""
    if on_kernel_path(w):
        if momentum and velocity is None:
            velocity = get_array_module(w).zeros_like(w)     # mu * 0 + g = g: the first step keeps v = g
        kernels.sgd_step(w, grad, velocity if momentum else None, lr, momentum, weight_decay)
        return velocity
    g = _decayed(w, grad, weight_decay)
    if momentum:
        if velocity is None:
            velocity = g.copy()
        else:
            velocity *= momentum
            velocity += g
        g = velocity
    w -= lr * g
    return velocity


def adam_step(w, grad, m, v, lr, betas, eps, step, weight_decay=0.0):
    """Update w, m and v in place at step t = `step` (1 on the first call); m and v start as zeros."""
    b1, b2 = betas
    correction1 = 1 - b1 ** step
    correction2 = 1 - b2 ** step
    if on_kernel_path(w):
        kernels.adam_step(w, grad, m, v, lr / correction1, betas, correction2, eps, weight_decay)
        return
    xp = get_array_module(w)
    g = _decayed(w, grad, weight_decay)
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * (g * g)
    denom = xp.sqrt(v / correction2) + eps
    w -= (lr / correction1) * m / denom
