"""Recurrent models across gpudl, ONNX and PyTorch.

Import: RNN and LSTM ops with layout = 1 (batch-major: onnx's own test_lstm_batchwise and test_simple_rnn_batchwise,
and random weights against onnxruntime, which runs only layout 0, on the equivalent time-major graph); the graphs
`torch.onnx.export` writes for an nn.LSTM or nn.RNN followed by an nn.Linear, from both of its exporters, batch_first
or not: stored files made by tests/data/onnx/make_torch_lstm.py (no PyTorch needed) and fresh exports where PyTorch
is installed. Export: a gpudl LSTM or RNN in onnxruntime equals torch.nn.LSTM / nn.RNN given the file's weights.
"""
import os
import warnings

import numpy
import pytest

import gpudl.onnx
from gpudl import nn
from gpudl.gradient_check import check_layer
from gpudl.onnx import SequenceDense, SwapBatchTime
from gpudl.onnx.importer import UnsupportedGraph

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402 (after the importorskip)
from onnx_cases import node_case  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "onnx")
STORED = ["torch_lstm_script_batch_first", "torch_lstm_script_time_major", "torch_lstm_dynamo_batch_first",
          "torch_lstm_dynamo_time_major"]


def run_onnxruntime(path, x):
    options = ort.SessionOptions()
    options.log_severity_level = 3      # the dynamo exporter declares its example's length as the output's
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_close(actual, expected, tol=1e-5):
    """|actual - expected| <= tol times the output's scale (its largest magnitude)."""
    assert actual.shape == expected.shape
    scale = max(float(numpy.abs(expected).max()), 1e-30)
    assert float(numpy.abs(actual - expected).max()) <= tol * scale


def layer_types(model):
    return [type(layer) for layer in model]


def input_dims(path):
    return [d.dim_param or d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]


def check_gradients(model, x):
    """The loaded chain back-propagates: its backward (SwapBatchTime's too) against central differences."""
    model.to(dtype=numpy.float64)
    assert check_layer(model, x.astype(numpy.float64)) != 0


# -- layout = 1 -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module, owner", [("lstm", "LSTM"), ("rnn", "RNN")])
def test_onnx_own_batchwise_cases(monkeypatch, tmp_path, module, owner):
    model, x, expected = node_case(monkeypatch, module, owner, "export_batchwise")
    onnx.save(model, str(tmp_path / "batchwise.onnx"))
    loaded = gpudl.onnx.load(tmp_path / "batchwise.onnx")
    assert layer_types(loaded) == [nn.LSTM if owner == "LSTM" else nn.RNN]
    assert_close(loaded.forward(x), expected)


def _recurrent_graph(op, layout, n=3, t=5, f=4, hidden=6, seed=0):
    """One forward LSTM or RNN op with random weights and biases, as a graph from x to y with the direction axis
    squeezed: layout 1 reads (N, T, F) directly; layout 0 gets Transposes around it (what onnxruntime runs)."""
    gates = 4 if op == "LSTM" else 1
    rng = numpy.random.default_rng(seed)
    weights = {"W": rng.standard_normal((1, gates * hidden, f)), "R": rng.standard_normal((1, gates * hidden, hidden)),
               "B": rng.standard_normal((1, 2 * gates * hidden)), "axis": numpy.array([2 if layout else 1])}
    weights = {k: v.astype(numpy.int64 if k == "axis" else numpy.float32) * (1 if k == "axis" else 0.4)
               for k, v in weights.items()}
    weights["axis"] = weights["axis"].astype(numpy.int64)
    recurrent = helper.make_node(op, ["xt" if layout == 0 else "x", "W", "R", "B"], ["Y"], name="rnn",
                                 hidden_size=hidden, layout=layout)
    squeeze = helper.make_node("Squeeze", ["Y", "axis"], ["yt" if layout == 0 else "y"], name="squeeze")
    nodes = [recurrent, squeeze]
    if layout == 0:
        nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]), *nodes,
                 helper.make_node("Transpose", ["yt"], ["y"], perm=[1, 0, 2])]
    graph = helper.make_graph(nodes, "recurrent", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", t, f])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", t, hidden])],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op", ["LSTM", "RNN"])
