"""What a CUDA stream capture refuses, refused on the host too while a step is recorded onto the tape.

On a GPU a recorded step is a stream capture (kernels/graph.py CudaGraph): the step's Python runs, its launches and
GEMMs are recorded instead of run, and whatever needs the GPU to have finished, or a library wrapper that will not
work on a capturing stream, raises. The host tape (kernels.graph.Tape, loader.recording) records the same step, but
nothing on the host refused anything, so a recording could pass here and fail on a GPU (issue 18: CuPy's cuBLAS
wrappers). While `loader.is_recording()`, the guard makes the host refuse, in CuPy's and the runtime's words:

- CuPy's library wrappers (cupy_backends.cuda.libs cublas, cusolver, curand, cusparse: every function that binds
  a stream, i.e. all but create*/destroy*/get* and the mode setters): NotImplementedError("calling cuBLAS API during
  stream capture is currently unsupported"), as their setStream raises when runtime.streamIsCapturing. The modules
  are wrapped where they import (or where a test put one in sys.modules); where they do not, calling one fails
  anyway. NumPy's matmul, dot, vdot, inner, tensordot, einsum, linalg and legacy random functions stand on the host
  for CuPy's, which call those libraries: they refuse the same way.
- synchronizing with the device, querying a stream or an event, a synchronous copy (CuPy's runtime functions, the
  synchronize of cupy.cuda.Stream and Event, cupy.asnumpy), where CuPy imports: CaptureUnsupported, the message of
  cudaErrorStreamCaptureUnsupported.
- reading a device value on the host: gpudl.backend.to_numpy and a to_device between devices (wherever gpudl
  imported them), and the numpy array methods that give a host value or reduce only to read one (READS: .item(),
  .tolist(), .all(), .any(), .min(), .max(), .sum(), ...; on the host target every numpy array of a step stands for
  a device array), caught by a profile function while the step is recorded. float(), int() and bool() of a 0-d
  array, indexing one element, the `@` operator and a.dot(b) go through no call the host can see.
- work on a stream other than the capturing one, and a cuBLAS handle without a workspace of its own while capturing:
  the stand-in libcublas refuses those (tests/cuda_host/cublas.py) on the streams emulated here.

Besides refusing, the guard emulates a capture's private memory pool: what numpy.empty & co. allocate while a step
is recorded is held by the recording (loader.hold), since the stand-in libcublas keeps only addresses.
"""
import contextlib
import functools
import importlib
import sys

import numpy
from gpudl.kernels import loader

DEFAULT_STREAM = 0          # the legacy default stream: CuPy's current stream outside a `with stream:` block
CAPTURE_STREAM = 0x5CA9     # the stream of its own that a recording captures on (CudaGraph makes one per recording)

CUPY_LIBRARIES = {"cublas": "cuBLAS", "cusolver": "cuSOLVER", "curand": "cuRAND", "cusparse": "cuSPARSE"}
STREAMLESS = ("create", "destroy", "get", "check_status", "setPointerMode", "setMathMode",
              "setPseudoRandomGeneratorSeed")      # CuPy wrappers that bind no stream: they never refuse
NUMPY_LIBRARY_CALLS = {
    "cuBLAS": ("matmul", "dot", "vdot", "inner", "tensordot", "einsum"),
    "cuSOLVER": ("linalg.solve", "linalg.inv", "linalg.pinv", "linalg.cholesky", "linalg.qr", "linalg.svd",
                 "linalg.eigh", "linalg.eigvalsh", "linalg.det", "linalg.slogdet", "linalg.lstsq"),
    "cuRAND": ("random.rand", "random.randn", "random.random", "random.uniform", "random.normal",
               "random.standard_normal", "random.randint", "random.permutation", "random.shuffle",
               "random.choice"),
}
CUPY_SYNCHRONIZING = ("deviceSynchronize", "streamSynchronize", "eventSynchronize", "streamQuery", "eventQuery",
                      "memcpy")
READS = ("item", "tolist", "tobytes", "all", "any", "min", "max", "sum", "mean", "prod", "argmin", "argmax", "std",
         "var", "nonzero")
ALLOCATIONS = ("empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like", "full_like")


def capturing():
    """Is a step being recorded (the host's stand-in for a capturing stream)?"""
    return loader.is_recording()


def current_stream():
    """The stream the caller's work goes on: the capture's own while a step is recorded, else the default one."""
    return CAPTURE_STREAM if capturing() else DEFAULT_STREAM


class CaptureUnsupported(RuntimeError):
    """What CuPy raises (as CUDARuntimeError) when the runtime answers cudaErrorStreamCaptureUnsupported."""

    def __init__(self, what):
        super().__init__(f"cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing "
                         f"({what} while a step is recorded)")


def library_refusal(label):
    """CuPy's refusal of a library call on a capturing stream (cupy_backends/cuda/libs/*.pyx, setStream)."""
    return NotImplementedError(f"calling {label} API during stream capture is currently unsupported")


def refusing(function, refusal):
    """function, except that while a step is recorded it raises refusal() instead."""
    @functools.wraps(function)
    def guarded(*args, **kwargs):
        if capturing():
            raise refusal()
        return function(*args, **kwargs)
    guarded.refuses_while_capturing = True
    return guarded


