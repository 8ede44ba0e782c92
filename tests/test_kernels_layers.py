"""Every layer runs unchanged through the kernel path: forward and backward against the NumPy path, float64
gradient checks, a small network trained on both paths, and (on a GPU only) no host syncs, compile-once loading,
CuPy's disk cache across processes and 64-bit indexing.

`kernel_path` runs each body on the host build of the kernels (always) and on cupy arrays (GPU only, marked gpu).
"""
import os
import subprocess
import sys
import warnings

import numpy
import pytest

import gpudl
from gpudl import functional as F
from gpudl import nn, optim
from gpudl.backend import to_numpy
from gpudl.geometry import Window
from gpudl.gradient_check import check_layer
from gpudl.kernels import loader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, layer factory, input shape)
LAYERS = [
    ("Dense", lambda: nn.Dense(5, 3), (4, 5)),
    ("Conv2D-valid", lambda: nn.Conv2D(2, 3, 3), (2, 2, 6, 5)),
    ("Conv2D-same-stride2", lambda: nn.Conv2D(2, 3, (2, 3), strides=2, padding="same"), (2, 2, 7, 8)),
    ("Conv2D-pad1-stride21", lambda: nn.Conv2D(2, 3, 3, strides=(2, 1), padding=1), (2, 2, 6, 5)),
    ("MaxPool2D", lambda: nn.MaxPool2D(2), (2, 3, 6, 6)),
    ("MaxPool2D-same", lambda: nn.MaxPool2D(3, strides=2, padding="same"), (2, 3, 7, 8)),
    ("AvgPool2D", lambda: nn.AvgPool2D(2), (2, 3, 6, 6)),
    ("AvgPool2D-same", lambda: nn.AvgPool2D(3, strides=2, padding="same"), (2, 3, 7, 8)),
    ("Flatten", lambda: nn.Flatten(), (2, 3, 2, 2)),
    ("ReLU", lambda: nn.ReLU(), (4, 6)),
    ("Sigmoid", lambda: nn.Sigmoid(), (4, 6)),
    ("Tanh", lambda: nn.Tanh(), (4, 6)),
    ("Softplus", lambda: nn.Softplus(), (4, 6)),
    ("Step", lambda: nn.Step(), (4, 6)),
    ("Sign", lambda: nn.Sign(), (4, 6)),
    pytest.param("RNN", lambda: nn.RNN(3, 4), (2, 5, 3), id="RNN"),
    pytest.param("LSTM", lambda: nn.LSTM(3, 4), (2, 5, 3), id="LSTM"),
]
LAYER_IDS = [case[0] if isinstance(case, tuple) else None for case in LAYERS]


