"""The training loop: epochs of mini-batches, evaluation on held-out data, progress, checkpoints and a run report.

`fit` is generic. It needs
- model: forward(x) -> prediction, backward(dpred), parameters(), train()/eval() (any gpudl Module);
- loss: forward(pred, target) -> 0-d array, backward() -> dpred (a gpudl loss; SoftmaxCrossEntropy(check=False) in
  the hot loop, since fit watches the loss itself);
- optimizer: step(), zero_grad(), state_dict(), load_state_dict(state) (gpudl.optim);
- train_loader: an iterable of (x, y) batches already on the model's device, with len() (batches per epoch); when it
  has state_dict() / load_state_dict() (gpudl.data.DataLoader does: its shuffling generator) that state is
  checkpointed, so a resumed run draws the same batches;
- eval_loader (optional): the same kind of iterable for the held-out data;
- metric(pred, y) -> (correct, count) for the accuracy, or None to report the loss only. The default, `accuracy`,
  takes the arg-max of the last axis against integer labels (any leading axes: (N, T, V) logits against (N, T)
  labels count every character), or thresholds outputs at 0.5 against 0/1 targets of the prediction's shape.

A model that carries state from one batch to the next (truncated BPTT: a stateful recurrent layer, batches that
continue each other row by row) has reset_state(); fit and evaluate call it before every pass over a loader and
evaluate again after it, so each epoch and each evaluation starts from a zero state. The carried state is
therefore never part of a checkpoint, and a resumed run still ends where an uninterrupted one does.

The losses and accuracy counts of the steps stay on the device and are read back together every SYNC_EVERY steps
and at the end of each epoch (one host sync per window instead of one per step, so the host can queue the next steps
while the GPU computes). A loss that turns NaN or infinite stops the run (TrainingDiverged) at the end of its
window, within SYNC_EVERY steps; the message names the step where it happened, and the last checkpoint written
before it stays (the model in memory may have taken the window's remaining steps). A loss's forward must therefore
return a new value per call (gpudl's losses do), not a buffer it overwrites.
Checkpoints (every `checkpoint_every` epochs and after the last) go to out/checkpoint.npz through
serialization.save_arrays, which writes a temporary file and renames it, so a killed run never leaves a half-written
checkpoint. A checkpoint holds the parameters (model/NAME), the optimizer state (optim/KEY), the epoch, the loader's
generator state and the history so far; `resume=True` continues from it to the result an uninterrupted run gives.
"""
import json
import math
import os
import sys
import time

import numpy

from .backend import device_of, get_array_module, to_device, to_numpy
from .optim import clip_grad_norm
from .serialization import load_arrays, save, save_arrays

CHECKPOINT, REPORT, MODEL, CURVES = "checkpoint.npz", "report.json", "model.npz", "curves.png"
SYNC_EVERY = 16         # training steps between reads of the loss on the host


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def accuracy(pred, target):
    """(correct, count): arg-max class against integer labels, or outputs thresholded at 0.5 against 0/1 targets."""
    if target.shape == pred.shape and not numpy.issubdtype(target.dtype, numpy.integer):
        hits = ((pred >= 0.5) == (target >= 0.5)).all(axis=tuple(range(1, pred.ndim)))
        return hits.sum(), hits.size
    if target.shape == pred.shape[:-1]:
        hits = pred.argmax(axis=-1) == target
        return hits.sum(), hits.size
    if target.shape == pred.shape and pred.shape[-1] == 1:
        hits = (pred >= 0.5) == (target >= 0.5)
        return hits.sum(), hits.size
    raise ValueError(f"accuracy: cannot compare predictions of shape {tuple(pred.shape)} with targets of shape "
                     f"{tuple(target.shape)}")


class _Window:
    """Per-batch losses and hit counts as returned (device values), read back to the host together by drain()."""

    def __init__(self):
        self.losses, self.sizes, self.hits, self.counts = [], [], [], []

    def __len__(self):
        return len(self.losses)

    def add(self, loss, size, hits=None, count=None):
        self.losses.append(loss)
        self.sizes.append(size)
        if hits is not None:
            self.hits.append(hits)
            self.counts.append(count)

    def drain(self):
        """[(loss, size)] and [(hits, count)] as Python numbers, in batch order; empties the window."""
        losses = _host_values(self.losses)
        hits = [int(h) for h in _host_values(self.hits)]
        done = list(zip(losses, self.sizes)), list(zip(hits, self.counts))
        self.__init__()
        return done


def _host_values(values):
    """Device scalars (0-d arrays) as a list of Python numbers, with one copy to the host."""
    if not values:
        return []
    xp = get_array_module(*values)
    return to_numpy(xp.stack([xp.asarray(v) for v in values])).tolist()


def _reset_state(model):
    if hasattr(model, "reset_state"):
        model.reset_state()


