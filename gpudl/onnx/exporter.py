"""gpudl model -> ONNX graph: one or a few ONNX nodes per layer, weights as initializers named as in
`named_parameters()`.

The model is read as a chain of layers: a Sequential is its layers in order; a layer gpudl knows (below) is
translated; any other Module is the chain of its child modules in the order they were set (the char-LSTM: its
`lstm`, then its `head`). The batch axis is symbolic ("N"); other sample axes may be symbolic too (None in
`input_shape`), except the spatial size of images, which fixes the "same" padding.

| gpudl                    | ONNX (opset 17)                                                                 |
| ------------------------ | ------------------------------------------------------------------------------- |
| Dense on (N, F)          | Gemm(x, W, b)  (W is (in, out): transB = 0)                                     |
| Dense on (N, T, F)       | MatMul(x, W), Add(., b)                                                         |
| Conv2D                   | Conv with explicit pads [top, left, bottom, right]: "same" puts the odd cell at |
|                          | the end, "same_lower" at the start                                              |
| MaxPool2D / AvgPool2D    | MaxPool (pads never win a max) / AveragePool(count_include_pad = 0)             |
| Flatten                  | Flatten(axis = 1)                                                               |
| Sigmoid(alpha)           | Mul(x, alpha), Sigmoid  (only Sigmoid when alpha = 1)                           |
| Tanh, ReLU, Softplus, Sign | Tanh, Relu, Softplus, Sign                                                    |
| Step                     | GreaterOrEqual(x, 0), Cast to the model's float type                            |
| RNN / LSTM (N, T, F)     | Transpose to (T, N, F), RNN / LSTM, Squeeze the direction axis, Transpose back  |
| SwapBatchTime            | Transpose(perm = [1, 0, 2])                                                     |
| Perceptron               | Gemm, then Step or Sign                                                         |

onnxruntime runs only time-major recurrent ops (layout = 0), hence the two Transposes. The recurrent weights are
stored in the operators' layout (see gates.py) under the gpudl parameter's name; the initial state is zero (a
stateful layer's carried state is not part of the graph).
"""
import math

import numpy

from .. import geometry, nn
from ..backend import to_numpy
from ..models import Perceptron
from . import gates
from .extra import require
from .sequence import SwapBatchTime

DEFAULT_OPSET = 17
INPUT, OUTPUT = "input", "output"


def export(model, path, input_shape, opset=None):
    """Write `model` to `path` as an ONNX model (opset `opset`, default 17) for inputs of shape (N, *input_shape).

    `input_shape` is one sample's shape, as `model.summary` takes it: (1, 28, 28) for LeNet-5, (T, V) for the
    char-LSTM (T may be None: any length). The graph is checked with onnx.checker (full check) before it is saved.
    Returns the ModelProto.
    """
    onnx = require("onnx")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < DEFAULT_OPSET:
        raise ValueError(f"gpudl.onnx.export: opset {opset} is too old; gpudl writes opset {DEFAULT_OPSET} or newer")
    shape = _sample_shape(input_shape)
    dtype = numpy.dtype(model.dtype or numpy.float32)
    graph = _Graph(onnx, dtype)
    current, out_shape = INPUT, shape
    for prefix, layer in _chain(model, ""):
        current, out_shape = _emit(graph, prefix, layer, current, out_shape)
    graph.nodes.append(onnx.helper.make_node("Identity", [current], [OUTPUT], name="output"))
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, type(model).__name__,
                               [graph.value_info(INPUT, shape)], [graph.value_info(OUTPUT, out_shape)],
                               graph.initializers),
        opset_imports=[onnx.helper.make_opsetid("", opset)], producer_name="gpudl")
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto


def _sample_shape(input_shape):
    try:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"gpudl.onnx.export: input_shape must be one sample's shape, a tuple of ints "
                         f"(None for a symbolic axis), got {input_shape!r}") from None
    if any(d is not None and d < 1 for d in shape):
        raise ValueError(f"gpudl.onnx.export: input_shape must hold positive sizes, got {input_shape!r}")
    return shape


