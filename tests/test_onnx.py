"""gpudl.onnx: every export passes onnx's full check and runs in onnxruntime like gpudl's forward; loads give back
the same model; graphs written the way other exporters write them load and match onnxruntime; bad files fail
clearly."""
import re

import numpy
import pytest
import reference

import gpudl.onnx
from gpudl import data, geometry, nn, optim
from gpudl.gradient_check import check_layer
from gpudl.models import MLP, LeNet5, Perceptron
from gpudl.onnx import SequenceDense
from gpudl.onnx.importer import UnsupportedGraph

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402 (after the importorskip)
from onnx_cases import node_case  # noqa: E402


def charlstm(vocab, hidden):
    from gpudl.models import CharLSTM
    return CharLSTM(vocab, hidden)


def run_onnxruntime(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_close(actual, expected, tol):
    """|actual - expected| <= tol times the output's scale (its largest magnitude)."""
    assert actual.shape == expected.shape
    scale = max(float(numpy.abs(expected).max()), 1e-30)
    assert float(numpy.abs(actual - expected).max()) <= tol * scale


def sample(shape, batch=3, dtype=numpy.float32, seed=0):
    return numpy.random.default_rng(seed).standard_normal((batch, *shape)).astype(dtype)


def export_and_check(model, tmp_path, input_shape, x):
    """Export, check the file with onnx's full check, and compare onnxruntime with gpudl's forward (1e-5)."""
    path = tmp_path / "model.onnx"
    gpudl.onnx.export(model, path, input_shape)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    expected = model.forward(x)
    assert_close(run_onnxruntime(path, x), expected, 1e-5)
    return path, expected


def check_round_trip(model, path, x, expected):
    loaded = gpudl.onnx.load(path)
    assert isinstance(loaded, nn.Sequential)
    assert [p.shape for p in loaded.parameters()] == [p.shape for p in model.parameters()]
    assert_close(loaded.forward(x), expected, 1e-6)
    return loaded


def _nonzero_bias(model):
    for name, p in model.named_parameters():
        if name.endswith("b"):
            p.data[...] = numpy.random.default_rng(1).uniform(-0.5, 0.5, p.shape)
    return model


LAYERS = {
    "dense": (lambda: nn.Dense(5, 4), (5,)),
    "conv valid": (lambda: nn.Conv2D(2, 3, 3), (2, 8, 9)),
    "conv same stride 1": (lambda: nn.Conv2D(2, 3, 4, padding="same"), (2, 8, 9)),
    "conv same stride 2 odd size": (lambda: nn.Conv2D(2, 3, 3, strides=2, padding="same"), (2, 9, 8)),
    "conv int padding strides (2, 1)": (lambda: nn.Conv2D(2, 3, (3, 2), strides=(2, 1), padding=1), (2, 7, 6)),
    "max pool valid": (lambda: nn.MaxPool2D(2), (3, 8, 6)),
    "max pool same": (lambda: nn.MaxPool2D(3, strides=2, padding="same"), (3, 9, 8)),
    "max pool int padding": (lambda: nn.MaxPool2D(3, strides=1, padding=1), (2, 5, 5)),
    "avg pool valid strides": (lambda: nn.AvgPool2D(3, strides=2), (2, 9, 7)),
    "avg pool same": (lambda: nn.AvgPool2D(2, strides=2, padding="same"), (2, 7, 5)),
    "avg pool int padding": (lambda: nn.AvgPool2D((3, 2), strides=(1, 2), padding=1), (2, 6, 6)),
    "conv same_lower stride 1": (lambda: nn.Conv2D(2, 3, (4, 2), padding="same_lower"), (2, 8, 9)),
    "conv same_lower stride 2": (lambda: nn.Conv2D(2, 3, 4, strides=2, padding="same_lower"), (2, 9, 8)),
    "max pool same_lower": (lambda: nn.MaxPool2D(2, strides=1, padding="same_lower"), (3, 7, 6)),
    "avg pool same_lower": (lambda: nn.AvgPool2D(3, strides=2, padding="same_lower"), (2, 8, 7)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 4)),
    "sigmoid": (lambda: nn.Sigmoid(), (6,)),
    "sigmoid alpha": (lambda: nn.Sigmoid(alpha=2.5), (6,)),
    "tanh": (lambda: nn.Tanh(), (6,)),
    "relu": (lambda: nn.ReLU(), (2, 3, 3)),
    "softplus": (lambda: nn.Softplus(), (6,)),
    "sign": (lambda: nn.Sign(), (6,)),
    "step": (lambda: nn.Step(), (6,)),
    "rnn": (lambda: nn.RNN(4, 5), (6, 4)),
    "lstm": (lambda: nn.LSTM(4, 5), (6, 4)),
    "dense on a sequence": (lambda: SequenceDense(4, 3), (5, 4)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_matches_onnxruntime_and_loads_back(name, tmp_path):
    make, input_shape = LAYERS[name]
    model = _nonzero_bias(nn.Sequential(make()))
    x = sample(input_shape)
    if name in ("sign", "step"):
        x[0, :2] = 0    # the threshold's own point: Step(0) = 1, Sign(0) = 0
    path, expected = export_and_check(model, tmp_path, input_shape, x)
    check_round_trip(model, path, x, expected)


def test_initializers_carry_the_parameter_names(tmp_path):
    model = LeNet5()
    proto = gpudl.onnx.export(model, tmp_path / "lenet.onnx", (1, 28, 28))
    names = {t.name for t in proto.graph.initializer}
    assert {name for name, _ in model.named_parameters()} <= names
    assert proto.opset_import[0].version == gpudl.onnx.DEFAULT_OPSET
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_lstm_gate_order_is_onnx_i_o_f_c(tmp_path):
    """A forget-gate bias alone (gpudl's second block) must land in ONNX's third block."""
    layer = nn.LSTM(2, 3)
    layer.b.data[...] = 0
    layer.b.data[3:6] = 7
    proto = gpudl.onnx.export(nn.Sequential(layer), tmp_path / "lstm.onnx", (4, 2))
    B = numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == "0.b"))
    assert B.shape == (1, 24)
    numpy.testing.assert_array_equal(numpy.nonzero(B[0])[0], numpy.arange(6, 9))


