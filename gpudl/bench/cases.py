"""The benchmark cases: each op and model step at quick (CI) or full sizes, for gpudl and its PyTorch peer.

A case builds, for one device, a zero-argument callable that does the work once; allocating inputs and creating
layers happens in the build, outside the timed region. gpudl builders take "cpu" or "cuda"; PyTorch builders take a
torch device string. Memory-bound cases carry the bytes they must read and write once (inputs and outputs, a lower
bound on the traffic) for the GB/s column; GEMM-bound cases carry their floating-point operations for TFLOP/s.
PyTorch's forward-only figures run under no_grad (inference, its fastest path); its fwd+bwd figures go through
autograd and compute dx, as gpudl's backward always does. Both sides use float32.
"""
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy

from .. import functional as F
from .. import models, nn
from ..models import CharLSTM
from .. import nn, optim
from ..backend import to_device, to_numpy
from ..nn.init import manual_seed

FLOAT = numpy.float32
BYTES = 4


class Unavailable(Exception):
    """A case cannot be built here (a model this build of gpudl lacks, a layer PyTorch has no twin for)."""


@dataclass
class Case:
    name: str                      # what is timed, e.g. "conv2d fwd+bwd"
    size: str                      # the shapes, e.g. "b64 64->64 3x3 56x56"
    build: Callable                # build(device) -> fn, device "cpu" or "cuda"
    peers: dict = field(default_factory=dict)  # PyTorch peer label -> build(torch_device) -> fn
    bytes: Optional[int] = None    # bytes read and written once per call (memory-bound cases)
    flops: Optional[int] = None    # floating-point operations per call (GEMM-bound cases)
    kind: str = "op"               # "op", "model" (a whole training step) or "startup" (a fresh process)
    devices: tuple = ("cpu", "cuda")

    @property
    def key(self):
        return f"{self.name} [{self.size}]"


