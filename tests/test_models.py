"""Models: the perceptron rule, the MLP table on XOR, LeNet-5's shapes and parameter count, the character LSTM."""
import numpy
import pytest

from gpudl import nn, optim
from gpudl.data import DataLoader, Vocabulary, separable_points, xor
from gpudl.models import MLP, CharLSTM, LeNet5, Perceptron, load_charlm, sample
from gpudl.train import fit


def test_perceptron_rule_one_update_by_hand():
    # w = 0, b = 0: step(0) = 1 for a point labelled 0, so d - y = -1 and w, b move by -eta * x, -eta.
    p = Perceptron(2, lr=0.5)
    result = p.fit(numpy.array([[1.0, 2.0]]), numpy.array([0]))
    numpy.testing.assert_allclose(p.W.data[:, 0], [-0.5, -1.0])
    numpy.testing.assert_allclose(p.b.data, [-0.5])
    assert result.converged and result.epochs == 2 and result.updates == 1


@pytest.mark.parametrize("signed", [False, True])
def test_perceptron_converges_on_separable_points(signed):
    X, y = separable_points(200, seed=3)
    labels = 2 * y - 1 if signed else y
    p = Perceptron(2, lr=1.0, max_epochs=1000)
    result = p.fit(X, labels)
    assert result.converged and result.epochs < 1000
    numpy.testing.assert_array_equal(p.predict(X), labels)
    assert "converged after" in str(result)


def test_perceptron_stops_on_xor_and_says_so():
    X, y = xor()
    result = Perceptron(2, lr=1.0, max_epochs=25).fit(X, y)
    assert not result.converged
    assert result.epochs == 25
    assert "did not converge within 25 epoch" in str(result)


@pytest.mark.parametrize("lr", [0.0, -0.1, 1.5])
def test_perceptron_learning_rate_must_lie_in_0_1(lr):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        Perceptron(2, lr=lr)


def test_perceptron_rejects_other_labels():
    with pytest.raises(ValueError, match="labels must be 0/1 or -1/\\+1"):
        Perceptron(2).fit(numpy.zeros((3, 2)), numpy.array([0, 1, 2]))