@pytest.mark.parametrize("pooling, activation", [("max", "relu"), ("avg", "tanh")])
def test_lenet5_matches_onnxruntime_and_loads_back(pooling, activation, tmp_path):
    model = _nonzero_bias(LeNet5(pooling=pooling, activation=activation))
    x = sample((1, 28, 28), batch=4)
    path, expected = export_and_check(model, tmp_path, (1, 28, 28), x)
    check_round_trip(model, path, x, expected)


def test_xor_mlp_matches_onnxruntime_and_loads_back(tmp_path):
    X, _ = data.xor()
    model = _nonzero_bias(MLP([2, 2, 1]))
    path, expected = export_and_check(model, tmp_path, (2,), X)
    check_round_trip(model, path, X, expected)


@pytest.mark.parametrize("labels", ["0/1", "-1/+1"])
def test_perceptron_matches_onnxruntime_and_loads_back(labels, tmp_path):
    X, y = data.separable_points(n=40, seed=3, dtype=numpy.float64)
    if labels == "-1/+1":
        y = 2 * y - 1
    model = Perceptron(2)
    assert model.fit(X, y).converged
    path, expected = export_and_check(model, tmp_path, (2,), X)
    numpy.testing.assert_array_equal(expected[:, 0], y)
    loaded = check_round_trip(model, path, X, expected)
    assert type(loaded[1]) is (nn.Sign if labels == "-1/+1" else nn.Step)


def test_char_lstm_over_sequences_of_any_length(tmp_path):
    model = _nonzero_bias(charlstm(7, 6))
    path = tmp_path / "charlm.onnx"
    gpudl.onnx.export(model, path, (None, 7))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    loaded = gpudl.onnx.load(path)
    assert [type(layer) for layer in loaded] == [nn.LSTM, SequenceDense]
    for length in (5, 9):
        x = sample((length, 7), batch=2, seed=length)
        model.reset_state()          # the char-LSTM is stateful; the graph starts every sequence from zeros
        expected = model.forward(x)
        assert_close(run_onnxruntime(path, x), expected, 1e-5)
        assert_close(loaded.forward(x), expected, 1e-6)


