"""Run folders: one run at a time, a finished run kept unless asked, checkpoints that record their configuration, a
resume that refuses changed settings, and report.json that is always strict JSON."""
import math
import os
import subprocess
import sys
import threading

import numpy
import pytest
from bad_files import cli_refuses, snapshot

from gpudl import nn, optim
from gpudl.cli import main
from gpudl.data import DataLoader
from gpudl.readers import FileFormatError, read_json
from gpudl.serialization import load_arrays, save_arrays
from gpudl.train import (
    ResumeMismatch,
    RunFolderError,
    claim_run_folder,
    cosine_schedule,
    fit,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    write_report,
)
from gpudl.train.folder import LOCK

XOR = ["train", "xor", "--device", "cpu", "--quiet", "--epochs", "6"]


def _dead_pid():
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


@pytest.fixture
def finished(tmp_path):
    """A folder holding a finished 6-epoch xor run."""
    run = str(tmp_path / "run")
    assert main(XOR + ["--out", run]) == 0
    return run


# ------------------------------------------------------------------------------------------------ who owns a folder

def test_out_naming_a_file_fails_before_any_training(tmp_path, capsys, monkeypatch):
    from gpudl.cli import xor
    monkeypatch.setattr(xor, "fit", lambda *a, **k: pytest.fail("trained"))
    target = tmp_path / "afile"
    target.write_text("keep me")
    cli_refuses(XOR + ["--out", str(target)], capsys, "is a file, not a folder", unchanged=str(tmp_path))
    assert target.read_text() == "keep me"


def test_a_second_run_on_a_held_folder_is_refused_naming_the_pid(tmp_path, capsys):
    run = str(tmp_path / "run")
    with claim_run_folder(run):
        before = snapshot(run)
        cli_refuses(XOR + ["--out", run], capsys, rf"in use by another run \(pid {os.getpid()}", LOCK)
        assert snapshot(run) == before
    assert not os.path.exists(os.path.join(run, LOCK))
    assert main(XOR + ["--out", run]) == 0          # free again once the first run ended


