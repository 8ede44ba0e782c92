"""ONNX graph -> nn.Sequential of gpudl layers, for graphs that are a chain of the ops gpudl has.

Read: Gemm (transA = 0, alpha = beta = 1, any transB), MatMul [+ Add] (Dense on (N, F), SequenceDense on
(N, T, F) or (T, N, F)), Conv (group 1, no dilation; auto_pad SAME_UPPER / SAME_LOWER / VALID, or pads: symmetric
ones as an int, asymmetric ones only when they are the "same" or "same_lower" rule for the known input size),
MaxPool, AveragePool (count_include_pad = 0 when padded), Flatten(axis = 1) and Reshape to (N, -1), Relu, Sigmoid
(after Mul by a scalar: Sigmoid(alpha)), Tanh, Softplus, Sign, GreaterOrEqual(x, 0) + Cast (Step), RNN and LSTM
(forward, default activations, no peepholes, a zero initial state; layout 0 or 1). Identity and Dropout are skipped.
Weights are the graph's initializers and Constant nodes, whether or not they are also graph inputs, read from the
file or from external data files beside it.

Sequences as exporters arrange them around a recurrent op are followed, not translated op by op: Transposes between
batch-first (N, T, F) and time-major (T, N, F) and of the direction axis, the Squeeze or Reshape that drops the
direction axis (T, 1, N, H) -> (T, N, H), a Reshape target computed from Shape(x) (shapes.py), an initial state
computed as zeros of the input's batch size. gpudl's layers stay batch-first: a time-major graph input or output
gets a SwapBatchTime layer. So `torch.onnx.export` of an nn.LSTM or nn.RNN (batch_first or not, TorchScript or
dynamo exporter) followed by an nn.Linear loads as [SwapBatchTime,] LSTM, SequenceDense[, SwapBatchTime].

Older opsets are first brought to opset 17 by onnx's version converter. Anything else is an error that names the op
type, the node and the attribute or input at fault.
"""
import math
import os

import numpy

from .. import geometry, nn
from . import gates
from .extra import require
from .sequence import SequenceDense, SwapBatchTime
from .shapes import Beside, NotEvaluable

OPSET = 17
SKIPPED = {"Identity", "Dropout"}


def load(path):
    """The ONNX model at `path` as an nn.Sequential of gpudl layers (in the weights' float type), ready to train."""
    onnx = require("onnx")
    model = _upgrade(onnx, _read(onnx, path), path)
    return _Chain(onnx, model, path).build()


