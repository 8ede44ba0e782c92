"""The onnx package's own operator test cases as graphs gpudl loads.

onnx ships its node tests as code (onnx.backend.test.case.node: one `export_*` function per case, which builds the
node and its inputs and computes the expected outputs with onnx's reference implementation, then hands them to
`expect`). `node_case` runs one such function with `expect` caught and makes the case a chain: the node's first
input is the graph's input, its other inputs become initializers, and its first output is the graph's output, with
the direction axis of a recurrent op's output squeezed (gpudl's layers return (N, T, H)).
"""
import importlib

import numpy
from onnx import TensorProto, helper, numpy_helper

DIRECTION_AXIS = {0: 1, 1: 2}   # layout -> the direction axis of Y: (T, D, N, H) or (N, T, D, H)


def node_case(monkeypatch, module, owner, export):
    """(model, input, expected output) of onnx.backend.test.case.node.MODULE's OWNER.EXPORT (one case)."""
    cases = importlib.import_module(f"onnx.backend.test.case.node.{module}")
    caught = []
    monkeypatch.setattr(cases, "expect", lambda node, inputs, outputs, name, **_: caught.append((node, inputs,
                                                                                                 outputs)))
    getattr(getattr(cases, owner), export)()
    assert len(caught) == 1, f"{owner}.{export} wrote {len(caught)} cases"
    node, inputs, outputs = caught[0]
    names = [name for name in node.input if name]
    out, expected = node.output[0], outputs[0]
    node = helper.make_node(node.op_type, node.input, [out], name=node.op_type.lower(), **{
        a.name: helper.get_attribute_value(a) for a in node.attribute})
    nodes = [node]
    if node.op_type in ("LSTM", "RNN", "GRU"):
        layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
        axis = DIRECTION_AXIS[layout]
        nodes.append(helper.make_node("Squeeze", [out, "direction_axis"], ["y"], name="squeeze"))
        expected = numpy.squeeze(expected, axis)
        inputs = [*inputs, numpy.array([axis], numpy.int64)]
        names.append("direction_axis")
    else:
        nodes[0].output[0] = "y"
    initializers = [numpy_helper.from_array(array, name) for name, array in zip(names[1:], inputs[1:])]
    graph = helper.make_graph(nodes, export, [helper.make_tensor_value_info(names[0], TensorProto.FLOAT,
                                                                            inputs[0].shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, expected.shape)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), inputs[0], expected
