"""Every way a run ends leaves a folder the next command understands: its state (running, completed, stopped,
failed) with the reason, signals that stop after the current step, --force that replaces a run only once the new one
has started, --resume that rebuilds the model from its checkpoint, and what each command says, exits with and leaves
on disk."""
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy
import pytest
from bad_files import cli_refuses, snapshot

from gpudl import nn, optim
from gpudl.cli import main
from gpudl.data import DataLoader, random_shift
from gpudl.readers import read_json
from gpudl.serialization import load_arrays
from gpudl.train import RunStopped, StopSignals, fit
from gpudl.train.folder import LOCK, STASH

XOR = ["train", "xor", "--device", "cpu", "--quiet", "--epochs", "6"]
GPUDL = [sys.executable, "-m", "gpudl"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCE = "the cat sat on the mat. " * 60
CHARLM = ["train", "charlm", "--device", "cpu", "--quiet", "--seq-len", "10", "--batch-size", "4", "--hidden", "8",
          "--lr", "0.02", "--seed", "3", "--sample-length", "20"]


def _report(run):
    return read_json(os.path.join(run, "report.json"))


def _same_arrays(a, b):
    a, b = load_arrays(a), load_arrays(b)
    assert a.keys() == b.keys()
    for key in a:
        numpy.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _signal_at_call(monkeypatch, cls, n, signum=signal.SIGTERM):
    """Make the n-th call of cls.step (an optimizer's update) send `signum` to this process, as a scheduler would."""
    real, calls = cls.step, []

    def step(self):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signum)
        return real(self)

    monkeypatch.setattr(cls, "step", step)
    return calls


@pytest.fixture
def nan_loss(monkeypatch):
    """MSELoss turns NaN: xor diverges at its first step."""
    real = nn.MSELoss.forward
    monkeypatch.setattr(nn.MSELoss, "forward", lambda self, pred, y: real(self, pred, y) * numpy.nan)


# --------------------------------------------------------------------------------------------- signals, in process

def test_sigterm_inside_an_epoch_finishes_the_step_checkpoints_that_point_and_resumes_bit_for_bit(
        tmp_path, capsys, monkeypatch):
    """charlm: 32 steps an epoch and an LSTM that carries its state from batch to batch. SIGTERM at step 13 of
    epoch 2: exit 143, the state "stopped" with its reason, report, curves and a checkpoint of that very point;
    --resume ends where the uninterrupted run does, bit for bit."""
    text = tmp_path / "sentence.txt"
    text.write_text(SENTENCE, encoding="utf-8")
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    assert main(CHARLM + ["--text", str(text), "--epochs", "3", "--out", whole]) == 0
    calls = _signal_at_call(monkeypatch, optim.Adam, 32 + 13)
    assert main(CHARLM + ["--text", str(text), "--epochs", "3", "--out", cut]) == 143
    assert len(calls) == 45                                       # the step in which it arrived, and no other
    err = capsys.readouterr().err
    assert "gpudl: stopped by SIGTERM at epoch 2, step 13 of 32; the checkpoint holds that point: continue with " \
           "--resume" in err
    report = _report(cut)
    assert report["status"] == "stopped" and report["reason"].startswith("stopped by SIGTERM at epoch 2, step 13")
    assert (report["last_checkpoint_epoch"], report["last_checkpoint_step"]) == (1, 13)
    assert sorted(os.listdir(cut)) == ["checkpoint.npz", "curves.png", "report.json"]     # no lock, no model
    saved = load_arrays(os.path.join(cut, "checkpoint.npz"))
    assert int(saved["epoch"]) == 1 and json.loads(str(saved["position"]))["steps"] == 13
    assert {"carried/0.0", "carried/0.1"} <= set(saved)          # the LSTM's h and c at that step
    monkeypatch.undo()
    assert main(CHARLM + ["--text", str(text), "--out", cut, "--resume"]) == 0   # --epochs 3: the checkpoint's
    _same_arrays(os.path.join(whole, "model.npz"), os.path.join(cut, "model.npz"))
    assert [r["train_loss"] for r in _report(cut)["history"]] == [r["train_loss"] for r in _report(whole)["history"]]


