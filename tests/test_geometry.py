"""The Window value (gpudl.geometry): checked once where it is made, passed whole to every window op; and the NumPy
path's independence of the CUDA kernels' package."""
import subprocess
import sys

import numpy as np
import pytest

from gpudl import functional as F
from gpudl import nn
from gpudl.geometry import Window


def test_window_of_a_layer_setting():
    window = Window.of((2, 3, 7, 8), 3, 2, "same")
    assert (window.h, window.w, window.kh, window.kw, window.sh, window.sw) == (7, 8, 3, 3, 2, 2)
    assert window.pads == (1, 1, 0, 1) and (window.oh, window.ow) == (4, 4)      # ceil(7/2), ceil(8/2)
    assert window.padded_hw == (9, 9)
    assert Window.with_pads((1, 1, 7, 8), (3, 3), (2, 2), (1, 1, 0, 1)) == window


@pytest.mark.parametrize("args, error, words", [
    (((1, 1, 4, 4), 5, 1, "valid"), ValueError, "kernel 5x5 is larger than the padded input 4x4"),
    (((1, 1, 4, 4), 0, 1, "valid"), ValueError, "kernel size must be positive"),
    (((1, 1, 4, 4), 2, (1, 0), "valid"), ValueError, "strides must be positive"),
    (((1, 1, 4, 4), 2, 1, "full"), ValueError, "unknown padding 'full'"),
    (((1, 1, 4, 4), 2.5, 1, "valid"), TypeError, "kernel size must be an int or a pair of ints"),
])
def test_bad_windows_are_refused_where_they_are_made(args, error, words):
    with pytest.raises(error, match=words):
        Window.of(*args, what="layer")


def test_pooling_pads_must_be_smaller_than_the_window():
    Window.with_pads((1, 1, 4, 4), (2, 2), (2, 2), (1, 0, 1, 0), pooling=True)
    with pytest.raises(ValueError, match="must be smaller than the pool size 2x2"):
        Window.with_pads((1, 1, 4, 4), (2, 2), (2, 2), (2, 0, 0, 0), pooling=True)


def test_ops_refuse_images_the_window_was_not_made_for():
    window = Window.of((1, 1, 4, 4), 2, 2, "valid")
    with pytest.raises(ValueError, match=r"does not fit a window over 4x4 images"):
        window.check_input("max_pool2d", (1, 1, 5, 4))
    with pytest.raises(ValueError, match=r"dy has shape \(1, 1, 3, 3\), expected \(1, 1, 2, 2\)"):
        window.check_output("max_pool2d_backward", "dy", (1, 1, 3, 3), (1, 1, 4, 4))


def test_a_layer_makes_its_window_once_per_input_size():
    layer, pool = nn.Conv2D(1, 2, 3, padding="same"), nn.MaxPool2D(2)
    x = np.zeros((2, 1, 6, 6), np.float32)
    pool.forward(layer.forward(x))
    conv_window, pool_window = layer._window, pool._window
    pool.forward(layer.forward(np.zeros((5, 1, 6, 6), np.float32)))      # another batch size: the same windows
    assert layer._window is conv_window and pool._window is pool_window
    y = layer.forward(np.zeros((2, 1, 8, 10), np.float32))                 # another image size: new ones
    assert layer._window is not conv_window and (layer._window.oh, layer._window.ow) == (8, 10)
    assert pool.forward(y).shape == (2, 2, 4, 5) and pool._window.h == 8


def test_the_window_reaches_the_op_whole():
    x = np.arange(2 * 1 * 5 * 5, dtype=np.float64).reshape(2, 1, 5, 5)
    window = Window.of(x.shape, (2, 3), (2, 1), 1)
    col = F.im2col(x, window)
    assert col.shape == (2, 1, 2, 3, window.oh, window.ow) == (2, 1, 2, 3, 3, 5)
    probe = np.random.default_rng(0).standard_normal(col.shape)
    assert np.isclose((col * probe).sum(), (x * F.col2im(probe, window)).sum())       # col2im is im2col's adjoint


NUMPY_STEP = """
import sys, numpy
import gpudl
from gpudl import models, nn, optim, train
model, loss = models.LeNet5(), nn.SoftmaxCrossEntropy()
opt = optim.Adam(model.parameters())
x, y = numpy.zeros((2, 1, 28, 28), numpy.float32), numpy.array([1, 2])
train.TrainStep(model, loss, opt)(x, y)
print(sorted(name for name in sys.modules if name.startswith(("gpudl.kernels", "cupy"))))
"""


def test_the_numpy_path_never_imports_the_cuda_kernels():
    done = subprocess.run([sys.executable, "-c", NUMPY_STEP], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