def test_a_loaded_lenet5_resumes_training(tmp_path):
    model = LeNet5()
    gpudl.onnx.export(model, tmp_path / "lenet.onnx", (1, 28, 28))
    loaded = gpudl.onnx.load(tmp_path / "lenet.onnx")
    x = sample((1, 28, 28), batch=16, seed=5)
    labels = numpy.arange(16) % 10
    loss, optimizer = nn.SoftmaxCrossEntropy(), optim.SGD(loaded.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        losses.append(float(loss.forward(loaded.forward(x), labels)))
        loaded.backward(loss.backward())
        optimizer.step()
    assert losses[-1] < losses[0]


def _outside_graph(opset=13):
    """Conv(SAME_UPPER) + Relu + MaxPool + Flatten + Gemm(transB=1) as PyTorch/Keras exporters write it: weights
    as initializers that are also listed as graph inputs, Gemm weights stored (out, in)."""
    rng = numpy.random.default_rng(2)
    W = rng.standard_normal((4, 2, 3, 3)).astype(numpy.float32)
    B = rng.standard_normal(4).astype(numpy.float32)
    G = rng.standard_normal((5, 4 * 4 * 3)).astype(numpy.float32)   # 8x6 -> same conv 8x6 -> pool 2 -> 4x3, 4 channels
    C = rng.standard_normal(5).astype(numpy.float32)
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv", auto_pad="SAME_UPPER",
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="/flatten/Flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm", transB=1, alpha=1.0, beta=1.0),
    ]
    weights = {"conv.weight": W, "conv.bias": B, "fc.weight": G, "fc.bias": C}
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 8, 6])]
    inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in weights.items()]
    graph = helper.make_graph(nodes, "outside", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                        ["batch", 5])],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_an_outside_graph_loads_and_matches_onnxruntime(tmp_path):
    path = tmp_path / "outside.onnx"
    onnx.save(_outside_graph(), str(path))
    loaded = gpudl.onnx.load(path)
    assert [type(layer) for layer in loaded] == [nn.Conv2D, nn.ReLU, nn.MaxPool2D, nn.Flatten, nn.Dense]
    assert loaded[0].padding == "same"
    x = sample((2, 8, 6), batch=3)
    assert_close(loaded.forward(x), run_onnxruntime(path, x), 1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's TorchScript-based exporter
def test_a_pytorch_lenet_loads_and_matches(tmp_path):
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    torch.manual_seed(0)
    net = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                         tnn.Conv2d(6, 16, 5), tnn.Tanh(), tnn.AvgPool2d(2), tnn.Flatten(),
                         tnn.Linear(400, 120), tnn.ReLU(), tnn.Dropout(0.1), tnn.Linear(120, 10)).eval()
    path = tmp_path / "torch_lenet.onnx"
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    loaded = gpudl.onnx.load(path)
    x = sample((1, 28, 28), batch=5)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert_close(run_onnxruntime(path, x), expected, 1e-5)
    assert_close(loaded.forward(x), expected, 1e-5)


# -- SAME_LOWER: ONNX's "same" padding with the odd cell at the top/left ----------------------------------------

def _same_lower_graph():
    """Conv, MaxPool and AveragePool with auto_pad SAME_LOWER on images of any size; each pads an odd number of
    cells along some axis for the sizes the test runs."""
    W = numpy.random.default_rng(3).standard_normal((3, 2, 4, 3)).astype(numpy.float32)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv", auto_pad="SAME_LOWER", kernel_shape=[4, 3],
                              strides=[2, 1]),
             helper.make_node("MaxPool", ["c"], ["m"], name="max", auto_pad="SAME_LOWER", kernel_shape=[2, 2],
                              strides=[1, 1]),
             helper.make_node("AveragePool", ["m"], ["y"], name="avg", auto_pad="SAME_LOWER", kernel_shape=[3, 2],
                              strides=[2, 2])]
    return _chain_model(nodes, {"W": W}, ["N", 2, "H", "W"], ["N", 3, "OH", "OW"])


@pytest.mark.parametrize("height, width", [(9, 8), (10, 7)])
def test_same_lower_layers_match_onnxruntime(tmp_path, height, width):
    path = tmp_path / "same_lower.onnx"
    onnx.save(_same_lower_graph(), str(path))
    loaded = gpudl.onnx.load(path)
    assert [layer.padding for layer in loaded] == ["same_lower"] * 3
    x = sample((2, height, width), batch=2)
    assert_close(loaded.forward(x), run_onnxruntime(path, x), 1e-5)
    as_upper = onnx.load(str(path))
    for node in as_upper.graph.node:
        node.attribute[0].s = b"SAME_UPPER"
    onnx.save(as_upper, str(tmp_path / "same_upper.onnx"))
    assert numpy.abs(run_onnxruntime(tmp_path / "same_upper.onnx", x) - loaded.forward(x)).max() > 0.1, \
        "the sizes must make SAME_LOWER differ from SAME_UPPER"


