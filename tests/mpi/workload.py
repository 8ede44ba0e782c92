"""The small float64 training runs that tests/test_distributed.py compares: the same code on one process (the
reference) and on every rank of an mpiexec launch (train_ranks.py)."""
import numpy

from gpudl import models, nn, optim
from gpudl.data import DataLoader

SAMPLES, BATCH, STEPS = 36, 12, 6       # two epochs of three global batches; 12 splits evenly over 1, 2, 3 ranks
MODELS, OPTIMIZERS = ("mlp", "lenet"), ("sgd", "adam")


def build_model(name, seed, hidden=16):
    """A float64 model with weights drawn from `seed`."""
    rng = numpy.random.default_rng(seed)
    if name == "mlp":
        return models.MLP([8, hidden, 5], activation="tanh", output_activation=None, dtype=numpy.float64, rng=rng)
    return models.LeNet5(dtype=numpy.float64, rng=rng)


def data(name):
    """(inputs, integer labels), the same on every rank."""
    rng = numpy.random.default_rng(1234)
    shape, classes = ((8,), 5) if name == "mlp" else ((1, 28, 28), 10)
    return rng.standard_normal((SAMPLES,) + shape), rng.integers(0, classes, SAMPLES)


def build_optimizer(name, params):
    return optim.SGD(params, 0.05, momentum=0.9) if name == "sgd" else optim.Adam(params, 1e-3)


def loader(name, shard=None):
    X, y = data(name)
    return DataLoader(X, y, BATCH, seed=7, shard=shard)


def train(model, optimizer, batches, steps=STEPS, before_step=None):
    """`steps` updates on the mean cross-entropy of each batch; `before_step(step, x, y)` may change the batch."""
    loss, step = nn.SoftmaxCrossEntropy(), 0
    while step < steps:
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