def _allocating(function):
    """numpy.empty & co.: while a step is recorded, what they allocate is held by the recording (loader.hold)."""
    @functools.wraps(function)
    def allocate(*args, **kwargs):
        array = function(*args, **kwargs)
        loader.hold(array)
        return array
    allocate.refuses_while_capturing = True
    return allocate


def _refuse_reads(frame, event, function):
    """The profile function (sys.setprofile) while a step is recorded: calling one of READS on a numpy array (on the
    host target, a device array) raises."""
    if (event == "c_call" and getattr(function, "__name__", None) in READS
            and isinstance(getattr(function, "__self__", None), numpy.ndarray)):
        raise CaptureUnsupported(f"ndarray.{function.__name__} reads a device value on the host")


def _recording_with_reads_refused(recording):
    """loader.recording, with _refuse_reads as the profile function inside the block (the previous one restored)."""
    @contextlib.contextmanager
    def guarded():
        with recording() as tape:
            before = sys.getprofile()
            sys.setprofile(_refuse_reads)
            try:
                yield tape
            finally:
                sys.setprofile(before)      # also after a refusal, which unset the profile function
    guarded.refuses_while_capturing = True
    return guarded


@functools.cache
def _importable(name):
    """The module `name` if it imports, else None (looked up once: a failed CUDA library search is slow)."""
    try:
        return importlib.import_module(name)
    except Exception:   # noqa: BLE001  ImportError, or a CUDA library that does not load
        return None


def _module(name):
    return sys.modules.get(name) or _importable(name)


class CaptureGuard:
    """Installs the refusals of the module docstring with a pytest monkeypatch (undone after the test); `covered`
    names what it guards."""

    def __init__(self):
        self.covered = []

    def install(self, monkeypatch):
        self._cupy_libraries(monkeypatch)
        for label, names in NUMPY_LIBRARY_CALLS.items():
            for dotted in names:
                owner, _, name = f"numpy.{dotted}".rpartition(".")
                self._guard(monkeypatch, importlib.import_module(owner), name,
                            lambda label=label: library_refusal(label))
        self._cupy_synchronization(monkeypatch)
        self._host_reads(monkeypatch)
        for name in ALLOCATIONS:
            self._wrap(monkeypatch, numpy, name, _allocating)
        return self

    def _wrap(self, monkeypatch, owner, name, wrapper):
        function = getattr(owner, name)
        if getattr(function, "refuses_while_capturing", False):
            return
        try:
            monkeypatch.setattr(owner, name, wrapper(function))
        except (AttributeError, TypeError):     # an extension type's method: it cannot be replaced
            return
        self.covered.append(f"{getattr(owner, '__name__', owner)}.{name}")

    def _guard(self, monkeypatch, owner, name, refusal):
        self._wrap(monkeypatch, owner, name, lambda function: refusing(function, refusal))

    def _cupy_libraries(self, monkeypatch):
        for library, label in CUPY_LIBRARIES.items():
            module = _module(f"cupy_backends.cuda.libs.{library}")
            if module is None:
                continue
            for name, value in list(vars(module).items()):
                if (name.startswith("_") or name.startswith(STREAMLESS) or isinstance(value, type)
                        or not callable(value)):
                    continue
                self._guard(monkeypatch, module, name, lambda label=label: library_refusal(label))

    def _cupy_synchronization(self, monkeypatch):
        cupy = _module("cupy")
        if cupy is None:
            return
        for runtime in {cupy.cuda.runtime, _module("cupy_backends.cuda.api.runtime")} - {None}:
            for name in CUPY_SYNCHRONIZING:
                if hasattr(runtime, name):
                    self._guard(monkeypatch, runtime, name, lambda name=name: CaptureUnsupported(name))
        for owner in (cupy.cuda.Stream, cupy.cuda.ExternalStream, cupy.cuda.Event):
            self._guard(monkeypatch, owner, "synchronize",
                        lambda owner=owner: CaptureUnsupported(f"{owner.__name__}.synchronize"))
        self._guard(monkeypatch, cupy, "asnumpy", lambda: CaptureUnsupported("cupy.asnumpy copies to the host"))

    def _host_reads(self, monkeypatch):
        from gpudl import backend
        to_numpy = refusing(backend.to_numpy, lambda: CaptureUnsupported("gpudl.backend.to_numpy copies to the host"))

        def to_device(array, dev):
            """A move to another device is a copy the capture refuses; on the host target, where the kernel path's
            arrays are numpy arrays on the "cpu" device, a move to "cpu" stays where it is, as a cupy array's move
            to its own GPU does."""
            if capturing() and backend.device_of(array) != backend.device(dev):
                raise CaptureUnsupported(f"gpudl.backend.to_device copies to {dev}")
            return backend.to_device(array, dev)
        # Every module that imported them by name; backend's own to_device keeps calling the original to_numpy.
        for name, module in list(sys.modules.items()):
            if (name == "gpudl" or name.startswith("gpudl.")) and name != "gpudl.backend":
                for attribute, guarded in (("to_numpy", to_numpy), ("to_device", to_device)):
                    if getattr(module, attribute, None) is getattr(backend, attribute):
                        monkeypatch.setattr(module, attribute, guarded)
                        self.covered.append(f"{name}.{attribute}")
        if not getattr(loader.recording, "refuses_while_capturing", False):
            monkeypatch.setattr(loader, "recording", _recording_with_reads_refused(loader.recording))
            self.covered.extend(f"ndarray.{name}" for name in READS)