def test_layout_1_matches_onnxruntime_on_the_time_major_graph(tmp_path, op):
    onnx.save(_recurrent_graph(op, layout=1), str(tmp_path / "batchwise.onnx"))
    onnx.save(_recurrent_graph(op, layout=0), str(tmp_path / "time_major.onnx"))
    loaded = gpudl.onnx.load(tmp_path / "batchwise.onnx")
    assert layer_types(loaded) == [nn.LSTM if op == "LSTM" else nn.RNN]
    x = numpy.random.default_rng(1).standard_normal((3, 5, 4)).astype(numpy.float32)
    assert_close(loaded.forward(x), run_onnxruntime(tmp_path / "time_major.onnx", x))
    assert_close(gpudl.onnx.load(tmp_path / "time_major.onnx").forward(x), loaded.forward(x), 1e-6)


# -- what torch.onnx.export writes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", STORED)
def test_stored_pytorch_exports_load_and_match_pytorch_and_onnxruntime(name):
    path = os.path.join(DATA, name + ".onnx")
    loaded = gpudl.onnx.load(path)
    time_major = name.endswith("time_major")
    assert layer_types(loaded) == ([SwapBatchTime, nn.LSTM, SequenceDense, SwapBatchTime] if time_major
                                   else [nn.LSTM, SequenceDense])
    with numpy.load(os.path.join(DATA, "torch_lstm.npz")) as arrays:
        x, from_torch = arrays[name + ".x"], arrays[name + ".y"]
    assert_close(loaded.forward(x), from_torch)
    assert_close(run_onnxruntime(path, x), from_torch)
    if "time" in input_dims(path):      # a symbolic length: any other length works too
        longer = numpy.random.default_rng(2).standard_normal((9, 2, 5) if time_major else (2, 9, 5))
        longer = longer.astype(numpy.float32)
        assert_close(loaded.forward(longer), run_onnxruntime(path, longer))
    check_gradients(loaded, x)


def test_a_loaded_time_major_model_exports_again(tmp_path):
    loaded = gpudl.onnx.load(os.path.join(DATA, "torch_lstm_script_time_major.onnx"))
    gpudl.onnx.export(loaded, tmp_path / "again.onnx", (None, 5))
    x = numpy.random.default_rng(3).standard_normal((7, 2, 5)).astype(numpy.float32)
    assert_close(run_onnxruntime(tmp_path / "again.onnx", x), loaded.forward(x))


def _torch_model(torch, kind, batch_first, seed=0):
    class RecurrentThenLinear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(5, 4, batch_first=batch_first)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.rnn(x)[0])

    torch.manual_seed(seed)
    return RecurrentThenLinear().eval()


