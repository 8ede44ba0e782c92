"""Start-up: a fresh process imports gpudl, builds LeNet-5 and takes one training step, with no kernel compiled."""
import os
import subprocess
import sys
import tempfile
import time

from ..functional import dispatch
from .common import Case

_STARTUP_SCRIPT = """
import sys, time
import numpy
import gpudl
from gpudl import nn, optim
from gpudl.models import LeNet5
dev = sys.argv[1]
model = LeNet5().to(dev)
rng = numpy.random.default_rng(0)
x = gpudl.to_device(rng.standard_normal((64, 1, 28, 28)).astype(numpy.float32), dev)
labels = gpudl.to_device(rng.integers(0, 10, 64), dev)
loss = nn.SoftmaxCrossEntropy()
opt = optim.SGD(model.parameters(), lr=0.01)
value = loss.forward(model.forward(x), labels)
model.backward(loss.backward(), input_grad=False)
opt.step()
float(value)  # a read-back after the step: the device has finished it
print(time.time())
"""


def kernel_cache_dir():
    """Where CuPy keeps compiled kernels (and so where a compile in a new process leaves a file)."""
    return os.environ.get("CUPY_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cupy", "kernel_cache"))


def _cache_files():
    """The files of CuPy's kernel cache and of the CPU kernels' cache (Numba's: a compile adds or rewrites one)."""
    cpu = dispatch.cpu_kernels()
    found = set()
    for folder in (kernel_cache_dir(), cpu and cpu.loader.cache_folder()):
        for root, _, files in os.walk(folder) if folder else ():
            found.update((os.path.join(root, f), os.stat(os.path.join(root, f)).st_mtime_ns) for f in files)
    return found


class StartupRun:
    """Each call starts a new Python process that imports gpudl, builds LeNet-5 and takes one training step; it
    returns the seconds from spawning the process to the end of that step and counts the kernels compiled on the way
    (files new or rewritten in CuPy's kernel cache and in the CPU kernels' cache)."""

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
