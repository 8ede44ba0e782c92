"""The kernel loader without a GPU: compile-once caching, launch geometry, checks before a launch, recording calls
onto a tape, nvcc builds of every .cu file, and the sources shipped inside the wheel."""
import glob
import os
import shutil
import subprocess
import sys
import types
import zipfile

import numpy
import pytest

from gpudl import kernels
from gpudl.geometry import Window
from gpudl.kernels import loader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(loader.KERNEL_DIR, "*.cu")))


def test_every_concern_has_its_source():
    assert SOURCES == ["elementwise.cu", "im2col.cu", "lstm.cu", "optim.cu", "pooling.cu", "reduce.cu", "softmax.cu"]


# Kernels that work in double whatever real_t is, on purpose: Adam's bias corrections and the global norm of gradient
# clipping, summed as the NumPy path sums them (a double function they call may sit in a helper of the PTX).
DOUBLE_ANYWAY = {"optim.cu": {"adam_scalars"}, "reduce.cu": {"sum_squares_table", "norm_scale", "scale_table"}}


def _f64_outside(text, allowed):
    """Does the PTX use .f64 outside the entry points `allowed` (helper functions count only when none is)?"""
    chunks = text.split(".visible .entry ")
    for chunk in chunks[1:]:
        name = chunk.split("(", 1)[0].strip()
        if name not in allowed and ".f64" in chunk.split(".func", 1)[0]:
            return True
    return ".f64" in chunks[0] or (not allowed and any(".f64" in c for c in chunks[1:]))


class FakeCuda:
    """Stands in for cupy: a RawModule that counts how often it is built and asked for a function."""

    def __init__(self):
        self.built, self.fetched, self.device = [], [], 0
        fake = self

        class RawModule:
            def __init__(self, code, options=()):
                fake.built.append((code, options))

            def get_function(self, name):
                fake.fetched.append(name)
                return ("kernel", name)

        self.RawModule = RawModule
        self.cuda = types.SimpleNamespace(
            runtime=types.SimpleNamespace(getDevice=lambda: fake.device),
            Device=lambda dev: types.SimpleNamespace(attributes={"MultiProcessorCount": 132}))


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(loader, "_modules", {})
    monkeypatch.setattr(loader, "_kernels", {})
    monkeypatch.setattr(loader, "_max_blocks", {})
    return FakeCuda()


def test_module_compiled_once_per_file_dtype_and_device(fake):
    f32, f64 = numpy.float32, numpy.float64
    first = loader.get_kernel(fake, "im2col.cu", "im2col", f32)
    assert loader.get_kernel(fake, "im2col.cu", "im2col", f32) is first
    assert len(fake.built) == 1 and fake.fetched == ["im2col"]
    code, options = fake.built[0]
    assert code == kernels.read_source("im2col.cu") and options == ("-Dreal_t=float",)

    loader.get_kernel(fake, "im2col.cu", "col2im", f32)             # same module, one more function
    assert len(fake.built) == 1 and fake.fetched == ["im2col", "col2im"]
    loader.get_kernel(fake, "im2col.cu", "im2col", f64)             # a second dtype: a second module
    assert len(fake.built) == 2 and fake.built[1][1] == ("-Dreal_t=double",)
    loader.get_kernel(fake, "pooling.cu", "max_pool_forward", f32)  # a second file
    fake.device = 1
    loader.get_kernel(fake, "im2col.cu", "im2col", f32)             # a second device
    assert len(fake.built) == 4
    for device in (0, 1, 0, 1):                                      # and nothing is rebuilt after that
        fake.device = device
        loader.get_kernel(fake, "im2col.cu", "im2col", f32)
        loader.get_kernel(fake, "im2col.cu", "im2col", f64 if device == 0 else f32)
    assert len(fake.built) == 4 and len(fake.fetched) == 5


def test_grid_is_capped_by_multiprocessors(fake):
    assert loader.max_blocks(fake) == 132 * loader.BLOCKS_PER_SM
    assert loader.grid_size(1, 256, 4224) == 1
    assert loader.grid_size(256, 256, 4224) == 1
    assert loader.grid_size(257, 256, 4224) == 2
    assert loader.grid_size(10 ** 9, 256, 4224) == 4224
    assert loader.grid_size(0, 256, 4224) == 1