def _torch_export(torch, net, path, batch_first, dynamo):
    example = torch.zeros((2, 6, 5) if batch_first else (6, 2, 5))
    batch, time = (0, 1) if batch_first else (1, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {"x": {batch: torch.export.Dim("batch"), time: torch.export.Dim("time")}}
            torch.onnx.export(net, (example,), str(path), input_names=["x"], output_names=["y"], dynamic_shapes=dims,
                              dynamo=True)      # weights in path.data beside the model: gpudl reads them there
        else:
            axes = {batch: "batch", time: "time"}
            torch.onnx.export(net, (example,), str(path), input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": axes, "y": axes}, dynamo=False)


@pytest.mark.parametrize("exporter", ["script", "dynamo"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_a_pytorch_export_loads_and_matches_pytorch_and_onnxruntime(tmp_path, kind, batch_first, exporter):
    torch = pytest.importorskip("torch")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript")
    net = _torch_model(torch, kind, batch_first)
    path = tmp_path / "model.onnx"
    _torch_export(torch, net, path, batch_first, exporter == "dynamo")
    if kind == "RNN" and exporter == "dynamo":      # it unrolls the steps into Slice, MatMul, Add and Tanh nodes
        with pytest.raises(UnsupportedGraph, match=r"Slice node '.*': op type 'Slice' has no gpudl layer"):
            gpudl.onnx.load(path)
        return
    loaded = gpudl.onnx.load(path)
    recurrent = nn.LSTM if kind == "LSTM" else nn.RNN
    assert layer_types(loaded) == ([recurrent, SequenceDense] if batch_first
                                   else [SwapBatchTime, recurrent, SequenceDense, SwapBatchTime])
    lengths = [6, 9] if "time" in input_dims(path) else [6]
    for length in lengths:
        x = numpy.random.default_rng(length).standard_normal((3, length, 5) if batch_first else (length, 3, 5))
        x = x.astype(numpy.float32)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        assert_close(loaded.forward(x), expected)
        assert_close(run_onnxruntime(path, x), expected)


# -- gpudl's export, read by PyTorch --------------------------------------------------------------------------------

def _onnx_weights(proto, prefix):
    arrays = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return arrays[prefix + "W_x"][0], arrays[prefix + "W_h"][0], arrays[prefix + "b"][0]


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_an_exported_gpudl_layer_runs_in_onnxruntime_as_in_pytorch_given_the_files_weights(tmp_path, kind):
    """torch.nn.LSTM keeps its gate blocks i, f, g, o (gpudl's order) and two biases; the file holds ONNX's i, o, f, c
    and [Wb, Rb]: the weights are read from the file and put back in PyTorch's order."""
    torch = pytest.importorskip("torch")
    layer = (nn.LSTM if kind == "LSTM" else nn.RNN)(4, 6, rng=numpy.random.default_rng(0))
    layer.b.data[...] = numpy.random.default_rng(1).uniform(-0.5, 0.5, layer.b.shape)
    proto = gpudl.onnx.export(nn.Sequential(layer), tmp_path / "layer.onnx", (None, 4))
    W, R, B = _onnx_weights(proto, "0.")
    blocks = [0, 2, 3, 1] if kind == "LSTM" else [0]      # PyTorch's i, f, g, o from ONNX's i, o, f, c

    def torch_order(matrix):
        return numpy.concatenate([numpy.split(matrix, len(blocks))[k] for k in blocks])

    net = getattr(torch.nn, kind)(4, 6, batch_first=True)
    with torch.no_grad():
        width = W.shape[0]
        for name, array in (("weight_ih_l0", W), ("weight_hh_l0", R), ("bias_ih_l0", B[:width]),
                            ("bias_hh_l0", B[width:])):
            getattr(net, name).copy_(torch.from_numpy(torch_order(array)))
        x = numpy.random.default_rng(2).standard_normal((3, 7, 4)).astype(numpy.float32)
        from_torch = net(torch.from_numpy(x))[0].numpy()
    assert_close(run_onnxruntime(tmp_path / "layer.onnx", x), from_torch)
    assert_close(layer.forward(x), from_torch)


# -- what stays unsupported: one clear error each ------------------------------------------------------------------

def _lstm_graph(tmp_path, attributes=(), inputs=(), before=(), constants=()):
    """An LSTM (layout 1) graph with extra `attributes` (name -> value), `inputs` (index -> name) computed by the
    nodes `before` it from the `constants` (name -> array)."""
    rng = numpy.random.default_rng(5)
    weights = {"W": rng.standard_normal((1, 8, 3)).astype(numpy.float32),
               "R": rng.standard_normal((1, 8, 2)).astype(numpy.float32), "axis": numpy.array([2], numpy.int64),
               **dict(constants)}
    names = ["x", "W", "R", "", "", "", ""]
    for index, name in dict(inputs).items():
        names[index] = name
    nodes = [*before, helper.make_node("LSTM", names, ["Y"], name="lstm", hidden_size=2, layout=1, **dict(attributes)),
             helper.make_node("Squeeze", ["Y", "axis"], ["y"], name="squeeze")]
    graph = helper.make_graph(nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 2])],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "lstm.onnx"))
    return tmp_path / "lstm.onnx"


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_a_zero_state_computed_from_the_batch_size_loads_and_another_state_is_refused(tmp_path, value):
    """initial_h = ConstantOfShape(value) of shape (1, N, 2), N read from the input, as PyTorch's TorchScript-based
    exporter computes zeros."""
    fill = numpy_helper.from_array(numpy.array([value], numpy.float32), "fill")
    before = [helper.make_node("Shape", ["x"], ["batch"], name="shape", start=0, end=1),
              helper.make_node("Concat", ["one", "batch", "two"], ["state_shape"], name="state_shape", axis=0),
              helper.make_node("ConstantOfShape", ["state_shape"], ["h0"], name="h0", value=fill)]
    constants = {"one": numpy.array([1], numpy.int64), "two": numpy.array([2], numpy.int64)}
    path = _lstm_graph(tmp_path, inputs={5: "h0"}, before=before, constants=constants)
    if value == 0:
        x = numpy.random.default_rng(7).standard_normal((3, 4, 3)).astype(numpy.float32)
        (tmp_path / "plain").mkdir()
        without_state = gpudl.onnx.load(_lstm_graph(tmp_path / "plain"))
        assert_close(gpudl.onnx.load(path).forward(x), without_state.forward(x), 0)
        return
    with pytest.raises(UnsupportedGraph, match=r"LSTM node 'lstm': input 5 \(initial_h\) is not supported "
                                               r"\(gpudl starts from a zero state"):
        gpudl.onnx.load(path)


