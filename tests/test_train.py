"""The training loop: reports, checkpoints (atomic, resumable bit for bit), stopping on a NaN loss."""
import io
import json
import os
import sys

import numpy
import pytest

from gpudl import nn, optim, serialization
from gpudl.data import DataLoader, random_shift
from gpudl.serialization import load_arrays
from gpudl.train import (
    DivergenceWatch,
    Progress,
    TrainingDiverged,
    accuracy,
    cosine_schedule,
    evaluate,
    fit,
    plot_curves,
)


def _data(n=96, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.random((n, 1, 8, 8), dtype=numpy.float32)
    y = (X[:, 0, :4].sum(axis=(1, 2)) > X[:, 0, 4:].sum(axis=(1, 2))).astype(numpy.int64)
    return X, y


def _setup(seed=0, lr=0.01):
    model = nn.Sequential(nn.Conv2D(1, 3, 3, padding="same", rng=numpy.random.default_rng(seed)), nn.ReLU(),
                          nn.MaxPool2D(2), nn.Flatten(), nn.Dense(48, 2, rng=numpy.random.default_rng(seed + 1)))
    X, y = _data()
    train = DataLoader(X[:64], y[:64], 16, seed=seed, transform=random_shift(1))
    test = DataLoader(X[64:], y[64:], 32, shuffle=False)
    return model, nn.SoftmaxCrossEntropy(check=False), optim.Adam(model.parameters(), lr), train, test


def test_fit_learns_and_writes_report_model_checkpoint_and_curves(tmp_path):
    model, loss, opt, train, test = _setup(lr=0.02)
    report = fit(model, loss, opt, train, test, epochs=6, out=str(tmp_path), progress=False, config={"k": 1})
    history = report["history"]
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["config"] == {"k": 1}
    assert on_disk["final"]["test_accuracy"] == history[-1]["test_accuracy"]
    assert {"train_accuracy", "test_loss", "samples_per_s", "seconds", "lr"} <= set(history[0])
    assert (tmp_path / "model.npz").exists() and (tmp_path / "checkpoint.npz").exists()
    assert int(load_arrays(tmp_path / "checkpoint.npz")["epoch"]) == 6
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_png_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    assert plot_curves([{"epoch": 1, "train_loss": 1.0}], str(tmp_path / "c.png")) is None
    assert not (tmp_path / "c.png").exists()


def test_plain_progress_lines_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    model, loss, opt, train, test = _setup()
    fit(model, loss, opt, train, test, epochs=2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2: loss ")
    assert "test acc" in lines[1] and "samples/s" in lines[1]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_tqdm_progress_shows_loss_accuracy_and_rate():
    pytest.importorskip("tqdm")
    model, loss, opt, train, test = _setup()
    terminal = _Terminal()
    fit(model, loss, opt, train, test, epochs=1, progress=Progress(stream=terminal))
    err = terminal.getvalue()
    assert "epoch 1/1" in err and "4/4" in err and "it/s" in err  # a tqdm bar over the 4 batches
    assert "loss 0." in err and "test acc" in err and "samples/s" in err


def test_progress_into_a_log_file_is_one_line_per_epoch_without_carriage_returns():
    pytest.importorskip("tqdm")
    model, loss, opt, train, test = _setup()
    log = io.StringIO()                 # not a terminal, like stderr redirected into a file
    fit(model, loss, opt, train, test, epochs=2, progress=Progress(stream=log))
    text = log.getvalue()
    assert "\r" not in text and "it/s" not in text
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2: loss ") and lines[1].startswith("epoch 2/2: loss ")


def _params(model):
    return [p.data.copy() for p in model.parameters()]


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    whole = _setup()
    fit(*whole, epochs=4, out=str(tmp_path / "a"), progress=False)
    first = _setup()
    fit(*first, epochs=2, out=str(tmp_path / "b"), progress=False)
    second = _setup()  # a fresh process: new model, optimizer and loader from the same seeds
    report = fit(*second, epochs=4, out=str(tmp_path / "b"), resume=True, progress=False)
    for a, b in zip(_params(whole[0]), _params(second[0])):
        numpy.testing.assert_array_equal(a, b)
    a_hist = json.loads((tmp_path / "a" / "report.json").read_text())["history"]
    assert [r["train_loss"] for r in report["history"]] == [r["train_loss"] for r in a_hist]
    assert [r["epoch"] for r in report["history"]] == [1, 2, 3, 4]


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        fit(*_setup(), epochs=2, out=str(tmp_path), resume=True, progress=False)


class _NaNAfter:
    """A loss that turns NaN after `n` forward calls."""

    def __init__(self, n):
        self.inner, self.n, self.calls = nn.SoftmaxCrossEntropy(check=False), n, 0

    def forward(self, pred, target):
        self.calls += 1
        value = self.inner.forward(pred, target)
        return value * numpy.nan if self.calls > self.n else value

    def backward(self):
        return self.inner.backward()


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    model, _, opt, train, test = _setup()
    # 4 training steps and 1 evaluation batch per epoch: the 11th call is the first step of epoch 3
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 3, step 1.*epoch 2\) is kept"):
        fit(model, _NaNAfter(10), opt, train, test, epochs=5, out=str(tmp_path), progress=False)
    saved = load_arrays(tmp_path / "checkpoint.npz")
    assert int(saved["epoch"]) == 2
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "failed" and report["reason"].startswith("diverged: the loss became nan")
    assert report["last_checkpoint_epoch"] == 2
    assert len(report["history"]) == 2
    assert not (tmp_path / "model.npz").exists()
    # the checkpoint holds the parameters as they were after epoch 2: resuming from it works
    resumed = _setup()
    fit(*resumed, epochs=3, out=str(tmp_path), resume=True, progress=False)


def test_nan_in_the_first_epoch_says_no_checkpoint_exists(tmp_path):
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        model, _, opt, train, _ = _setup()
        fit(model, _NaNAfter(0), opt, train, None, epochs=2, out=str(tmp_path), progress=False)


def test_a_crash_while_writing_a_checkpoint_leaves_the_old_one(tmp_path, monkeypatch):
    model, loss, opt, train, test = _setup()
    fit(model, loss, opt, train, test, epochs=1, out=str(tmp_path), progress=False)
    before = (tmp_path / "checkpoint.npz").read_bytes()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(serialization.numpy, "savez", crash)
    resumed = _setup()
    with pytest.raises(KeyboardInterrupt):
        fit(*resumed, epochs=3, out=str(tmp_path), resume=True, progress=False)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert int(load_arrays(tmp_path / "checkpoint.npz")["epoch"]) == 1
    assert not any(name.startswith(".tmp-") for name in os.listdir(tmp_path))  # the half file is removed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "stopped" and "KeyboardInterrupt" in report["reason"]


def test_checkpoint_holds_model_optimizer_epoch_and_generator_state(tmp_path):
    model, loss, opt, train, test = _setup()
    fit(model, loss, opt, train, test, epochs=1, out=str(tmp_path), progress=False)
    saved = load_arrays(tmp_path / "checkpoint.npz")
    assert {f"model/{name}" for name, _ in model.named_parameters()} <= set(saved)
    assert {"optim/steps", "optim/m.0", "optim/v.0", "epoch", "loader_rng"} <= set(saved)
    assert int(saved["optim/steps"]) == 4
    assert json.loads(saved["loader_rng"].item())["bit_generator"] == "PCG64"


def test_accuracy_metric_and_evaluate():
    logits = numpy.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, numpy.array([0, 1, 1])) == (2, 3)
    outputs = numpy.array([[0.9], [0.2], [0.6]])
    assert accuracy(outputs, numpy.array([[1.0], [0.0], [0.0]])) == (2, 3)
    with pytest.raises(ValueError, match="cannot compare"):
        accuracy(logits, numpy.zeros((3, 5)))
    model = nn.Sequential(nn.Dense(2, 2))
    model.layers[0].W.data[...] = numpy.eye(2)
    X = numpy.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], numpy.float32)
    value, acc = evaluate(model, nn.SoftmaxCrossEntropy(), DataLoader(X, numpy.array([0, 1, 1]), 2, shuffle=False))
    assert acc == pytest.approx(2 / 3) and value > 0