def _train_xor(sizes, seed):
    X, y = xor()
    Y = y[:, None].astype(numpy.float32)
    model = MLP(sizes, rng=numpy.random.default_rng(seed))
    fit(model, nn.MSELoss(check=False), optim.SGD(model.parameters(), 1.0, momentum=0.9),
        DataLoader(X, Y, 4, seed=seed), epochs=800, progress=False)
    return model.forward(X)[:, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_table_no_hidden_layer_fails_xor(seed):
    out = _train_xor([2, 1], seed)
    assert not ((out >= 0.5) == (xor()[1] == 1)).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_table_one_hidden_layer_solves_xor(seed):
    out = _train_xor([2, 4, 1], seed)
    numpy.testing.assert_array_equal(out >= 0.5, xor()[1] == 1)
    assert numpy.abs(out - xor()[1]).max() < 0.2


def test_mlp_layers_and_validation():
    model = MLP([3, 5, 2], activation="tanh", output_activation=None)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Tanh", "Dense"]
    assert model.forward(numpy.zeros((4, 3), numpy.float32)).shape == (4, 2)
    with pytest.raises(ValueError, match="sizes"):
        MLP([3])
    with pytest.raises(ValueError, match="unknown activation"):
        MLP([2, 2, 1], activation="swish")


def test_lenet5_shapes_and_parameter_count():
    model = LeNet5()
    assert sum(p.data.size for p in model.parameters()) == 61706
    x = numpy.random.default_rng(0).random((3, 1, 28, 28), dtype=numpy.float32)
    shapes = []
    for layer in model.layers:
        x = layer.forward(x)
        shapes.append(x.shape[1:])
    assert shapes[2] == (6, 14, 14) and shapes[5] == (16, 5, 5) and shapes[6] == (400,) and x.shape == (3, 10)


def test_lenet5_summary_lists_layers_shapes_and_totals():
    lines = []
    text = LeNet5().summary((1, 28, 28), print_fn=lines.append)
    assert lines == [text]
    assert "(N, 400)" in text and "(N, 16, 5, 5)" in text and "(N, 10)" in text
    assert "48,120" in text and "total parameters: 61,706" in text
    assert text.count("Conv2D") == 2 and text.count("Dense") == 3


def test_lenet5_trains_one_step_downhill():
    model = LeNet5(rng=numpy.random.default_rng(0))
    rng = numpy.random.default_rng(1)
    x, y = rng.random((16, 1, 28, 28), dtype=numpy.float32), rng.integers(0, 10, 16)
    loss, opt = nn.SoftmaxCrossEntropy(), optim.SGD(model.parameters(), 0.05)
    before = float(loss(model.forward(x), y))
    for _ in range(5):
        opt.zero_grad()
        loss(model.forward(x), y)
        model.backward(loss.backward())
        opt.step()
    assert float(loss(model.forward(x), y)) < before


def test_perceptron_has_no_backward_and_uses_the_threshold_layers():
    p = Perceptron(2)
    assert type(p.activation).__name__ == "Step"
    p.fit(numpy.array([[1.0, 0.0], [-1.0, 0.0]]), numpy.array([1, -1]))
    assert type(p.activation).__name__ == "Sign"
    numpy.testing.assert_array_equal(p.predict([[2.0, 5.0], [-3.0, 1.0]]), [1, -1])
    with pytest.raises(TypeError, match="its own rule"):
        p.backward(numpy.ones((1, 1)))


# --- the character LSTM (models.charlm) ---------------------------------------------------------------------------

def test_charlstm_backward_matches_central_differences():
    rng = numpy.random.default_rng(4)
    model = CharLSTM(5, 6, dtype=numpy.float64, rng=rng)
    idx = rng.integers(0, 5, (2, 7))
    w = rng.normal(size=(2, 7, 5))
    params = model.parameters()

    def loss():
        model.reset_state()
        return float((w * model.forward(idx)).sum())

    loss()
    model.zero_grad()
    dx = model.backward(w)
    assert dx.shape == (2, 7, 5)
    direction = [rng.normal(size=p.shape) for p in params]
    analytic = sum(float((p.grad * d).sum()) for p, d in zip(params, direction))
    for p, d in zip(params, direction):
        p.data += 1e-6 * d
    up = loss()
    for p, d in zip(params, direction):
        p.data -= 2e-6 * d
    down = loss()
    assert analytic == pytest.approx((up - down) / 2e-6, rel=1e-6)


def test_charlstm_takes_indices_or_one_hot_and_checks_them():
    model = CharLSTM(4, 3, dtype=numpy.float64, rng=numpy.random.default_rng(0))
    idx = numpy.array([[0, 3, 1], [2, 2, 0]])
    by_index = model.forward(idx)
    model.reset_state()
    by_one_hot = model.forward(numpy.eye(4)[idx])
    assert by_index.shape == (2, 3, 4)
    numpy.testing.assert_array_equal(by_index, by_one_hot)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model.forward(numpy.array([[0, 4]]))


def test_sample_checks_temperature_and_start():
    vocab = Vocabulary("abc")
    model = CharLSTM(3, 4, rng=numpy.random.default_rng(0))
    with pytest.raises(ValueError, match="temperature"):
        sample(model, vocab, "a", 5, temperature=0)
    with pytest.raises(ValueError, match="'z'"):
        sample(model, vocab, "az", 5)
    assert len(sample(model, vocab, "ab", 7, rng=numpy.random.default_rng(0))) == 9


def test_load_charlm_refuses_other_checkpoints(tmp_path):
    import gpudl
    path = tmp_path / "dense.npz"
    gpudl.save(nn.Dense(2, 3), path)
    with pytest.raises(ValueError, match="not a character-model checkpoint"):
        load_charlm(path)
