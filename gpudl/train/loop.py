"""The training loop: epochs of mini-batches (one `train_step` each), evaluation on held-out data, progress,
checkpoints and a run report.

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

The losses and accuracy counts of the steps stay on the device and are read back together every `sync_every` steps
(SYNC_EVERY by default) and at the end of each epoch (one host sync per window instead of one per step, so the host
can queue the next steps while the GPU computes). A loss that turns NaN or infinite, or grows past LOSS_LIMIT, stops the run (TrainingDiverged)
at the end of its window; the message names the step where it happened, and the last checkpoint written before it
stays (the model in memory may have taken the window's remaining steps). A loss's forward must therefore return a
new value per call (gpudl's losses do), not a buffer it overwrites. A test loss of that kind stops the run
too, and so does a NumPy floating-point overflow, division by zero or invalid operation inside an epoch (NumPy's
errstate is set to raise there, and the error becomes TrainingDiverged in gpudl's words, instead of RuntimeWarnings
printed on the terminal).
Checkpoints (every `checkpoint_every` epochs and after the last) go to out/checkpoint.npz through
serialization.save_arrays, which writes a temporary file and renames it, so a killed run never leaves a half-written
checkpoint. A checkpoint holds the parameters (model/NAME), the optimizer state (optim/KEY), the epoch, the loader's
generator state, the history so far and the run's `config`; `resume=True` continues from it to the result an
uninterrupted run gives. A resume is refused (ResumeMismatch) when `config` differs from the checkpoint's in a
setting other than `free_on_resume` (the number of epochs, the device, gpudl's version), or when `schedule` gives
other learning rates for the epochs already trained than the history recorded; `override=True` continues anyway
and records each change, old and new value, in the report's "overrides". A checkpoint that already holds `epochs`
epochs leaves nothing to train and is refused too.

Data-parallel runs (`comm`, a gpudl.distributed communicator; every rank calls fit with its shard of each batch,
DataLoader(shard=(rank, size))): fit copies rank 0's parameters to every rank, averages the gradients over the
ranks before each step (distributed.DistributedOptimizer, which also does the clipping, after the average), and
sums each epoch's training loss and accuracy counts over the ranks, so the record is the global batch's. Every rank
evaluates the whole held-out set (the ranks hold the same parameters, so they get the same figures as one process,
with no collective; the time is no loss, since the ranks wait for the slowest anyway), and every rank returns the
same report. Rank 0 alone prints progress and writes the output folder; the other ranks only read the checkpoint
on resume (every rank restores it).
"""
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy

from .. import distributed
from ..backend import get_array_module, to_numpy
from ..serialization import save
from .checkpoint import read_checkpoint, save_checkpoint
from .report import CHECKPOINT, MODEL, write_report
from .step import EvalStep, TrainStep

LOSS_LIMIT = 1e30       # a loss beyond this counts as diverged: float32 overflows at 3.4e38, and a learning model's
                        # loss never comes near it
SYNC_EVERY = 16         # training steps between reads of the loss on the host (fit's default sync_every)
FREE_ON_RESUME = ("epochs", "device", "gpudl")  # config keys a resume may change (see the module's docstring)


def _diverged(loss):
    """True for a loss that is NaN, infinite, or beyond LOSS_LIMIT."""
    return not math.isfinite(loss) or abs(loss) > LOSS_LIMIT


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite (or NumPy met an overflow or invalid operation while training)."""


class ResumeMismatch(ValueError):
    """A resume with settings that change the result, or with nothing left to train."""


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


def evaluate(model, loss, loader, metric=accuracy, step=None):
    """(mean loss, accuracy or None) of `model` over the batches of `loader`, weighted by batch size.

    step, when given, is an EvalStep over model and loss that runs each batch (recorded once per batch shape and
    replayed, on a GPU); fit passes one that lives as long as the run.
    """
    model.eval()
    _reset_state(model)
    window = _Window()
    try:
        for x, y in loader:
            if step is None:
                pred = model.forward(x)
                value = loss.forward(pred, y)
            else:
                value, pred = step(x, y), step.pred
            window.add(value, len(x), *(metric(pred, y) if metric is not None else ()))
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
        if enabled and total > 1 and _is_terminal(stream):     # no \r updates into a log file
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


def _is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):   # no isatty, or a closed stream
        return False


def cosine_schedule(lr, epochs, final_fraction=0.0):
    """lr(epoch) falling from `lr` at epoch 1 along half a cosine to `final_fraction * lr` after the last epoch."""
    def schedule(epoch):
        t = (epoch - 1) / epochs
        return lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t)))
    return schedule


@dataclass
class RunState:
    """What a training run carries from batch to batch and epoch to epoch (fit builds one; train_step and run_epoch
    read it)."""
    model: Any
    loss: Any
    optimizer: Any
    train_loader: Any
    eval_loader: Any = None
    metric: Optional[Callable] = accuracy
    epochs: int = 1
    clip_norm: Optional[float] = None
    on_epoch_end: Optional[Callable] = None
    sync_every: int = SYNC_EVERY
    stream: Any = None
    checkpoint: Optional[str] = None    # out/checkpoint.npz, or None without an output folder
    history: list = field(default_factory=list)
    last_good: Optional[int] = None     # the epoch of the last checkpoint written
    graph: Any = "auto"                 # TrainStep's graph= ("auto", True, False)
    step: Any = None                    # the TrainStep, made at the first batch
    eval_step: Any = None               # the EvalStep, made at the first evaluation
    comm: Any = None                    # the ranks of a data-parallel run (gpudl.distributed), or None


def _normalized(config):
    """`config` as it reads back from JSON (tuples become lists), for comparing with a checkpoint's."""
    return json.loads(json.dumps(config or {}))


