"""The capture guard (tests/cuda_host/capture.py): on the host, a recorded step refuses what a CUDA stream capture
refuses, so a step that records here records on a GPU too.

Real steps (LeNet-5 with SGD and momentum and with Adam, the XOR MLP, the char-LSTM, gradient clipping) record under
the guard with graph=True, which raises where a recording fails. Then one step per class of refusal shows that the
guard catches it: a CuPy library wrapper, NumPy's stand-ins for CuPy's library calls, a host read of a device value,
a check left on, synchronizing with the device; and the GEMM of before issue 18, through CuPy's cuBLAS wrappers, fails
under the guard as it failed on an H200. A gpu-marked test checks the guard's model of CuPy against CuPy itself.
"""
import contextlib
import sys
import types

import numpy
import pytest
from cuda_host import capture
from cuda_host.cublas import aligned_workspace
from cuda_host.fixtures import HOST_WORKSPACE_BYTES, host_target
from gpudl.kernels import blas, loader
from gpudl.kernels.blas import CublasGemm
from gpudl.kernels.cublas import OPERATIONS, Cublas
from test_train_step import Run, assert_same_runs, drive

import gpudl
from gpudl import backend, to_numpy
from gpudl.train import step as train_step

CAPTURE_REFUSED = "operation not permitted when stream is capturing"


@pytest.fixture
def host(request, monkeypatch):
    """The host target with the capture guard (kernel_path's host half, without its gpu twin)."""
    return host_target(request, monkeypatch)


STEPS = {"lenet5-sgd": ("lenet5-sgd", None), "lenet5-adam": ("lenet5-adam", None), "xor-mlp": ("xor-mlp", None),
         "char-lstm-adam": ("char-lstm-adam", None), "char-lstm-sgd": ("char-lstm-sgd", None),
         "char-lstm-adam-clipped": ("char-lstm-adam", 0.05), "rnn-sgd": ("rnn-sgd", None)}


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("name", list(STEPS))
def test_real_steps_record_under_the_guard(host, name, dtype):
    """graph=True: the recording raises if anything in it is refused; its GEMMs go through gpudl's cuBLAS binding
    on the stand-in libcublas, which refused nothing either."""
    case, clip = STEPS[name]
    recorded, eager = Run(host, case, dtype, True, clip), Run(host, case, dtype, False, clip)
    plan = [(3, 0), (3, 1), (3, 2)]
    got, want = drive(recorded, plan), drive(eager, plan)
    assert recorded.step.replays == 2 and recorded.step.graphed
    assert_same_runs(host, dtype, recorded, eager, got, want)
    letter = "S" if dtype == numpy.float32 else "D"
    assert host.cublas.calls.get(f"cublas{letter}gemm_v2", 0) + host.cublas.calls.get(
        f"cublas{letter}gemmStridedBatched", 0) > 0
    assert host.cublas.refusals == []
    assert {"numpy.matmul", "gpudl.optim.to_numpy", "ndarray.item"} <= set(host.guard.covered)


def lenet_step(host, misstep, graph=True):
    """A LeNet-5 training step (graph=True) whose model's forward first calls misstep()."""
    run = Run(host, "lenet5-sgd", numpy.float32, graph)
    forward = run.model.forward

    def forward_with_misstep(x):
        misstep(x)
        return forward(x)
    run.model.forward = forward_with_misstep
    return run


def fake_cupy_library(label, calls):
    """A module standing in for CuPy's cupy_backends.cuda.libs.<library>: create (binds no stream) and generate
    (binds one, as every CuPy wrapper that runs work does)."""
    module = types.ModuleType(f"cupy_backends.cuda.libs.{label.lower()}")
    module.create = lambda: calls.append("create") or 1
    module.generate = lambda handle, size: calls.append("generate")
    return module


@pytest.mark.parametrize("label", ["cuBLAS", "cuRAND", "cuSOLVER", "cuSPARSE"])
def test_a_cupy_library_wrapper_in_a_step_is_refused_as_cupy_refuses_it(request, monkeypatch, label):
    calls = []
    module = fake_cupy_library(label, calls)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    host = host_target(request, monkeypatch)            # the guard wraps the modules it finds
    run = lenet_step(host, lambda x: module.generate(module.create(), x.size))
    with pytest.raises(NotImplementedError, match=f"^calling {label} API during stream capture is currently "
                                                  "unsupported$"):
        run(4, 0)
    assert calls == ["create", "generate", "create"], "outside the recording (the eager step) the wrappers run"