def test_a_run_in_another_process_holds_the_folder(tmp_path, capsys):
    run = str(tmp_path / "run")
    script = ("import sys, time; from gpudl.train import claim_run_folder\n"
              f"with claim_run_folder({run!r}):\n    print('held', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", script],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cli_refuses(XOR + ["--out", run], capsys, rf"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert main(XOR + ["--out", run]) == 0          # the lock of the killed holder is stale: taken over


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(f"{_dead_pid()}\n")
    assert main(XOR + ["--out", str(run)]) == 0
    assert not (run / LOCK).exists() and (run / "report.json").exists()


def test_two_threads_claiming_one_folder_get_it_one_at_a_time(tmp_path):
    run, results, barrier = str(tmp_path / "run"), [], threading.Barrier(2)

    def claim():
        barrier.wait()
        try:
            with claim_run_folder(run):
                results.append("held")
                threading.Event().wait(0.3)
        except RunFolderError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("held") == 1 and any("in use by another run" in r for r in results), results


def test_a_finished_run_is_not_overwritten(finished, capsys):
    line = cli_refuses(XOR + ["--out", finished], capsys, "holds a finished run \\(xor, completed\\)", "--resume",
                       "--force", unchanged=finished)
    assert finished in line


def test_a_stopped_run_with_a_checkpoint_is_not_overwritten_either(finished, capsys):
    report = read_json(os.path.join(finished, "report.json"))
    report.update(status="stopped", reason="stopped by SIGTERM after epoch 6")
    write_report(finished, report, curves=False)
    cli_refuses(XOR + ["--out", finished], capsys, r"holds an unfinished run \(xor, stopped: stopped by SIGTERM "
                r"after epoch 6\)", "--resume", unchanged=finished)


def test_a_folder_with_only_a_model_file_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.npz").write_bytes(b"PK")
    cli_refuses(XOR + ["--out", str(run)], capsys, r"holds an earlier run \(model.npz\)", unchanged=str(run))


def test_force_replaces_the_finished_run(finished, capsys):
    old = read_json(os.path.join(finished, "report.json"))
    assert main(XOR[:-1] + ["3", "--out", finished, "--force", "--seed", "2"]) == 0
    new = read_json(os.path.join(finished, "report.json"))
    assert old["config"]["seed"] == 0 and new["config"]["seed"] == 2 and len(new["history"]) == 3


@pytest.mark.parametrize("extra, match", [
    (["--override"], "--override applies with --resume only"),
    (["--force", "--resume"], "pass one of them"),
])
def test_contradictory_run_folder_options(tmp_path, capsys, extra, match):
    cli_refuses(XOR + ["--out", str(tmp_path / "run")] + extra, capsys, match, unchanged=str(tmp_path))


# ------------------------------------------------------------------------------------------ resuming the same run

@pytest.mark.parametrize("change, match", [
    (["--seed", "5"], r"--seed 0 -> 5"),
    (["--lr", "0.5"], r"--lr 1\.0 -> 0\.5"),
    (["--batch-size", "2"], r"--batch-size 4 -> 2"),
])
def test_resume_refuses_settings_that_change_the_result(finished, capsys, change, match):
    cli_refuses(XOR[:-1] + ["9", "--out", finished, "--resume"] + change, capsys, match, "--override",
                unchanged=finished)


def test_resume_refuses_another_model_shape_naming_the_flag_even_with_override(finished, capsys):
    for extra in ([], ["--override"]):
        cli_refuses(XOR[:-1] + ["9", "--out", finished, "--resume", "--hidden", "3"] + extra, capsys,
                    r"holds a model built with other settings \(--hidden 4 -> 3\); a resumed run keeps the model",
                    "--force", unchanged=finished)


def test_resume_with_fewer_epochs_than_the_checkpoint_has_trains_nothing_and_says_so(finished, capsys):
    cli_refuses(XOR[:-1] + ["2", "--out", finished, "--resume"], capsys, "nothing to train", "epoch 6",
                unchanged=finished)
    cli_refuses(XOR + ["--out", finished, "--resume"], capsys, "nothing to train", unchanged=finished)


def test_override_continues_and_records_old_and_new_values(finished, capsys):
    assert main(XOR[:-1] + ["8", "--out", finished, "--resume", "--override", "--seed", "5"]) == 0
    report = read_json(os.path.join(finished, "report.json"))
    assert report["overrides"] == [{"epoch": 6, "changes": {"seed": {"checkpoint": 0, "now": 5}}}]
    assert [r["epoch"] for r in report["history"]] == list(range(1, 9)) and report["config"]["seed"] == 5
    assert main(XOR[:-1] + ["9", "--out", finished, "--resume", "--seed", "5"]) == 0   # the new values now hold
    assert len(read_json(os.path.join(finished, "report.json"))["overrides"]) == 1


def _tiny(seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((16, 3)).astype(numpy.float32)
    y = (X[:, 0] > 0).astype(numpy.int64)
    model = nn.Sequential(nn.Dense(3, 2, rng=numpy.random.default_rng(seed)))
    return model, optim.SGD(model.parameters(), 0.1), DataLoader(X, y, 4, seed=seed)


def test_a_schedule_that_changes_trained_epochs_needs_override(tmp_path):
    model, opt, loader = _tiny()
    fit(model, nn.SoftmaxCrossEntropy(), opt, loader, epochs=3, out=str(tmp_path), progress=False,
        schedule=cosine_schedule(0.1, 3), config={"lr": 0.1})
    before = snapshot(str(tmp_path))
    model, opt, loader = _tiny()
    with pytest.raises(ResumeMismatch, match=r"schedule 'lr 0\.075 at epoch 2' -> 'lr 0\.0853553'"):
        fit(model, nn.SoftmaxCrossEntropy(), opt, loader, epochs=4, out=str(tmp_path), resume=True,
            progress=False, schedule=cosine_schedule(0.1, 4), config={"lr": 0.1})
    assert snapshot(str(tmp_path)) == before
    report = fit(model, nn.SoftmaxCrossEntropy(), opt, loader, epochs=4, out=str(tmp_path), resume=True,
                 progress=False, schedule=cosine_schedule(0.1, 4), config={"lr": 0.1}, override=True)
    assert list(report["overrides"][0]["changes"]) == ["schedule"]


def test_a_constant_learning_rate_may_train_on_for_more_epochs(tmp_path):
    model, opt, loader = _tiny()
    fit(model, nn.SoftmaxCrossEntropy(), opt, loader, epochs=2, out=str(tmp_path), progress=False, config={"a": 1})
    model, opt, loader = _tiny()
    report = fit(model, nn.SoftmaxCrossEntropy(), opt, loader, epochs=3, out=str(tmp_path), resume=True,
                 progress=False, config={"a": 1})
    assert "overrides" not in report and [r["epoch"] for r in report["history"]] == [1, 2, 3]


# ------------------------------------------------------------------------------------------------ checkpoint files

def _checkpoint(tmp_path, **drop_or_replace):
    model, opt, loader = _tiny()
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, model, opt, 2, loader, [{"epoch": 1}, {"epoch": 2}], config={"seed": 0})
    arrays = load_arrays(path)
    for name, value in drop_or_replace.items():
        name = name.replace("__", "/")
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    save_arrays(path, arrays)
    return path


@pytest.mark.parametrize("change, match", [
    ({"epoch": None}, r"missing \['epoch'\]"),
    ({"history": None}, r"missing \['history'\]"),
    ({"optim__steps": None}, r"missing \['optim/steps'\]"),
    ({"model__0.W": None}, r"missing \['model/0.W'\]"),
    ({"model__0.W": numpy.zeros((2, 3), numpy.float32)}, r"parameter model/0.W has shape \(2, 3\)"),
    ({"model__0.b": numpy.array([numpy.nan, 0], numpy.float32)}, "NaN or infinite"),
    ({"epoch": numpy.array("three")}, r"field epoch has dtype <U5"),
    ({"epoch": numpy.array(-1)}, "field epoch is -1"),
    ({"history": numpy.array("[{")}, "field history is not valid JSON"),
    ({"history": numpy.array('{"a": 1}')}, "field history holds a dict, expected a list"),
    ({"config": numpy.array("[1]")}, "field config holds a list, expected a dict"),
    ({"loader_rng": numpy.array("not json")}, "field loader_rng is not valid JSON"),
    ({"loader_rng": numpy.array('{"bit_generator": "Nope"}')}, "field loader_rng is not a state this loader takes"),
    ({"optim__m.7": numpy.zeros(3, numpy.float32)}, r"optim/m.7 belongs to no parameter"),
    ({"optim__m.0": numpy.zeros(3, numpy.float32)}, r"optim/m.0 has shape \(3,\), its parameter has \(3, 2\)"),
    ({"stray": numpy.zeros(1)}, r"unexpected \['stray'\]"),
])
def test_a_bad_checkpoint_is_refused_in_one_line_and_changes_nothing(tmp_path, change, match):
    path = _checkpoint(tmp_path, **change)
    model, opt, loader = _tiny(seed=1)
    before = ([p.data.copy() for p in model.parameters()], opt.state_dict(), loader.state_dict())
    folder = snapshot(str(tmp_path))
    with pytest.raises(FileFormatError, match=match) as info:
        load_checkpoint(path, model, opt, loader)
    assert path in str(info.value) and "\n" not in str(info.value)
    for p, old in zip(model.parameters(), before[0]):
        numpy.testing.assert_array_equal(p.data, old)
    assert opt.state_dict().keys() == before[1].keys() and loader.state_dict() == before[2]
    assert snapshot(str(tmp_path)) == folder


def test_a_checkpoint_without_epoch_through_the_cli_is_one_line_naming_the_file(finished, capsys):
    path = os.path.join(finished, "checkpoint.npz")
    arrays = load_arrays(path)
    del arrays["epoch"]
    save_arrays(path, arrays)
    cli_refuses(XOR[:-1] + ["9", "--out", finished, "--resume"], capsys, r"checkpoint.npz: does not fit this model "
                r"\(missing \['epoch'\]", unchanged=finished)


def test_the_checkpoint_records_the_configuration(finished):
    from gpudl.models import MLP
    mlp = MLP([2, 4, 1])
    checkpoint = read_checkpoint(os.path.join(finished, "checkpoint.npz"), mlp, optim.SGD(mlp.parameters(), 1.0))
    assert checkpoint.config["model"] == "xor" and checkpoint.config["model_args"] == {"sizes": [2, 4, 1]}
    assert checkpoint.epoch == 6 and len(checkpoint.history) == 6


def test_checkpoints_leave_no_temporary_files(finished):
    assert sorted(n for n in os.listdir(finished) if n.startswith(".")) == []


# -------------------------------------------------------------------------------------------------- report.json

def test_report_json_is_strict_json_with_null_for_non_finite_values(tmp_path):
    write_report(str(tmp_path), {"config": {}, "history": [], "final": {"loss": math.inf, "nan": math.nan,
                                                                        "ok": [1.5, -math.inf]}})
    text = (tmp_path / "report.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    report = read_json(str(tmp_path / "report.json"))
    assert report["final"] == {"loss": None, "nan": None, "ok": [1.5, None]}


def test_a_report_write_that_fails_leaves_the_old_report_and_no_temporary_file(tmp_path):
    write_report(str(tmp_path), {"config": {"a": 1}, "history": []})
    before = snapshot(str(tmp_path))
    with pytest.raises(TypeError):
        write_report(str(tmp_path), {"config": {"a": object()}, "history": []})
    assert snapshot(str(tmp_path)) == before


def test_concurrent_report_writes_never_share_a_temporary_file(tmp_path):
    errors = []

    def write(k):
        try:
            for _ in range(30):
                write_report(str(tmp_path), {"config": {"writer": k}, "history": [], "pad": "x" * 20000})
        except OSError as exc:  # the old fixed report.json.tmp made one writer fail with "No such file"
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read_json(str(tmp_path / "report.json"))["config"]["writer"] in (0, 1, 2)
    assert os.listdir(tmp_path) == ["report.json"]