def resume_changes(checkpoint, config, schedule, free_on_resume=FREE_ON_RESUME):
    """{setting: (checkpoint's value, this run's value)} for every setting that changes a resumed run's result:
    each config key outside `free_on_resume`, and "schedule" when `schedule(epoch)` differs from the learning rate
    the history recorded for an epoch already trained."""
    changes = {}
    if checkpoint.config is not None:
        old, new = checkpoint.config, _normalized(config)
        for key in sorted(set(old) | set(new)):
            if key not in free_on_resume and old.get(key) != new.get(key):
                changes[key] = (old.get(key), new.get(key))
    if schedule is not None:
        for record in checkpoint.history:
            recorded, planned = record.get("lr"), schedule(record["epoch"])
            if isinstance(recorded, (int, float)) and not math.isclose(recorded, planned, rel_tol=1e-9):
                changes["schedule"] = (f"lr {recorded:.6g} at epoch {record['epoch']}", f"lr {planned:.6g}")
                break
    return changes


def _resume(run, resume_config, schedule, override, free_on_resume):
    """Read the checkpoint, refuse what fit must not continue, apply it; returns (start epoch, overrides)."""
    path = run.checkpoint
    if not path or not os.path.exists(path):
        raise FileNotFoundError(f"nothing to resume: no checkpoint at {path or '(no output folder given)'}")
    checkpoint = read_checkpoint(path, run.model, run.optimizer)
    if checkpoint.epoch >= run.epochs:
        raise ResumeMismatch(f"nothing to train: {path} already holds epoch {checkpoint.epoch} and the run asks "
                             f"for {run.epochs} epochs in all; ask for more epochs (gpudl train: --epochs N with N > "
                             f"{checkpoint.epoch})")
    changes = resume_changes(checkpoint, resume_config, schedule, free_on_resume)
    overrides = list(checkpoint.overrides)
    if changes and not override:
        listed = "; ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())
        raise ResumeMismatch(f"{path} was trained with other settings ({listed}); resuming with them changes the "
                             f"result: pass --override (fit: override=True) to continue with the new values")
    if changes:
        overrides.append({"epoch": checkpoint.epoch,
                          "changes": {key: {"checkpoint": old, "now": new} for key, (old, new) in changes.items()}})
    checkpoint.apply(run.train_loader)
    run.history = checkpoint.history
    return checkpoint.epoch, overrides