def _chain(module, prefix):
    """(name prefix, layer) for every layer in the order the model applies them."""
    if isinstance(module, nn.Sequential):
        for i, layer in enumerate(module.layers):
            yield from _chain(layer, f"{prefix}{i}.")
    elif isinstance(module, tuple(_EMITTERS)):
        yield prefix, module
    else:
        children = [(name, value) for name, value in vars(module).items() if isinstance(value, nn.Module)]
        if not children:
            raise TypeError(f"gpudl.onnx.export: no ONNX translation for layer {module!r} "
                            f"({type(module).__name__} at {prefix or 'the top'})")
        for name, child in children:
            yield from _chain(child, f"{prefix}{name}.")


class _Graph:
    """The nodes and initializers written so far, in the model's float type."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, dtype
        self.elem_type = onnx.helper.np_dtype_to_tensor_dtype(dtype)
        self.nodes, self.initializers = [], []

    def constant(self, name, array):
        self.initializers.append(self.onnx.numpy_helper.from_array(numpy.asarray(array), name))
        return name

    def node(self, op, inputs, name, **attributes):
        """Append one node; its one output is named after the node."""
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def value_info(self, name, sample_shape):
        dims = ["N"] + [d if d is not None else ("T" if k == 0 and len(sample_shape) == 2 else f"d{k + 1}")
                        for k, d in enumerate(sample_shape)]
        return self.onnx.helper.make_tensor_value_info(name, self.elem_type, dims)

    def weight(self, name, param):
        return self.constant(name, to_numpy(param.data).astype(self.dtype, copy=False))


def _emit(graph, prefix, layer, x, shape):
    for kind in type(layer).__mro__:
        if kind in _EMITTERS:
            return _EMITTERS[kind](graph, prefix, layer, x, shape)
    raise TypeError(f"gpudl.onnx.export: no ONNX translation for layer {layer!r}")


def _dense(graph, prefix, layer, x, shape):
    if shape[-1] != layer.in_features:
        raise ValueError(f"gpudl.onnx.export: {layer!r} at {prefix!r} gets samples of shape {shape}")
    W, b = graph.weight(prefix + "W", layer.W), graph.weight(prefix + "b", layer.b)
    if len(shape) == 1:
        return graph.node("Gemm", [x, W, b], prefix + "Gemm"), (layer.out_features,)
    product = graph.node("MatMul", [x, W], prefix + "MatMul")
    return graph.node("Add", [product, b], prefix + "Add"), (*shape[:-1], layer.out_features)


def _image_size(layer, prefix, shape):
    if len(shape) != 3 or shape[1] is None or shape[2] is None:
        raise ValueError(f"gpudl.onnx.export: {layer!r} at {prefix!r} needs images of a known size (C, H, W), "
                         f"got samples of shape {shape}")
    return shape


def _window(layer, shape, kernel, strides):
    """ONNX pads [top, left, bottom, right] of a window layer for samples (C, H, W), and its output (OH, OW)."""
    (top, bottom), (left, right) = (geometry.pad_amounts(size, k, s, layer.padding)
                                    for size, k, s in zip(shape[1:], kernel, strides))
    pads = (top, bottom, left, right)
    return [top, left, bottom, right], geometry.output_hw(*shape[1:], *kernel, *strides, pads)


def _conv(graph, prefix, layer, x, shape):
    shape = _image_size(layer, prefix, shape)
    W, b = graph.weight(prefix + "W", layer.W), graph.weight(prefix + "b", layer.b)
    pads, (oh, ow) = _window(layer, shape, layer.kernel_size, layer.strides)
    y = graph.node("Conv", [x, W, b], prefix + "Conv", kernel_shape=list(layer.kernel_size),
                   strides=list(layer.strides), pads=pads)
    return y, (layer.filters, oh, ow)


def _pool(graph, prefix, layer, x, shape):
    shape = _image_size(layer, prefix, shape)
    pads, (oh, ow) = _window(layer, shape, layer.pool_size, layer.strides)
    attributes = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides), "pads": pads}
    if isinstance(layer, nn.AvgPool2D):
        y = graph.node("AveragePool", [x], prefix + "AveragePool", count_include_pad=0, **attributes)
    else:
        y = graph.node("MaxPool", [x], prefix + "MaxPool", **attributes)
    return y, (shape[0], oh, ow)


def _flatten(graph, prefix, layer, x, shape):
    size = math.prod(shape) if None not in shape else None
    return graph.node("Flatten", [x], prefix + "Flatten", axis=1), (size,)


def _elementwise(op):
    def emit(graph, prefix, layer, x, shape):
        return graph.node(op, [x], prefix + op), shape
    return emit


def _sigmoid(graph, prefix, layer, x, shape):
    if layer.alpha != 1.0:
        alpha = graph.constant(prefix + "alpha", numpy.array(layer.alpha, dtype=graph.dtype))
        x = graph.node("Mul", [x, alpha], prefix + "Mul")
    return graph.node("Sigmoid", [x], prefix + "Sigmoid"), shape


def _step(graph, prefix, layer, x, shape):
    zero = graph.constant(prefix + "threshold", numpy.array(0, dtype=graph.dtype))
    at_least = graph.node("GreaterOrEqual", [x, zero], prefix + "GreaterOrEqual")
    return graph.node("Cast", [at_least], prefix + "Cast", to=graph.elem_type), shape


def _recurrent(graph, prefix, layer, x, shape):
    if len(shape) != 2 or shape[1] != layer.input_size:
        raise ValueError(f"gpudl.onnx.export: {layer!r} at {prefix!r} needs sequences (T, {layer.input_size}), "
                         f"got samples of shape {shape}")
    op, order = ("LSTM", gates.LSTM_ORDER) if isinstance(layer, nn.LSTM) else ("RNN", gates.RNN_ORDER)
    W, R, B = gates.to_onnx(*(to_numpy(p.data) for p in (layer.W_x, layer.W_h, layer.b)), order)
    names = [graph.constant(prefix + name, array.astype(graph.dtype))
             for name, array in (("W_x", W), ("W_h", R), ("b", B))]
    time_major = graph.node("Transpose", [x], prefix + "Transpose_in", perm=[1, 0, 2])
    y = graph.node(op, [time_major, *names], prefix + op, hidden_size=layer.hidden_size)
    axes = graph.constant(prefix + "direction_axis", numpy.array([1], dtype=numpy.int64))
    y = graph.node("Squeeze", [y, axes], prefix + "Squeeze")
    return graph.node("Transpose", [y], prefix + "Transpose_out", perm=[1, 0, 2]), (shape[0], layer.hidden_size)


def _swap_batch_time(graph, prefix, layer, x, shape):
    if len(shape) != 2:
        raise ValueError(f"gpudl.onnx.export: {layer!r} at {prefix!r} needs sequences (T, F), got samples of shape "
                         f"{shape}")
    return graph.node("Transpose", [x], prefix + "Transpose", perm=[1, 0, 2]), (None, shape[1])  # axis 0 was T


def _perceptron(graph, prefix, layer, x, shape):
    y, shape = _dense(graph, prefix, _PerceptronAsDense(layer), x, shape)
    return _emit(graph, prefix, layer.activation, y, shape)


class _PerceptronAsDense:
    """The perceptron's neuron seen as a Dense(n, 1) for _dense."""

    def __init__(self, perceptron):
        self.W, self.b = perceptron.W, perceptron.b
        self.in_features, self.out_features = perceptron.n_features, 1

    def __repr__(self):
        return f"Dense({self.in_features}, 1)"


_EMITTERS = {
    nn.Dense: _dense, nn.Conv2D: _conv, nn.MaxPool2D: _pool, nn.AvgPool2D: _pool, nn.Flatten: _flatten,
    nn.Sigmoid: _sigmoid, nn.Tanh: _elementwise("Tanh"), nn.ReLU: _elementwise("Relu"),
    nn.Softplus: _elementwise("Softplus"), nn.Sign: _elementwise("Sign"), nn.Step: _step,
    nn.RNN: _recurrent, nn.LSTM: _recurrent, SwapBatchTime: _swap_batch_time, Perceptron: _perceptron,
}
