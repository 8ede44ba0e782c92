"""Layers and losses refuse what they cannot compute with one clear line: empty batches, gradients of the wrong shape,
backward before forward (or twice for one forward); and manual_seed is per thread."""
import threading

import numpy
import pytest

from gpudl import nn
from gpudl.models import CharLSTM, LeNet5

F32 = numpy.float32


def _layers():
    rng = numpy.random.default_rng(0)
    return {
        "Dense": (nn.Dense(3, 2, rng=rng), (4, 3)),
        "Conv2D": (nn.Conv2D(1, 2, 3, rng=rng), (2, 1, 5, 5)),
        "MaxPool2D": (nn.MaxPool2D(2), (2, 1, 4, 4)),
        "AvgPool2D": (nn.AvgPool2D(2), (2, 1, 4, 4)),
        "Flatten": (nn.Flatten(), (2, 1, 4, 4)),
        "RNN": (nn.RNN(3, 2, rng=rng), (2, 4, 3)),
        "LSTM": (nn.LSTM(3, 2, rng=rng), (2, 4, 3)),
        "LeNet5": (LeNet5(rng=rng), (2, 1, 28, 28)),
        "CharLSTM": (CharLSTM(5, 4, rng=rng), (2, 3, 5)),
        "Sigmoid": (nn.Sigmoid(), (2, 3)),
    }


EMPTY = ["Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "RNN", "LSTM", "LeNet5", "CharLSTM"]


def _one_line(info, *words):
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize("name", EMPTY)
def test_an_empty_batch_names_the_layer(name):
    layer, shape = _layers()[name]
    with pytest.raises(ValueError) as info:
        layer.forward(numpy.zeros((0, *shape[1:]), F32))
    _one_line(info, "empty batch")
    assert "reshape" not in str(info.value)


@pytest.mark.parametrize("loss, pred, target", [
    (nn.MSELoss(), numpy.zeros((0, 1), F32), numpy.zeros((0, 1), F32)),
    (nn.SoftmaxCrossEntropy(), numpy.zeros((0, 3), F32), numpy.zeros(0, numpy.int64)),
    (nn.SoftmaxCrossEntropy(check=False), numpy.zeros((0, 3), F32), numpy.zeros((0, 3), F32)),
    (nn.SequenceCrossEntropy(), numpy.zeros((0, 2, 3), F32), numpy.zeros((0, 2), numpy.int64)),
])
def test_the_loss_of_an_empty_batch_is_an_error_not_nan(loss, pred, target):
    with _no_warnings():        # no RuntimeWarning (mean of empty slice) before the error
        with pytest.raises(ValueError) as info:
            loss.forward(pred, target)
    _one_line(info, type(loss).__name__, "empty batch")


class _no_warnings:
    def __enter__(self):
        import warnings
        self.catcher = warnings.catch_warnings()
        self.catcher.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self.catcher.__exit__(*exc)


@pytest.mark.parametrize("name", sorted(_layers()))
def test_a_gradient_of_the_wrong_shape_names_the_layer_and_both_shapes(name):
    layer, shape = _layers()[name]
    y = layer.forward(numpy.random.default_rng(1).standard_normal(shape).astype(F32))
    wrong = numpy.zeros((y.shape[0] + 1, *y.shape[1:]), F32)
    with pytest.raises(ValueError) as info:
        layer.backward(wrong)
    _one_line(info, str(tuple(wrong.shape)), str(tuple(y.shape)))


@pytest.mark.parametrize("name", sorted(_layers()))
def test_backward_before_forward_is_a_clear_runtime_error(name):
    layer, shape = _layers()[name]
    with pytest.raises(RuntimeError) as info:
        layer.backward(numpy.zeros(shape, F32))
    _one_line(info, "backward() called before forward()")


@pytest.mark.parametrize("name", ["Dense", "Conv2D", "MaxPool2D", "RNN", "LSTM", "LeNet5", "CharLSTM"])
def test_a_second_backward_for_one_forward_is_refused(name):
    layer, shape = _layers()[name]
    y = layer.forward(numpy.random.default_rng(1).standard_normal(shape).astype(F32))
    layer.backward(numpy.ones_like(y))
    grads = [p.grad.copy() for p in layer.parameters()]
    with pytest.raises(RuntimeError) as info:
        layer.backward(numpy.ones_like(y))
    _one_line(info, "twice for one forward()")
    for p, g in zip(layer.parameters(), grads):     # nothing accumulated twice
        numpy.testing.assert_array_equal(p.grad, g)


def test_a_second_forward_allows_a_second_backward():
    layer = nn.Dense(3, 2, rng=numpy.random.default_rng(0))
    x = numpy.ones((2, 3), F32)
    for _ in range(2):
        layer.backward(numpy.ones_like(layer.forward(x)))
    numpy.testing.assert_allclose(layer.W.grad, 2 * x.T @ numpy.ones((2, 2), F32))


def test_two_threads_with_their_own_seeds_build_reproducible_models():
    def weights(seed):
        nn.manual_seed(seed)
        return [p.data.copy() for p in LeNet5().parameters()]

    alone = {seed: weights(seed) for seed in (1, 2)}
    results, barrier = {}, threading.Barrier(2)

    def build(seed):
        barrier.wait()
        nn.manual_seed(seed)
        built = []
        for _ in range(20):         # interleave many draws with the other thread's
            built = [p.data.copy() for p in LeNet5().parameters()]
            nn.manual_seed(seed)
        results[seed] = built

    threads = [threading.Thread(target=build, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in (1, 2):
        for a, b in zip(results[seed], alone[seed]):
            numpy.testing.assert_array_equal(a, b)
    assert not numpy.array_equal(alone[1][0], alone[2][0])