def evaluate(model, loss, loader, metric=accuracy):
    """(mean loss, accuracy or None) of `model` over the batches of `loader`, weighted by batch size."""
    model.eval()
    _reset_state(model)
    window = _Window()
    try:
        for x, y in loader:
            pred = model.forward(x)
            window.add(loss.forward(pred, y), len(x), *(metric(pred, y) if metric is not None else ()))
    finally:
        _reset_state(model)
        model.train()
    losses, hits = window.drain()
    total_loss, seen = 0.0, 0
    for value, size in losses:
        total_loss += value * size
        seen += size
    correct, counted = sum(h for h, _ in hits), sum(int(n) for _, n in hits)
    if seen == 0:
        raise ValueError("evaluate: the loader yielded no batch")
    return total_loss / seen, (correct / counted if metric is not None and counted else None)


class _Progress:
    """tqdm over the batches of one epoch when tqdm is installed, else one plain line per epoch."""

    def __init__(self, enabled, total, desc, stream):
        self.bar, self.enabled, self.stream, self.desc = None, enabled, stream, desc
        if enabled and total > 1:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, desc=desc, file=stream, leave=True, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, postfix=None):
        if self.bar is not None:
            if postfix is not None:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)

    def close(self, line):
        if self.bar is not None:
            self.bar.set_postfix_str(line)
            self.bar.close()
        elif self.enabled:
            print(f"{self.desc}: {line}", file=self.stream, flush=True)


def _optim_state(optimizer):
    return {f"optim/{k}": numpy.asarray(v) for k, v in optimizer.state_dict().items()}


def save_checkpoint(path, model, optimizer, epoch, loader=None, history=()):
    """Write model, optimizer, epoch, loader generator state and history to `path` atomically."""
    arrays = {f"model/{name}": to_numpy(p.data) for name, p in model.named_parameters()}
    arrays.update(_optim_state(optimizer))
    arrays["epoch"] = numpy.array(epoch)
    arrays["history"] = numpy.array(json.dumps(list(history)))
    if hasattr(loader, "state_dict"):
        arrays["loader_rng"] = numpy.array(loader.state_dict())
    save_arrays(path, arrays)


def load_checkpoint(path, model, optimizer, loader=None):
    """Restore what save_checkpoint wrote; returns (epoch, history)."""
    arrays = load_arrays(path)
    params = dict(model.named_parameters())
    names = {k[len("model/"):] for k in arrays if k.startswith("model/")}
    if names != set(params):
        raise ValueError(f"{path}: the checkpoint does not fit this model (parameters {sorted(names)} "
                         f"vs {sorted(params)})")
    for name, p in params.items():
        value = arrays[f"model/{name}"]
        if value.shape != tuple(p.data.shape):
            raise ValueError(f"{path}: parameter {name} has shape {value.shape}, the model has {tuple(p.data.shape)}")
        p.data[...] = to_device(value.astype(p.data.dtype), device_of(p.data))
    optimizer.load_state_dict({k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")})
    if "loader_rng" in arrays and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(arrays["loader_rng"].item())
    return int(arrays["epoch"]), json.loads(arrays["history"].item())


def cosine_schedule(lr, epochs, final_fraction=0.0):
    """lr(epoch) falling from `lr` at epoch 1 along half a cosine to `final_fraction * lr` after the last epoch."""
    def schedule(epoch):
        t = (epoch - 1) / epochs
        return lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t)))
    return schedule


def fit(model, loss, optimizer, train_loader, eval_loader=None, epochs=10, out=None, resume=False,
        metric=accuracy, schedule=None, checkpoint_every=1, progress=True, log_every=1, stream=None, config=None,
        clip_norm=None, on_epoch_end=None):
    """Train for `epochs` epochs (counting those a resumed checkpoint already did); returns the run report (dict).

    Progress (a tqdm bar per epoch, or a plain line without tqdm) goes to `stream` (stderr) for every `log_every`-th
    epoch and the last; progress=False keeps quiet. `schedule(epoch) -> lr`, when given, sets optimizer.lr at the
    start of each epoch (e.g. `cosine_schedule`).
    With `out` (a folder), writes checkpoint.npz, model.npz (the final parameters, for gpudl.load / `gpudl predict`),
    report.json and, when matplotlib is installed, curves.png. `config` (a dict) is copied into the report.
    `clip_norm`, when given, scales the gradients to a global L2 norm of at most clip_norm before every step
    (optim.clip_grad_norm). `on_epoch_end(record)`, when given, runs after each epoch's training and evaluation: it
    may add entries to the epoch's record (they go into the history and report.json; e.g. a perplexity), and a
    string it returns is appended to the epoch's progress line.
    """
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"fit: clip_norm must be positive, got {clip_norm!r}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
    for name, value in (("checkpoint_every", checkpoint_every), ("log_every", log_every)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"fit: {name} must be a positive int, got {value!r}")
    stream = stream if stream is not None else sys.stderr
    checkpoint = os.path.join(out, CHECKPOINT) if out else None
    history, start, last_good = [], 0, None
    if resume:
        if not checkpoint or not os.path.exists(checkpoint):
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {checkpoint or '(no output folder given)'}")
        start, history = load_checkpoint(checkpoint, model, optimizer, train_loader)
        last_good = start
    report = {"config": dict(config or {}), "epochs": epochs, "status": "running", "history": history,
              "parameters": int(sum(p.data.size for p in model.parameters()))}
    model.train()
    try:
        for epoch in range(start + 1, epochs + 1):
            if schedule is not None:
                optimizer.lr = schedule(epoch)
            show = progress and (epoch % log_every == 0 or epoch == epochs)
            record = _train_epoch(model, loss, optimizer, train_loader, metric, epoch, epochs, show, stream,
                                  eval_loader, last_good, checkpoint, clip_norm, on_epoch_end)
            history.append(record)
            if checkpoint and (epoch % checkpoint_every == 0 or epoch == epochs):
                save_checkpoint(checkpoint, model, optimizer, epoch, train_loader, history)
                last_good = epoch
        report["status"] = "completed"
    except BaseException as exc:
        report["status"] = "diverged" if isinstance(exc, TrainingDiverged) else "interrupted"
        report["error"] = str(exc) or type(exc).__name__
        raise
    finally:
        report["last_checkpoint_epoch"] = last_good
        report["final"] = history[-1] if history else None
        report["seconds"] = round(sum(r["seconds"] for r in history), 3)
        if out:
            if report["status"] == "completed":
                save(model, os.path.join(out, MODEL))
            write_report(out, report)
    return report