def test_launch_passes_grid_block_and_arguments(monkeypatch):
    calls = []
    monkeypatch.setattr(loader, "get_kernel",
                        lambda xp, file, name, dtype: lambda grid, block, args: calls.append(
                            (file, name, numpy.dtype(dtype), grid, block, args)))
    monkeypatch.setattr(loader, "max_blocks", lambda xp: 5)
    x = numpy.zeros((3, 4), numpy.float64)
    loader.launch("lstm.cu", "lstm_step_forward", 300 * 256, (x, numpy.int64(3)))
    loader.launch("lstm.cu", "lstm_step_forward", 2 * 256, (x, numpy.int64(3)))
    loader.launch("lstm.cu", "lstm_step_forward", 0, (x, numpy.int64(3)))      # nothing to do: no launch
    assert [c[3] for c in calls] == [(5,), (2,)]
    assert calls[0][:3] == ("lstm.cu", "lstm_step_forward", numpy.dtype(numpy.float64))
    assert calls[0][4] == (loader.BLOCK,) and calls[0][5][0] is x


@pytest.mark.parametrize("args, error, words", [
    ((numpy.zeros(4, numpy.float32), numpy.zeros(4, numpy.float64)), TypeError, "share one dtype"),
    ((numpy.zeros(4, numpy.float16),), TypeError, "float32 or float64"),
    ((numpy.zeros(4, numpy.float32), numpy.zeros(4, numpy.int16)), TypeError, "int64"),
    ((numpy.zeros((4, 4), numpy.float32)[:, ::2],), ValueError, "not C-contiguous"),
    ((numpy.zeros(4, numpy.float32), 3), TypeError, "numpy scalar"),
    ((numpy.zeros(4, numpy.int64),), TypeError, "no float32/float64 array"),
])
def test_launch_refuses_bad_arguments(monkeypatch, args, error, words):
    monkeypatch.setattr(loader, "get_kernel", lambda *a: pytest.fail("launched despite bad arguments"))
    with pytest.raises(error, match=words):
        loader.launch("im2col.cu", "im2col", 4, args)


def test_ops_refuse_bad_shapes_and_dtypes(monkeypatch):
    monkeypatch.setattr(loader, "get_kernel", lambda *a: pytest.fail("launched despite bad input"))
    x = numpy.zeros((1, 1, 4, 4), numpy.float32)
    unroll, pool = Window.of(x.shape, 2, 1, "valid"), Window.of(x.shape, 2, 2, "valid")
    with pytest.raises(TypeError, match="im2col: x: expected a float32 or float64"):
        kernels.im2col(x.astype(numpy.int32), unroll)
    with pytest.raises(ValueError, match="rank 4"):
        kernels.im2col(x[0], unroll)
    with pytest.raises(ValueError, match="does not fit a window over 4x4 images"):
        kernels.im2col(numpy.zeros((1, 1, 5, 4), numpy.float32), unroll)
    with pytest.raises(ValueError, match="col2im: col of shape .* does not fit"):
        kernels.col2im(numpy.zeros((1, 1, 2, 2, 2, 2), numpy.float32), unroll)
    with pytest.raises(ValueError, match="dy has shape"):
        kernels.avg_pool2d_backward(numpy.zeros((1, 1, 3, 3), numpy.float32), x.shape, pool)
    with pytest.raises(ValueError, match="argmax has shape"):
        kernels.max_pool2d_backward(numpy.zeros((1, 1, 2, 2), numpy.float32), numpy.zeros((1, 1, 2), numpy.int8),
                                    x.shape, pool)
    with pytest.raises(TypeError, match="argmax must be int8 for 2x2 windows"):
        kernels.max_pool2d_backward(numpy.zeros((1, 1, 2, 2), numpy.float32),
                                    numpy.zeros((1, 1, 2, 2), numpy.int64), x.shape, pool)
    a = numpy.zeros((2, 8), numpy.float32)
    with pytest.raises(ValueError, match=r"\(N, 4H\)"):
        kernels.lstm_step(numpy.zeros((2, 6), numpy.float32), numpy.zeros((2, 1), numpy.float32))
    with pytest.raises(TypeError, match="c_prev: expected a float32 array"):
        kernels.lstm_step(a, numpy.zeros((2, 2), numpy.float64))
    with pytest.raises(ValueError, match=r"c_prev: expected shape \(2, 2\)"):
        kernels.lstm_step(a, numpy.zeros((3, 2), numpy.float32))
    with pytest.raises(ValueError, match=r"dh: expected shape"):
        kernels.lstm_step_backward(numpy.zeros((2, 3), numpy.float32), a[:, :2], a, a[:, :2], a[:, :2])


