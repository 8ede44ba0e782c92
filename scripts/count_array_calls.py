"""Count the array operations (each about one CuPy call on a GPU) in one training step, without a GPU.

A numpy subclass stands in for cupy arrays: gpudl.functional takes its kernel paths for it (the .cu sources built for
the host, as in tests/cuda_host), every ufunc, reduction, array function or copying method counts one call, every
kernel launch counts one, and allocations are listed apart (cupy.empty launches nothing). An estimate: numpy's mean is
two ufuncs where CuPy's is one reduction, and views (reshape, transpose) cost host time but are not counted.

    python scripts/count_array_calls.py REPO 8     # LeNet-5, batch 8, SGD with momentum, softmax cross-entropy
    python scripts/count_array_calls.py REPO 4     # the XOR MLP 2-4-1, plain SGD, MSE

GEMMs count one call each (kernels.blas.gemm, NumPy standing in for cuBLAS as in the tests). Where the tree can record
a step (kernels.loader.recording), the last line gives the length of the recorded step: what one CUDA graph launch
replaces.
"""
# ruff: noqa: E402 (the imports below come from the tree named on the command line)
import collections
import inspect
import sys
import tempfile

repo = sys.argv[1]
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 8
sys.path[:0] = [repo, repo + "/tests"]
import numpy

try:
    from cuda_host.fixtures import host_blas as HostBlas  # gpudl's cuBLAS code on the stand-in libcublas
except ImportError:
    from cuda_host.fixtures import HostBlas  # an older tree: NumPy in place of the whole GEMM
from cuda_host.host import HostKernels
from gpudl.kernels import loader

import gpudl
from gpudl import nn, optim
from gpudl.functional import dispatch
from gpudl.models import LeNet5

calls = collections.Counter()
counting = [False]


def note(kind):
    if counting[0]:
        calls[kind] += 1


VIEW_FUNCS = {"reshape", "transpose", "split", "broadcast_to", "moveaxis", "expand_dims", "squeeze", "swapaxes",
              "shape", "ndim", "size", "result_type", "may_share_memory", "shares_memory"}


class Dev(numpy.ndarray):
    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        note(f"ufunc {ufunc.__name__}.{method}" if method != "__call__" else f"ufunc {ufunc.__name__}")
        inputs = [numpy.asarray(a) if isinstance(a, Dev) else a for a in inputs]
        if "out" in kw:
            kw["out"] = tuple(numpy.asarray(a) if isinstance(a, Dev) else a for a in kw["out"])
        out = getattr(ufunc, method)(*inputs, **kw)
        return _wrap(out)

    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ not in VIEW_FUNCS:
            note(f"func {func.__name__}")
        args = _unwrap(args)
        kwargs = _unwrap(kwargs)
        return _wrap(func(*args, **kwargs))

    def astype(self, dtype, copy=True, **kw):
        if copy or numpy.dtype(dtype) != self.dtype:
            note("astype")
        return _wrap(numpy.asarray(self).astype(dtype, copy=copy, **kw))

    def copy(self, *a, **kw):
        note("copy")
        return _wrap(numpy.asarray(self).copy(*a, **kw))

    def fill(self, value):
        note("fill")
        numpy.asarray(self).fill(value)

    def __setitem__(self, key, value):
        note("setitem")
        numpy.asarray(self)[key] = numpy.asarray(value) if isinstance(value, Dev) else value

    def argmax(self, *a, **kw):
        note("argmax")
        return _wrap(numpy.asarray(self).argmax(*a, **kw))


def _wrap(out):
    if isinstance(out, numpy.ndarray) and not isinstance(out, Dev):
        return out.view(Dev)
    if isinstance(out, tuple):
        return tuple(_wrap(o) for o in out)
    if isinstance(out, list):
        return [_wrap(o) for o in out]
    return out


def _unwrap(obj):
    if isinstance(obj, Dev):
        return numpy.asarray(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def creator(name, launches):
    real = getattr(numpy, name)

    def make(*a, **kw):
        if counting[0]:
            calls[f"alloc {name}" + (" (+memset/fill launch)" if launches else "")] += 1
        return _wrap(real(*_unwrap(a), **_unwrap(kw)))
    return make


for name, launches in (("empty", False), ("empty_like", False), ("zeros", True), ("zeros_like", True),
                       ("ones", True), ("full", True), ("arange", True), ("ascontiguousarray", False)):
    setattr(numpy, name, creator(name, launches))

host = HostKernels(loader.KERNEL_DIR, tempfile.mkdtemp(prefix="gpudl-count-"))
orig_get_kernel = host.get_kernel


def get_kernel(xp, file, name, dtype):
    k = orig_get_kernel(xp, file, name, dtype)
    call = k.__call__

    class Counted:
        def __call__(self, grid, block, args):
            note(f"kernel {file}:{name}")
            return call(grid, block, args)
    return Counted()


loader.get_kernel = get_kernel
try:
    from gpudl.kernels import blas
except ImportError:                 # a tree before kernels.blas: its GEMMs are array calls
    blas = None
if blas is not None:
    host_blas = HostBlas()

    class CountedBlas:
        def gemm(self, *args):
            note("gemm (cuBLAS)")
            counting[0], was = False, counting[0]       # the stand-in's own NumPy calls are not the step's
            try:
                return host_blas.gemm(*_unwrap(args))
            finally:
                counting[0] = was
    blas.get_blas = lambda xp: CountedBlas()
loader.max_blocks = lambda xp: 4
dispatch.takes_kernel_path = lambda a: isinstance(a, Dev)

gpudl.manual_seed(0)
xor = batch == 4
if xor:
    from gpudl.models import MLP
    model = MLP([2, 4, 1], activation="sigmoid")
else:
    model = LeNet5()
for p in model.parameters():
    p.data = p.data.view(Dev)
    p.grad = p.grad.view(Dev)
rng = numpy.random.default_rng(0)
if xor:
    x = numpy.array([[0, 0], [0, 1], [1, 0], [1, 1]], numpy.float32).view(Dev)
    labels = numpy.array([[0], [1], [1], [0]], numpy.float32).view(Dev)
    loss, opt = nn.MSELoss(check=False), optim.SGD(model.parameters(), lr=0.5)
else:
    x = rng.standard_normal((batch, 1, 28, 28)).astype(numpy.float32).view(Dev)
    labels = rng.integers(0, 10, batch).view(Dev)
    loss = nn.SoftmaxCrossEntropy(check=False)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


# as the training step does: no gradient of the input, where the tree's backward can skip it
backward_options = {"input_grad": False} if "input_grad" in inspect.signature(model.backward).parameters else {}


def step():
    opt.zero_grad()
    loss.forward(model.forward(x), labels)
    model.backward(loss.backward(), **backward_options)
    opt.step()


step()                        # the first step allocates the velocity buffers
counting[0] = True
step()
counting[0] = False
launching = {k: v for k, v in calls.items() if not k.startswith("alloc") or "launch" in k}
print(f"{repo}: {type(model).__name__} b{batch} {opt.__class__.__name__} step: "
      f"{sum(launching.values())} launching calls "
      f"(+ {sum(v for k, v in calls.items() if k not in launching)} plain allocations)")
for k, v in sorted(calls.items(), key=lambda kv: -kv[1]):
    print(f"  {v:4d}  {k}")
if hasattr(loader, "recording"):
    with loader.recording() as tape:
        step()
    print(f"  recorded: the step is {len(tape)} launches and GEMMs, replayed as one CUDA graph launch")
