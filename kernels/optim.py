"""The ops of optim.cu: one fused, in-place update of a parameter by SGD (with or without momentum) or Adam."""
from .loader import ints, launch


def _optim_arrays(what, w, *others):
    """Check that a parameter and its gradient and buffers are alike (shape, dtype, C-contiguous); n = w.size."""
    for name, a in others:
        if tuple(a.shape) != tuple(w.shape) or a.dtype != w.dtype:
            raise ValueError(f"{what}: {name} has shape {tuple(a.shape)} and dtype {a.dtype}, the parameter "
                             f"{tuple(w.shape)} and {w.dtype}")
    return w.dtype.type


def sgd_step(w, grad, velocity, lr, momentum, weight_decay):
    """In place: w -= lr g (g = grad + weight_decay w), or with momentum v = momentum v + g, w -= lr v."""
    if velocity is None:
        real = _optim_arrays("sgd_step", w, ("grad", grad))
        launch("optim.cu", "sgd_step", w.size, (w, grad) + ints(w.size) + (real(lr), real(weight_decay)))
    else:
        real = _optim_arrays("sgd_step", w, ("grad", grad), ("velocity", velocity))
        launch("optim.cu", "sgd_momentum_step", w.size,
               (w, grad, velocity) + ints(w.size) + (real(lr), real(momentum), real(weight_decay)))


def adam_step(w, grad, m, v, step_size, betas, correction2, eps, weight_decay):
    """In place: the moments m, v and the bias-corrected Adam step of w (step_size = lr / (1 - beta1^t))."""
    real = _optim_arrays("adam_step", w, ("grad", grad), ("m", m), ("v", v))
    b1, b2 = betas
    launch("optim.cu", "adam_step", w.size,
           (w, grad, m, v) + ints(w.size) + tuple(real(s) for s in (step_size, b1, 1 - b1, b2, 1 - b2,
                                                                     correction2, eps, weight_decay)))