def torch_module():
    """PyTorch set up as the peer (TF32 off on both GEMMs and convolutions, cuDNN autotuning on), or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch


def _torch():
    torch = torch_module()
    if torch is None:
        raise Unavailable("PyTorch is not installed")
    return torch


def _rand(shape, dev, seed=0, scale=1.0):
    rng = numpy.random.default_rng(seed)
    return to_device((scale * rng.standard_normal(shape)).astype(FLOAT), dev)


def _trand(torch, shape, dev, seed=0, scale=1.0, grad=False):
    gen = torch.Generator().manual_seed(seed)
    t = (scale * torch.randn(shape, generator=gen)).to(dev)
    return t.requires_grad_(grad)


def _nbytes(*shapes):
    return BYTES * sum(int(numpy.prod(s)) for s in shapes)


# ---- layers: forward, and forward + backward -------------------------------------------------------------------

def _gpudl_layer(make_layer, x_shape, backward):
    """Time layer.forward(x), or forward then backward(dy) with a fixed random dy."""
    def build(dev):
        manual_seed(0)
        layer = make_layer().to(dev)
        x = _rand(x_shape, dev)
        if not backward:
            return lambda: layer.forward(x)
        dy = _rand(layer.forward(x).shape, dev, seed=1)

        def step():
            layer.forward(x)
            layer.backward(dy)
        return step
    return build


def _torch_layer(make_module, x_shape, backward):
    """The PyTorch twin: inference under no_grad, or forward then backward(dy) with dx computed as gpudl does."""
    def build(dev):
        torch = _torch()
        module = make_module(torch).to(dev)
        x = _trand(torch, x_shape, dev, grad=backward)
        if not backward:
            def forward():
                with torch.no_grad():
                    module(x)
            return forward
        dy = torch.randn_like(module(x).detach())

        def step():
            x.grad = None
            module(x).backward(dy)
        return step
    return build


def _layer_pair(name, size, make_layer, make_module, x_shape, fwd_cost, bwd_cost, cost_kind, devices, peer):
    """Two cases, `name fwd` and `name fwd+bwd`; costs are bytes or flops for the forward and the backward."""
    cases = []
    for backward, suffix, cost in ((False, "fwd", fwd_cost), (True, "fwd+bwd", fwd_cost + bwd_cost)):
        cases.append(Case(f"{name} {suffix}", size, _gpudl_layer(make_layer, x_shape, backward),
                          {peer: _torch_layer(make_module, x_shape, backward)},
                          devices=devices, **{cost_kind: cost}))
    return cases


def dense_cases(n, fin, fout, devices=("cpu", "cuda")):
    flops = 2 * n * fin * fout
    return _layer_pair("dense", f"b{n} {fin}->{fout}", lambda: nn.Dense(fin, fout),
                       lambda torch: torch.nn.Linear(fin, fout), (n, fin), flops, 2 * flops, "flops", devices,
                       peer="nn.Linear")


def conv_cases(n, c, f, k, hw, padding, devices=("cpu", "cuda"), label=""):
    pad = k // 2 if padding == "same" else 0
    out = hw + 2 * pad - k + 1
    flops = 2 * n * f * c * k * k * out * out
    size = f"{label}b{n} {c}->{f} {k}x{k} {hw}x{hw} {padding}"
    return _layer_pair("conv2d", size, lambda: nn.Conv2D(c, f, k, padding=padding),
                       lambda torch: torch.nn.Conv2d(c, f, k, padding=pad), (n, c, hw, hw), flops, 2 * flops,
                       "flops", devices, peer="nn.Conv2d")


def pool_cases(kind, n, c, hw, k, devices=("cpu", "cuda")):
    x_shape, y_shape = (n, c, hw, hw), (n, c, hw // k, hw // k)
    layer = nn.MaxPool2D if kind == "max" else nn.AvgPool2D
    moved = _nbytes(x_shape, y_shape)

    def module(torch):
        if kind == "max":
            return torch.nn.MaxPool2d(k)
        return torch.nn.AvgPool2d(k, count_include_pad=False)
    return _layer_pair(f"{kind}pool2d", f"{n}x{c}x{hw}x{hw} {k}x{k}", lambda: layer(k), module, x_shape,
                       moved, moved, "bytes", devices, peer=f"nn.{kind.capitalize()}Pool2d")


# ---- im2col and col2im alone -------------------------------------------------------------------------------------

def unroll_cases(n, c, hw, k, devices=("cpu", "cuda")):
    """im2col and col2im of a k x k window with stride 1 and 'same' padding, alone."""
    pad = k // 2
    pads = (pad, pad, pad, pad)
    x_shape, col_shape = (n, c, hw, hw), (n, c, k, k, hw, hw)
    moved = _nbytes(x_shape, col_shape)
    size = f"b{n} {c}ch {hw}x{hw} {k}x{k} pad{pad}"

    def im2col(dev):
        x = _rand(x_shape, dev)
        return lambda: F.im2col(x, k, k, 1, 1, pads)

    def col2im(dev):
        col = _rand(col_shape, dev)
        return lambda: F.col2im(col, hw, hw, 1, 1, pads)

    def unfold(dev):
        torch = _torch()
        x = _trand(torch, x_shape, dev)
        return lambda: torch.nn.functional.unfold(x, k, padding=pad)

    def fold(dev):
        torch = _torch()
        col = _trand(torch, (n, c * k * k, hw * hw), dev)
        return lambda: torch.nn.functional.fold(col, (hw, hw), k, padding=pad)

    return [Case("im2col", size, im2col, {"F.unfold": unfold}, bytes=moved, devices=devices),
            Case("col2im", size, col2im, {"F.fold": fold}, bytes=moved, devices=devices)]


# ---- LSTM: one step's gate arithmetic, one whole cell step, a whole sequence -------------------------------------

def _torch_gates(torch, a, c_prev):
    i, f, g, o = a.chunk(4, 1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c_prev + i * g
    return o * torch.tanh(c), c


def lstm_gate_cases(n, h, devices=("cpu", "cuda")):
    """functional.lstm_step (the fused gate kernel on a GPU) against the same expressions in PyTorch eager."""
    size = f"b{n} H{h}"
    # forward reads a (4H) and c_prev, writes h and c; backward reads dh, dc, a, c_prev, c, writes da and dc_prev
    fwd_bytes, bwd_bytes = BYTES * n * h * 7, BYTES * n * h * 13
    cases = []
    for backward in (False, True):
        def build(dev, backward=backward):
            a, c_prev = _rand((n, 4 * h), dev), _rand((n, h), dev, seed=1)
            if not backward:
                return lambda: F.lstm_step(a, c_prev)
            dh, dc = _rand((n, h), dev, seed=2), _rand((n, h), dev, seed=3)

            def step():
                _, c = F.lstm_step(a, c_prev)
                F.lstm_step_backward(dh, dc, a, c_prev, c)
            return step

        def peer(dev, backward=backward):
            torch = _torch()
            a, c_prev = _trand(torch, (n, 4 * h), dev, grad=backward), _trand(torch, (n, h), dev, 1, grad=backward)
            if not backward:
                def forward():
                    with torch.no_grad():
                        _torch_gates(torch, a, c_prev)
                return forward
            dh, dc = _trand(torch, (n, h), dev, 2), _trand(torch, (n, h), dev, 3)

            def step():
                a.grad = c_prev.grad = None
                torch.autograd.backward(_torch_gates(torch, a, c_prev), (dh, dc))
            return step
        cost = fwd_bytes + (bwd_bytes if backward else 0)
        cases.append(Case(f"lstm gates {'fwd+bwd' if backward else 'fwd'}", size, build, {"eager": peer},
                          bytes=cost, devices=devices))
    return cases


def lstm_cell_cases(n, fin, h, devices=("cpu", "cuda")):
    """One whole LSTM cell step: a = x W_x + h W_h + b (two GEMMs), the gates, and the backward of both."""
    size = f"b{n} in{fin} H{h}"
    flops = 2 * n * (fin + h) * 4 * h
    cases = []
    for backward in (False, True):
        def build(dev, backward=backward):
            x, h0, c0 = _rand((n, fin), dev), _rand((n, h), dev, 1), _rand((n, h), dev, 2)
            Wx, Wh, b = _rand((fin, 4 * h), dev, 3, 0.1), _rand((h, 4 * h), dev, 4, 0.1), _rand((4 * h,), dev, 5)

            def forward():
                a = F.dense(x, Wx, b) + h0 @ Wh
                return a, F.lstm_step(a, c0)
            if not backward:
                return forward
            dh, dc = _rand((n, h), dev, 6), _rand((n, h), dev, 7)

            def step():
                a, (_, c) = forward()
                da, _ = F.lstm_step_backward(dh, dc, a, c0, c)
                F.dense_backward(x, Wx, da)
                da @ Wh.T, h0.T @ da
            return step

        def peer(dev, backward=backward):
            torch = _torch()
            cell = torch.nn.LSTMCell(fin, h).to(dev)
            x, h0, c0 = (_trand(torch, (n, fin), dev, 0, grad=backward), _trand(torch, (n, h), dev, 1, grad=backward),
                         _trand(torch, (n, h), dev, 2, grad=backward))
            if not backward:
                def forward():
                    with torch.no_grad():
                        cell(x, (h0, c0))
                return forward
            dh, dc = _trand(torch, (n, h), dev, 6), _trand(torch, (n, h), dev, 7)

            def step():
                x.grad = h0.grad = c0.grad = None
                torch.autograd.backward(cell(x, (h0, c0)), (dh, dc))
            return step
        cases.append(Case(f"lstm cell step {'fwd+bwd' if backward else 'fwd'}", size, build,
                          {"nn.LSTMCell": peer}, flops=flops * (3 if backward else 1), devices=devices))
    return cases


def lstm_sequence_cases(n, t, fin, h, devices=("cpu", "cuda")):
    """gpudl.nn.LSTM over a whole sequence against nn.LSTM (cuDNN on a GPU) and a Python loop over nn.LSTMCell."""
    size = f"b{n} T{t} in{fin} H{h}"
    flops = 2 * n * t * (fin + h) * 4 * h
    cases = []
    for backward in (False, True):
        def build(dev, backward=backward):
            manual_seed(0)
            layer = nn.LSTM(fin, h).to(dev)
            x = _rand((n, t, fin), dev)
            if not backward:
                return lambda: layer.forward(x)
            dy = _rand((n, t, h), dev, 1)

            def step():
                layer.forward(x)
                layer.backward(dy)
            return step

        def cudnn(dev, backward=backward):
            torch = _torch()
            lstm = torch.nn.LSTM(fin, h, batch_first=True).to(dev)
            x = _trand(torch, (n, t, fin), dev, grad=backward)
            if not backward:
                def forward():
                    with torch.no_grad():
                        lstm(x)
                return forward
            dy = _trand(torch, (n, t, h), dev, 1)

            def step():
                x.grad = None
                lstm(x)[0].backward(dy)
            return step

        def cell_loop(dev, backward=backward):
            torch = _torch()
            cell = torch.nn.LSTMCell(fin, h).to(dev)
            x = _trand(torch, (n, t, fin), dev, grad=backward)
            dy = _trand(torch, (n, t, h), dev, 1)

            def forward():
                hs, state = [], None
                for step in range(t):
                    state = cell(x[:, step], state)
                    hs.append(state[0])
                return torch.stack(hs, 1)
            if not backward:
                def no_grad():
                    with torch.no_grad():
                        forward()
                return no_grad

            def step():
                x.grad = None
                forward().backward(dy)
            return step
        cases.append(Case(f"lstm seq {'fwd+bwd' if backward else 'fwd'}", size, build,
                          {"nn.LSTM": cudnn, "LSTMCell loop": cell_loop},
                          flops=flops * (3 if backward else 1), devices=devices))
    return cases


# ---- whole training steps -------------------------------------------------------------------------------------

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


def _train_step_gpudl(model, x, target, loss, optimizer):
    def step():
        optimizer.zero_grad()
        loss.forward(model.forward(x), target)
        model.backward(loss.backward())
        optimizer.step()
    return step


def xor_cases():
    x = numpy.array([[0, 0], [0, 1], [1, 0], [1, 1]], FLOAT)
    y = numpy.array([[0], [1], [1], [0]], FLOAT)

    def build(dev):
        manual_seed(0)
        model = models.MLP([2, 4, 1], activation="sigmoid").to(dev)
        return _train_step_gpudl(model, to_device(x, dev), to_device(y, dev), nn.MSELoss(check=False),
                                 optim.SGD(model.parameters(), lr=0.5))

    def peer(dev):
        torch = _torch()
        manual_seed(0)
        twin = torch_twin(models.MLP([2, 4, 1], activation="sigmoid"), torch).to(dev)
        tx, ty = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
        opt = torch.optim.SGD(twin.parameters(), lr=0.5)

        def step():
            opt.zero_grad()
            (0.5 * ((twin(tx) - ty) ** 2).sum() / tx.shape[0]).backward()
            opt.step()
        return step
    return [Case("xor mlp step", "2-4-1 b4", build, {"eager": peer}, kind="model")]


def lenet_cases(batches):
    """LeNet-5 (28x28 grey images, 10 classes): forward, softmax cross-entropy, backward, SGD with momentum."""
    def data(n):
        rng = numpy.random.default_rng(0)
        return rng.standard_normal((n, 1, 28, 28)).astype(FLOAT), rng.integers(0, 10, n)

    cases = []
    for n in batches:
        def build(dev, n=n):
            manual_seed(0)
            model = models.LeNet5().to(dev)
            x, labels = data(n)
            return _train_step_gpudl(model, to_device(x, dev), to_device(labels, dev),
                                     nn.SoftmaxCrossEntropy(check=False),
                                     optim.SGD(model.parameters(), lr=0.01, momentum=0.9))

        def peer(dev, n=n):
            torch = _torch()
            manual_seed(0)
            twin = torch_twin(models.LeNet5(), torch).to(dev)
            x, labels = data(n)
            tx, tl = torch.from_numpy(x).to(dev), torch.from_numpy(labels).to(dev)
            opt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)

            def step():
                opt.zero_grad()
                torch.nn.functional.cross_entropy(twin(tx), tl).backward()
                opt.step()
            return step
        cases.append(Case("lenet5 step", f"b{n}", build, {"eager": peer}, kind="model"))
    return cases


def char_lstm_cases(n, t, vocab, h):
    """The character-level LSTM language model: one training step over a batch of sequences."""
    size = f"b{n} T{t} V{vocab} H{h}"

    def data():
        rng = numpy.random.default_rng(0)
        return rng.integers(0, vocab, (n, t)), rng.integers(0, vocab, (n, t))

    def build(dev):
        manual_seed(0)
        model = CharLSTM(vocab, h).to(dev)
        ids, targets = (to_device(a, dev) for a in data())
        loss = nn.SoftmaxCrossEntropy(check=False)
        opt = optim.SGD(model.parameters(), lr=0.1)

        def step():
            opt.zero_grad()
            logits = model.forward(ids)
            loss.forward(logits.reshape(n * t, vocab), targets.reshape(-1))
            model.backward(loss.backward().reshape(logits.shape))
            opt.step()
        return step

    def peer(dev):
        torch = _torch()
        lstm = torch.nn.LSTM(vocab, h, batch_first=True).to(dev)
        head = torch.nn.Linear(h, vocab).to(dev)
        ids, targets = (torch.from_numpy(a).to(dev) for a in data())
        opt = torch.optim.SGD([*lstm.parameters(), *head.parameters()], lr=0.1)

        def step():
            opt.zero_grad()
            x = torch.nn.functional.one_hot(ids, vocab).float()
            logits = head(lstm(x)[0])
            torch.nn.functional.cross_entropy(logits.reshape(n * t, vocab), targets.reshape(-1)).backward()
            opt.step()
        return step
    return [Case("char-lstm step", size, build, {"nn.LSTM": peer}, kind="model")]


# ---- a fresh process: import, build, first training step --------------------------------------------------------

_STARTUP_SCRIPT = """
import sys, time
import numpy
import gpudl
from gpudl import nn, optim
dev = sys.argv[1]
try:
    from gpudl.models import LeNet5
    model = LeNet5()
