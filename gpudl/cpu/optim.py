"""The optimizers' updates on the CPU, in place, one pass over a parameter, the elements split over the threads.

Each element is updated by the NumPy reference's arithmetic in the same order and dtype (SGD: g = grad + lambda w,
v = mu v + g, w -= lr v; Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, w -= step m / (sqrt(v / c2) + eps)),
so the results are the reference's to the bit. The learning rate, the step count and Adam's scalars are arrays
(as on the GPU), read here.
"""
import numpy
from numba import prange

from .loader import kernel, real_arrays, threads_for


def _cell(what, name, a, size, dtype):
    """A scalar array: `size` elements of `dtype`."""
    if getattr(a, "dtype", None) != dtype or tuple(a.shape) != (size,):
        raise ValueError(f"{what}: {name} must be an array of shape ({size},) and dtype {dtype}, got "
                         f"{getattr(a, 'shape', type(a).__name__)} of dtype {getattr(a, 'dtype', None)}")


def _parameter_arrays(what, w, *others):
    """Check that a parameter and its gradient and buffers are alike (shape, dtype, C-contiguous)."""
    real_arrays(what, w, *others)
    for a in (w,) + others:
        if a.shape != w.shape or not a.flags.c_contiguous:
            raise ValueError(f"{what}: arrays of shape {tuple(a.shape)} and {tuple(w.shape)} must be alike and "
                             f"C-contiguous")


@kernel
def _sgd(w, grad, velocity, lr, momentum, weight_decay, decay):
    rate = lr[0]
    for k in prange(w.size):
        g = grad[k] + weight_decay * w[k] if decay else grad[k]
        if velocity.size:
            g = velocity[k] * momentum + g
            velocity[k] = g
        w[k] -= rate * g


def sgd_step(w, grad, velocity, lr, momentum, weight_decay, count, bump):
    """In place: w -= lr g (g = grad + weight_decay w), or with momentum v = momentum v + g, w -= lr v.

    lr: (1,) array of w's dtype; count: (1,) int64 array, incremented by one when bump is true.
    """
    _cell("sgd_step", "lr", lr, 1, w.dtype)
    _cell("sgd_step", "count", count, 1, numpy.int64)
    buffers = (grad,) if velocity is None else (grad, velocity)
    _parameter_arrays("sgd_step", w, *buffers)
    real = w.dtype.type
    threads_for(w.size)
    _sgd(w.reshape(-1), grad.reshape(-1), numpy.empty(0, w.dtype) if velocity is None else velocity.reshape(-1), lr,
         real(momentum), real(weight_decay), bool(weight_decay))
    if bump:
        count += 1


def sgd_steps(ws, grads, velocities, lr, momentum, weight_decay, count, bump):
    """sgd_step for every parameter of ws: velocities is None (no momentum) or a list of buffers like ws; the count
    is bumped once."""
    for k, (w, grad) in enumerate(zip(ws, grads)):
        sgd_step(w, grad, None if velocities is None else velocities[k], lr, momentum, weight_decay, count,
                 bump and k == 0)


def adam_scalars(lr, count, betas, scalars):
    """Once per step: count += 1 (t), scalars = (lr / (1 - beta1^t), 1 - beta2^t)."""
    _cell("adam_scalars", "count", count, 1, numpy.int64)
    _cell("adam_scalars", "scalars", scalars, 2, lr.dtype)
    count += 1
    t = int(count[0])
    scalars[0] = float(lr[0]) / (1 - betas[0] ** t)
    scalars[1] = 1 - betas[1] ** t


@kernel
def _adam(w, grad, m, v, scalars, b1, one_minus_b1, b2, one_minus_b2, eps, weight_decay, decay):
    step, correction = scalars[0], scalars[1]
    for k in prange(w.size):
        g = grad[k] + weight_decay * w[k] if decay else grad[k]
        m[k] = m[k] * b1 + one_minus_b1 * g
        v[k] = v[k] * b2 + one_minus_b2 * (g * g)
        w[k] -= step * m[k] / (numpy.sqrt(v[k] / correction) + eps)


def adam_step(w, grad, m, v, scalars, betas, eps, weight_decay):
    """In place: the moments m, v and the bias-corrected Adam step of w, with scalars from adam_scalars."""
    _parameter_arrays("adam_step", w, grad, m, v)
    _cell("adam_step", "scalars", scalars, 2, w.dtype)
    real = w.dtype.type
    b1, b2 = betas
    threads_for(w.size * 4)
    _adam(w.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), scalars, real(b1), real(1 - b1), real(b2),
          real(1 - b2), real(eps), real(weight_decay), bool(weight_decay))


def adam_steps(ws, grads, ms, vs, scalars, betas, eps, weight_decay):
    """adam_step for every parameter of ws, with scalars from adam_scalars."""
    for w, grad, m, v in zip(ws, grads, ms, vs):
        adam_step(w, grad, m, v, scalars, betas, eps, weight_decay)