@pytest.mark.parametrize("call, label", [(lambda x: numpy.matmul(x[0, 0], x[0, 0]), "cuBLAS"),
                                         (lambda x: numpy.linalg.inv(x[0, 0]), "cuSOLVER"),
                                         (lambda x: numpy.random.randn(3), "cuRAND")])
def test_numpy_standing_for_a_cupy_library_call_is_refused(host, call, label):
    run = lenet_step(host, call)
    with pytest.raises(NotImplementedError, match=f"calling {label} API during stream capture"):
        run(4, 0)


@pytest.mark.parametrize("read", [lambda x: gpudl.to_numpy(x), lambda x: x.item(0), lambda x: float(x.max()),
                                  lambda x: bool((x < 0).any()), lambda x: x.sum(), lambda x: x.tolist(),
                                  lambda x: loader.is_recording() and gpudl.to_device(x, backend.Device("cuda", 0))],
                         ids=["to_numpy", "item", "max", "any", "sum", "tolist", "to_device another device"])
def test_a_host_read_of_a_device_value_is_refused(host, read):
    run = lenet_step(host, read)
    with pytest.raises(capture.CaptureUnsupported, match=CAPTURE_REFUSED):
        run(4, 0)


def test_a_check_left_on_while_recording_is_refused(host, monkeypatch):
    """TrainStep turns value checks off while it records (F.value_checks(False)): they read values on the host."""
    monkeypatch.setattr(train_step.F, "value_checks", lambda enabled: contextlib.nullcontext())
    run = Run(host, "lenet5-sgd", numpy.float32, True)
    with pytest.raises(capture.CaptureUnsupported, match=r"ndarray\.(all|any) reads a device value"):
        run(4, 0)


def test_the_host_target_moves_nothing_to_its_own_device(host):
    """to_device(x, "cpu") on the host target is a cupy array's move to its own GPU: no copy, nothing refused;
    to_numpy stays refused."""
    run = lenet_step(host, lambda x: gpudl.to_device(x, "cpu") is x or pytest.fail("a copy"))
    run(4, 0)
    run(4, 1)
    assert run.step.replays == 1


def test_synchronizing_with_the_device_is_refused(host):
    cupy = pytest.importorskip("cupy", reason="the guard wraps CuPy's synchronization where CuPy imports")

    def synchronize(x):
        if loader.is_recording():       # outside it there is no GPU on this machine to synchronize with
            cupy.cuda.runtime.deviceSynchronize()
    run = lenet_step(host, synchronize)
    with pytest.raises(capture.CaptureUnsupported, match="deviceSynchronize"):
        run(4, 0)
    assert "cupy.asnumpy" in host.guard.covered


def test_guarded_functions_work_outside_a_recording(host):
    a = numpy.arange(4.0).reshape(2, 2)
    numpy.testing.assert_array_equal(numpy.matmul(a, a), a @ a)
    assert to_numpy(a) is a and a.sum() == 6
    with loader.recording():
        pass
    assert sys.getprofile() is None


class ThroughCupyWrappers:
    """cuBLAS as gpudl called it before issue 18: through CuPy's wrappers (cupy_backends.cuda.libs.cublas: create,
    setStream, sgemm, ...), each of which binds the current stream first, and the workspace through ctypes. The
    interface of kernels.cublas.Cublas, so that CublasGemm runs on it unchanged."""

    def __init__(self, wrappers, library):
        self.wrappers, self.ctypes = wrappers, Cublas(library)

    def create(self):
        return self.wrappers.create()

    def set_stream(self, handle, stream):
        self.wrappers.setStream(handle, stream)

    def set_workspace(self, handle, address, nbytes):
        self.ctypes.set_workspace(handle, address, nbytes)

    def gemm(self, dtype, handle, transa, transb, *rest):
        name = "sgemm" if dtype == numpy.float32 else "dgemm"
        getattr(self.wrappers, name)(handle, OPERATIONS[transa], OPERATIONS[transb], *rest)

    def gemm_strided_batched(self, dtype, handle, transa, transb, *rest):
        name = "sgemmStridedBatched" if dtype == numpy.float32 else "dgemmStridedBatched"
        getattr(self.wrappers, name)(handle, OPERATIONS[transa], OPERATIONS[transb], *rest)