except ImportError:
    model = nn.Sequential(nn.Conv2D(1, 6, 5, padding="same"), nn.ReLU(), nn.MaxPool2D(2), nn.Conv2D(6, 16, 5),
                          nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(), nn.Dense(400, 120), nn.ReLU(),
                          nn.Dense(120, 84), nn.ReLU(), nn.Dense(84, 10))
model.to(dev)
rng = numpy.random.default_rng(0)
x = gpudl.to_device(rng.standard_normal((64, 1, 28, 28)).astype(numpy.float32), dev)
labels = gpudl.to_device(rng.integers(0, 10, 64), dev)
loss = nn.SoftmaxCrossEntropy()
opt = optim.SGD(model.parameters(), lr=0.01)
value = loss.forward(model.forward(x), labels)
model.backward(loss.backward())
opt.step()
float(value)  # a read-back after the step: the device has finished it
print(time.time())
"""


def kernel_cache_dir():
    """Where CuPy keeps compiled kernels (and so where a compile in a new process leaves a file)."""
    return os.environ.get("CUPY_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cupy", "kernel_cache"))


def _cache_files():
    found = set()
    for root, _, files in os.walk(kernel_cache_dir()):
        found.update(os.path.join(root, f) for f in files)
    return found


class StartupRun:
    """Each call starts a new Python process that imports gpudl, builds LeNet-5 and takes one training step; it
    returns the seconds from spawning the process to the end of that step and counts the kernels compiled on the way
    (new files in CuPy's kernel cache)."""

    def __init__(self, dev):
        self.dev = dev
        self.compiled = 0
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        self.env.pop("GPUDL_DEVICE", None)

    def __call__(self):
        before = _cache_files()
        start = time.time()
        with tempfile.TemporaryDirectory() as cwd:
            done = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT, self.dev], env=self.env, cwd=cwd,
                                  capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"the startup process failed:\n{done.stderr[-2000:]}")
        self.seconds = float(done.stdout.split()[-1]) - start
        self.compiled += len(_cache_files() - before)
        return self.seconds


