"""TensorBoard scalars (gpudl train --tensorboard, fit(tensorboard=...)): the events file read back with
TensorBoard's own event reader holds report.json's values, once per epoch, across a resume too."""
import os
import sys

import numpy
import pytest
from bad_files import cli_refuses

from gpudl.cli import main
from gpudl.readers import read_json

XOR = ["train", "xor", "--device", "cpu", "--quiet"]


def _scalars(folder):
    """{tag: [(step, value)]} of every events file in `folder`, through tensorboard's EventAccumulator."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(folder), size_guidance={accumulator.SCALARS: 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _events_files(folder):
    return [name for name in os.listdir(folder) if name.startswith("events.out.tfevents.")]


def _assert_equal_to_the_report(scalars, history):
    for tag, key in (("loss/train", "train_loss"), ("loss/test", "test_loss"), ("accuracy/train", "train_accuracy"),
                     ("accuracy/test", "test_accuracy"), ("learning_rate", "lr"),
                     ("samples_per_second", "samples_per_s")):
        assert [step for step, _ in scalars[tag]] == [r["epoch"] for r in history], tag
        for (_, value), record in zip(scalars[tag], history):
            assert value == numpy.float32(record[key]), (tag, record["epoch"])     # TensorBoard keeps float32


def test_train_tensorboard_writes_the_report_s_values_and_a_resume_continues_them_once(tmp_path):
    pytest.importorskip("tensorboardX")
    run = tmp_path / "run"
    assert main(XOR + ["--epochs", "4", "--tensorboard", "--out", str(run)]) == 0
    assert len(_events_files(run)) == 1
    _assert_equal_to_the_report(_scalars(run), read_json(run / "report.json")["history"])
    assert main(XOR + ["--epochs", "7", "--tensorboard", "--resume", "--out", str(run)]) == 0
    history = read_json(run / "report.json")["history"]
    assert [r["epoch"] for r in history] == list(range(1, 8)) and len(_events_files(run)) == 1
    _assert_equal_to_the_report(_scalars(run), history)


def test_fit_tensorboard_dir_writes_there(tmp_path):
    pytest.importorskip("tensorboardX")
    from gpudl import nn, optim
    from gpudl.data import DataLoader
    from gpudl.train import fit
    X = numpy.eye(4, dtype=numpy.float32)
    model = nn.Sequential(nn.Dense(4, 2, rng=numpy.random.default_rng(0)))
    report = fit(model, nn.SoftmaxCrossEntropy(), optim.SGD(model.parameters(), 0.1),
                 DataLoader(X, numpy.arange(4) % 2, 2, seed=0), epochs=3, progress=False,
                 tensorboard=str(tmp_path / "logs"))
    scalars = _scalars(tmp_path / "logs")
    assert [v for _, v in scalars["loss/train"]] == [numpy.float32(r["train_loss"]) for r in report["history"]]
    assert "loss/test" not in scalars                           # no held-out data: no test scalars
    with pytest.raises(ValueError, match="tensorboard=True writes into the output folder"):
        fit(model, nn.SoftmaxCrossEntropy(), optim.SGD(model.parameters(), 0.1), DataLoader(X, X[:, 0], 2),
            tensorboard=True)


def test_tensorboard_without_tensorboardx_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    cli_refuses(XOR + ["--tensorboard", "--out", str(tmp_path / "run")], capsys,
                r'--tensorboard: TensorBoard logging needs tensorboardX: pip install "gpudl\[tensorboard\]"')
    assert not (tmp_path / "run").exists()
    cli_refuses(["train", "perceptron", "--tensorboard", "--out", str(tmp_path / "p")], capsys,
                "--tensorboard logs the epochs of models trained by gradient descent")
