"""Parameter, Module and Sequential: the skeleton every layer hangs on.

forward(x) keeps what backward needs; backward(dy, input_grad=True) returns dx and adds into each parameter's .grad;
backward(dy, input_grad=False) adds the same parameter gradients and returns None (a training step reads no gradient
of the model's input). state_arrays() names the long-lived arrays a step reads and writes in place, which a
recorded step depends on.
"""
import numpy

from ..backend import device as resolve_device
from ..backend import get_array_module, to_device


class Parameter:
    """A trainable array and the gradient accumulated for it, on the same device and of the same dtype."""

    def __init__(self, data):
        self.data = data
        self.grad = get_array_module(data).zeros_like(data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of layers and models: parameters are found by walking attributes in the order they were set.

    A layer's forward ends with `self._forward_output(y)` and its backward starts with `self._backward_input(dy)`:
    the gradient must have the shape of the output it belongs to, and each forward is back-propagated at most once
    (backward before forward is a clear RuntimeError, and so is a second backward after one forward in a layer that
    accumulates parameter gradients or frees what its backward needs; a layer without either passes consume=False).
    Both compare shapes only, on the host, so they cost no device synchronisation.
    """

    training = True
    _output_shape = None    # the shape forward returned, until backward consumes it

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy, input_grad=True):
        """dx from dy (None when not input_grad), adding into the parameters' .grad."""
        raise NotImplementedError

    def state_arrays(self):
        """The long-lived arrays this module's steps read and write in place: every parameter's data and grad, and
        whatever state a layer carries from step to step (a layer that has some adds it). A recorded step is valid
        while these are the same arrays."""
        arrays = [a for p in self.parameters() for a in (p.data, p.grad)]
        for module in self.modules():
            arrays.extend(module.carried_arrays())
        return arrays

    def carried_arrays(self):
        """The arrays this module itself (not its children) carries from one step to the next; none by default."""
        return []

    def __call__(self, x):
        return self.forward(x)

    def _forward_output(self, y):
        """Remember the shape of the output `y` (for backward's check) and return `y`."""
        self._output_shape = tuple(y.shape)
        return y

    def _backward_input(self, dy, consume=True):
        """Check dy against the output of the forward it back-propagates; `consume`: at most one backward per
        forward."""
        shape = self._output_shape
        if shape is None:
            raise RuntimeError(f"{self!r}: backward() called before forward(), or twice for one forward()")
        if not hasattr(dy, "shape"):
            raise TypeError(f"{self!r}: backward() expects an array, got {type(dy).__name__}")
        if tuple(dy.shape) != shape:
            raise ValueError(f"{self!r}: backward() got a gradient of shape {tuple(dy.shape)}, but forward() "
                             f"returned shape {shape}")
        if consume:
            self._output_shape = None
        return dy

    def named_parameters(self, prefix=""):
        """[(dotted name, Parameter)], e.g. ("0.W", ...) for the first layer of a Sequential."""
        found = []
        for name, value in vars(self).items():
            found.extend(_named(value, prefix + name))
        return found

    def parameters(self):
        """The list of Parameters, in a fixed order (optimizer state is kept in this order)."""
        return [p for _, p in self.named_parameters()]

    def modules(self):
        """This module and all modules below it, depth first."""
        found = [self]
        for value in vars(self).values():
            for child in _children(value):
                found.extend(child.modules())
        return found

    def zero_grad(self):
        for p in self.parameters():
            p.grad[...] = 0

    def to(self, device=None, dtype=None):
        """Move every parameter to `device` and/or cast it to `dtype`, in place; returns self."""
        dev = resolve_device(device) if device is not None else None
        for p in self.parameters():
            data = to_device(p.data, dev) if dev is not None else p.data
            if dtype is not None:
                data = data.astype(dtype, copy=False)
            p.data = data
            p.grad = get_array_module(data).zeros_like(data)
        return self

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].data.dtype if params else None

    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def __repr__(self):
        return type(self).__name__ + "()"

    def summary(self, input_shape, print_fn=print):
        """Print a table of layers, output shapes and parameter counts for inputs of `input_shape` (without the batch
        axis, e.g. (1, 28, 28)), and the totals; returns the text. Shapes come from one forward pass of a zero batch
        of one sample, on the model's device and in its dtype."""
        params = self.parameters()
        xp = get_array_module(params[0].data) if params else numpy
        dtype = params[0].data.dtype if params else numpy.float32
        x = xp.zeros((1, *tuple(input_shape)), dtype=dtype)
        layers = self.layers if isinstance(self, Sequential) else [self]
        rows = [("layer", "output shape", "parameters")]
        was_training = self.training
        self.eval()
        try:
            rows.append(("input", _shape_text(x.shape), ""))
            for layer in layers:
                x = layer.forward(x)
                count = sum(int(p.data.size) for p in layer.parameters())
                rows.append((repr(layer).split("\n")[0], _shape_text(x.shape), f"{count:,}" if count else "0"))
        finally:
            self.train(was_training)
        widths = [max(len(r[k]) for r in rows) for k in range(3)]
        rule = "-" * (sum(widths) + 4)
        lines = [f"{rows[0][0]:<{widths[0]}}  {rows[0][1]:<{widths[1]}}  {rows[0][2]:>{widths[2]}}", rule]
        lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows[1:]]
        total = sum(int(p.data.size) for p in params)
        lines += [rule, f"total parameters: {total:,} ({dtype}, {total * numpy.dtype(dtype).itemsize:,} bytes)"]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text