def startup_cases():
    return [Case("startup to first step", "LeNet-5 b64, new process", StartupRun, kind="startup")]


# ---- the registry ------------------------------------------------------------------------------------------------

def all_cases(quick=False):
    """Every case, at quick sizes (CI: a few seconds on 2 cores) or full sizes (the figures the targets speak of).

    The largest shapes run on the GPU alone; the CPU gets a smaller batch of the same shape, also timed on the GPU
    so the GPU-vs-CPU speedup has a pair to compare.
    """
    gpu = ("cuda",)
    if quick:
        return [
            *dense_cases(64, 256, 256),
            *conv_cases(16, 1, 6, 5, 28, "same", label="lenet c1 "),
            *conv_cases(16, 6, 16, 5, 14, "valid", label="lenet c3 "),
            *conv_cases(1, 64, 64, 3, 28, "same"),
            *pool_cases("max", 4, 16, 56, 2), *pool_cases("avg", 4, 16, 56, 2),
            *unroll_cases(1, 64, 28, 3),
            *lstm_gate_cases(16, 64), *lstm_cell_cases(16, 32, 64), *lstm_sequence_cases(8, 16, 16, 32),
            *xor_cases(), *lenet_cases([16]), *char_lstm_cases(8, 16, 16, 32),
            *startup_cases(),
        ]
    return [
        *dense_cases(1024, 1024, 1024),
        *conv_cases(64, 1, 6, 5, 28, "same", label="lenet c1 "),
        *conv_cases(64, 6, 16, 5, 14, "valid", label="lenet c3 "),
        *conv_cases(64, 64, 64, 3, 56, "same", devices=gpu), *conv_cases(16, 64, 64, 3, 56, "same"),
        *pool_cases("max", 64, 64, 112, 2, devices=gpu), *pool_cases("max", 16, 64, 112, 2),
        *pool_cases("avg", 64, 64, 112, 2, devices=gpu), *pool_cases("avg", 16, 64, 112, 2),
        *unroll_cases(64, 64, 56, 3, devices=gpu), *unroll_cases(16, 64, 56, 3),
        *lstm_gate_cases(64, 256), *lstm_cell_cases(64, 128, 256), *lstm_sequence_cases(64, 128, 128, 256),
        *xor_cases(), *lenet_cases([64, 256, 1024]), *char_lstm_cases(64, 64, 64, 256),
        *startup_cases(),
    ]


