"""The ops of optim.cu: one fused, in-place update of a parameter by SGD (with or without momentum) or Adam; and
the same update of every parameter of a list in one launch (sgd_steps, adam_steps: a table of arrays).

The learning rate, the step count and Adam's bias corrections are device arrays (`lr` of shape (1,) and w's dtype,
`count` (1,) int64, `scalars` (2,)), read by the kernels at run time, so a captured step keeps following them.
"""
from .loader import INDEX_TYPE, ints, launch
from .tables import array_table


def _optim_arrays(what, w, *others):
    """Check that a parameter and its gradient and buffers are alike (shape, dtype, C-contiguous); n = w.size."""
    for name, a in others:
        if tuple(a.shape) != tuple(w.shape) or a.dtype != w.dtype:
            raise ValueError(f"{what}: {name} has shape {tuple(a.shape)} and dtype {a.dtype}, the parameter "
                             f"{tuple(w.shape)} and {w.dtype}")
    return w.dtype.type


def _cell(what, name, a, size, dtype):
    """A device scalar array: `size` elements of `dtype`."""
    if getattr(a, "dtype", None) != dtype or tuple(a.shape) != (size,):
        raise ValueError(f"{what}: {name} must be an array of shape ({size},) and dtype {dtype}, got "
                         f"{getattr(a, 'shape', type(a).__name__)} of dtype {getattr(a, 'dtype', None)}")


def sgd_step(w, grad, velocity, lr, momentum, weight_decay, count, bump):
    """In place: w -= lr g (g = grad + weight_decay w), or with momentum v = momentum v + g, w -= lr v.

    lr: (1,) array of w's dtype; count: (1,) int64 array, incremented by one when bump is true.
    """
    _cell("sgd_step", "lr", lr, 1, w.dtype)
    _cell("sgd_step", "count", count, 1, INDEX_TYPE)
    counting = (count,) + ints(1 if bump else 0)
    if velocity is None:
        real = _optim_arrays("sgd_step", w, ("grad", grad))
        launch("optim.cu", "sgd_step", w.size, (w, grad) + ints(w.size) + (lr, real(weight_decay)) + counting)
    else:
        real = _optim_arrays("sgd_step", w, ("grad", grad), ("velocity", velocity))
        launch("optim.cu", "sgd_momentum_step", w.size,
               (w, grad, velocity) + ints(w.size) + (lr, real(momentum), real(weight_decay)) + counting)


def adam_scalars(lr, count, betas, scalars):
    """On the device, once per step: count += 1 (t), scalars = (lr / (1 - beta1^t), 1 - beta2^t)."""
    _cell("adam_scalars", "count", count, 1, INDEX_TYPE)
    _cell("adam_scalars", "scalars", scalars, 2, lr.dtype)
    real = lr.dtype.type
    split = tuple(part for beta in betas for part in (real(beta), real(beta - float(real(beta)))))
    launch("optim.cu", "adam_scalars", 1, (lr, count, scalars) + split)


def adam_step(w, grad, m, v, scalars, betas, eps, weight_decay):
    """In place: the moments m, v and the bias-corrected Adam step of w, with scalars from adam_scalars."""
    real = _optim_arrays("adam_step", w, ("grad", grad), ("m", m), ("v", v))
    _cell("adam_step", "scalars", scalars, 2, w.dtype)
    b1, b2 = betas
    launch("optim.cu", "adam_step", w.size,
           (w, grad, m, v) + ints(w.size) + (scalars,) + tuple(real(s) for s in (b1, 1 - b1, b2, 1 - b2, eps,
                                                                                   weight_decay)))


def sgd_steps(ws, grads, velocities, lr, momentum, weight_decay, count, bump):
    """sgd_step for every parameter of ws (one dtype) in one launch: velocities is None (no momentum) or a list of
    buffers like ws."""
    groups = (ws, grads) if velocities is None else (ws, grads, velocities)
    table, n, total, dtype = array_table("sgd_steps", *(list(g) for g in groups))
    _cell("sgd_steps", "lr", lr, 1, dtype)
    _cell("sgd_steps", "count", count, 1, INDEX_TYPE)
    counting = (count,) + ints(1 if bump else 0)
    real = dtype.type
    if velocities is None:
        launch("optim.cu", "sgd_table", total, (table,) + ints(n) + (lr, real(weight_decay)) + counting)
    else:
        launch("optim.cu", "sgd_momentum_table", total,
               (table,) + ints(n) + (lr, real(momentum), real(weight_decay)) + counting)


def adam_steps(ws, grads, ms, vs, scalars, betas, eps, weight_decay):
    """adam_step for every parameter of ws (one dtype) in one launch, with scalars from adam_scalars."""
    table, n, total, dtype = array_table("adam_steps", list(ws), list(grads), list(ms), list(vs))
    _cell("adam_steps", "scalars", scalars, 2, dtype)
    real = dtype.type
    b1, b2 = betas
    launch("optim.cu", "adam_table", total,
           (table,) + ints(n) + (scalars,) + tuple(real(s) for s in (b1, 1 - b1, b2, 1 - b2, eps, weight_decay)))
