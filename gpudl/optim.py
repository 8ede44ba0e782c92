"""Optimizers that read each Parameter's .grad and update its .data in place, on the device where it lives.

The update rules are PyTorch's, so results compare one to one. Weight decay is the lecture's lambda r(w) with
r(w) = 1/2 ||w||^2, i.e. lambda * w added to the gradient. State is kept per position in the parameter list. The
arithmetic of each rule lives in gpudl.functional.optim: on a GPU one fused kernel updates every parameter at once.
"""
import math

import numpy

from .backend import device_of, get_array_module, to_device, to_numpy
from .functional import optim as rules
from .nn.module import Parameter


def _check_params(params, name):
    params = list(params)
    if not params:
        raise ValueError(f"{name}: got an empty parameter list")
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"{name}: expected Parameters (model.parameters()), got {type(p).__name__}")
    return params


def _check_hyper(name, **values):
    for key, (value, low, high) in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value < high):
            raise ValueError(f"{name}: {key} must lie in [{low}, {high}), got {value!r}")


class Optimizer:
    """What SGD and Adam share: the parameters, zero_grad, the learning rate and step count kept on the device, and
    the state for checkpoints.

    `lr` and the step count live in (1,) arrays beside the parameters (made at the first step), which the update
    kernels read at run time: setting `optimizer.lr` writes the new value there (no host sync), so it takes effect on
    the next step, a replayed CUDA graph included; the step count is incremented on the device by the step itself.
    Buffers (momentum, moments) are made at the first step and updated in place ever after.
    """

    def __init__(self, params, name, lr):
        self.params = _check_params(params, name)
        self._lr = lr
        self._steps = 0             # the step count until the first step makes its device array
        self._lr_cell = self._count_cell = None

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = value
        if self._lr_cell is not None:
            self._lr_cell.fill(value)

    @property
    def steps(self):
        """Steps taken (read back from the device once the first step has made its counter)."""
        return self._steps if self._count_cell is None else int(self._count_cell[0])

    @steps.setter
    def steps(self, value):
        self._steps = int(value)
        if self._count_cell is not None:
            self._count_cell.fill(self._steps)

    def _cells(self):
        """(lr, count) on the parameters' device, made or remade when the parameters moved or changed dtype."""
        first = self.params[0].data
        cell = self._lr_cell
        if cell is None or get_array_module(cell) is not get_array_module(first) or cell.dtype != first.dtype:
            for p in self.params:
                if p.data.dtype != first.dtype:
                    raise TypeError(f"{type(self).__name__}: parameters must share one dtype, got {first.dtype} "
                                    f"and {p.data.dtype}")
            xp = get_array_module(first)
            steps = self.steps
            self._lr_cell = xp.full((1,), self._lr, dtype=first.dtype)
            self._count_cell = xp.full((1,), steps, dtype=numpy.int64)
        return self._lr_cell, self._count_cell

    def zero_grad(self):
        rules.zero_grads([p.grad for p in self.params])

    def state_arrays(self):
        """The long-lived arrays a step reads and writes in place: the learning rate and step count cells and every
        buffer (momentum, moments) made so far. A recorded step is valid while these are the same arrays."""
        cells = [c for c in (self._lr_cell, self._count_cell) if c is not None]
        return cells + [b for buffers in self._buffers().values() for b in buffers if b is not None]

    def state_dict(self):
        """Step count and per-parameter buffers as host arrays, for checkpoints."""
        state = {"steps": self.steps}
        for key, buffers in self._buffers().items():
            for i, buf in enumerate(buffers):
                if buf is not None:
                    state[f"{key}.{i}"] = to_numpy(buf)
        return state

    def load_state_dict(self, state):
        """Restore what state_dict() returned, onto each parameter's device; buffers that exist are overwritten in
        place (a captured step keeps reading them)."""
        self.steps = int(state["steps"])
        for key, buffers in self._buffers().items():
            for i, p in enumerate(self.params):
                value = state.get(f"{key}.{i}")
                if value is not None:
                    if tuple(value.shape) != tuple(p.data.shape):
                        raise ValueError(f"{type(self).__name__}: state {key}.{i} has shape {tuple(value.shape)}, "
                                         f"parameter has {tuple(p.data.shape)}")
                    value = to_device(value, device_of(p.data)).astype(p.data.dtype)
                    if _same_kind(buffers[i], value):
                        buffers[i][...] = value
                        continue
                buffers[i] = value


def _same_kind(buffer, value):
    return (buffer is not None and get_array_module(buffer) is get_array_module(value) and
            buffer.dtype == value.dtype and buffer.shape == value.shape)


class SGD(Optimizer):
    """v = mu v + g; w -= lr v (plain gradient descent w -= lr g when mu = 0)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, "SGD", lr)
        _check_hyper("SGD", lr=(lr, 1e-300, math.inf), momentum=(momentum, 0.0, 1.0),
                     weight_decay=(weight_decay, 0.0, math.inf))
        self.momentum, self.weight_decay = momentum, weight_decay
        self.velocity = [None] * len(self.params)

    def _buffers(self):
        return {"velocity": self.velocity}

    def step(self):
        lr, count = self._cells()
        self.velocity[:] = rules.sgd_steps([p.data for p in self.params], [p.grad for p in self.params],
                                           self.velocity, lr, self.momentum, self.weight_decay, count)


class Adam(Optimizer):
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; w -= lr m_hat / (sqrt(v_hat) + eps), bias-corrected."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, "Adam", lr)
        _check_hyper("Adam", lr=(lr, 1e-300, math.inf), beta1=(betas[0], 0.0, 1.0), beta2=(betas[1], 0.0, 1.0),
                     eps=(eps, 0.0, math.inf), weight_decay=(weight_decay, 0.0, math.inf))
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)
        self._scalars = None        # (lr / (1 - b1^t), 1 - b2^t) of the current step, on the device

    def _buffers(self):
        return {"m": self.m, "v": self.v}

    def state_arrays(self):
        return super().state_arrays() + ([self._scalars] if self._scalars is not None else [])

    def step(self):
        lr, count = self._cells()
        if self._scalars is None or get_array_module(self._scalars) is not get_array_module(lr) or \
                self._scalars.dtype != lr.dtype:
            self._scalars = get_array_module(lr).zeros((2,), dtype=lr.dtype)
        scalars = rules.adam_scalars(lr, count, self.betas, self._scalars)
        for i, p in enumerate(self.params):
            if self.m[i] is None:
                xp = get_array_module(p.data)
                self.m[i] = xp.zeros_like(p.data)
                self.v[i] = xp.zeros_like(p.data)
        rules.adam_steps([p.data for p in self.params], [p.grad for p in self.params], self.m, self.v, scalars,
                         self.betas, self.eps, self.weight_decay)


def clip_grad_norm(params, max_norm):
    """Scale all gradients by min(1, max_norm / ||g||), ||g|| the global L2 norm; returns ||g|| as a 0-d array.

    Everything stays on the device: no value is read back to the host.
    """
    params = _check_params(params, "clip_grad_norm")
    if not (max_norm > 0):
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm!r}")
    return rules.clip_grad_norm([p.grad for p in params], max_norm)