def cupy_cublas_wrappers(library):
    """A stand-in for CuPy's cupy_backends.cuda.libs.cublas over the stand-in libcublas: the GEMM wrappers set the
    handle's stream to the current one first (CuPy's _setStream), then call the library; CuPy's own check of the
    capture is left to the guard."""
    cublas = Cublas(library)
    module = types.ModuleType("cupy_backends.cuda.libs.cublas")
    module.create = cublas.create
    module.setStream = cublas.set_stream

    def wrapper(dtype, batched):
        def call(handle, transa, transb, *rest):
            module.setStream(handle, capture.current_stream())
            ops = {v: k for k, v in OPERATIONS.items()}
            (cublas.gemm_strided_batched if batched else cublas.gemm)(dtype, handle, ops[transa], ops[transb], *rest)
        return call
    module.sgemm, module.dgemm = wrapper(numpy.float32, False), wrapper(numpy.float64, False)
    module.sgemmStridedBatched = wrapper(numpy.float32, True)
    module.dgemmStridedBatched = wrapper(numpy.float64, True)
    return module


def test_the_gemm_of_before_issue_18_fails_under_the_guard(request, monkeypatch):
    """CuPy's wrappers refused the capture on an H200: every recording fell back to eager. The host tape passed it,
    since the host replaced the whole GEMM; under the guard the same recording fails with CuPy's words."""
    host = host_target(request, monkeypatch, guard=False)
    wrappers = cupy_cublas_wrappers(host.cublas)
    monkeypatch.setitem(sys.modules, wrappers.__name__, wrappers)
    old = CublasGemm(ThroughCupyWrappers(wrappers, host.cublas), aligned_workspace(HOST_WORKSPACE_BYTES),
                     capture.current_stream)
    monkeypatch.setattr(blas, "get_blas", lambda xp: old)
    eager = Run(host, "lenet5-sgd", numpy.float32, False)
    drive(eager, [(4, 0), (4, 1)])          # eagerly, the old path computes the step
    capture.CaptureGuard().install(monkeypatch)
    recorded = Run(host, "lenet5-sgd", numpy.float32, True)
    with pytest.raises(NotImplementedError, match="^calling cuBLAS API during stream capture is currently "
                                                  "unsupported$"):
        recorded(4, 0)
    auto = Run(host, "lenet5-sgd", numpy.float32, "auto")
    drive(auto, [(4, 0), (4, 1)])
    assert auto.step.replays == 0 and "calling cuBLAS API during stream capture" in auto.step.notice


def test_cupys_wrappers_also_drop_the_workspace_a_capture_needs(request, monkeypatch):
    """Had CuPy let its wrappers run on a capturing stream, each GEMM's setStream would still have given the handle
    back cuBLAS's pool, so cuBLAS would have allocated inside the capture: the stand-in refuses that too."""
    host = host_target(request, monkeypatch, guard=False)
    wrappers = cupy_cublas_wrappers(host.cublas)
    old = CublasGemm(ThroughCupyWrappers(wrappers, host.cublas), aligned_workspace(HOST_WORKSPACE_BYTES),
                     capture.current_stream)
    monkeypatch.setattr(blas, "get_blas", lambda xp: old)
    recorded = Run(host, "lenet5-sgd", numpy.float32, True)
    with pytest.raises(RuntimeError, match="CUBLAS_STATUS_ALLOC_FAILED"):
        recorded(4, 0)
    assert "no workspace of the handle's own" in host.cublas.refusals[-1]


@pytest.mark.gpu
def test_cupy_refuses_on_a_capturing_stream_what_the_guard_refuses(cupy):
    """The guard's model of CuPy, checked against CuPy: its cuBLAS wrappers raise the guard's NotImplementedError
    (cupy.matmul among them), and a synchronize of the capturing stream fails with a capture error."""
    from cupy_backends.cuda.libs import cublas
    handle = cupy.cuda.device.get_cublas_handle()
    a = cupy.ones((8, 8), dtype=cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            for call in (lambda: cublas.setStream(handle, stream.ptr), lambda: cupy.matmul(a, a)):
                with pytest.raises(NotImplementedError) as refused:
                    call()
                assert str(refused.value) == str(capture.library_refusal("cuBLAS"))
            with pytest.raises(RuntimeError) as failed:
                stream.synchronize()
            assert "captur" in str(failed.value).lower()
        finally:
            with contextlib.suppress(RuntimeError):
                stream.end_capture()