def test_cosine_schedule_falls_from_lr_to_the_floor():
    schedule = cosine_schedule(0.1, 10)
    assert schedule(1) == pytest.approx(0.1)
    assert schedule(6) == pytest.approx(0.05)
    assert schedule(10) < schedule(9) < schedule(2)
    assert cosine_schedule(1.0, 4, final_fraction=0.5)(3) == pytest.approx(0.75)


def test_fit_and_resume_on_the_gpu_follow_the_cpu(tmp_path, cupy):
    cpu = _setup()
    fit(*cpu, epochs=2, progress=False)
    model, loss, opt, _, _ = _setup()
    model.to("cuda")
    X, y = _data()
    train = DataLoader(X[:64], y[:64], 16, seed=0, transform=random_shift(1), device="cuda")
    test = DataLoader(X[64:], y[64:], 32, shuffle=False, device="cuda")
    fit(model, loss, opt, train, test, epochs=1, out=str(tmp_path), progress=False)
    fresh, loss2, opt2, _, _ = _setup()
    fresh.to("cuda")
    train2 = DataLoader(X[:64], y[:64], 16, seed=0, transform=random_shift(1), device="cuda")
    report = fit(fresh, loss2, opt2, train2, test, epochs=2, out=str(tmp_path), resume=True, progress=False)
    assert report["status"] == "completed" and isinstance(fresh.parameters()[0].data, cupy.ndarray)
    for a, b in zip(_params(cpu[0]), fresh.parameters()):
        numpy.testing.assert_allclose(a, cupy.asnumpy(b.data), rtol=1e-2, atol=1e-3)


