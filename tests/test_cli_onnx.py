"""`gpudl export RUN_DIR [OUT.onnx]` and `gpudl predict MODEL.onnx --input X.npy` (issue 13's command line)."""
import os
import subprocess
import sys

import numpy
import pytest
from bad_files import cli_refuses

from gpudl.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _train(tmp_path, *argv):
    run = str(tmp_path / argv[0])
    assert main(["train", *argv, "--device", "cpu", "--quiet", "--out", run]) == 0
    return run


def _prediction_lines(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def _runtime(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("argv, sample", [
    (("xor", "--epochs", "50"), (2,)),
    (("perceptron",), (2,)),
    (("lenet5", "--epochs", "1", "--batch-size", "64"), (1, 28, 28)),
])
def test_export_a_run_and_predict_with_the_onnx_file_as_with_the_run(tmp_path, capsys, argv, sample):
    run = _train(tmp_path, *argv)
    capsys.readouterr()
    assert main(["export", run]) == 0
    path = os.path.join(run, "model.onnx")
    assert f"exported to {path}" in capsys.readouterr().out
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and tuple(d.dim_value for d in dims[1:]) == sample
    x = numpy.random.default_rng(0).random((5, *sample)).astype(numpy.float32)
    numpy.save(tmp_path / "x.npy", x)
    if argv[0] == "perceptron":     # predict of a perceptron run prints classes without scores
        from gpudl.cli.registry import MODELS
        from gpudl.readers import read_report
        config = read_report(os.path.join(run, "report.json"))["config"]
        trained = MODELS["perceptron"].load_trained(os.path.join(run, "model.npz"), config, "cpu")
        numpy.testing.assert_allclose(_runtime(path, x.astype(numpy.float64))[:, 0],
                                      trained.forward(x.astype(numpy.float64))[:, 0])
        return
    from_run = _prediction_lines(capsys, ["predict", run, "--input", str(tmp_path / "x.npy")])
    from_onnx = _prediction_lines(capsys, ["predict", path, "--input", str(tmp_path / "x.npy")])
    assert from_onnx == from_run and len(from_run) == 5


def test_export_a_charlm_run_for_sequences_of_any_length(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. " * 30, encoding="utf-8")
    run = _train(tmp_path, "charlm", "--text", str(text), "--epochs", "1", "--seq-len", "8", "--batch-size", "4",
                 "--hidden", "8", "--sample-length", "5")
    out = str(tmp_path / "lm.onnx")
    assert main(["export", run, out]) == 0
    from gpudl.models import load_charlm
    model, vocab = load_charlm(run)
    x = numpy.eye(len(vocab), dtype=numpy.float32)[numpy.random.default_rng(0).integers(0, len(vocab), (2, 7))]
    model.reset_state()
    numpy.testing.assert_allclose(_runtime(out, x), model.forward(x), rtol=1e-4, atol=1e-5)


def test_export_refuses_what_it_cannot_export(tmp_path, capsys):
    run = _train(tmp_path, "xor", "--epochs", "3")
    cli_refuses(["export", str(tmp_path / "none")], capsys, "none: no such folder", unchanged=str(tmp_path))
    cli_refuses(["export", run, str(tmp_path / "missing" / "m.onnx")], capsys, "its folder does not exist",
                unchanged=run)
    cli_refuses(["export", run, str(tmp_path)], capsys, "is a folder", unchanged=run)
    report = os.path.join(run, "report.json")
    with open(report) as f:
        text = f.read()
    with open(report, "w") as f:
        f.write(text.replace('"status": "completed"', '"status": "stopped"'))
    cli_refuses(["export", run], capsys, "holds an unfinished run", unchanged=run)


def test_predict_with_an_onnx_file_refuses_bad_input(tmp_path, capsys):
    run = _train(tmp_path, "xor", "--epochs", "3")
    assert main(["export", run]) == 0
    path = os.path.join(run, "model.onnx")
    cli_refuses(["predict", path], capsys, "needs --input", unchanged=run)
    numpy.save(tmp_path / "x.npy", numpy.zeros((2, 2), numpy.float32))
    cli_refuses(["predict", str(tmp_path / "none.onnx"), "--input", str(tmp_path / "x.npy")], capsys,
                "no such ONNX file", unchanged=str(tmp_path))
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01not a model" * 10)
    cli_refuses(["predict", str(tmp_path / "junk.onnx"), "--input", str(tmp_path / "x.npy")], capsys,
                "is not a valid ONNX model", unchanged=str(tmp_path))
    numpy.save(tmp_path / "three.npy", numpy.zeros((2, 3), numpy.float32))
    cli_refuses(["predict", path, "--input", str(tmp_path / "three.npy")], capsys,
                r"Dense\(2, 4\): expected input of shape \(N, 2\)", unchanged=str(tmp_path))


BLOCK_ONNX = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('onnx', 'onnxruntime'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
from gpudl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_the_onnx_extra_both_commands_name_it_in_one_line(tmp_path):
    run = _train(tmp_path, "xor", "--epochs", "3")
    numpy.save(tmp_path / "x.npy", numpy.zeros((2, 2), numpy.float32))
    (tmp_path / "m.onnx").write_bytes(b"whatever")
    for argv in (["export", run], ["predict", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "x.npy")]):
        done = subprocess.run([sys.executable, "-c", BLOCK_ONNX, *argv], capture_output=True, text=True, cwd=ROOT,
                              check=False)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0].startswith("gpudl: error: ") and 'pip install "gpudl[onnx]"' in lines[0]
    assert not os.path.exists(os.path.join(run, "model.onnx"))
