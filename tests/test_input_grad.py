"""backward(dy, input_grad=False): the same parameter gradients, bit for bit, no input gradient; and the training step,
which reads no gradient of the model's input, asks for none (and still trains a model whose backward computes it
anyway).

The value of dx under the default is checked against finite differences elsewhere (test_gradients, test_recurrent);
here the default must still return it, equal to an explicit input_grad=True.
"""
import numpy
import pytest

from gpudl import models, nn, optim
from gpudl.backend import to_numpy
from gpudl.train import TrainStep

# -- each case: (make(rng) -> module, input shape, how to call backward with dy and options) -------------------------


def _plain(module, dy, **options):
    return module.backward(dy, **options)


def _sequence(module, dy, **options):       # an RNN/LSTM backward takes dL/dh for every step, then dstate
    return module.backward(dy, None, **options)


LAYERS = {
    "conv2d-same": (lambda rng: nn.Conv2D(2, 3, 3, padding="same", dtype=numpy.float64, rng=rng), (4, 2, 7, 7),
                    _plain),
    "conv2d-stride2": (lambda rng: nn.Conv2D(2, 3, 3, strides=2, padding=1, dtype=numpy.float64, rng=rng),
                       (4, 2, 7, 7), _plain),     # not stride 1: the NumPy path folds dcol with col2im
    "dense": (lambda rng: nn.Dense(5, 4, dtype=numpy.float64, rng=rng), (6, 5), _plain),
    "rnn": (lambda rng: nn.RNN(3, 4, dtype=numpy.float64, rng=rng), (2, 5, 3), _sequence),
    "lstm": (lambda rng: nn.LSTM(3, 4, dtype=numpy.float64, rng=rng), (2, 5, 3), _sequence),
    "lenet5": (lambda rng: models.LeNet5(dtype=numpy.float64, rng=rng), (3, 1, 28, 28), _plain),
    "char-lstm": (lambda rng: models.CharLSTM(6, 5, dtype=numpy.float64, rng=rng), (2, 4, 6), _plain),
}


def _backward_twice(path, case, options):
    """Two identical copies of the case's module, forward on the same x and backward on the same dy: one with the
    default backward, one with `options`; returns (copies, their backward results)."""
    make, shape, call = LAYERS[case]
    data = numpy.random.default_rng(7)
    x = data.standard_normal(shape)
    copies, results = [], []
    for opts in ({}, options):
        module = path.move(make(numpy.random.default_rng(3))) if path else make(numpy.random.default_rng(3))
        xs = path.asarray(x) if path else x
        y = module.forward(xs)
        dy = numpy.random.default_rng(11).standard_normal(tuple(y.shape))
        results.append(call(module, path.asarray(dy) if path else dy, **opts))
        copies.append(module)
    return copies, results


def _assert_same_grads(a, b):
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert numpy.array_equal(to_numpy(p.grad), to_numpy(q.grad)), name
        assert numpy.any(to_numpy(p.grad) != 0), name          # a gradient was computed at all


@pytest.mark.parametrize("case", list(LAYERS))
def test_without_input_grad_the_parameter_gradients_are_the_same_and_nothing_is_returned(case):
    (full, skipped), (dx, nothing) = _backward_twice(None, case, {"input_grad": False})
    assert nothing is None
    _assert_same_grads(full, skipped)
    assert dx is not None and dx.shape == LAYERS[case][1]


@pytest.mark.parametrize("case", list(LAYERS))
def test_the_default_returns_dx_as_input_grad_true_does(case):
    (_, _), (default, explicit) = _backward_twice(None, case, {"input_grad": True})
    assert default.shape == LAYERS[case][1]
    assert numpy.array_equal(default, explicit)


@pytest.mark.parametrize("case", ["conv2d-same", "conv2d-stride2", "dense", "lstm", "lenet5", "char-lstm"])
def test_the_kernel_path_without_input_grad_gives_the_same_parameter_gradients(kernel_path, case):
    (full, skipped), (dx, nothing) = _backward_twice(kernel_path, case, {"input_grad": False})
    assert nothing is None and dx is not None
    _assert_same_grads(full, skipped)


def test_sequential_passes_input_grad_to_its_first_layer_only():
    seen = []

    class Spy(nn.Dense):
        def backward(self, dy, input_grad=True):
            seen.append((self.out_features, input_grad))
            return super().backward(dy, input_grad=input_grad)
    rng = numpy.random.default_rng(0)
    model = nn.Sequential(Spy(3, 4, dtype=numpy.float64, rng=rng), nn.Tanh(), Spy(4, 2, dtype=numpy.float64, rng=rng))
    model.forward(rng.standard_normal((5, 3)))
    assert model.backward(numpy.ones((5, 2)), input_grad=False) is None
    assert seen == [(2, True), (4, False)]


PARAMETERLESS = [nn.Flatten(), nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.Step(), nn.Sign(), nn.Softplus(), nn.MaxPool2D(2),
                 nn.AvgPool2D(2)]