@pytest.mark.parametrize("owner, export", [("Conv", "export_conv_with_autopad_same"),
                                           ("MaxPool", "export_maxpool_2d_same_lower"),
                                           ("AveragePool", "export_averagepool_2d_same_lower")])
def test_onnx_own_same_lower_cases(monkeypatch, tmp_path, owner, export):
    model, x, expected = node_case(monkeypatch, owner.lower(), owner, export)
    loaded = _load_proto(model, tmp_path)
    assert loaded[0].padding == "same_lower"
    assert_close(loaded.forward(x), expected, 1e-5)


def test_same_lower_layers_match_the_naive_loops_and_back_propagate():
    rng = numpy.random.default_rng(4)
    x = rng.standard_normal((2, 2, 7, 6))
    conv = nn.Conv2D(2, 3, (4, 3), strides=(2, 1), padding="same_lower", dtype=numpy.float64, rng=rng)
    assert geometry.pad_amounts(7, 4, 2, "same_lower") == (2, 1)     # 4 rows out: 3 cells of padding, 2 on top
    numpy.testing.assert_allclose(conv.forward(x), reference.conv2d(x, conv.W.data, conv.b.data, (2, 1),
                                                                    "same_lower"), rtol=1e-12, atol=1e-12)
    for layer in (conv, nn.MaxPool2D(2, strides=1, padding="same_lower"),
                  nn.AvgPool2D(3, strides=2, padding="same_lower")):
        assert check_layer(layer, x) != 0


# -- bad input: one clear error each ----------------------------------------------------------------------------

def test_a_truncated_file_is_refused(tmp_path):
    gpudl.onnx.export(LeNet5(), tmp_path / "lenet.onnx", (1, 28, 28))
    whole = (tmp_path / "lenet.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="cut.onnx is not a valid ONNX model"):
        gpudl.onnx.load(tmp_path / "cut.onnx")


def test_a_file_of_another_format_is_refused(tmp_path):
    (tmp_path / "notes.onnx").write_text("these are not the weights you are looking for\n" * 20)
    with pytest.raises(ValueError, match="notes.onnx is not a valid ONNX model"):
        gpudl.onnx.load(tmp_path / "notes.onnx")


def _load_proto(model, folder):
    """gpudl.onnx.load of a ModelProto, saved in `folder` first."""
    onnx.save(model, str(folder / "model.onnx"))
    return gpudl.onnx.load(folder / "model.onnx")


def _chain_model(nodes, initializers, input_dims, output_dims):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_dims)],
                              [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_unsupported_op_is_named(tmp_path):
    model = _chain_model([helper.make_node("Relu", ["x"], ["r"], name="act1"),
                          helper.make_node("LeakyRelu", ["r"], ["y"], name="act2", alpha=0.1)], {}, ["N", 4], ["N", 4])
    onnx.save(model, str(tmp_path / "leaky.onnx"))
    with pytest.raises(UnsupportedGraph, match="LeakyRelu node 'act2': op type 'LeakyRelu' has no gpudl layer"):
        gpudl.onnx.load(tmp_path / "leaky.onnx")


def test_an_unsupported_attribute_is_named(tmp_path):
    weights = {"W": numpy.ones((4, 3), numpy.float32)}
    model = _chain_model([helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", alpha=2.0)], weights,
                         ["N", 4], ["N", 3])
    onnx.save(model, str(tmp_path / "gemm.onnx"))
    with pytest.raises(UnsupportedGraph, match="Gemm node 'fc': attribute alpha=2.0 is not supported"):
        gpudl.onnx.load(tmp_path / "gemm.onnx")


def _view_graph(features):
    """x.view(x.size(0), FEATURES) with Reshape's target computed from Shape(x), as PyTorch's TorchScript exporter
    writes it. features: "-1"; "product": x.size(1) * x.size(2) * x.size(3) (Gather of scalars, Mul, Cast,
    Unsqueeze); "reduce_prod": a ReduceProd of the other dims, which gpudl does not follow."""
    def scalar_dim(k):
        return [helper.make_node("Gather", ["s", f"i{k}"], [f"d{k}"], name=f"dim{k}", axis=0)]

    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="batch", axis=0)]
    if features == "-1":
        nodes.append(helper.make_node("Concat", ["n", "minus_one"], ["target"], name="target", axis=0))
    elif features == "product":
        nodes += [*scalar_dim(1), *scalar_dim(2), *scalar_dim(3),
                  helper.make_node("Mul", ["d1", "d2"], ["d12"], name="mul12"),
                  helper.make_node("Mul", ["d12", "d3"], ["d123"], name="mul123"),
                  helper.make_node("Cast", ["d123"], ["f"], name="cast", to=TensorProto.INT64),
                  helper.make_node("Unsqueeze", ["f", "zero"], ["features"], name="unsqueeze"),
                  helper.make_node("Concat", ["n", "features"], ["target"], name="target", axis=0)]
    else:
        nodes += [helper.make_node("Slice", ["s", "one", "four"], ["rest"], name="rest"),
                  helper.make_node("ReduceProd", ["rest"], ["features"], name="count", keepdims=1),
                  helper.make_node("Concat", ["n", "features"], ["target"], name="target", axis=0)]
    nodes.append(helper.make_node("Reshape", ["x", "target"], ["y"], name="view"))
    constants = {"zero": numpy.array([0], numpy.int64), "minus_one": numpy.array([-1], numpy.int64),
                 "one": numpy.array([1], numpy.int64), "four": numpy.array([4], numpy.int64),
                 **{f"i{k}": numpy.array(k, numpy.int64) for k in (1, 2, 3)}}
    return _chain_model(nodes, constants, ["N", 2, 3, 3], ["N", 18])


