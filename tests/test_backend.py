"""Device selection and array movement, with and without CuPy, with and without a usable GPU."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gpudl
from gpudl import backend


def test_cpu_and_bad_specs():
    assert gpudl.device("cpu") == backend.CPU and gpudl.device(" CPU ").kind == "cpu"
    assert gpudl.device(backend.CPU) is backend.CPU
    for bad in ["gpu", "cuda:x", "cuda:-1", ""]:
        with pytest.raises(ValueError, match="device spec"):
            gpudl.device(bad)
    with pytest.raises(TypeError):
        gpudl.device(0)


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("GPUDL_DEVICE", "cpu")
    assert gpudl.device() == backend.CPU
    monkeypatch.setenv("GPUDL_DEVICE", "tpu")
    with pytest.raises(ValueError, match="'tpu'"):
        gpudl.device()


def test_arrays_on_the_cpu():
    x = np.arange(6.0).reshape(2, 3)
    assert gpudl.get_array_module(x) is np and gpudl.get_array_module() is np
    assert gpudl.to_device(x, "cpu") is x
    np.testing.assert_array_equal(gpudl.to_numpy([1, 2]), [1, 2])
    assert backend.device_of(x) == backend.CPU


@pytest.fixture
def no_gpu():
    usable, reason = backend.gpu_status()
    if usable:
        pytest.skip("a GPU is usable here; this tests the fallback without one")
    return reason


def test_auto_falls_back_to_the_cpu_with_one_notice(no_gpu, monkeypatch, capsys):
    monkeypatch.setattr(backend, "_notice_given", False)
    assert gpudl.device("auto") == backend.CPU
    assert gpudl.device("auto") == backend.CPU
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no usable GPU" in err and "running on the CPU" in err


@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_explicit_cuda_without_a_gpu_is_an_error(no_gpu, spec):
    with pytest.raises(backend.DeviceError, match="CuPy"):
        gpudl.device(spec)
    assert not gpudl.gpu_available()


def test_imports_and_falls_back_without_cupy():
    script = textwrap.dedent("""
        import sys
        sys.modules["cupy"] = None          # makes "import cupy" fail, as on a machine without it
        import gpudl
        from gpudl import backend
        assert gpudl.device("auto") == backend.CPU
        try:
            gpudl.device("cuda")
        except backend.DeviceError as exc:
            print("ERROR:", exc)
        import numpy as np
        print(gpudl.get_array_module(np.zeros(2)).__name__)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "ERROR: device 'cuda'" in run.stdout and "CuPy is not importable" in run.stdout
    assert run.stdout.strip().endswith("numpy")
    assert run.stderr.count("running on the CPU") == 1


@pytest.mark.gpu
def test_round_trip_through_the_gpu(cupy):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    on_gpu = gpudl.to_device(x, "cuda")
    assert isinstance(on_gpu, cupy.ndarray) and gpudl.get_array_module(on_gpu) is cupy
    assert backend.device_of(on_gpu) == gpudl.device("cuda:0") or backend.device_of(on_gpu).kind == "cuda"
    np.testing.assert_array_equal(gpudl.to_numpy(on_gpu), x)
    assert gpudl.device("auto").kind == "cuda"


def test_cupy_imported_by_the_user_is_recognised():
    script = textwrap.dedent("""
        import cupy
        import numpy as np
        from gpudl import backend
        assert not backend.is_cupy_array(np.zeros(2))
        assert backend._cupy is cupy           # found without any gpudl.device() call first
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    if "No module named 'cupy'" in run.stderr:
        pytest.skip("CuPy is not installed")
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
