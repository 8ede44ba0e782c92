"""Shared fixtures: `xp` runs one test body on numpy and, where a GPU is usable, on cupy (marked `gpu`); the kernel
fixtures of cuda_host/fixtures.py (`kernel_path`, `host_kernels`, `small_launches`) are registered as a plugin."""
import os

import numpy
import pytest

from gpudl.backend import gpu_status

pytest_plugins = ["cuda_host.fixtures"]

MNIST_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


def _cupy_or_skip():
    usable, reason = gpu_status()
    if not usable:
        pytest.skip(f"no usable GPU: {reason}")
    import cupy
    return cupy


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module a test body runs on."""
    return numpy if request.param == "numpy" else _cupy_or_skip()


@pytest.fixture
def cupy():
    """CuPy on a usable GPU; the test is skipped (never passed) without one."""
    return _cupy_or_skip()


@pytest.fixture
def mnist_dir():
    """The shared MNIST test split, or a skip where ../shared is absent (a user's fresh checkout)."""
    if not os.path.exists(os.path.join(MNIST_DIR, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("../shared/data/mnist is absent")
    return os.path.abspath(MNIST_DIR)
