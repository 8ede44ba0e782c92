"""A layer and the activation after it as one op (models.FusedSequential; Dense and Conv2D applying ReLU, Sigmoid or
Tanh themselves), and the number of launches and GEMMs of a recorded training step, which the fusions bring down.

The fused ops against the same layers run one after another (nn.Sequential): the NumPy path bit for bit, the kernel
path (host build, and a GPU where there is one) against the NumPy path; their backward against central differences.
"""
import collections

import numpy
import pytest
from gpudl.kernels import graph

import gpudl
from gpudl import models, nn, optim
from gpudl.backend import to_numpy
from gpudl.gradient_check import check_layer
from gpudl.models.fused import FusedSequential, fusion_plan


def layers_with_every_fusion():
    return [nn.Conv2D(2, 3, 3, padding="same"), nn.ReLU(), nn.MaxPool2D(2),
            nn.Conv2D(3, 4, 3, strides=2, padding=1), nn.Tanh(), nn.Flatten(),
            nn.Dense(16, 6), nn.Sigmoid(alpha=1.5), nn.Dense(6, 5), nn.Softplus(), nn.Dense(5, 3), nn.ReLU()]


def test_the_plan_fuses_what_has_a_kernel_after_a_layer_that_applies_it():
    plan = fusion_plan(layers_with_every_fusion())
    assert plan == ((0, True), (2, False), (3, True), (5, False), (6, True), (8, False), (9, False), (10, True))
    assert fusion_plan([nn.ReLU(), nn.Dense(2, 2)]) == ((0, False), (1, False))     # nothing before the first
    assert fusion_plan([nn.Flatten(), nn.ReLU()]) == ((0, False), (1, False))       # Flatten applies nothing


def test_a_layer_refuses_an_activation_without_a_fused_kernel():
    with pytest.raises(ValueError, match="cannot apply Softplus"):
        nn.Dense(2, 3).forward(numpy.zeros((1, 2), numpy.float32), activation=nn.Softplus())


def run(model, x, dy):
    for p in model.parameters():
        p.grad[...] = 0
    y = model.forward(x)
    dx = model.backward(dy)
    return [to_numpy(a) for a in [y, dx] + [p.grad for p in model.parameters()]]