def _shape_text(shape):
    return "(" + ", ".join(["N", *map(str, shape[1:])]) + ")"


def _named(value, name):
    if isinstance(value, Parameter):
        return [(name, value)]
    if isinstance(value, Module):
        return value.named_parameters(name + ".")
    if isinstance(value, (list, tuple)):
        found = []
        for i, item in enumerate(value):
            found.extend(_named(item, f"{name}.{i}"))
        return found
    return []


def _children(value):
    if isinstance(value, Module):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, Module)]
    return []


class Sequential(Module):
    """Layers applied in order: forward up the list, gradients back down it."""

    def __init__(self, *layers):
        for layer in layers:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes layers (Module instances), got {type(layer).__name__}")
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy, input_grad=True):
        """dx from dy, through the layers in reverse; input_grad=False is passed to the first layer (which then
        returns None): a training step reads no gradient of the model's input."""
        for layer in reversed(self.layers[1:]):
            dy = layer.backward(dy)
        if not self.layers:
            return dy if input_grad else None
        return self.layers[0].backward(dy, input_grad=input_grad)

    def named_parameters(self, prefix=""):
        found = []
        for i, layer in enumerate(self.layers):
            found.extend(layer.named_parameters(f"{prefix}{i}."))
        return found

    def __getitem__(self, index):
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"


def check_input(layer, x, ndim, what):
    """Raise a clear error when x is not a floating array of rank `ndim` with at least one sample, matching the
    layer's dtype and device."""
    name = repr(layer)
    xp = get_array_module(x)
    if not hasattr(x, "ndim") or not hasattr(x, "dtype"):
        raise TypeError(f"{name}: expected an array {what}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected input of rank {ndim} {what}, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: empty batch (input shape {tuple(x.shape)}); a batch needs at least one sample")
    if not numpy.issubdtype(x.dtype, numpy.floating):
        raise TypeError(f"{name}: expected a floating-point input, got dtype {x.dtype}")
    first = next((v for v in vars(layer).values() if isinstance(v, Parameter)), None)  # not a walk of the tree
    if first is not None:
        p = first.data
        if get_array_module(p) is not xp:
            raise TypeError(f"{name}: input is a {xp.__name__} array but the layer's parameters are "
                            f"{get_array_module(p).__name__} arrays; move one with .to(device) / gpudl.to_device")
        if x.dtype != p.dtype:
            raise TypeError(f"{name}: input dtype {x.dtype} does not match the parameters' dtype {p.dtype}; "
                            f"cast the input or call .to(dtype={x.dtype.name})")