@pytest.mark.parametrize("layer", PARAMETERLESS, ids=repr)
def test_every_layer_takes_input_grad(layer):
    """The protocol holds for layers without parameters too: input_grad=False returns None, the default dx."""
    x = numpy.random.default_rng(0).standard_normal((2, 3, 4, 4))
    dy = numpy.ones(layer.forward(x).shape)
    assert layer.backward(dy, input_grad=False) is None
    layer.forward(x)
    assert layer.backward(dy).shape == x.shape


def test_sequential_passes_input_grad_to_its_first_layer_whatever_it_is():
    rng = numpy.random.default_rng(0)
    model = nn.Sequential(nn.Flatten(), nn.Dense(6, 2, dtype=numpy.float64, rng=rng))
    model.forward(rng.standard_normal((4, 2, 3)))
    assert model.backward(numpy.ones((4, 2)), input_grad=False) is None
    model.forward(rng.standard_normal((4, 2, 3)))
    assert model.backward(numpy.ones((4, 2))).shape == (4, 2, 3)


# -- the training step -----------------------------------------------------------------------------------------------

class FullBackward(nn.Module):
    """A user's model around another, whose backward computes the input gradient whatever it is asked."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        return self.inner.forward(x)

    def backward(self, dy, input_grad=True):
        self.calls += 1
        return self.inner.backward(dy)


def _lenet_run(path, plain, dtype=numpy.float64, graph=False):
    model = models.LeNet5(dtype=dtype, rng=numpy.random.default_rng(0))
    if path is not None:
        path.move(model)
    model = FullBackward(model) if plain else model
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    return model, TrainStep(model, nn.SoftmaxCrossEntropy(), opt, graph=graph)


def _drive(step, path, dtype, seeds, n=3):
    losses = []
    for seed in seeds:
        rng = numpy.random.default_rng(seed)
        x, y = rng.standard_normal((n, 1, 28, 28)).astype(dtype), rng.integers(0, 10, n)
        if path is not None:
            x, y = path.asarray(x), path.asarray(y)
        losses.append(float(to_numpy(step(x, y))))
    return losses


def test_the_training_step_skips_the_input_gradient_and_ends_where_the_full_backward_does(monkeypatch):
    skipping, step = _lenet_run(None, plain=False)
    full, full_step = _lenet_run(None, plain=True)
    asked = []
    first = skipping.layers[0]
    conv_backward = first.backward
    monkeypatch.setattr(first, "backward", lambda dy, input_grad=True: asked.append(input_grad) or
                        conv_backward(dy, input_grad=input_grad))
    got, want = _drive(step, None, numpy.float64, [0, 1, 2]), _drive(full_step, None, numpy.float64, [0, 1, 2])
    assert asked == [False, False, False] and full.calls == 3
    assert got == want
    for (name, p), (_, q) in zip(skipping.named_parameters(), full.inner.named_parameters()):
        assert numpy.array_equal(p.data, q.data), name


def test_a_model_whose_backward_always_computes_dx_still_trains():
    model, step = _lenet_run(None, plain=True, dtype=numpy.float32)
    before = [p.data.copy() for p in model.parameters()]
    losses = _drive(step, None, numpy.float32, [0, 0, 0, 0], n=8)
    assert model.calls == 4
    assert losses[-1] < losses[0]
    assert all(not numpy.array_equal(a, p.data) for a, p in zip(before, model.parameters()))


def test_a_recorded_step_without_the_input_gradient_equals_the_eager_one_in_fewer_launches(kernel_path):
    """LeNet-5 recorded and replayed equals the eager steps; its record leaves out conv1's dx (its GEMM and col2im)."""
    dtype, seeds = numpy.float64, [0, 1, 2, 3]
    _, recorded = _lenet_run(kernel_path, plain=False, graph="auto")
    _, eager = _lenet_run(kernel_path, plain=False, graph=False)
    full_model, full = _lenet_run(kernel_path, plain=True, graph="auto")
    got, want, old = (_drive(s, kernel_path, dtype, seeds) for s in (recorded, eager, full))
    assert recorded.replays == full.replays == 3
    numpy.testing.assert_allclose(got, want, rtol=1e-12)
    numpy.testing.assert_allclose(got, old, rtol=1e-12)
    for p, q, r in zip(recorded.model.parameters(), eager.model.parameters(), full_model.parameters()):
        numpy.testing.assert_allclose(to_numpy(p.data), to_numpy(q.data), rtol=1e-12, atol=1e-14)
        numpy.testing.assert_allclose(to_numpy(p.data), to_numpy(r.data), rtol=1e-12, atol=1e-14)
    (tape,), (full_tape,) = ([r.recorder for r in s._recorded.values()] for s in (recorded, full))
    if kernel_path.name == "host":      # a tape counts its launches and GEMMs
        assert len(tape) == len(full_tape) - 2, (len(tape), len(full_tape))