def twins(dtype):
    """The same layers and weights as a FusedSequential and as an nn.Sequential."""
    gpudl.manual_seed(0)
    fused = FusedSequential(*layers_with_every_fusion()).to(dtype=dtype)
    gpudl.manual_seed(0)
    plain = nn.Sequential(*layers_with_every_fusion()).to(dtype=dtype)
    return fused, plain


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_fused_layers_give_what_the_layers_give_one_after_another(kernel_path, dtype):
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((3, 2, 6, 6)).astype(dtype)
    dy = rng.standard_normal((3, 3)).astype(dtype)
    fused, plain = twins(dtype)
    with kernel_path.reference():
        want = run(plain, x, dy)
        for got, ref in zip(run(fused, x, dy), want):
            numpy.testing.assert_array_equal(got, ref)      # the NumPy path: the same ops in the same order
    kernel_path.move(fused)
    kernel_path.move(plain)
    got = run(fused, kernel_path.asarray(x), kernel_path.asarray(dy))
    unfused = run(plain, kernel_path.asarray(x), kernel_path.asarray(dy))
    tol = {"rtol": 2e-5, "atol": 1e-6} if dtype == numpy.float32 else {"rtol": 1e-11, "atol": 1e-13}
    for a, b, ref in zip(got, unfused, want):
        numpy.testing.assert_allclose(a, ref, **tol)
        numpy.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("make", [
    lambda: FusedSequential(nn.Dense(4, 5), nn.ReLU(), nn.Dense(5, 3), nn.Tanh()),
    lambda: FusedSequential(nn.Dense(4, 3), nn.Sigmoid(alpha=0.7)),
    lambda: FusedSequential(nn.Conv2D(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Dense(48, 2), nn.Sigmoid()),
], ids=["dense-relu-tanh", "dense-sigmoid", "conv-tanh-dense-sigmoid"])
def test_fused_backward_against_central_differences(kernel_path, make):
    gpudl.manual_seed(3)
    model = kernel_path.move(make().to(dtype=numpy.float64))
    shape = (3, 2, 4, 4) if isinstance(model[0], nn.Conv2D) else (3, 4)
    x = kernel_path.asarray(numpy.random.default_rng(4).standard_normal(shape))
    assert check_layer(model, x) != 0.0
    assert all(fuse for _, fuse in model._plan[::2])


def test_lenet5_and_mlp_fuse_their_activations():
    assert [fuse for _, fuse in fusion_plan(models.LeNet5().layers)] == [True, False, True, False, False, True,
                                                                         True, False]
    assert fusion_plan(models.MLP([2, 4, 1]).layers) == ((0, True), (2, True))


# -- the launches of a recorded step --------------------------------------------------------------------------------

def recorded_step(model, loss, optimizer, x, y):
    """The calls a recorded training step makes (host tape), by kind: the kernel's name, or 'gemm' (the calls that
    are not kernel launches: a step reaches the device through launches and GEMMs only)."""
    def step():
        optimizer.zero_grad()
        loss.forward(model.forward(x), y)
        model.backward(loss.backward(), input_grad=False)
        optimizer.step()
    step()                                  # the first step makes the optimizer's buffers
    tape = graph.Tape()
    tape.record(step)
    kinds = collections.Counter()
    for function, args in tape.calls:
        kinds[getattr(function, "name", "gemm")] += 1
    return len(tape), kinds


@pytest.fixture
def named_host_kernels(kernel_path, monkeypatch):
    """The host target, its kernels carrying their names (for the tally of a tape)."""
    if kernel_path.name != "host":
        pytest.skip("the launch count is the host tape's")
    from gpudl.kernels import loader
    real = loader.get_kernel

    def named(xp, file, name, dtype):
        kernel = real(xp, file, name, dtype)
        kernel.name = name
        return kernel
    monkeypatch.setattr(loader, "get_kernel", named)
    return kernel_path


def test_a_lenet5_step_at_batch_8_is_37_launches_and_gemms(named_host_kernels):
    """LeNet-5, softmax cross-entropy and SGD with momentum, batch 8: 14 GEMMs and 23 kernels (65 calls before the
    reductions, the fusions and the one-launch optimizer of issue 20). README's figure."""
    path = named_host_kernels
    gpudl.manual_seed(0)
    model = path.move(models.LeNet5())
    rng = numpy.random.default_rng(0)
    x = path.asarray(rng.standard_normal((8, 1, 28, 28)).astype(numpy.float32))
    labels = path.asarray(rng.integers(0, 10, 8))
    total, kinds = recorded_step(model, nn.SoftmaxCrossEntropy(check=False),
                                 optim.SGD(model.parameters(), lr=0.01, momentum=0.9), x, labels)
    assert (total, kinds["gemm"]) == (37, 14), kinds
    assert kinds["fill_table"] == kinds["sgd_momentum_table"] == 1       # zero_grad and the update: one each
    assert kinds["bias_activation"] == 5 and "relu_forward" not in kinds and "relu_backward" not in kinds


def test_an_xor_mlp_step_is_13_launches_and_gemms(named_host_kernels):
    path = named_host_kernels
    gpudl.manual_seed(0)
    model = path.move(models.MLP([2, 4, 1], activation="sigmoid"))
    x = path.asarray(numpy.array([[0, 0], [0, 1], [1, 0], [1, 1]], numpy.float32))
    y = path.asarray(numpy.array([[0], [1], [1], [0]], numpy.float32))
    total, kinds = recorded_step(model, nn.MSELoss(check=False), optim.SGD(model.parameters(), lr=0.5), x, y)
    # zero; 2 x (GEMM, bias and sigmoid); the loss (rows, mean); 2 x (sigmoid' and db, dW GEMM) and one dx GEMM;
    # the update
    assert (total, kinds["gemm"]) == (13, 5), kinds


def test_fusion_changes_no_value_of_a_training_step(kernel_path):
    """A LeNet-5 trained a few steps through its fused layers and through nn.Sequential over the same layers: the
    same losses and weights, on the kernel path."""
    def train(model):
        kernel_path.move(model)
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loss = nn.SoftmaxCrossEntropy()
        rng = numpy.random.default_rng(5)
        losses = []
        for _ in range(3):
            x = kernel_path.asarray(rng.standard_normal((4, 1, 28, 28)))
            y = kernel_path.asarray(rng.integers(0, 10, 4))
            opt.zero_grad()
            losses.append(float(loss.forward(model.forward(x), y)))
            model.backward(loss.backward())
            opt.step()
        return losses, [to_numpy(p.data) for p in model.parameters()]
    gpudl.manual_seed(6)
    fused = models.LeNet5(dtype=numpy.float64)
    gpudl.manual_seed(6)
    plain = nn.Sequential(*models.LeNet5(dtype=numpy.float64).layers)
    got, want = train(fused), train(plain)
    numpy.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    for a, b in zip(got[1], want[1]):
        numpy.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