def fit(model, loss, optimizer, train_loader, eval_loader=None, epochs=10, out=None, resume=False,
        metric=accuracy, schedule=None, checkpoint_every=1, progress=True, log_every=1, stream=None, config=None,
        clip_norm=None, on_epoch_end=None, sync_every=None, override=False, free_on_resume=FREE_ON_RESUME,
        graph="auto", comm=None):
    """Train for `epochs` epochs (counting those a resumed checkpoint already did); returns the run report (dict).

    Progress (a tqdm bar per epoch, or a plain line without tqdm) goes to `stream` (stderr) for every `log_every`-th
    epoch and the last; progress=False keeps quiet. `schedule(epoch) -> lr`, when given, sets optimizer.lr at the
    start of each epoch (e.g. `cosine_schedule`).
    With `out` (a folder), writes checkpoint.npz, model.npz (the final parameters, for gpudl.load / `gpudl predict`),
    report.json and, when matplotlib is installed, curves.png. `config` (a dict) is copied into the report.
    `clip_norm`, when given, scales the gradients to a global L2 norm of at most clip_norm before every step
    (optim.clip_grad_norm). `on_epoch_end(record)`, when given, runs after each epoch's training and evaluation: it
    may add entries to the epoch's record (they go into the history and report.json; e.g. a perplexity), and a
    string it returns is appended to the epoch's progress line. `sync_every` (default SYNC_EVERY) is the number of
    steps whose losses are read back to the host together. `override` and `free_on_resume`: see the module's
    docstring (what a resume may change). `graph` ("auto", True or False) is TrainStep's (and the evaluation's
    EvalStep's): each step is recorded once per batch shape and replayed as one CUDA graph on a GPU; the report's
    "step" says how the steps ran. `comm`: a data-parallel run (see the module's docstring).
    """
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"fit: clip_norm must be positive, got {clip_norm!r}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
    sync_every = SYNC_EVERY if sync_every is None else sync_every
    for name, value in (("checkpoint_every", checkpoint_every), ("log_every", log_every), ("sync_every", sync_every)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"fit: {name} must be a positive int, got {value!r}")
    lead = comm is None or comm.rank == 0       # the rank that evaluates, prints and writes
    if comm is not None:
        distributed.broadcast_parameters(model, comm)
        optimizer, clip_norm = distributed.DistributedOptimizer(optimizer, comm, clip_norm), None
        progress = progress and lead
    run = RunState(model, loss, optimizer, train_loader, eval_loader, metric, epochs, clip_norm, on_epoch_end,
                   sync_every, stream if stream is not None else sys.stderr,
                   os.path.join(out, CHECKPOINT) if out else None, graph=graph, comm=comm)
    start, overrides = 0, []
    if resume:
        start, overrides = _resume(run, config, schedule, override, free_on_resume)
        run.last_good = start
    report = {"config": dict(config or {}), "epochs": epochs, "status": "running", "history": run.history,
              "parameters": int(sum(p.data.size for p in model.parameters()))}
    if overrides:
        report["overrides"] = overrides
    if comm is not None:
        report["distributed"] = {"ranks": comm.size, "backend": comm.backend}
    model.train()
    try:
        for epoch in range(start + 1, epochs + 1):
            if schedule is not None:
                optimizer.lr = schedule(epoch)
            run.history.append(run_epoch(run, epoch, show=progress and (epoch % log_every == 0 or epoch == epochs)))
            if run.checkpoint and lead and (epoch % checkpoint_every == 0 or epoch == epochs):
                save_checkpoint(run.checkpoint, model, optimizer, epoch, train_loader, run.history,
                                config=_normalized(config), overrides=overrides)
                run.last_good = epoch
        report["status"] = "completed"
    except BaseException as exc:
        report["status"] = "diverged" if isinstance(exc, TrainingDiverged) else "interrupted"
        report["error"] = str(exc) or type(exc).__name__
        raise
    finally:
        report["step"] = step_report(run)
        report["last_checkpoint_epoch"] = run.last_good
        report["final"] = run.history[-1] if run.history else None
        report["seconds"] = round(sum(r["seconds"] for r in run.history), 3)
        if out and lead:
            if report["status"] == "completed":
                save(model, os.path.join(out, MODEL))
            write_report(out, report)
    return report


def train_step(run, x, y):
    """One mini-batch through run.step (a TrainStep, made on the first call): zero the gradients, forward, loss,
    backward, clip (when asked), update.

    Returns (prediction, loss), both still on the device.
    """
    if run.step is None:
        run.step = TrainStep(run.model, run.loss, run.optimizer, graph=run.graph, clip_norm=run.clip_norm,
                             stream=run.stream)
    value = run.step(x, y)
    return run.step.pred, value


def step_report(run):
    """How the training steps ran, for the run report: the graph setting, whether steps were replayed from a
    recorded graph, how many, and why not where a graph was asked for but not used."""
    step, evaluation = run.step, run.eval_step
    return {"graph": run.graph, "graphed": bool(step is not None and step.replays),
            "replayed_steps": step.replays if step is not None else 0,
            "replayed_evaluation_batches": evaluation.replays if evaluation is not None else 0,
            "notice": step.notice if step is not None else None}


def _kept(run):
    return (f"the last good checkpoint ({run.checkpoint}, epoch {run.last_good}) is kept" if run.last_good
            else "no checkpoint was written yet")