@pytest.mark.parametrize("features", ["-1", "product"])
def test_a_flatten_whose_shape_is_computed_from_the_input_loads(tmp_path, features):
    onnx.save(_view_graph(features), str(tmp_path / "view.onnx"))
    loaded = gpudl.onnx.load(tmp_path / "view.onnx")
    assert [type(layer) for layer in loaded] == [nn.Flatten]
    x = sample((2, 3, 3), batch=4)
    assert_close(loaded.forward(x), run_onnxruntime(tmp_path / "view.onnx", x), 0)


@pytest.mark.parametrize("target", [[-1, 6], [0, 9, 2], [0, 7]])
def test_a_reshape_other_than_a_flatten_is_refused(tmp_path, target):
    nodes = [helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape")]
    onnx.save(_chain_model(nodes, {"target": numpy.array(target, numpy.int64)}, ["N", 2, 3, 3], ["N", None]),
              str(tmp_path / "reshape.onnx"))
    expected = f"Reshape node 'reshape': input 1 (shape {target}) is not a flatten to (N, -1)"
    with pytest.raises(UnsupportedGraph, match=re.escape(expected)):
        gpudl.onnx.load(tmp_path / "reshape.onnx")


def test_a_shape_computed_by_an_op_gpudl_does_not_follow_is_refused(tmp_path):
    onnx.save(_view_graph("reduce_prod"), str(tmp_path / "view.onnx"))
    with pytest.raises(UnsupportedGraph, match=r"Reshape node 'view': input 1 \('target'\) is computed in the graph "
                                               r"in a way gpudl does not follow: gpudl does not follow ReduceProd .*"
                                               r"\(at ReduceProd node 'count'\)"):
        gpudl.onnx.load(tmp_path / "view.onnx")


def test_asymmetric_pads_on_a_dynamic_image_size_are_refused(tmp_path):
    weights = {"W": numpy.ones((1, 1, 2, 2), numpy.float32)}
    conv = helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[0, 0, 1, 1])
    model = _chain_model([conv], weights, ["N", 1, "H", "W"], ["N", 1, "H", "W"])
    onnx.save(model, str(tmp_path / "pads.onnx"))
    with pytest.raises(UnsupportedGraph, match=r"Conv node 'conv': attribute pads=\[0, 0, 1, 1\] .* dynamic"):
        gpudl.onnx.load(tmp_path / "pads.onnx")
    # the same pads on a known 5x5 image are the "same" rule (odd cell at the bottom/right)
    onnx.save(_chain_model([conv], weights, ["N", 1, 5, 5], ["N", 1, 5, 5]), str(tmp_path / "known.onnx"))
    assert gpudl.onnx.load(tmp_path / "known.onnx")[0].padding == "same"