def test_a_stop_inside_an_epoch_of_a_shuffled_augmented_loader_resumes_bit_for_bit(tmp_path, monkeypatch):
    """The generator state at the epoch's start is what the checkpoint holds: the resumed run draws the same
    permutation and shifts, skips the steps done, and trains on as the uninterrupted run did."""
    def setup():
        rng = numpy.random.default_rng(0)
        X = rng.random((64, 1, 8, 8), dtype=numpy.float32)
        y = (X[:, 0, :4].sum(axis=(1, 2)) > X[:, 0, 4:].sum(axis=(1, 2))).astype(numpy.int64)
        model = nn.Sequential(nn.Conv2D(1, 3, 3, padding="same", rng=numpy.random.default_rng(1)), nn.ReLU(),
                              nn.Flatten(), nn.Dense(192, 2, rng=numpy.random.default_rng(2)))
        return (model, nn.SoftmaxCrossEntropy(check=False), optim.Adam(model.parameters(), 0.01),
                DataLoader(X, y, 8, seed=4, transform=random_shift(1)))

    whole = setup()
    fit(*whole, epochs=3, progress=False)
    _signal_at_call(monkeypatch, optim.Adam, 8 + 5, signal.SIGINT)
    with pytest.raises(RunStopped, match=r"stopped by SIGINT at epoch 2, step 5 of 8") as info:
        fit(*setup(), epochs=3, out=str(tmp_path), progress=False)
    assert info.value.exit_status == 130
    monkeypatch.undo()
    resumed = setup()
    report = fit(*resumed, epochs=3, out=str(tmp_path), resume=True, progress=False)
    assert report["status"] == "completed" and [r["epoch"] for r in report["history"]] == [1, 2, 3]
    for a, b in zip(whole[0].parameters(), resumed[0].parameters()):
        numpy.testing.assert_array_equal(a.data, b.data)


def test_a_signal_during_the_last_epoch_leaves_a_completed_run(tmp_path, capsys, monkeypatch):
    """xor's last epoch is one step: a SIGINT in it arrives when nothing is left to stop; the run completes, every
    file is written, the command says so and exits 0, and --resume has nothing to train (no "stopped" run)."""
    run = str(tmp_path / "run")
    _signal_at_call(monkeypatch, optim.SGD, 6, signal.SIGINT)
    assert main(XOR + ["--out", run]) == 0
    err = capsys.readouterr().err
    assert "SIGINT arrived after the run completed; its files are complete" in err
    assert _report(run)["status"] == "completed"
    assert sorted(os.listdir(run)) == ["checkpoint.npz", "curves.png", "model.npz", "report.json"]


def test_a_signal_after_fit_returned_leaves_the_run_completed(tmp_path, capsys, monkeypatch):
    from gpudl.cli import xor
    real = xor.to_numpy

    def then_sigterm(array):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(array)

    monkeypatch.setattr(xor, "to_numpy", then_sigterm)
    run = str(tmp_path / "run")
    assert main(XOR + ["--out", run]) == 0
    assert "SIGTERM arrived after the run completed" in capsys.readouterr().err
    assert _report(run)["status"] == "completed" and os.path.exists(os.path.join(run, "model.npz"))


def test_fit_of_its_own_hands_a_late_signal_back_after_the_run_completed(tmp_path, monkeypatch):
    """Outside the command, fit holds the signals itself; one that arrives in the last step is delivered once the run's
    files are written (here SIGINT: KeyboardInterrupt after fit's work, the report completed)."""
    X = numpy.eye(4, dtype=numpy.float32)
    model = nn.Sequential(nn.Dense(4, 2))
    _signal_at_call(monkeypatch, optim.SGD, 2, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        fit(model, nn.SoftmaxCrossEntropy(), optim.SGD(model.parameters(), 0.1),
            DataLoader(X, numpy.arange(4) % 2, 4), epochs=2, out=str(tmp_path), progress=False)
    assert _report(str(tmp_path))["status"] == "completed"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # handlers given back


def test_stop_signals_restore_the_handlers_and_share_an_outer_block():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as outer:
        assert StopSignals.installed() is outer
        os.kill(os.getpid(), signal.SIGTERM)
        assert outer.received == signal.SIGTERM and outer.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):      # a second Ctrl-C after a first one stops at once
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is before and StopSignals.installed() is None


# --------------------------------------------------------------------------------------- signals, real processes