def test_on_epoch_end_adds_to_the_record_the_report_and_the_progress_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    seen = []

    def double_loss(record):
        seen.append(dict(record))
        record["double"] = 2 * record["train_loss"]
        return f"double {record['double']:.4f}"

    model, loss, opt, train, test = _setup()
    report = fit(model, loss, opt, train, test, epochs=2, out=str(tmp_path), on_epoch_end=double_loss)
    assert [r["epoch"] for r in seen] == [1, 2] and "test_loss" in seen[0]   # after training and evaluation
    history = json.loads((tmp_path / "report.json").read_text())["history"]
    assert [r["double"] for r in history] == [2 * r["train_loss"] for r in report["history"]]
    lines = capsys.readouterr().err.strip().splitlines()
    assert f"double {history[1]['double']:.4f}, " in lines[1] and lines[1].endswith("samples/s")


def test_clip_norm_bounds_every_step(monkeypatch):
    from gpudl.train import step
    norms, real = [], step.clip_grad_norm

    def spy(params, max_norm):
        total = real(params, max_norm)
        after = numpy.sqrt(sum(float((p.grad.astype(numpy.float64) ** 2).sum()) for p in params))
        norms.append((float(total), after, max_norm))
        return total

    monkeypatch.setattr(step, "clip_grad_norm", spy)
    model, loss, opt, train, _ = _setup(lr=0.05)
    fit(model, loss, opt, train, epochs=2, progress=False, clip_norm=0.01)
    assert len(norms) == 8                                  # 4 steps per epoch, clipped before each
    assert all(after <= 0.01 * (1 + 1e-4) and limit == 0.01 for _, after, limit in norms)
    assert any(total > 0.01 for total, _, _ in norms)       # the clip did act
    with pytest.raises(ValueError, match="clip_norm"):
        fit(*_setup(), epochs=1, progress=False, clip_norm=0)


class _Counting(nn.Module):
    """A model whose output carries a running count of batches since the last reset_state() (a stateful model)."""

    def __init__(self):
        self.dense = nn.Dense(2, 2, rng=numpy.random.default_rng(0))
        self.count, self.seen = 0, []

    def reset_state(self):
        self.count = 0

    def forward(self, x):
        self.count += 1
        self.seen.append((self.training, self.count))
        return self.dense.forward(x)

    def backward(self, dy, input_grad=True):
        return self.dense.backward(dy, input_grad=input_grad)