@pytest.mark.parametrize("attributes, message", [
    ({"direction": "bidirectional"}, r"attribute direction='bidirectional' is not supported \(gpudl takes 'forward'\)"),
    ({"input_forget": 1}, r"attribute input_forget=1 is not supported"),
    ({"activations": ["Sigmoid", "Relu", "Tanh"]}, r"attribute activations=\['Sigmoid', 'Relu', 'Tanh'\]"),
])
def test_what_gpudl_has_no_layer_for_is_named(tmp_path, attributes, message):
    with pytest.raises(UnsupportedGraph, match="LSTM node 'lstm': " + message):
        gpudl.onnx.load(_lstm_graph(tmp_path, attributes=attributes))


def test_sequence_lengths_are_refused(tmp_path):
    lengths = {"lengths": numpy.array([4, 4, 4], numpy.int32)}
    with pytest.raises(UnsupportedGraph, match=r"input 4 \(sequence_lens\) is not supported"):
        gpudl.onnx.load(_lstm_graph(tmp_path, inputs={4: "lengths"}, constants=lengths))


def test_a_reshape_that_keeps_the_direction_axis_is_refused(tmp_path):
    """(T, 1, N, H) to [0, 0, -1] is (T, 1, N*H), not the sequence (T, N, H)."""
    rng = numpy.random.default_rng(6)
    weights = {"W": rng.standard_normal((1, 8, 3)).astype(numpy.float32),
               "R": rng.standard_normal((1, 8, 2)).astype(numpy.float32),
               "target": numpy.array([0, 0, -1], numpy.int64)}
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["xt", "W", "R"], ["Y"], name="lstm", hidden_size=2),
             helper.make_node("Reshape", ["Y", "target"], ["y"], name="merge")]
    graph = helper.make_graph(nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 1, None])],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    with pytest.raises(UnsupportedGraph, match=r"Reshape node 'merge': input 1 \(shape \[0, 0, -1\]\) .* only when it "
                                               r"drops the direction axis, to \[4, 'N', 2\]"):
        gpudl.onnx.load(tmp_path / "m.onnx")


def test_missing_external_weights_are_named(tmp_path):
    model = onnx.load(os.path.join(DATA, "torch_lstm_script_batch_first.onnx"))
    onnx.save(model, str(tmp_path / "split.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="split.onnx.data", size_threshold=0)
    assert layer_types(gpudl.onnx.load(tmp_path / "split.onnx")) == [nn.LSTM, SequenceDense]
    os.remove(tmp_path / "split.onnx.data")
    with pytest.raises(ValueError, match=r"split.onnx keeps tensor .* in an external file gpudl cannot read"):
        gpudl.onnx.load(tmp_path / "split.onnx")
