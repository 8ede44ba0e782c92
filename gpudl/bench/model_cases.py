"""Model steps: one whole training step (forward, loss, backward, SGD) of a gpudl model and of its PyTorch twin.

gpudl's step is gpudl.train.TrainStep(graph="auto"): on a GPU, recorded once and replayed as one CUDA graph (the
first timed call records it, the timer's warm-up absorbs that), on the CPU eager.
"""
import numpy

from .. import models, nn, optim
from ..backend import to_device, to_numpy
from ..models import CharLSTM
from ..nn.init import manual_seed
from ..train import TrainStep
from .common import FLOAT, Case, Unavailable, require_torch


def _torch_window(torch, layer, module_class, **extra):
    kernel = getattr(layer, "kernel_size", None) or layer.pool_size
    padding = layer.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        if layer.strides != (1, 1) or kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise Unavailable(f"no symmetric PyTorch padding for {layer!r}")
        padding = (kernel[0] // 2, kernel[1] // 2)
    if module_class is torch.nn.Conv2d:
        return module_class(layer.in_channels, layer.filters, kernel, layer.strides, padding)
    return module_class(kernel, layer.strides, padding, **extra)


def torch_twin(model, torch):
    """A torch.nn.Sequential with the same layers and the same weights as a gpudl Sequential (or nested ones)."""
    layers = getattr(model, "layers", None)
    if layers is None:
        raise Unavailable(f"no PyTorch twin for {type(model).__name__}: it has no .layers list")
    twins = []
    for layer in layers:
        if hasattr(layer, "layers"):
            twins.extend(torch_twin(layer, torch))
            continue
        name = type(layer).__name__
        if name == "Dense":
            twin = torch.nn.Linear(layer.in_features, layer.out_features)
            weights = (to_numpy(layer.W.data).T, to_numpy(layer.b.data))
        elif name == "Conv2D":
            twin = _torch_window(torch, layer, torch.nn.Conv2d)
            weights = (to_numpy(layer.W.data), to_numpy(layer.b.data))
        elif name == "MaxPool2D":
            twin, weights = _torch_window(torch, layer, torch.nn.MaxPool2d), ()
        elif name == "AvgPool2D":
            twin, weights = _torch_window(torch, layer, torch.nn.AvgPool2d, count_include_pad=False), ()
        elif name == "Sigmoid" and layer.alpha == 1.0:
            twin, weights = torch.nn.Sigmoid(), ()
        elif name in ("ReLU", "Tanh", "Softplus", "Flatten"):
            twin, weights = getattr(torch.nn, name)(), ()
        else:
            raise Unavailable(f"no PyTorch twin for the layer {layer!r}")
        with torch.no_grad():
            for param, value in zip(twin.parameters(), weights):
                param.copy_(torch.from_numpy(numpy.ascontiguousarray(value)))
        twins.append(twin)
    return torch.nn.Sequential(*twins)


def _torch_train_step(optimizer, loss):
    def step():
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    return step


WARMUP_STEPS = 3    # eager steps on a side stream before capture, as PyTorch's CUDA graph docs do


def _cuda_only(dev):
    """Unavailable unless `dev` is a GPU: a CUDA graph needs one."""
    if not str(dev).startswith("cuda"):
        raise Unavailable(f"PyTorch's CUDA graph peer runs on a GPU only, not on {dev}")


def _torch_graphed_step(torch, optimizer, loss, inputs):
    """PyTorch's own whole-step CUDA graph, the way its docs capture a whole network: warm-up steps on a side stream,
    gradients set to None, then one capture of forward, loss, backward and optimizer.step (torch.cuda.CUDAGraph).
    Each call copies the batch into the static `inputs` (pairs of (static tensor, batch tensor)) and replays it.
    Unavailable where PyTorch cannot capture the step."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                optimizer.zero_grad(set_to_none=True)
                loss().backward()
                optimizer.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            loss().backward()
            optimizer.step()
    except RuntimeError as exc:
        raise Unavailable(f"PyTorch could not capture the step as a CUDA graph: {exc}") from exc

    def step():
        for static, batch in inputs:
            static.copy_(batch)
        graph.replay()
    return step


def _twin_step_case(name, size, make_model, data, make_loss, torch_loss, **sgd):
    """One training step of make_model() on data() = (x, target), and of its torch_twin with the same weights:
    gpudl's loss is make_loss(), PyTorch's torch_loss(torch, output, target); every optimizer is SGD(**sgd).
    PyTorch's twin runs eagerly ("eager") and as its own whole-step CUDA graph ("CUDA graph", GPU only)."""
    def build(dev):
        manual_seed(0)
        model = make_model().to(dev)
        x, target = (to_device(a, dev) for a in data())
        step = TrainStep(model, make_loss(), optim.SGD(model.parameters(), **sgd))   # a CUDA graph on a GPU
        return lambda: step(x, target)

    def twin(torch, dev):
        manual_seed(0)
        model = torch_twin(make_model(), torch).to(dev)
        x, target = (torch.from_numpy(a).to(dev) for a in data())
        return torch.optim.SGD(model.parameters(), **sgd), (lambda: torch_loss(torch, model(x), target)), (x, target)

    def eager(dev):
        optimizer, loss, _ = twin(require_torch(), dev)
        return _torch_train_step(optimizer, loss)

    def graphed(dev):
        _cuda_only(dev)
        torch = require_torch()
        optimizer, loss, static = twin(torch, dev)
        batch = tuple(a.clone() for a in static)         # the next batch, already on the device
        return _torch_graphed_step(torch, optimizer, loss, list(zip(static, batch)))
    return Case(name, size, build, {"eager": eager, "CUDA graph": graphed}, kind="model")


def xor_cases():
    x = numpy.array([[0, 0], [0, 1], [1, 0], [1, 1]], FLOAT)
    y = numpy.array([[0], [1], [1], [0]], FLOAT)

    def half_mse(torch, output, target):
        return 0.5 * ((output - target) ** 2).sum() / output.shape[0]
    return [_twin_step_case("xor mlp step", "2-4-1 b4", lambda: models.MLP([2, 4, 1], activation="sigmoid"),
                            lambda: (x, y), lambda: nn.MSELoss(check=False), half_mse, lr=0.5)]


def lenet_cases(batches):
    """LeNet-5 (28x28 grey images, 10 classes): forward, softmax cross-entropy, backward, SGD with momentum."""
    def data(n):
        rng = numpy.random.default_rng(0)
        return rng.standard_normal((n, 1, 28, 28)).astype(FLOAT), rng.integers(0, 10, n)

    def cross_entropy(torch, output, labels):
        return torch.nn.functional.cross_entropy(output, labels)
    return [_twin_step_case("lenet5 step", f"b{n}", models.LeNet5, lambda n=n: data(n),
                            lambda: nn.SoftmaxCrossEntropy(check=False), cross_entropy, lr=0.01, momentum=0.9)
            for n in batches]


def char_lstm_cases(n, t, vocab, h):
    """The character-level LSTM language model: one training step over a batch of sequences."""
    def data():
        rng = numpy.random.default_rng(0)
        return rng.integers(0, vocab, (n, t)), rng.integers(0, vocab, (n, t))

    def build(dev):
        manual_seed(0)
        model = CharLSTM(vocab, h).to(dev)
        ids, targets = (to_device(a, dev) for a in data())
        step = TrainStep(model, nn.SequenceCrossEntropy(check=False), optim.SGD(model.parameters(), lr=0.1))
        return lambda: step(ids, targets)       # the whole T-step forward and backward: one CUDA graph on a GPU

    def twin(torch, dev, one_hot):
        lstm = torch.nn.LSTM(vocab, h, batch_first=True).to(dev)
        head = torch.nn.Linear(h, vocab).to(dev)
        ids, targets = (torch.from_numpy(a).to(dev) for a in data())

        def loss():
            logits = head(lstm(one_hot(ids))[0])
            return torch.nn.functional.cross_entropy(logits.reshape(n * t, vocab), targets.reshape(-1))
        return torch.optim.SGD([*lstm.parameters(), *head.parameters()], lr=0.1), loss, (ids, targets)

    def eager(dev):
        torch = require_torch()
        optimizer, loss, _ = twin(torch, dev, lambda ids: torch.nn.functional.one_hot(ids, vocab).float())
        return _torch_train_step(optimizer, loss)

    def graphed(dev):
        _cuda_only(dev)
        torch = require_torch()
        rows = torch.eye(vocab, device=dev)              # one_hot checks its input on the host: a row gather does not
        optimizer, loss, static = twin(torch, dev, lambda ids: rows[ids])
        batch = tuple(a.clone() for a in static)
        return _torch_graphed_step(torch, optimizer, loss, list(zip(static, batch)))
    return [Case("char-lstm step", f"b{n} T{t} V{vocab} H{h}", build, {"nn.LSTM": eager, "nn.LSTM CUDA graph": graphed},
                 kind="model")]