def run_layer(layer, x, dy):
    for p in layer.parameters():
        p.grad[...] = 0
    y = layer.forward(x)
    dx = layer.backward(dy)
    return y, dx, [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("name, make, shape", LAYERS, ids=LAYER_IDS)
def test_layer_matches_numpy_path(kernel_path, name, make, shape, dtype):
    rng = numpy.random.default_rng(0)
    gpudl.manual_seed(0)
    layer = make().to(dtype=dtype)
    x = rng.standard_normal(shape).astype(dtype)
    with kernel_path.reference():
        y_ref = layer.forward(x)
        dy = rng.standard_normal(y_ref.shape).astype(dtype)
        y_ref, dx_ref, grads_ref = run_layer(layer, x, dy)
        grads_ref = [g.copy() for g in grads_ref]
    kernel_path.move(layer)
    y, dx, grads = run_layer(layer, kernel_path.asarray(x), kernel_path.asarray(dy))
    tol = 1e-5 if dtype == numpy.float32 else 1e-12
    assert type(y) is type(kernel_path.xp.empty(0)) and y.dtype == dtype
    for got, want in zip([y, dx] + grads, [y_ref, dx_ref] + grads_ref):
        numpy.testing.assert_allclose(to_numpy(got), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("name, make, shape", LAYERS, ids=LAYER_IDS)
def test_layer_gradients_float64(kernel_path, name, make, shape):
    gpudl.manual_seed(1)
    layer = kernel_path.move(make().to(dtype=numpy.float64))
    x = kernel_path.asarray(numpy.random.default_rng(2).standard_normal(shape))
    analytic = check_layer(layer, x)
    if name not in ("Step", "Sign"):
        assert analytic != 0.0


def lenet_like():
    return nn.Sequential(nn.Conv2D(1, 4, 3, padding="same"), nn.ReLU(), nn.MaxPool2D(2),
                         nn.Conv2D(4, 4, 3), nn.Tanh(), nn.AvgPool2D(3, strides=2, padding="same"),
                         nn.Flatten(), nn.Dense(16, 10))


def train(model, loss, x, y, steps=5):
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        value = loss(model(x), y)
        model.backward(loss.backward())
        opt.step()
        losses.append(float(value))
    return losses


def test_small_cnn_trains_the_same_on_both_paths(kernel_path):
    rng = numpy.random.default_rng(3)
    x = rng.standard_normal((8, 1, 12, 12)).astype(numpy.float32)
    labels = rng.integers(0, 10, size=8)
    gpudl.manual_seed(4)
    reference = lenet_like()
    gpudl.manual_seed(4)
    model = kernel_path.move(lenet_like())
    with kernel_path.reference():
        losses_ref = train(reference, nn.SoftmaxCrossEntropy(), x, labels)
    losses = train(model, nn.SoftmaxCrossEntropy(), kernel_path.asarray(x), kernel_path.asarray(labels))
    assert losses_ref[-1] < losses_ref[0]                 # it learns at all
    numpy.testing.assert_allclose(losses, losses_ref, rtol=1e-4)


def test_small_lstm_trains_the_same_on_both_paths(kernel_path):
    rng = numpy.random.default_rng(5)
    x = rng.standard_normal((4, 6, 3)).astype(numpy.float32)
    target = rng.uniform(-0.5, 0.5, size=(4, 6, 5)).astype(numpy.float32)
    gpudl.manual_seed(6)
    reference = nn.Sequential(nn.LSTM(3, 5))
    gpudl.manual_seed(6)
    model = kernel_path.move(nn.Sequential(nn.LSTM(3, 5)))
    with kernel_path.reference():
        losses_ref = train(reference, nn.MSELoss(), x, target)
    losses = train(model, nn.MSELoss(), kernel_path.asarray(x), kernel_path.asarray(target))
    assert losses_ref[-1] < losses_ref[0]
    numpy.testing.assert_allclose(losses, losses_ref, rtol=1e-4)


# -- GPU only ------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_no_host_sync_in_forward_or_backward(cupy):
    import cupyx
    gpudl.manual_seed(0)
    layers = [lenet_like().to("cuda")]
    inputs = [cupy.random.standard_normal((8, 1, 12, 12), dtype=cupy.float32)]
    if hasattr(nn, "LSTM"):
        layers.append(nn.LSTM(3, 5).to("cuda"))
        inputs.append(cupy.random.standard_normal((4, 6, 3), dtype=cupy.float32))
    for layer, x in zip(layers, inputs):
        y = layer.forward(x)                       # warm up: compile and load the kernels
        layer.backward(cupy.ones_like(y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # allow_synchronize is deprecated, still works
            with cupyx.allow_synchronize(False):
                y = layer.forward(x)
                layer.backward(cupy.ones_like(y))
        assert y.shape[0] == x.shape[0]


@pytest.mark.gpu
def test_each_module_is_built_once(cupy, monkeypatch):
    built = []
    original = cupy.RawModule

    def counting(*args, **kwargs):
        built.append(kwargs.get("options"))
        return original(*args, **kwargs)

    monkeypatch.setattr(loader, "_modules", {})
    monkeypatch.setattr(loader, "_kernels", {})
    monkeypatch.setattr(cupy, "RawModule", counting)
    x = cupy.random.standard_normal((2, 3, 6, 6), dtype=cupy.float32)
    window = Window.of(x.shape, 2, 2, "valid")
    for _ in range(3):
        y, argmax = F.max_pool2d(x, window)
        F.max_pool2d_backward(y, argmax, x.shape, window)
        F.avg_pool2d(x, window)
    F.max_pool2d(x.astype(cupy.float64), window)
    assert built == [("-Dreal_t=float",), ("-Dreal_t=double",)]


LOAD_AND_RUN = """
import cupy, sys
import cupy.cuda.compiler as compiler
import gpudl
gpudl.device("cuda")                    # gpudl takes arrays as cupy's once its backend has loaded CuPy
if sys.argv[1] == "forbid":
    def refuse(*args, **kwargs):
        raise AssertionError("compiled again instead of loading CuPy's disk cache")
    compiler._compile_using_nvrtc_no_warning = refuse
    compiler.compile_using_nvcc = refuse
from gpudl import kernels
from gpudl.geometry import Window
x = cupy.arange(16, dtype=cupy.float32).reshape(1, 1, 4, 4)
y, argmax = kernels.max_pool2d(x, Window.of(x.shape, 2, 2, "valid"))
assert cupy.asnumpy(y).ravel().tolist() == [5, 7, 13, 15]
print("ok")
"""


@pytest.mark.gpu
def test_second_process_loads_from_disk_cache(cupy, tmp_path):
    env = {**os.environ, "CUPY_CACHE_DIR": str(tmp_path / "cache")}     # gpudl as this process finds it
    env.pop("CUPY_CACHE_IN_MEMORY", None)

    def run(mode):
        done = subprocess.run([sys.executable, "-c", LOAD_AND_RUN, mode], capture_output=True, text=True, env=env)
        assert done.returncode == 0 and "ok" in done.stdout, done.stderr
        return {p: os.path.getmtime(p) for p in map(str, (tmp_path / "cache").rglob("*")) if os.path.isfile(p)}

    first = run("compile")
    assert first, "the first process left nothing in CuPy's disk cache"
    second = run("forbid")
    assert second == first


@pytest.mark.gpu
def test_indices_past_two_to_the_31(cupy):
    """x, col and img each hold more than 2^31 elements: 64-bit index arithmetic is needed everywhere."""
    if cupy.cuda.Device().mem_info[1] < 48 * 2 ** 30:
        pytest.skip("needs about 40 GiB of device memory")
    h, w = 2 ** 16, 2 ** 15 + 8
    x = cupy.zeros((1, 1, h, w), dtype=cupy.float32)
    assert x.size > 2 ** 31
    x[0, 0, -2:, -2:] = cupy.asarray([[1.0, 4.0], [3.0, 2.0]], dtype=cupy.float32)
    col = F.im2col(x, Window.of(x.shape, 1, 1, "valid"))
    assert cupy.asnumpy(col[0, 0, 0, 0, -2:, -2:]).tolist() == [[1, 4], [3, 2]]
    img = F.col2im(col, Window.of(x.shape, 1, 1, "valid"))
    del col
    assert cupy.asnumpy(img[0, 0, -2:, -2:]).tolist() == [[1, 4], [3, 2]]
    del img
    window = Window.of(x.shape, 2, 2, "valid")
    y, argmax = F.max_pool2d(x, window)
    assert float(y[0, 0, -1, -1]) == 4.0 and int(argmax[0, 0, -1, -1]) == 1
    dx = F.max_pool2d_backward(y, argmax, x.shape, window)
    assert cupy.asnumpy(dx[0, 0, -2:, -2:]).tolist() == [[0, 4], [0, 0]]