def _started(run, process, deadline):
    """Wait until `process` has written its running report (its folder is claimed and training has begun)."""
    path = os.path.join(run, "report.json")
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.exists(path) and read_json(path).get("status") == "running":
            return
        time.sleep(0.05)
    raise AssertionError(f"no running report in {run}: {process.poll()} {process.stderr.read()}")


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_from_outside_ends_the_command_with_its_status_files_and_no_lock(tmp_path, signum, status):
    run = str(tmp_path / "run")
    command = GPUDL + ["train", "xor", "--device", "cpu", "--epochs", "1000000", "--out", run]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        _started(run, process, time.monotonic() + 60)
        time.sleep(0.3)
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    name = signal.Signals(signum).name
    assert process.returncode == status, err
    assert f"gpudl: stopped by {name} after epoch" in err or f"gpudl: stopped by {name} at epoch" in err, err
    assert "Traceback" not in err
    report = _report(run)
    assert report["status"] == "stopped" and report["reason"].startswith(f"stopped by {name}")
    assert sorted(os.listdir(run)) == ["checkpoint.npz", "curves.png", "report.json"]
    epochs = int(load_arrays(os.path.join(run, "checkpoint.npz"))["epoch"])
    assert epochs == len(report["history"]) >= 1
    assert main(["train", "xor", "--device", "cpu", "--quiet", "--out", run, "--resume", "--epochs",
                 str(epochs + 2)]) == 0
    assert [r["epoch"] for r in _report(run)["history"]] == list(range(1, epochs + 3))


def test_a_run_killed_before_its_first_checkpoint_is_started_afresh(tmp_path, capsys):
    """kill -9 leaves report.json saying "running" and no checkpoint: --resume says there is nothing to continue,
    a plain re-run starts afresh and says so."""
    run = str(tmp_path / "run")
    command = GPUDL + ["train", "xor", "--device", "cpu", "--epochs", "1000000", "--quiet", "--out", run]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        _started(run, process, time.monotonic() + 60)
    finally:
        process.kill()
        process.wait()
    assert _report(run)["status"] == "running" and not os.path.exists(os.path.join(run, "checkpoint.npz"))
    cli_refuses(XOR + ["--out", run, "--resume"], capsys, r"no checkpoint in .*killed while running\), which ended "
                r"before its first one; run the same command without --resume")
    assert sorted(os.listdir(run)) == ["report.json"]       # the killed run's lock was taken over, and let go
    assert main(XOR + ["--out", run]) == 0
    assert "(xor, killed while running), which ended before its first checkpoint: starting afresh" in \
        capsys.readouterr().err
    assert _report(run)["status"] == "completed" and not os.path.exists(os.path.join(run, LOCK))


# --------------------------------------------------------------------------------- failures and the next command

def test_a_run_that_fails_before_its_first_checkpoint_is_started_afresh_by_a_plain_rerun(tmp_path, capsys,
                                                                                          monkeypatch, nan_loss):
    run = str(tmp_path / "run")
    cli_refuses(XOR + ["--out", run], capsys, "the loss became nan at epoch 1, step 1")
    report = _report(run)
    assert report["status"] == "failed" and report["reason"].startswith("diverged: the loss became nan")
    assert sorted(os.listdir(run)) == ["report.json"]
    cli_refuses(XOR + ["--out", run, "--resume"], capsys, r"holds an unfinished run \(xor, failed: diverged: ",
                "without --resume to start afresh", unchanged=run)
    monkeypatch.undo()
    assert main(XOR + ["--out", run]) == 0
    assert "which ended before its first checkpoint: starting afresh" in capsys.readouterr().err
    assert _report(run)["status"] == "completed"


def test_force_keeps_the_old_run_until_the_new_one_has_written_a_checkpoint(tmp_path, capsys, monkeypatch,
                                                                             nan_loss):
    run = str(tmp_path / "run")
    monkeypatch.undo()
    assert main(XOR + ["--out", run]) == 0
    before = snapshot(run)
    real = nn.MSELoss.forward
    monkeypatch.setattr(nn.MSELoss, "forward", lambda self, pred, y: real(self, pred, y) * numpy.nan)
    assert main(XOR + ["--out", run, "--force", "--seed", "4"]) == 1
    err = capsys.readouterr().err
    assert "--force: the new run ended before its first checkpoint; " in err and "the loss became nan" in err
    assert snapshot(run) == before                          # the old run, byte for byte, and nothing else
    monkeypatch.undo()
    (tmp_path / "run" / "model.onnx").write_bytes(b"an export of the old model")
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert main(XOR + ["--out", run, "--force", "--seed", "4"]) == 0
    assert sorted(os.listdir(run)) == ["checkpoint.npz", "curves.png", "model.npz", "notes.txt", "report.json"]
    assert _report(run)["config"]["seed"] == 4 and not os.path.exists(os.path.join(run, STASH))


