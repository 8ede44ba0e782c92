"""The optimizers' update rules (PyTorch's), applied in place to one parameter array.

g = grad + lambda w (weight decay, the lecture's lambda r(w) with r(w) = 1/2 ||w||^2);
SGD: v = mu v + g, w -= lr v (w -= lr g without momentum);
Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, w -= lr m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - b1^t),
v_hat = v / (1 - b2^t).
The NumPy code here is the reference; where kernels run (dispatch.kernels_for), one kernel of the CUDA set
(kernels/optim.cu) or of the CPU set (gpudl/cpu/optim.py) does a whole update in one pass.
What changes between steps lives in small arrays on the parameters' device: the learning rate `lr` ((1,), the
parameter's dtype; a plain number works too), the step count `count` ((1,) int64, incremented here) and Adam's
`scalars` ((2,): lr / (1 - b1^t) and 1 - b2^t). The kernels read them at run time, so nothing is read back to the
host and a captured step follows every change to them.
"""
import numpy

from ..backend import get_array_module
from .dispatch import kernels_for


def _decayed(w, grad, weight_decay):
    return grad + weight_decay * w if weight_decay else grad


def _host_lr(lr):
    """The learning rate as a number, for the NumPy reference (where reading an array costs nothing)."""
    return lr.item(0) if hasattr(lr, "dtype") else lr


def _device_cell(value, like):
    """value as a (1,) array of like's dtype on like's device (a number becomes a new array)."""
    if hasattr(value, "dtype"):
        return value
    return get_array_module(like).full((1,), value, dtype=like.dtype)


def sgd_step(w, grad, velocity, lr, momentum=0.0, weight_decay=0.0, count=None, counts=True):
    """Update w in place; returns the velocity buffer (None without momentum; created on the first step).

    count, when given ((1,) int64), is incremented by one when `counts` (the optimizer counts with its first
    parameter only).
    """
    kernels = kernels_for(w)
    if kernels is not None:
        xp = get_array_module(w)
        if momentum and velocity is None:
            velocity = xp.zeros_like(w)     # mu * 0 + g = g: the first step keeps v = g
        if count is None:
            count, counts = xp.zeros((1,), dtype=numpy.int64), False
        kernels.sgd_step(w, grad, velocity if momentum else None, _device_cell(lr, w), momentum, weight_decay,
                         count, counts)
        return velocity
    if count is not None and counts:
        count += 1
    lr = _host_lr(lr)
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


def sgd_steps(ws, grads, velocities, lr, momentum=0.0, weight_decay=0.0, count=None):
    """sgd_step for every parameter of the list ws (their gradients grads, their velocities a list of buffers or
    None, made at the first step with momentum); count, when given, counts one step. Returns the velocities.

    On the kernel path one launch updates every parameter (a table of the arrays); the NumPy path runs sgd_step on
    each."""
    kernels = kernels_for(ws[0])
    if kernels is not None:
        xp = get_array_module(ws[0])
        velocities = list(velocities)
        if momentum:
            velocities = [xp.zeros_like(w) if v is None else v for w, v in zip(ws, velocities)]
        counts = count is not None
        if count is None:
            count = xp.zeros((1,), dtype=numpy.int64)
        kernels.sgd_steps(ws, grads, velocities if momentum else None, _device_cell(lr, ws[0]), momentum,
                          weight_decay, count, counts)
        return velocities
    return [sgd_step(w, g, v, lr, momentum, weight_decay, count, counts=k == 0)
            for k, (w, g, v) in enumerate(zip(ws, grads, velocities))]


def adam_scalars(lr, count, betas, scalars):
    """Once per step, before the updates: count += 1 (t), scalars = (lr / (1 - b1^t), 1 - b2^t); returns scalars."""
    kernels = kernels_for(scalars)
    if kernels is not None:
        kernels.adam_scalars(lr, count, betas, scalars)
        return scalars
    count += 1
    t = int(count[0])
    scalars[0] = _host_lr(lr) / (1 - betas[0] ** t)
    scalars[1] = 1 - betas[1] ** t
    return scalars


def adam_step(w, grad, m, v, scalars, betas, eps, weight_decay=0.0):
    """Update w, m and v in place with the step's scalars (from adam_scalars); m and v start as zeros."""
    b1, b2 = betas
    kernels = kernels_for(w)
    if kernels is not None:
        kernels.adam_step(w, grad, m, v, scalars, betas, eps, weight_decay)
        return
    xp = get_array_module(w)
    step_size, correction2 = scalars[0], scalars[1]
    g = _decayed(w, grad, weight_decay)
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * (g * g)
    denom = xp.sqrt(v / correction2) + eps
    w -= step_size * m / denom


def adam_steps(ws, grads, ms, vs, scalars, betas, eps, weight_decay=0.0):
    """adam_step for every parameter of the list ws (moments ms, vs: lists of buffers, zeros at first); one launch
    for all of them on the kernel path (a table of the arrays), adam_step on each on the NumPy path."""
    kernels = kernels_for(ws[0])
    if kernels is not None:
        kernels.adam_steps(ws, grads, ms, vs, scalars, betas, eps, weight_decay)
        return
    for w, g, m, v in zip(ws, grads, ms, vs):
        adam_step(w, g, m, v, scalars, betas, eps, weight_decay)


def zero_grads(grads):
    """Every array of `grads` set to zero in place (one launch for all of them on the kernel path)."""
    kernels = kernels_for(grads[0]) if grads else None
    if kernels is not None:
        kernels.fill_all(grads, 0)
        return
    for g in grads:
        g.fill(0)


def clip_grad_norm(grads, max_norm):
    """Scale all gradients by min(1, max_norm / (||g|| + 1e-6)), ||g|| their global L2 norm (summed in float64);
    returns ||g|| as a 0-d float64 array, on the device (nothing is read back)."""
    kernels = kernels_for(grads[0])
    if kernels is not None:
        return kernels.clip_by_global_norm(grads, max_norm)
    xp = get_array_module(grads[0])
    total = xp.sqrt(sum((g.astype(xp.float64) ** 2).sum() for g in grads))
    scale = xp.minimum(1.0, max_norm / (total + 1e-6))
    for g in grads:
        g *= scale.astype(g.dtype)
    return total