def test_a_recording_holds_its_calls_and_the_memory_it_was_given_to_keep():
    calls = []
    assert not loader.is_recording()
    loader.hold(numpy.zeros(3))                     # outside a recording: nothing to hold it
    with loader.recording() as tape:
        assert loader.is_recording()
        loader.run(calls.append, "first")
        kept = numpy.arange(3.0)
        loader.hold(kept)
        with pytest.raises(RuntimeError, match="already being recorded"), loader.recording():
            pass
    assert not loader.is_recording() and calls == []
    assert list(tape) == [(calls.append, ("first",))] and tape.memory == [kept]
    loader.replay(tape)
    loader.replay(tape)
    assert calls == ["first", "first"]
    with pytest.raises(ValueError), loader.recording():
        raise ValueError("a failing step")
    assert not loader.is_recording()


def test_sources_reach_cupy_self_contained():
    """The shared header is spliced into every source CuPy compiles: no #include is left for NVRTC to resolve."""
    header = kernels.read_source(kernels.COMMON_HEADER)
    for source in SOURCES:
        text = kernels.read_source(source)
        assert '#include "' not in text and header in text, source


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on the PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", SOURCES)
def test_every_source_compiles_with_nvcc(tmp_path, source, arch):
    for real in ("float", "double"):
        ptx = tmp_path / f"{source}.{real}.ptx"
        cmd = ["nvcc", "--ptx", f"-arch={arch}", f"-Dreal_t={real}", "-Werror", "all-warnings", "-x", "cu",
               os.path.join(loader.KERNEL_DIR, source), "-o", str(ptx)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        text = ptx.read_text()
        entries = [line for line in text.splitlines() if ".entry" in line]
        assert entries, f"no kernel entry points in {source}"
        if real == "double":
            assert ".f64" in text, f"{source} built for double should use .f64"
        else:
            assert not _f64_outside(text, DOUBLE_ANYWAY.get(source, set())), f"{source} built for float uses .f64"


def test_source_refuses_to_build_without_a_dtype(tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on the PATH")
    done = subprocess.run(["nvcc", "--ptx", "-arch=sm_80", "-x", "cu", os.path.join(loader.KERNEL_DIR, "lstm.cu"),
                           "-o", str(tmp_path / "x.ptx")], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "-Dreal_t=float" in done.stderr


def test_wheel_ships_the_kernel_sources(tmp_path):
    """A non-editable build maps the top-level kernels/ folder into the package gpudl.kernels: the wheel holds its
    .cu files, their shared header and the loader modules, and every package of the tree; the installed package
    finds the sources and splices the header in."""
    pytest.importorskip("setuptools", reason="building the wheel offline (--no-build-isolation) needs setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for folder in ("gpudl", "kernels"):
        shutil.copytree(os.path.join(ROOT, folder), src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    done = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                                 str(src)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    (wheel,) = glob.glob(str(tmp_path / "dist" / "gpudl-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    shipped = sorted(n for n in names if n.startswith("gpudl/kernels/"))
    kernel_files = sorted(f for f in os.listdir(os.path.join(ROOT, "kernels")) if f.endswith((".cu", ".cuh", ".py")))
    assert shipped == [f"gpudl/kernels/{name}" for name in kernel_files]
    assert {"loader.py", "__init__.py", kernels.COMMON_HEADER} <= set(kernel_files)
    packages = sorted(os.path.relpath(os.path.join(folder, "__init__.py"), ROOT).replace(os.sep, "/")
                      for folder, _, files in os.walk(os.path.join(ROOT, "gpudl")) if "__init__.py" in files)
    missing = [p for p in packages if p not in names]
    assert not missing, f"packages missing from the wheel (list them in pyproject.toml): {missing}"

    target = tmp_path / "site"
    done = subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(target), wheel],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    probe = ("import gpudl.kernels as k, os; print(k.KERNEL_DIR); "
             "print(all(len(k.read_source(f)) > 500 and 'common.cuh' not in k.read_source(f) "
             "for f in ('im2col.cu', 'pooling.cu', 'lstm.cu')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=str(tmp_path),
                          env={**os.environ, "PYTHONPATH": str(target)}, check=False)
    assert done.returncode == 0, done.stderr
    kernel_dir, found = done.stdout.split()
    assert os.path.realpath(kernel_dir).startswith(os.path.realpath(str(target))) and found == "True"
