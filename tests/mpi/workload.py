"""The small float64 training runs that tests/test_distributed.py compares: the same code on one process (the
reference) and on every rank of an mpiexec launch (train_ranks.py)."""
import numpy

from gpudl import models, nn, optim
from gpudl.data import DataLoader, TextBatches

SAMPLES, BATCH, STEPS = 36, 12, 6       # two epochs of three global batches; 12 splits evenly over 1, 2, 3 ranks
MODELS, OPTIMIZERS = ("mlp", "lenet", "charlm"), ("sgd", "adam")
VOCABULARY, SEQ_LEN = 7, 5              # charlm: 12 streams of 3 batches of 5 characters per epoch


def build_model(name, seed, hidden=16):
    """A float64 model with weights drawn from `seed`."""
    rng = numpy.random.default_rng(seed)
    if name == "mlp":
        return models.MLP([8, hidden, 5], activation="tanh", output_activation=None, dtype=numpy.float64, rng=rng)
    if name == "charlm":
        return models.CharLSTM(VOCABULARY, hidden, dtype=numpy.float64, rng=rng)
    return models.LeNet5(dtype=numpy.float64, rng=rng)


def data(name):
    """(inputs, integer labels), the same on every rank; charlm's: a text of character indices and None."""
    rng = numpy.random.default_rng(1234)
    if name == "charlm":
        return rng.integers(0, VOCABULARY, BATCH * 3 * SEQ_LEN + 1), None
    shape, classes = ((8,), 5) if name == "mlp" else ((1, 28, 28), 10)
    return rng.standard_normal((SAMPLES,) + shape), rng.integers(0, classes, SAMPLES)


def build_optimizer(name, params):
    return optim.SGD(params, 0.05, momentum=0.9) if name == "sgd" else optim.Adam(params, 1e-3)


def loader(name, shard=None):
    X, y = data(name)
    if name == "charlm":        # BATCH streams in all, this rank's share of them
        return TextBatches(X, BATCH, SEQ_LEN, shard=shard)
    return DataLoader(X, y, BATCH, seed=7, shard=shard)


def train(model, optimizer, batches, steps=STEPS, before_step=None):
    """`steps` updates on the mean cross-entropy of each batch; `before_step(step, x, y)` may change the batch. A
    model that carries its state from batch to batch (the char-LSTM) starts each pass over the batches afresh."""
    loss, step = nn.SoftmaxCrossEntropy(), 0
    if isinstance(model, models.CharLSTM):
        loss = nn.SequenceCrossEntropy()
    while step < steps:
        if hasattr(model, "reset_state"):
            model.reset_state()
        for x, y in batches:
            if before_step is not None:
                x, y = before_step(step, x, y)
            optimizer.zero_grad()
            loss.forward(model.forward(x), y)
            model.backward(loss.backward())
            optimizer.step()
            step += 1
            if step == steps:
                break
    return model
