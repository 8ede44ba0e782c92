"""The gpudl command on bad input: each case ends with one line on stderr ("gpudl: error: ..."), a non-zero exit
status, no traceback, no numpy warning, and nothing changed on disk."""
import json
import os
import shutil
import subprocess
import sys

import numpy
import pytest
from bad_files import cli_refuses, npy_bytes, npy_header

from gpudl import gpu_available, nn, optim
from gpudl.cli import main
from gpudl.readers import read_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def xor_run(tmp_path_factory):
    run = str(tmp_path_factory.mktemp("runs") / "xor")
    assert main(["train", "xor", "--device", "cpu", "--quiet", "--epochs", "5", "--out", run]) == 0
    return run


# ------------------------------------------------------------------------------------------------ predict --input

def _write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


BAD_INPUTS = {
    "archive.npz": (lambda p: numpy.savez(p, x=numpy.zeros((2, 2))), r"is a zip archive \(an \.npz\?\)"),
    "text.npy": (lambda p: _write(p, "0 1\n1 0\n" * 10), "does not start with the .npy magic"),
    "empty.npy": (lambda p: numpy.save(p, numpy.zeros((0, 2), numpy.float32)), "holds an empty array"),
    "strings.npy": (lambda p: numpy.save(p, numpy.array(["a", "b"])), "holds <U1 values; expected numbers"),
    "objects.npy": (lambda p: _write(p, npy_bytes(numpy.array([{}, 1], dtype=object))),
                    "pickled Python objects"),
    "nan.npy": (lambda p: numpy.save(p, numpy.array([[numpy.nan, 0]], numpy.float32)), "NaN or infinite"),
    "bools.npy": (lambda p: numpy.save(p, numpy.ones((2, 2), bool)), "holds bool values"),
    "complex.npy": (lambda p: numpy.save(p, numpy.ones((2, 2), complex)), "holds complex128 values"),
    "truncated.npy": (lambda p: _write(p, npy_bytes(numpy.ones((4, 2)))[:-8]),
                      r"header claims shape \(4, 2\)"),
    "huge.npy": (lambda p: _write(p, npy_header("<f8", (1 << 40,)) + bytes(16)), "header claims shape"),
    "zero-bytes.npy": (lambda p: _write(p, b""), "too short to be a .npy array"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_predict_refuses_bad_input_files(xor_run, tmp_path, capsys, name):
    make, match = BAD_INPUTS[name]
    path = str(tmp_path / name)
    make(path)
    line = cli_refuses(["predict", xor_run, "--input", path], capsys, "--input", match, unchanged=str(tmp_path))
    assert path in line


@pytest.mark.parametrize("kind, match", [("missing", "no such file"), ("folder", "is a folder"),
                                         ("fifo", "FIFO")])
def test_predict_refuses_input_paths_that_are_no_regular_file(xor_run, tmp_path, capsys, kind, match):
    path = str(tmp_path / "input.npy")
    if kind == "folder":
        os.mkdir(path)
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    cli_refuses(["predict", xor_run, "--input", path], capsys, match, unchanged=str(tmp_path))


def test_predict_refuses_points_of_the_wrong_rank(xor_run, tmp_path, capsys):
    numpy.save(tmp_path / "x.npy", numpy.zeros(3, numpy.float32))
    cli_refuses(["predict", xor_run, "--input", str(tmp_path / "x.npy")], capsys, r"expected points of shape")


# -------------------------------------------------------------------------------------------- the run's report.json

BAD_REPORTS = {
    "empty object": ("{}", 'has no "config" object'),
    "a list": ("[1, 2]", "expected a JSON object, found a list"),
    "not json": ("config: yes", "is not valid JSON"),
    "NaN": ('{"config": {"model": "xor", "model_args": {}}, "x": NaN}', "NaN is not a JSON number"),
    "no model": ('{"config": {"model_args": {}}}', "names no model"),
    "no model_args": ('{"config": {"model": "xor"}}', 'no "model_args" object'),
    "unknown model": ('{"config": {"model": "resnet", "model_args": {}}}', "how to rebuild a 'resnet' model"),
    "wrong model_args": ('{"config": {"model": "xor", "model_args": {"layers": 3}}}',
                         "model_args do not describe a xor model"),
    "empty file": ("", "is empty"),
    "repeated key": ('{"config": {}, "config": {}}', "appears twice"),
}


@pytest.mark.parametrize("case", sorted(BAD_REPORTS))
def test_predict_and_export_refuse_bad_reports(xor_run, tmp_path, capsys, case):
    text, match = BAD_REPORTS[case]
    run = tmp_path / "run"
    shutil.copytree(xor_run, run)
    (run / "report.json").write_text(text)
    cli_refuses(["predict", str(run)], capsys, match, unchanged=str(run))
    if case != "wrong model_args":      # export needs onnx to get that far
        cli_refuses(["export", str(run)], capsys, match, unchanged=str(run))


def test_charlm_refuses_a_text_of_nul_bytes(tmp_path, capsys):
    text = tmp_path / "nul.txt"
    text.write_bytes(b"ab" + bytes(200))
    cli_refuses(["train", "charlm", "--text", str(text), "--device", "cpu", "--out", str(tmp_path / "run")], capsys,
                "nul.txt: holds a NUL byte at offset 2", unchanged=str(tmp_path))


# ------------------------------------------------------------------------------------------------ GPUDL_DEVICE

@pytest.mark.parametrize("argv", [
    ["train", "xor", "--epochs", "2"],
    ["predict", "RUN"],
    ["bench", "--quick", "--filter", "nothing"],
    ["experiment", "gradients", "--steps", "2"],
])
def test_gpudl_device_bogus_is_refused_naming_the_variable(xor_run, tmp_path, capsys, monkeypatch, argv):
    monkeypatch.setenv("GPUDL_DEVICE", "bogus")
    argv = [xor_run if a == "RUN" else a for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "run")]
    cli_refuses(argv, capsys, "GPUDL_DEVICE=bogus", "unknown device spec 'bogus'", unchanged=str(tmp_path))


@pytest.mark.parametrize("argv", [["train", "xor", "--epochs", "2"], ["predict", "RUN"],
                                  ["experiment", "long-term", "--lengths", "3"]])
def test_gpudl_device_cuda_without_a_gpu_fails_in_one_line(xor_run, tmp_path, capsys, monkeypatch, argv):
    if gpu_available():
        pytest.skip("a GPU is usable here")
    monkeypatch.setenv("GPUDL_DEVICE", "cuda")
    argv = [xor_run if a == "RUN" else a for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "run")]
    cli_refuses(argv, capsys, "GPUDL_DEVICE=cuda: device 'cuda' is not usable", unchanged=str(tmp_path))