def _train_epoch(model, loss, optimizer, loader, metric, epoch, epochs, progress, stream, eval_loader, last_good,
                 checkpoint, clip_norm=None, on_epoch_end=None):
    bar = _Progress(progress, len(loader), f"epoch {epoch}/{epochs}", stream)
    _reset_state(model)
    t0 = time.perf_counter()
    totals = {"loss": 0.0, "seen": 0, "correct": 0, "counted": 0, "steps": 0}
    window = _Window()      # the steps whose loss is still on the device

    def read_back():
        losses, hits = window.drain()
        for value, size in losses:
            totals["steps"] += 1
            if not math.isfinite(value):
                kept = (f"the last good checkpoint ({checkpoint}, epoch {last_good}) is kept" if last_good
                        else "no checkpoint was written yet")
                bar.close("stopped")
                raise TrainingDiverged(f"the loss became {value} at epoch {epoch}, step {totals['steps']}; training "
                                       f"stopped ({kept}); try a smaller learning rate")
            totals["loss"] += value * size
            totals["seen"] += size
        totals["correct"] += sum(h for h, _ in hits)
        totals["counted"] += sum(int(n) for _, n in hits)

    for step, (x, y) in enumerate(loader, 1):
        optimizer.zero_grad()
        pred = model.forward(x)
        value = loss.forward(pred, y)
        model.backward(loss.backward())
        if clip_norm is not None:
            clip_grad_norm(model.parameters(), clip_norm)
        optimizer.step()
        window.add(value, len(x), *(metric(pred, y) if metric is not None else ()))
        if len(window) < SYNC_EVERY and step < len(loader):
            bar.update()
            continue
        read_back()
        seen, counted = totals["seen"], totals["counted"]
        rate = seen / max(time.perf_counter() - t0, 1e-9)
        bar.update({"loss": f"{totals['loss'] / seen:.4f}",
                    "acc": f"{totals['correct'] / counted:.3f}" if counted else "-", "samples/s": f"{rate:.0f}"})
    read_back()             # nothing left unless the loader yielded fewer batches than its len()
    total_loss, seen, correct, counted = totals["loss"], totals["seen"], totals["correct"], totals["counted"]
    seconds = time.perf_counter() - t0
    record = {"epoch": epoch, "lr": getattr(optimizer, "lr", None), "train_loss": total_loss / seen,
              "train_accuracy": correct / counted if counted else None,
              "seconds": round(seconds, 4), "samples_per_s": round(seen / max(seconds, 1e-9), 1)}
    if eval_loader is not None:
        record["test_loss"], record["test_accuracy"] = evaluate(model, loss, eval_loader, metric)
    line = f"loss {record['train_loss']:.4f}"
    if record["train_accuracy"] is not None:
        line += f", acc {record['train_accuracy']:.4f}"
    if eval_loader is not None:
        line += f", test loss {record['test_loss']:.4f}"
        if record["test_accuracy"] is not None:
            line += f", test acc {record['test_accuracy']:.4f}"
    extra = on_epoch_end(record) if on_epoch_end is not None else None
    if extra:
        line += f", {extra}"
    line += f", {record['samples_per_s']:.0f} samples/s"
    bar.close(line)
    return record


def write_report(out, report):
    """report.json (written atomically) and, when matplotlib is installed, curves.png of loss and accuracy."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, REPORT)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, path)
    if report["history"]:
        plot_curves(report["history"], os.path.join(out, CURVES))


def plot_curves(history, path):
    """A PNG of the loss and accuracy per epoch; returns the path, or None when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("test_loss", "test")):
        if all(r.get(key) is not None for r in history):
            ax_loss.plot(epochs, [r[key] for r in history], marker=".", label=label)
    for key, label in (("train_accuracy", "train"), ("test_accuracy", "test")):
        if all(r.get(key) is not None for r in history):
            ax_acc.plot(epochs, [r[key] for r in history], marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