# ---- targets: ratios to PyTorch in the same run ------------------------------------------------------------------

@dataclass
class Target:
    """A goal on one figure: `measure` is "ratio" (gpudl / peer median, at most `limit`), "bandwidth" (fraction of
    the device's copy bandwidth, at least `limit`) or "seconds" (at most `limit`)."""
    text: str
    device: str
    name: str
    size: str
    measure: str
    limit: float
    peer: Optional[str] = None


def targets(quick=False):
    """The project's performance targets, each tied to the case that measures it (full sizes only)."""
    if quick:
        return [Target("a second process reaches its first training step in under 2 s without compiling",
                       "cpu", "startup to first step", "LeNet-5 b64, new process", "seconds", 2.0)]
    found = [
        Target("LeNet-5 step b256 no slower than PyTorch eager", "cuda", "lenet5 step", "b256", "ratio", 1.0),
        Target("LeNet-5 step b1024 within 1.2x of PyTorch eager", "cuda", "lenet5 step", "b1024", "ratio", 1.2),
        Target("Conv2D 3x3 64->64 56x56 b64 fwd+bwd within 2x of cuDNN", "cuda", "conv2d fwd+bwd",
               "b64 64->64 3x3 56x56 same", "ratio", 2.0),
        Target("LSTM b64 T128 in128 H256 fwd+bwd >= 3x faster than an LSTMCell loop", "cuda", "lstm seq fwd+bwd",
               "b64 T128 in128 H256", "ratio", 1 / 3, "LSTMCell loop"),
        Target("LSTM b64 T128 in128 H256 fwd+bwd within 2.5x of cuDNN nn.LSTM", "cuda", "lstm seq fwd+bwd",
               "b64 T128 in128 H256", "ratio", 2.5, "nn.LSTM"),
        Target("2-core CPU: LeNet-5 step b64 within 2x of PyTorch CPU", "cpu", "lenet5 step", "b64", "ratio", 2.0),
        Target("2-core CPU: XOR MLP step faster than PyTorch's", "cpu", "xor mlp step", "2-4-1 b4", "ratio", 1.0),
    ]
    for name in ("im2col", "col2im"):
        found.append(Target(f"{name} >= 60% of copy bandwidth", "cuda", name, "b64 64ch 56x56 3x3 pad1",
                            "bandwidth", 0.6))
    for kind in ("max", "avg"):
        for suffix in ("fwd", "fwd+bwd"):
            found.append(Target(f"{kind}pool2d {suffix} >= 60% of copy bandwidth", "cuda", f"{kind}pool2d {suffix}",
                                "64x64x112x112 2x2", "bandwidth", 0.6))
    for dev in ("cpu", "cuda"):
        found.append(Target("a second process reaches its first training step in under 2 s without compiling",
                            dev, "startup to first step", "LeNet-5 b64, new process", "seconds", 2.0))
    return found