def test_gpudl_device_cpu_is_what_the_report_records(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GPUDL_DEVICE", "cpu")
    run = str(tmp_path / "run")
    assert main(["train", "xor", "--epochs", "2", "--quiet", "--out", run]) == 0
    assert read_json(os.path.join(run, "report.json"))["config"]["device"] == "cpu"
    assert "no usable GPU" not in capsys.readouterr().err


def test_an_explicit_device_wins_over_gpudl_device(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GPUDL_DEVICE", "cuda")
    assert main(["train", "xor", "--epochs", "2", "--quiet", "--device", "cpu", "--out", str(tmp_path / "r")]) == 0


# ------------------------------------------------------------------------------------------------------- gpudl info

def test_info_prints_the_compilers_real_error_line_for_a_broken_kernel_source():
    from gpudl.cli import kernel_report
    from gpudl.cli.info import kernel_sources
    if not gpu_available() and shutil.which("nvcc") is None:
        pytest.skip("neither a GPU nor nvcc to compile with")
    sources = kernel_sources()
    name = min(sources)
    broken = sources[name] + "\nstatic int broken_here = not_declared_anywhere;\n"
    bad, good = kernel_report(gpu_available(), {name: broken, "real.cu": sources[name]})
    assert bad.startswith(f"kernels: {name} FAILS to compile: ") and "not_declared_anywhere" in bad
    assert "error" in bad and "In file included from" not in bad and "/tmp" not in bad
    assert good.startswith("kernels: real.cu compiles")


# --------------------------------------------------------------------------------------- diverging runs, numpy noise

DIVERGE = """
import numpy
from gpudl import nn, optim
from gpudl.data import DataLoader
from gpudl.train import fit
X = numpy.random.default_rng(0).standard_normal((32, 4)).astype(numpy.float32)
Y = X @ numpy.ones((4, 1), numpy.float32)
model = nn.Sequential(nn.Dense(4, 16), nn.Dense(16, 1))
fit(model, nn.MSELoss(check=False), optim.SGD(model.parameters(), lr=1e6), DataLoader(X, Y, 8), epochs=20,
    out={out!r}, progress=False)
"""


def test_a_diverging_fit_stops_with_gpudl_s_message_and_no_numpy_warning(tmp_path):
    out = str(tmp_path / "run")
    run = subprocess.run([sys.executable, "-c", DIVERGE.format(out=out)], capture_output=True, text=True, cwd=ROOT,
                         check=False)
    assert run.returncode != 0
    assert "RuntimeWarning" not in run.stderr and "overflow encountered" not in run.stderr.split("TrainingDiverged")[0]
    assert "TrainingDiverged" in run.stderr
    with open(os.path.join(out, "report.json")) as f:
        text = f.read()
    report = json.loads(text)
    assert report["status"] == "failed" and "Infinity" not in text and "NaN" not in text
    assert report["reason"].startswith("diverged: ") and "try a smaller learning rate" in report["reason"]


class _HugeOnEval(nn.MSELoss):
    """The training loss as computed; on the 4-row test batches, `huge` instead."""

    def __init__(self, huge):
        super().__init__(check=False)
        self.huge = huge

    def forward(self, pred, target):
        value = super().forward(pred, target)
        return value if pred.shape[0] == 8 else numpy.asarray(self.huge, numpy.float32)


@pytest.mark.parametrize("huge, shown", [(numpy.inf, "inf"), (1e36, r"9\.99\d*e\+35")])     # 1e36 in float32
def test_an_infinite_or_enormous_test_loss_stops_the_run(tmp_path, huge, shown):
    from gpudl.data import DataLoader
    from gpudl.train import TrainingDiverged, fit
    X = numpy.ones((8, 2), numpy.float32)
    model = nn.Sequential(nn.Dense(2, 1))
    with pytest.raises(TrainingDiverged, match=f"the test loss became {shown} at epoch 1"):
        fit(model, _HugeOnEval(huge), optim.SGD(model.parameters(), 0.1), DataLoader(X, X[:, :1], 8),
            DataLoader(X[:4], X[:4, :1], 4), epochs=2, out=str(tmp_path), progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "failed" and not (tmp_path / "model.npz").exists()
