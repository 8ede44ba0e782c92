"""What a graph computes beside its chain of layers, read without running it: shape vectors and zero tensors.

Exporters compute a Reshape's target from the shape of a tensor (PyTorch's x.view(x.size(0), -1) is Shape, Gather,
Unsqueeze and Concat; its LSTM output is reshaped by Shape, Slice, Mul and Concat) and a recurrent op's initial state
from the batch size of its input (ConstantOfShape, or Expand of a 0). `shape_vector` follows such a computation with
dims that are ints or names (the symbolic dims of the graph's inferred shapes, "batch" say), and `is_zero` tells a
tensor that is all zeros whatever its shape. Anything else is NotEvaluable, naming the node where the computation
leaves what gpudl follows.
"""
import numpy

# Ops that move or copy the values of their first input without changing them: zeros stay zeros.
_KEEPS_ZEROS = {"Cast", "Expand", "Flatten", "Gather", "Identity", "Reshape", "Slice", "Squeeze", "Tile", "Transpose",
                "Unsqueeze"}


class NotEvaluable(Exception):
    """A value gpudl cannot follow: `node` (None for a graph input) computes it and `why` says what is missing."""

    def __init__(self, node, why):
        super().__init__(why)
        self.node, self.why = node, why


class Beside:
    """The values beside the chain of a graph: `constants` (name -> numpy array), `producers` (name -> the node that
    writes it) and `shapes` (name -> inferred dims, ints or names); `onnx` is the onnx module."""

    def __init__(self, onnx, constants, producers, shapes):
        self.onnx, self.constants, self.producers, self.shapes = onnx, constants, producers, shapes

    def attributes(self, node):
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def shape_vector(self, name):
        """The 1-D int tensor `name` as a list of dims (ints, and names where a symbolic dim was copied)."""
        value = self._value(name)
        if value.ndim != 1:
            raise NotEvaluable(self.producers.get(name), f"it has rank {value.ndim}, a shape has rank 1")
        return list(value)

    def is_zero(self, name):
        """Whether tensor `name` is zeros, whatever shape the graph gives it."""
        if name in self.constants:
            return not numpy.any(self.constants[name])
        node = self.producers.get(name)
        if node is None:
            return False
        if node.op_type == "ConstantOfShape":
            fill = self.attributes(node).get("value")
            return fill is None or not numpy.any(self.onnx.numpy_helper.to_array(fill))
        if node.op_type == "Concat":
            return all(self.is_zero(part) for part in node.input)
        return node.op_type in _KEEPS_ZEROS and self.is_zero(node.input[0])

    # -- shape arithmetic on object arrays of ints and names ---------------------------------------------------------

    def _value(self, name):
        if name in self.constants:
            array = self.constants[name]
            if not numpy.issubdtype(array.dtype, numpy.integer):
                raise NotEvaluable(None, f"constant {name!r} holds {array.dtype} values, a shape holds integers")
            return _dims(array)
        node = self.producers.get(name)
        if node is None:
            raise NotEvaluable(None, f"{name!r} is a graph input, not a shape gpudl can read")
        evaluate = _OPS.get(node.op_type)
        if evaluate is None:
            raise NotEvaluable(node, f"gpudl does not follow {node.op_type} in a shape computation (it follows "
                                     f"{', '.join(sorted(_OPS))})")
        try:
            return _dims(evaluate(self, node, self.attributes(node)))
        except (IndexError, ValueError, TypeError) as exc:
            raise NotEvaluable(node, f"it does not compute a shape gpudl can read ({exc})") from None

    def _input(self, node, index, default=None):
        if index >= len(node.input) or not node.input[index]:
            return default
        return self._value(node.input[index])

    def _ints(self, node, index, default=None):
        value = self._input(node, index)
        if value is None:
            return default
        if not all(_is_int(v) for v in value.flat):
            raise NotEvaluable(node, f"input {index} holds symbolic dims {list(value.flat)} where gpudl needs numbers")
        return [int(v) for v in value.flat]


def _is_int(value):
    return isinstance(value, (int, numpy.integer))


def _dims(array):
    """An object array of Python ints and names, of the shape of `array`."""
    array = numpy.asarray(array, dtype=object)
    return numpy.array([int(v) if _is_int(v) else v for v in array.flat], dtype=object).reshape(array.shape)


def _times(a, b):
    if _is_int(a) and _is_int(b):
        return int(a) * int(b)
    if a == 1:
        return b
    if b == 1:
        return a
    return f"({a}*{b})"


def _shape(beside, node, attributes):
    dims = beside.shapes.get(node.input[0])
    if dims is None:
        raise NotEvaluable(node, f"the shape of its input {node.input[0]!r} is not known")
    return numpy.array(dims[attributes.get("start", 0):attributes.get("end")], dtype=object)


def _gather(beside, node, attributes):
    indices = beside._input(node, 1).astype(numpy.int64)     # a name among the indices: ValueError
    return numpy.take(beside._input(node, 0), indices, axis=attributes.get("axis", 0))


def _slice(beside, node, attributes):
    data = beside._input(node, 0)
    starts, ends = beside._ints(node, 1), beside._ints(node, 2)
    axes = beside._ints(node, 3, list(range(len(starts))))
    steps = beside._ints(node, 4, [1] * len(starts))
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    return data[tuple(index)]


def _reshape(beside, node, attributes):
    data, target = beside._input(node, 0), beside._ints(node, 1)
    if not attributes.get("allowzero", 0):
        target = [data.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return data.reshape(target)


def _unsqueeze(beside, node, attributes):
    return numpy.expand_dims(beside._input(node, 0), tuple(beside._ints(node, 1)))


def _squeeze(beside, node, attributes):
    axes = beside._ints(node, 1)
    return numpy.squeeze(beside._input(node, 0), None if axes is None else tuple(axes))


_OPS = {
    "Shape": _shape, "Gather": _gather, "Slice": _slice, "Reshape": _reshape, "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda beside, node, attributes: numpy.concatenate([beside._value(name) for name in node.input],
                                                                 axis=attributes.get("axis", 0)),
    "Cast": lambda beside, node, attributes: beside._input(node, 0),
    "Identity": lambda beside, node, attributes: beside._input(node, 0),
    "Mul": lambda beside, node, attributes: numpy.frompyfunc(_times, 2, 1)(beside._input(node, 0),
                                                                           beside._input(node, 1)),
}