def run_epoch(run, epoch, show=False):
    """One pass over run.train_loader (then an evaluation on run.eval_loader); returns the epoch's record.

    NumPy's floating-point errors raise inside (numpy.errstate) and end the run as TrainingDiverged."""
    bar = _Progress(show, len(run.train_loader), f"epoch {epoch}/{run.epochs}", run.stream)
    try:
        with numpy.errstate(over="raise", divide="raise", invalid="raise"):
            return _epoch(run, epoch, bar)
    except FloatingPointError as exc:
        bar.close("stopped")
        raise TrainingDiverged(f"numpy reported '{exc}' at epoch {epoch}: the model diverged; training stopped "
                               f"({_kept(run)}); try a smaller learning rate") from None


def _sum_over_ranks(comm, totals):
    """Replace the epoch's loss sum, sample and hit counts by their sums over the ranks (the global batch's)."""
    keys = ("loss", "seen", "correct", "counted")
    values = numpy.array([totals[key] for key in keys], dtype=numpy.float64)
    comm.allreduce_mean_([values])
    values *= comm.size
    totals.update({key: (float(v) if key == "loss" else int(round(v))) for key, v in zip(keys, values)})


def _epoch(run, epoch, bar):
    loader, metric = run.train_loader, run.metric
    _reset_state(run.model)
    t0 = time.perf_counter()
    totals = {"loss": 0.0, "seen": 0, "correct": 0, "counted": 0, "steps": 0}
    window = _Window()      # the steps whose loss is still on the device

    def read_back():
        losses, hits = window.drain()
        for value, size in losses:
            totals["steps"] += 1
            if _diverged(value):
                bar.close("stopped")
                raise TrainingDiverged(f"the loss became {value} at epoch {epoch}, step {totals['steps']}; training "
                                       f"stopped ({_kept(run)}); try a smaller learning rate")
            totals["loss"] += value * size
            totals["seen"] += size
        totals["correct"] += sum(h for h, _ in hits)
        totals["counted"] += sum(int(n) for _, n in hits)

    for step, (x, y) in enumerate(loader, 1):
        pred, value = train_step(run, x, y)
        window.add(value, len(x), *(metric(pred, y) if metric is not None else ()))
        if len(window) < run.sync_every and step < len(loader):
            bar.update()
            continue
        read_back()
        seen, counted = totals["seen"], totals["counted"]
        rate = seen / max(time.perf_counter() - t0, 1e-9)
        bar.update({"loss": f"{totals['loss'] / seen:.4f}",
                    "acc": f"{totals['correct'] / counted:.3f}" if counted else "-", "samples/s": f"{rate:.0f}"})
    read_back()             # nothing left unless the loader yielded fewer batches than its len()
    if run.comm is not None and run.comm.size > 1:
        _sum_over_ranks(run.comm, totals)
    total_loss, seen, correct, counted = totals["loss"], totals["seen"], totals["correct"], totals["counted"]
    seconds = time.perf_counter() - t0
    record = {"epoch": epoch, "lr": getattr(run.optimizer, "lr", None), "train_loss": total_loss / seen,
              "train_accuracy": correct / counted if counted else None,
              "seconds": round(seconds, 4), "samples_per_s": round(seen / max(seconds, 1e-9), 1)}
    if run.eval_loader is not None:
        if run.eval_step is None:
            run.eval_step = EvalStep(run.model, run.loss, graph=run.graph, stream=run.stream)
        record["test_loss"], record["test_accuracy"] = evaluate(run.model, run.loss, run.eval_loader, metric,
                                                                run.eval_step)
        if _diverged(record["test_loss"]):
            bar.close("stopped")
            raise TrainingDiverged(f"the test loss became {record['test_loss']} at epoch {epoch}; training stopped "
                                   f"({_kept(run)}); try a smaller learning rate")
    line = f"loss {record['train_loss']:.4f}"
    if record["train_accuracy"] is not None:
        line += f", acc {record['train_accuracy']:.4f}"
    if run.eval_loader is not None:
        line += f", test loss {record['test_loss']:.4f}"
        if record["test_accuracy"] is not None:
            line += f", test acc {record['test_accuracy']:.4f}"
    extra = run.on_epoch_end(record) if run.on_epoch_end is not None else None
    if extra:
        line += f", {extra}"
    line += f", {record['samples_per_s']:.0f} samples/s"
    bar.close(line)
    return record