def _read(onnx, path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"gpudl.onnx.load: no such file: {path}")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 (protobuf's DecodeError and friends: not a ModelProto)
        raise ValueError(f"gpudl.onnx.load: {path} is not a valid ONNX model (truncated or another format): "
                         f"{type(exc).__name__}: {exc}") from None
    folder = os.path.dirname(os.path.abspath(path))
    tensors = [*model.graph.initializer, *(a.t for n in model.graph.node for a in n.attribute if a.HasField("t"))]
    for tensor in tensors:
        if onnx.external_data_helper.uses_external_data(tensor):
            try:    # onnx keeps the reads inside the model's folder and within the file's bounds
                onnx.external_data_helper.load_external_data_for_tensor(tensor, folder)
            except Exception as exc:  # noqa: BLE001 (a missing file, a path outside the folder, a short file)
                raise ValueError(f"gpudl.onnx.load: {path} keeps tensor {tensor.name!r} in an external file "
                                 f"gpudl cannot read: {type(exc).__name__}: {str(exc).strip()}") from None
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 (the checker's ValidationError, or an error of its C++ core)
        raise ValueError(f"gpudl.onnx.load: {path} is not a valid ONNX model: {str(exc).strip()}") from None
    return model


def _upgrade(onnx, model, path):
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None or version >= OPSET:
        return model
    try:
        return onnx.version_converter.convert_version(model, OPSET)
    except Exception as exc:  # noqa: BLE001 (the converter raises whatever its adapters meet)
        raise ValueError(f"gpudl.onnx.load: {path}: cannot convert opset {version} to {OPSET}: {exc}") from None


class UnsupportedGraph(ValueError):
    """A graph gpudl cannot build layers for; the message names the op type, the node and what is at fault."""


# How the tensor the chain follows is arranged, as letters for its axes in the graph (N batch, T time, D direction,
# F features), while gpudl's layers hold it batch-first, (N, T, F). "batch" is a tensor arranged as gpudl holds it
# (any rank: images, feature vectors, batch-first sequences).
LAYOUTS = {
    "batch": "batch-first", "TNF": "time-major (T, N, F)", "TDNF": "(T, directions, N, H)",
    "NTDF": "(N, T, directions, H)", "TNDF": "(T, N, directions, H)",
}


class _Chain:
    """Walks the nodes in order, following the one tensor that flows from the graph's input to its output.

    `layout` (a key of LAYOUTS) says how the graph arranges that tensor; values computed beside the chain
    (shapes, zero states) are read through `beside`.
    """

    def __init__(self, onnx, model, path):
        self.onnx, self.path = onnx, path
        graph = model.graph
        self.constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.shapes = _inferred_shapes(onnx, model)
        inputs = [v.name for v in graph.input if v.name not in self.constants]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise UnsupportedGraph(f"gpudl.onnx.load: {path}: gpudl takes a graph with one input and one output, "
                                   f"got inputs {inputs} and outputs {[v.name for v in graph.output]}")
        self.current, self.output = inputs[0], graph.output[0].name
        self.layout = "batch"
        self.nodes = self._without_constants(graph.node)
        self.consumed = {name for node in self.nodes for name in node.input} | {self.output}
        producers = {name: node for node in self.nodes for name in node.output}
        self.beside = Beside(onnx, self.constants, producers, self.shapes)
        self.layers = []
        self.dtype = None

    def _without_constants(self, nodes):
        """The nodes that compute, after taking Constant nodes (and Identity of a constant) into the constants."""
        kept = []
        for node in nodes:
            if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
                self.constants[node.output[0]] = self.onnx.numpy_helper.to_array(node.attribute[0].t)
            elif node.op_type == "Identity" and node.input[0] in self.constants:
                self.constants[node.output[0]] = self.constants[node.input[0]]
            else:
                kept.append(node)
        return kept

    def build(self):
        position = 0
        while position < len(self.nodes):
            node = self.nodes[position]
            follower = self.nodes[position + 1] if position + 1 < len(self.nodes) else None
            if not node.input or node.input[0] != self.current:
                position += 1      # computes something aside (a shape, a zero state); a handler may read it
                continue
            handler = _HANDLERS.get(node.op_type)
            if handler is None:
                raise self.error(node, f"op type {node.op_type!r} has no gpudl layer")
            used_follower = handler(self, node, follower)
            position += 2 if used_follower else 1
        if self.current == self.output and self.layout == "TNF":
            self.layers.append(SwapBatchTime())    # the graph's output is time-major
            self.layout = "batch"
        if self.current != self.output or self.layout != "batch":
            raise UnsupportedGraph(f"gpudl.onnx.load: {self.path}: the graph is not a chain of layers from its "
                                   f"input to its output {self.output!r} (the chain stops at {self.current!r}, "
                                   f"arranged {LAYOUTS[self.layout]})")
        return nn.Sequential(*self.layers)

    # -- helpers for the handlers ------------------------------------------------------------------------------

    def error(self, node, what):
        return UnsupportedGraph(f"gpudl.onnx.load: {node.op_type} node {node.name or node.output[0]!r}: {what}")

    def attributes(self, node):
        return self.beside.attributes(node)

    def check_attributes(self, node, attributes, allowed):
        """Raise on an attribute with a value other than the one gpudl can take (allowed: name -> value or None)."""
        for name, value in attributes.items():
            if name not in allowed:
                raise self.error(node, f"attribute {name}={value!r} is not supported")
            expected = allowed[name]
            if expected is not None and _plain(value) != expected:
                raise self.error(node, f"attribute {name}={_plain(value)!r} is not supported "
                                       f"(gpudl takes {expected!r})")

    def constant(self, node, index, required=True):
        """Input `index` of `node` as a numpy array; it must be an initializer or a Constant."""
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            if required:
                raise self.error(node, f"input {index} is missing")
            return None
        if name not in self.constants:
            raise self.error(node, f"input {index} ({name!r}) is computed in the graph (a dynamic shape or weight); "
                                   f"gpudl needs it as a constant initializer")
        return self.constants[name]

    def shape_vector(self, node, index):
        """Input `index` of `node`, a shape: a constant, or computed from the shapes of tensors (shapes.py)."""
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            raise self.error(node, f"input {index} is missing")
        try:
            return self.beside.shape_vector(name)
        except NotEvaluable as exc:
            where = f" (at {exc.node.op_type} node {exc.node.name or exc.node.output[0]!r})" if exc.node else ""
            raise self.error(node, f"input {index} ({name!r}) is computed in the graph in a way gpudl does not "
                                   f"follow: {exc.why}{where}") from None

    def weight(self, node, index, ndim, required=True):
        array = self.constant(node, index, required)
        if array is None:
            return None
        if array.dtype not in (numpy.float32, numpy.float64) or array.ndim != ndim:
            raise self.error(node, f"input {index} ({node.input[index]!r}) must be a float32 or float64 array of "
                                   f"rank {ndim}, got {array.dtype} of shape {array.shape}")
        self.dtype = self.dtype or array.dtype
        return array

    def shape(self, name):
        """The inferred shape of a tensor: ints for known sizes, names for symbolic ones (or None if unknown)."""
        return self.shapes.get(name)

    def advance(self, node, layer=None, layout=None):
        """The chain now continues from the node's first output (and its layer, if any, joins the model)."""
        for extra in node.output[1:]:
            if extra and extra in self.consumed:
                raise self.error(node, f"output {extra!r} is used; gpudl layers have one output")
        if layer is not None:
            self.layers.append(layer)
        self.current = node.output[0]
        if layout is not None:
            self.layout = layout

    def arrange(self, layout):
        """Swap batch and time in front of a layer that reads the chain's tensor arranged `layout` ("batch" or
        "TNF") where the graph holds it the other way."""
        if self.layout != layout:
            self.layers.append(SwapBatchTime())
            self.layout = layout

    def follows(self, node, follower, op):
        """Whether `follower` is an `op` node reading `node`'s output."""
        return follower is not None and follower.op_type == op and node.output[0] in follower.input

    def require_layout(self, node, *layouts):
        if self.layout not in layouts:
            raise self.error(node, f"its input is arranged {LAYOUTS[self.layout]}, gpudl needs "
                                   f"{' or '.join(LAYOUTS[layout] for layout in layouts)}")


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _inferred_shapes(onnx, model):
    """name -> dims of every tensor whose rank onnx's shape inference knows: an int for a known size, the dim's
    name for a symbolic one, and a name of our own, unique to the tensor and axis, for an unnamed one."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 (shape inference is a help, not a requirement: without it, no shapes)
        inferred = model
    shapes = {}
    graph = inferred.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param or f"?{value.name}:{k}"
                                  for k, d in enumerate(tensor.shape.dim)]
    return shapes


def _known(dims):
    """Whether every dim is a number (not a symbolic size)."""
    return dims is not None and all(isinstance(d, int) for d in dims)


def _reshaped(dims, target, allowzero):
    """The dims a Reshape of a tensor of `dims` to `target` gives (0 copies a dim unless allowzero, -1 takes the
    rest), or None where the names do not say it."""
    target = [dims[i] if d == 0 and not allowzero and i < len(dims) else d for i, d in enumerate(target)]
    if target.count(-1) != 1:
        return target if -1 not in target else None
    rest = list(dims)
    size = 1
    for d in target:
        if d == -1:
            continue
        if d in rest and not isinstance(d, int):
            rest.remove(d)
        elif isinstance(d, int):
            size *= d
        else:
            return None
    numbers = math.prod(d for d in rest if isinstance(d, int))
    names = [d for d in rest if not isinstance(d, int)]
    if size == 0 or numbers % size:
        return None
    if not names:
        rest_dim = numbers // size
    elif len(names) == 1 and numbers == size:
        rest_dim = names[0]
    else:
        return None
    return [rest_dim if d == -1 else d for d in target]


def _fill(param, array):
    param.data[...] = array.reshape(param.data.shape).astype(param.data.dtype)


# -- handlers: (chain, node, next node) -> whether the next node was taken in too ---------------------------------

def _gemm(chain, node, follower):
    chain.require_layout(node, "batch")
    attributes = chain.attributes(node)
    transposed = attributes.pop("transB", 0)
    chain.check_attributes(node, attributes, {"alpha": 1.0, "beta": 1.0, "transA": 0})
    B = chain.weight(node, 1, 2)
    W = B.T if transposed else B
    bias = chain.constant(node, 2, required=False)
    layer = nn.Dense(*W.shape, dtype=chain.dtype)
    _fill(layer.W, W)
    if bias is not None:
        _fill(layer.b, numpy.broadcast_to(bias, (1, W.shape[1])))
    chain.advance(node, layer)
    return False


def _matmul(chain, node, follower):
    chain.check_attributes(node, chain.attributes(node), {})
    W = chain.weight(node, 1, 2)
    shape = chain.shape(node.input[0])
    if shape is None or len(shape) not in (2, 3):
        raise chain.error(node, f"gpudl takes MatMul on (N, F) or (N, T, F) inputs, got shape {shape}")
    chain.require_layout(node, *(("batch",) if len(shape) == 2 else ("batch", "TNF")))  # the same W at every step
    layer = (nn.Dense if len(shape) == 2 else SequenceDense)(*W.shape, dtype=chain.dtype)
    _fill(layer.W, W)
    chain.advance(node, layer)
    if not chain.follows(node, follower, "Add"):
        return False
    other = 1 if follower.input[0] == node.output[0] else 0
    bias = chain.constant(follower, other)
    try:
        _fill(layer.b, numpy.broadcast_to(bias, (W.shape[1],)))
    except ValueError:
        raise chain.error(follower, f"bias of shape {bias.shape} does not fit {W.shape[1]} outputs") from None
    chain.advance(follower)
    return True


def _window_padding(chain, node, attributes, kernel, strides):
    """gpudl's padding ("valid", "same", "same_lower" or an int) for a Conv or pool node's auto_pad / pads."""
    auto_pad = _plain(attributes.pop("auto_pad", "NOTSET"))
    pads = list(attributes.pop("pads", [0, 0, 0, 0]))
    modes = {"VALID": "valid", "SAME_UPPER": "same", "SAME_LOWER": "same_lower"}
    if auto_pad in modes:
        return modes[auto_pad]
    if auto_pad != "NOTSET":
        raise chain.error(node, f"attribute auto_pad={auto_pad!r} is not supported (gpudl takes VALID, SAME_UPPER "
                                f"and SAME_LOWER)")
    top, left, bottom, right = pads
    if not any(pads):
        return "valid"
    if top == bottom == left == right:
        return top
    spatial = (chain.shape(node.input[0]) or [None] * 4)[2:]
    if len(spatial) != 2 or not _known(spatial):
        raise chain.error(node, f"attribute pads={pads} is asymmetric, which gpudl takes only as its 'same' rule for a "
                                f"known image size, and the input's spatial size is dynamic ({spatial})")
    rules = {}
    for mode in ("same", "same_lower"):
        (top, bottom), (left, right) = (geometry.pad_amounts(size, k, s, mode)
                                        for size, k, s in zip(spatial, kernel, strides))
        rules[mode] = [top, left, bottom, right]
        if pads == rules[mode]:
            return mode
    raise chain.error(node, f"attribute pads={pads} is asymmetric and not the 'same' rule for input size "
                            f"{spatial} (that would be {rules['same']}, or {rules['same_lower']} with the odd cell "
                            f"at the top/left)")


def _conv(chain, node, follower):
    chain.require_layout(node, "batch")
    attributes = chain.attributes(node)
    W = chain.weight(node, 1, 4)
    kernel = list(attributes.pop("kernel_shape", W.shape[2:]))
    strides = list(attributes.pop("strides", [1, 1]))
    padding = _window_padding(chain, node, attributes, kernel, strides)
    chain.check_attributes(node, attributes, {"group": 1, "dilations": [1, 1]})
    if kernel != list(W.shape[2:]):
        raise chain.error(node, f"attribute kernel_shape={kernel} does not match the weights' shape {W.shape}")
    layer = nn.Conv2D(W.shape[1], W.shape[0], kernel, strides=strides, padding=padding, dtype=chain.dtype)
    _fill(layer.W, W)
    bias = chain.weight(node, 2, 1, required=False)
    if bias is not None:
        _fill(layer.b, bias)
    chain.advance(node, layer)
    return False


def _pool(chain, node, follower):
    chain.require_layout(node, "batch")
    attributes = chain.attributes(node)
    if "kernel_shape" not in attributes:
        raise chain.error(node, "attribute kernel_shape is missing")
    kernel = list(attributes.pop("kernel_shape"))
    strides = list(attributes.pop("strides", [1, 1]))
    padding = _window_padding(chain, node, attributes, kernel, strides)
    allowed = {"ceil_mode": 0, "dilations": [1, 1]}
    if node.op_type == "MaxPool":
        allowed["storage_order"] = 0
        kind = nn.MaxPool2D
    else:
        allowed["count_include_pad"] = 0 if padding != "valid" else None
        kind = nn.AvgPool2D
    chain.check_attributes(node, attributes, allowed)
    chain.advance(node, kind(kernel, strides=strides, padding=padding))
    return False


def _flatten(chain, node, follower):
    chain.require_layout(node, "batch")
    chain.check_attributes(node, chain.attributes(node), {"axis": 1})
    chain.advance(node, nn.Flatten())
    return False


def _reshape(chain, node, follower):
    """Reshape to (N, -1) is a Flatten; on a recurrent op's output it may drop the direction axis."""
    attributes = chain.attributes(node)
    allowzero = attributes.pop("allowzero", 0)
    chain.check_attributes(node, attributes, {})
    target = chain.shape_vector(node, 1)
    shape = chain.shape(node.input[0])
    if shape is None:
        raise chain.error(node, "the shape of its input is not known (onnx's shape inference gives none)")
    result = _reshaped(shape, target, allowzero)
    if "D" in chain.layout:
        without_direction = [d for d, axis in zip(shape, chain.layout) if axis != "D"]
        if result != without_direction:
            raise chain.error(node, f"input 1 (shape {target}) on a tensor of shape {shape} arranged "
                                    f"{LAYOUTS[chain.layout]}: gpudl takes a Reshape there only when it "
                                    f"drops the direction axis, to {without_direction}")
        chain.advance(node, layout=_layout(chain.layout.replace("D", "")))
        return False
    chain.require_layout(node, "batch")
    features = math.prod(shape[1:]) if _known(shape[1:]) else None
    if (len(shape) < 2 or result is None or len(result) != 2 or result[0] != shape[0]
            or not (result[1] == features or features is None and target[1] == -1)):
        raise chain.error(node, f"input 1 (shape {target}) is not a flatten to (N, -1); gpudl's only reshape is "
                                f"Flatten (input shape {shape})")
    chain.advance(node, nn.Flatten())
    return False


def _activation(kind):
    def handle(chain, node, follower):
        chain.check_attributes(node, chain.attributes(node), {})
        chain.advance(node, kind())
        return False
    return handle


def _scalar(chain, node):
    value = chain.constant(node, 1)
    if value.size != 1:
        raise chain.error(node, f"input 1 must be a scalar, got shape {value.shape}")
    return float(value.reshape(()))


def _mul(chain, node, follower):
    alpha = _scalar(chain, node)
    if not chain.follows(node, follower, "Sigmoid"):
        raise chain.error(node, "gpudl takes Mul by a scalar only before a Sigmoid (Sigmoid with alpha)")
    chain.advance(node)
    chain.advance(follower, nn.Sigmoid(alpha))
    return True


def _greater_or_equal(chain, node, follower):
    if _scalar(chain, node) != 0:
        raise chain.error(node, "gpudl's Step compares with 0 only")
    if not chain.follows(node, follower, "Cast"):
        raise chain.error(node, "gpudl takes GreaterOrEqual(x, 0) only before a Cast to float (Step)")
    chain.advance(node)
    chain.advance(follower, nn.Step())
    return True


def _layout(letters):
    return "batch" if letters == "NTF" else letters


def _transpose(chain, node, follower):
    perm = [int(p) for p in chain.attributes(node).get("perm", [])]
    letters = "NTF" if chain.layout == "batch" else chain.layout
    moved = "".join(letters[p] for p in perm) if sorted(perm) == list(range(len(letters))) else None
    if moved is None or _layout(moved) not in LAYOUTS:
        raise chain.error(node, f"attribute perm={perm} is not supported on a tensor arranged "
                                f"{LAYOUTS[chain.layout]} (gpudl follows Transposes between batch-first "
                                f"and time-major sequences and of a recurrent op's direction axis)")
    chain.advance(node, layout=_layout(moved))
    return False


def _squeeze(chain, node, follower):
    axes = [int(a) for a in chain.shape_vector(node, 1)] if len(node.input) > 1 and node.input[1] else None
    direction = chain.layout.find("D")
    if direction < 0 or axes not in ([direction], [direction - 4]):
        raise chain.error(node, f"input 1 (axes {axes}) on a tensor arranged {LAYOUTS[chain.layout]}: gpudl "
                                f"squeezes only the direction axis of an RNN or LSTM output")
    chain.advance(node, layout=_layout(chain.layout.replace("D", "")))
    return False


def _recurrent(chain, node, follower):
    attributes = chain.attributes(node)
    layout = attributes.pop("layout", 0)
    hidden = attributes.pop("hidden_size", None)
    chain.require_layout(node, "batch", "TNF")
    is_lstm = node.op_type == "LSTM"
    defaults = ["Sigmoid", "Tanh", "Tanh"] if is_lstm else ["Tanh"]
    allowed = {"direction": "forward", "activations": defaults}
    if is_lstm:
        allowed["input_forget"] = 0
    chain.check_attributes(node, attributes, allowed)
    W, R = chain.weight(node, 1, 3), chain.weight(node, 2, 3)
    B = chain.weight(node, 3, 2, required=False)
    gate_count = 4 if is_lstm else 1
    if W.shape[0] != 1 or hidden is None or W.shape[1] != gate_count * hidden:
        raise chain.error(node, f"weights of shape {W.shape} do not fit one direction of hidden_size={hidden}")
    for index, what in ((4, "sequence_lens"), (5, "initial_h"), (6, "initial_c"), (7, "P (peepholes)")):
        name = node.input[index] if index < len(node.input) else ""
        if name and (index == 4 or not chain.beside.is_zero(name)):
            raise chain.error(node, f"input {index} ({what}) is not supported (gpudl starts from a zero state, "
                                    f"has no peepholes and runs whole sequences)")
    chain.arrange("batch" if layout == 1 else "TNF")
    kind, order = (nn.LSTM, gates.LSTM_ORDER) if is_lstm else (nn.RNN, gates.RNN_ORDER)
    layer = kind(W.shape[2], hidden, dtype=chain.dtype)
    for param, array in zip((layer.W_x, layer.W_h, layer.b), gates.from_onnx(W, R, B, order)):
        _fill(param, array)
    chain.advance(node, layer, layout="NTDF" if layout == 1 else "TDNF")
    return False


def _aside(chain, node, follower):
    """Shape(x): a value computed beside the chain, which a later node may only use as a (dynamic) shape."""
    return False


def _skip(chain, node, follower):
    chain.advance(node)
    return False


_HANDLERS = {
    "Gemm": _gemm, "MatMul": _matmul, "Conv": _conv, "MaxPool": _pool, "AveragePool": _pool,
    "Flatten": _flatten, "Reshape": _reshape, "Relu": _activation(nn.ReLU), "Sigmoid": _activation(nn.Sigmoid),
    "Tanh": _activation(nn.Tanh), "Softplus": _activation(nn.Softplus), "Sign": _activation(nn.Sign),
    "Mul": _mul, "GreaterOrEqual": _greater_or_equal, "Transpose": _transpose, "Squeeze": _squeeze,
    "LSTM": _recurrent, "RNN": _recurrent, "Identity": _skip, "Dropout": _skip, "Shape": _aside,
}