def test_a_resume_removes_the_onnx_export_of_the_model_it_continues(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(XOR + ["--out", run]) == 0
    (tmp_path / "run" / "model.onnx").write_bytes(b"an export of epoch 6")
    assert main(XOR[:-1] + ["8", "--out", run, "--resume"]) == 0
    assert "removed " + os.path.join(run, "model.onnx") in capsys.readouterr().err
    assert not os.path.exists(os.path.join(run, "model.onnx"))


def test_a_full_disk_fails_the_run_naming_the_file(tmp_path, capsys, monkeypatch):
    from gpudl import serialization
    run = str(tmp_path / "run")

    def full(f, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(serialization.numpy, "savez", full)
    line = cli_refuses(XOR + ["--out", run], capsys)
    assert line == f"gpudl: error: {os.path.join(run, 'checkpoint.npz')}: No space left on device"
    report = _report(run)
    assert report["status"] == "failed" and "No space left on device" in report["reason"]
    assert not any(name.startswith(".tmp-") for name in os.listdir(run))


def test_a_read_only_folder_is_named_in_the_error(tmp_path, capsys, monkeypatch):
    real = os.open

    def read_only(path, flags, *args):
        if ".tmp-" in os.fspath(path) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    run = str(tmp_path / "run")
    line = cli_refuses(XOR + ["--out", run], capsys)
    assert line == f"gpudl: error: {os.path.join(run, 'report.json')}: Read-only file system"


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_every_file_a_run_writes_follows_the_umask(tmp_path, mask):
    import gpudl
    old = os.umask(mask)
    try:
        run = str(tmp_path / "run")
        assert main(XOR + ["--out", run]) == 0
        gpudl.save(nn.Dense(2, 2), str(tmp_path / "saved.npz"))
    finally:
        os.umask(old)
    paths = [os.path.join(run, name) for name in os.listdir(run)] + [str(tmp_path / "saved.npz")]
    assert len(paths) == 5
    for path in paths:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask, path


# ------------------------------------------------------------------------------------ resume: the checkpoint's model

def test_resume_rebuilds_the_model_from_the_checkpoint_as_the_issue_tried_it(tmp_path, capsys):
    """`gpudl train xor --hidden 0 --out runs/xor-linear`, then `--resume --epochs 2000` without --hidden."""
    run = str(tmp_path / "xor-linear")
    assert main(["train", "xor", "--hidden", "0", "--device", "cpu", "--quiet", "--epochs", "20", "--out", run]) == 0
    assert main(["train", "xor", "--device", "cpu", "--quiet", "--out", run, "--resume", "--epochs", "30"]) == 0
    assert "XOR not solved by an MLP with no hidden layer" in capsys.readouterr().out
    report = _report(run)
    assert report["config"]["model_args"] == {"sizes": [2, 1]} and len(report["history"]) == 30


def test_override_takes_every_setting_it_names_and_records_it(tmp_path, capsys):
    text = tmp_path / "sentence.txt"
    text.write_text(SENTENCE, encoding="utf-8")
    run = str(tmp_path / "run")
    assert main(CHARLM + ["--text", str(text), "--epochs", "1", "--out", run]) == 0
    before = snapshot(run)
    assert main(CHARLM + ["--text", str(text), "--epochs", "2", "--out", run, "--resume", "--seq-len", "5",
                          "--lr", "0.01"]) == 1
    line = capsys.readouterr().err.splitlines()[-1]
    assert "other settings (--lr 0.02 -> 0.01; --seq-len 10 -> 5)" in line and "pass --override" in line
    assert snapshot(run) == before
    assert main(CHARLM + ["--text", str(text), "--epochs", "2", "--out", run, "--resume", "--seq-len", "5",
                          "--lr", "0.01", "--batch-size", "2", "--override"]) == 0
    report = _report(run)
    assert report["overrides"][0]["changes"] == {"batch_size": {"checkpoint": 4, "now": 2},
                                                 "lr": {"checkpoint": 0.02, "now": 0.01},
                                                 "seq_len": {"checkpoint": 10, "now": 5}}
    assert report["config"]["seq_len"] == 5 and report["history"][1]["lr"] == 0.01


def test_a_text_rewritten_in_place_is_noticed_by_its_content(tmp_path, capsys):
    text = tmp_path / "book.txt"
    text.write_text(SENTENCE, encoding="utf-8")
    run = str(tmp_path / "run")
    assert main(CHARLM + ["--text", str(text), "--epochs", "1", "--out", run]) == 0
    text.write_text(SENTENCE.replace("cat", "act"), encoding="utf-8")    # the same characters, another text
    capsys.readouterr()
    before = snapshot(run)
    assert main(CHARLM + ["--text", str(text), "--epochs", "2", "--out", run, "--resume"]) == 1
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("gpudl: error: --resume: ") and "(the content of --text changed)" in line
    assert "--override" in line and snapshot(run) == before
    moved = tmp_path / "moved.txt"
    moved.write_text(SENTENCE, encoding="utf-8")                          # the same text under another path
    assert main(CHARLM + ["--text", str(moved), "--epochs", "2", "--out", run, "--resume"]) == 0


# ------------------------------------------------------------------------------------------------------- predict

def test_charlm_predict_decodes_with_the_vocabulary_of_its_model_file(tmp_path, capsys):
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text(SENTENCE, encoding="utf-8")
    large.write_text(SENTENCE.upper() + SENTENCE + "0123456789" * 30, encoding="utf-8")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(CHARLM + ["--text", str(small), "--epochs", "1", "--out", a]) == 0
    assert main(CHARLM + ["--text", str(large), "--epochs", "1", "--out", b]) == 0
    from gpudl.models import load_charlm
    model, vocab = load_charlm(b)                   # fit's model file carries the vocabulary itself
    assert model.vocabulary is vocab and set(vocab.chars) == set(large.read_text())
    os.replace(os.path.join(b, "model.npz"), os.path.join(a, "model.npz"))     # a's report, b's model
    capsys.readouterr()
    assert main(["predict", a, "--start", "0", "--length", "200", "--seed", "1"]) == 0
    sampled = capsys.readouterr().out.strip()
    assert len(sampled) >= 150 and set(sampled) <= set(vocab.chars) and set(sampled) - set(SENTENCE)


def test_predict_refuses_inputs_that_overflow_the_model(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(XOR + ["--out", run]) == 0
    big = numpy.finfo(numpy.float32).max           # finite, and the first product overflows
    numpy.save(tmp_path / "huge.npy", numpy.array([[big, big], [-big, big], [big, -big], [-big, -big]]))
    line = cli_refuses(["predict", run, "--input", str(tmp_path / "huge.npy")], capsys, status=1)
    assert "the inputs range over [-3.4e+38, 3.4e+38]" in line and "cannot predict from them" in line
    assert capsys.readouterr().out == ""


def test_predict_show_and_paths_in_the_cli_s_words(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(XOR + ["--out", run]) == 0
    cli_refuses(["predict", run, "--show", "-1"], capsys, r"--show: must be 0 or more, got -1")
    assert main(["predict", run, "--show", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "... 4 more (--show N prints more)"
    os.mkdir(tmp_path / "x.onnx")
    numpy.save(tmp_path / "p.npy", numpy.zeros((1, 2), numpy.float32))
    cli_refuses(["predict", str(tmp_path / "x.onnx"), "--input", str(tmp_path / "p.npy")], capsys,
                "x.onnx: is a folder, not an ONNX file")
    cli_refuses(["predict", str(tmp_path / "nothere")], capsys, "nothere: no such folder")
    cli_refuses(["train", "xor", "--out", ""], capsys, "--out: the folder name is empty")


class _OtherRankStopped:
    """Two ranks, seen from rank 0: the other rank received a signal (its flag joins ours in the mean)."""
    rank, size = 0, 2

    def __init__(self):
        self.calls = 0

    def allreduce_mean_(self, arrays):
        self.calls += 1
        for array in arrays:
            array[...] = (array + 1.0) / 2


def test_ranks_agree_on_a_stop_only_at_boundaries_and_a_signal_on_any_rank_stops_all():
    from gpudl.train.loop import RunState, _stop_asked
    comm = _OtherRankStopped()
    run = RunState(model=None, loss=None, optimizer=None, train_loader=None, comm=comm, stops=StopSignals())
    assert _stop_asked(run, boundary=False) is False and comm.calls == 0      # no collective between boundaries
    assert _stop_asked(run, boundary=True) is True and comm.calls == 1        # ours says no, the other rank yes
    run.comm = None
    assert _stop_asked(run, boundary=False) is False                         # one process: only its own signal
    run.stops.received = signal.SIGTERM
    assert _stop_asked(run, boundary=False) is True