def test_a_stateful_model_starts_every_epoch_and_every_evaluation_afresh():
    model = _Counting()
    X = numpy.eye(2, dtype=numpy.float32).repeat(3, axis=0)
    y = numpy.array([0, 0, 0, 1, 1, 1])
    train, test = DataLoader(X, y, 2, seed=0), DataLoader(X, y, 3, shuffle=False)
    fit(model, nn.SoftmaxCrossEntropy(check=False), optim.SGD(model.parameters(), 0.1), train, test, epochs=2,
        progress=False)
    # per epoch: 3 training batches counted 1, 2, 3, then 2 evaluation batches counted afresh 1, 2
    assert model.seen == [(True, 1), (True, 2), (True, 3), (False, 1), (False, 2)] * 2
    assert model.count == 0                                  # evaluate resets after its pass as well


def test_losses_are_read_back_once_per_window(monkeypatch):
    """sync_every steps share one copy to the host (plus one for their hit counts); the epoch's end reads the rest."""
    from gpudl.train import readback
    copies, real = [], readback.to_numpy

    def spy(array):
        copies.append(numpy.shape(array))
        return real(array)

    monkeypatch.setattr(readback, "to_numpy", spy)
    model, loss, opt, train, _ = _setup()
    # 4 steps: windows of 3 and 1
    fit(model, loss, opt, train, epochs=1, progress=False, metric=None, watch=DivergenceWatch(sync_every=3))
    assert copies == [(3,), (1,)]
    copies.clear()
    # with the accuracy (its counts too) and one eval batch
    fit(*_setup(), epochs=1, progress=False, watch=DivergenceWatch(sync_every=3))
    assert copies == [(3,), (3,), (1,), (1,), (1,), (1,)]


def test_reading_back_per_window_gives_the_per_step_history():
    histories = []
    for every in (1, 3, 100):
        run = fit(*_setup(), epochs=2, progress=False, watch=DivergenceWatch(sync_every=every))
        histories.append([(r["train_loss"], r["train_accuracy"], r["test_loss"], r["test_accuracy"])
                          for r in run["history"]])
    assert histories[0] == histories[1] == histories[2]


def test_nan_inside_a_window_names_its_step_and_stops_at_the_window_end(tmp_path):
    model, _, opt, train, test = _setup()
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 2;"):
        fit(model, _NaNAfter(1), opt, train, test, epochs=2, out=str(tmp_path), progress=False,
            watch=DivergenceWatch(sync_every=3))
    assert opt.steps == 3               # the rest of the window ran: at most sync_every steps in all
    assert json.loads((tmp_path / "report.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("every", [0, -2, 1.5])
def test_sync_every_must_be_a_positive_int(every):
    with pytest.raises(ValueError, match="sync_every"):
        DivergenceWatch(sync_every=every)


def test_train_step_takes_one_step_of_the_optimizer_on_one_batch():
    """zero_grad, forward, loss, backward, update: for MSE and SGD, w <- w - lr x^T (xW + b - y) / N."""
    from gpudl.train import RunState, train_step
    rng = numpy.random.default_rng(0)
    model = nn.Dense(3, 2, dtype=numpy.float64, rng=rng)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    W0, b0 = model.W.data.copy(), model.b.data.copy()
    model.W.grad[...] = 7.0                              # stale gradients are cleared first
    run = RunState(model=model, loss=nn.MSELoss(), optimizer=optim.SGD(model.parameters(), 0.1), train_loader=None)
    pred, value = train_step(run, x, y)
    residual = x @ W0 + b0 - y
    numpy.testing.assert_allclose(pred, x @ W0 + b0)
    assert float(value) == pytest.approx(0.5 * (residual ** 2).sum() / 4)
    numpy.testing.assert_allclose(model.W.data, W0 - 0.1 * x.T @ residual / 4)
    numpy.testing.assert_allclose(model.b.data, b0 - 0.1 * residual.sum(axis=0) / 4)


class _GoneStream(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_progress_stream_that_is_gone_does_not_end_the_run(tmp_path):
    """The terminal or pipe the progress went to closed (its reader died): the run trains on, silently."""
    report = fit(*_setup(), epochs=2, out=str(tmp_path), progress=Progress(stream=_GoneStream()))
    assert report["status"] == "completed" and (tmp_path / "model.npz").exists()
