"""The training loop: `fit` trains for a number of epochs, each a pass of `train_step`s over the training batches
followed by an evaluation. The run's parts live beside it, one module each: checkpointing.py (checkpoints, the
final model file, resumes), evaluation.py, progress.py, divergence.py (the loss watch), stopping.py (signals),
tensorboard.py, report.py (report.json and curves.png)."""
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy

from .. import distributed
from . import checkpointing
from .checkpoint import restore_carried_state, save_checkpoint, stateful_layers
from .checkpointing import Checkpoints, normalized
from .divergence import DivergenceWatch, TrainingDiverged
from .evaluation import accuracy, evaluate, reset_state
from .progress import Progress
from .readback import ReadBack
from .report import CHECKPOINT, COMPLETED, FAILED, MODEL, RUNNING, STOPPED, write_report
from .step import EvalStep, TrainStep
from .stopping import RunStopped, StopSignals
from .tensorboard import TensorBoard


@dataclass(kw_only=True)
class RunState:
    """What a run carries from batch to batch and epoch to epoch (fit builds one; train_step and run_epoch read
    it)."""
    model: Any
    loss: Any
    optimizer: Any
    train_loader: Any
    eval_loader: Any = None
    metric: Callable | None = accuracy
    epochs: int = 1
    clip_norm: float | None = None
    on_epoch_end: Callable | None = None
    graph: Any = "auto"                 # TrainStep's graph= ("auto", True, False)
    comm: Any = None                    # the ranks of a data-parallel run (gpudl.distributed), or None
    watch: DivergenceWatch = field(default_factory=DivergenceWatch)
    progress: Progress = field(default_factory=Progress)
    show: bool = False                  # whether progress is printed at all
    stops: Any = None                   # a StopSignals: a signal it received stops the run after the current step
    checkpoint: str | None = None    # out/checkpoint.npz, or None without an output folder
    history: list = field(default_factory=list)
    last_good: tuple | None = None   # (epochs done, steps into the next) of the last checkpoint written
    step: Any = None                    # the TrainStep, made at the first batch
    eval_step: Any = None               # the EvalStep, made at the first evaluation


@dataclass
class Position:
    """Where inside epoch `epoch` a stopped run was: the steps done, their running totals and seconds, the loader's
    generator state at the epoch's start and the carried state of stateful layers (host arrays)."""
    epoch: int
    steps: int
    totals: dict
    seconds: float = 0.0
    loader_state: str | None = None
    carried: dict = field(default_factory=dict)


class _StopInside(Exception):
    """A signal stopped the run inside an epoch, at `position`."""

    def __init__(self, position):
        super().__init__(position)
        self.position = position


def fit(model, loss, optimizer, train_loader, eval_loader=None, epochs=10, out=None, graph="auto", *,
        resume=False, override=False, config=None, schedule=None, metric=accuracy, clip_norm=None, comm=None,
        on_epoch_end=None, progress=True, checkpoints=None, watch=None, tensorboard=None):
    """Train for `epochs` epochs (counting those a resumed checkpoint already did); returns the run report (dict).
    The README's section on the loop says what each argument does."""
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"fit: clip_norm must be positive, got {clip_norm!r}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
    if tensorboard is True and not out:
        raise ValueError("fit: tensorboard=True writes into the output folder: pass out= (or tensorboard=DIR)")
    checkpoints, watch = checkpoints or Checkpoints(), watch or DivergenceWatch()
    lead = comm is None or comm.rank == 0       # the rank that prints and writes
    board = TensorBoard(out if tensorboard is True else tensorboard) if tensorboard and lead else None
    if comm is not None:
        distributed.broadcast_parameters(model, comm)
        optimizer, clip_norm = distributed.DistributedOptimizer(optimizer, comm, clip_norm), None
    run = RunState(model=model, loss=loss, optimizer=optimizer, train_loader=train_loader, eval_loader=eval_loader,
                   metric=metric, epochs=epochs, clip_norm=clip_norm, on_epoch_end=on_epoch_end, graph=graph,
                   comm=comm, watch=watch, progress=progress if isinstance(progress, Progress) else Progress(),
                   show=bool(progress) and lead, checkpoint=os.path.join(out, CHECKPOINT) if out else None)
    with contextlib.ExitStack() as stack:
        owned = StopSignals.installed() is None
        run.stops = stack.enter_context(StopSignals()) if owned else StopSignals.installed()
        start, overrides = None, []
        if resume:
            checkpoint, overrides = checkpointing.resume(run.checkpoint, model, optimizer, train_loader, epochs,
                                                         config, schedule, override, checkpoints.free_on_resume)
            run.history = checkpoint.history
            run.last_good = (checkpoint.epoch, (checkpoint.position or {}).get("steps", 0))
            start = Position(checkpoint.epoch + 1, 0, {})
            if checkpoint.position is not None:
                start = Position(checkpoint.epoch + 1, checkpoint.position["steps"], checkpoint.position["totals"],
                                 checkpoint.position.get("seconds", 0.0), checkpoint.loader_state,
                                 checkpoint.carried)
        report = {"config": dict(config or {}), "epochs": epochs, "status": RUNNING, "reason": None,
                  "pid": os.getpid(), "history": run.history,
                  "parameters": int(sum(p.data.size for p in model.parameters()))}
        if overrides:
            report["overrides"] = overrides
        if comm is not None:
            report["distributed"] = {"ranks": comm.size, "backend": comm.backend}
        writing = bool(out) and lead
        if writing:
            write_report(out, report, curves=False)
        if board is not None:
            board.open(run.history)
            stack.callback(board.close)
        model.train()
        failure = None
        try:
            _epochs(run, start, schedule, checkpoints, config, overrides, board, writing)
            if writing:
                checkpoints.save_model(model, os.path.join(out, MODEL))
            report["status"], report["reason"] = COMPLETED, f"trained {epochs} epochs"
        except BaseException as exc:
            failure = exc
            report["status"], report["reason"] = _ending(exc, run)
            raise
        finally:
            report["step"] = step_report(run)
            report["last_checkpoint_epoch"], report["last_checkpoint_step"] = run.last_good or (None, 0)
            report["final"] = run.history[-1] if run.history else None
            report["seconds"] = round(sum(r["seconds"] for r in run.history), 3)
            if writing:
                try:
                    write_report(out, report)
                except OSError:
                    if failure is None:
                        raise
        received = run.stops.received
    if owned and received is not None:     # the run completed first: now the signal takes its usual effect
        signal.raise_signal(received)
    return report


def _ending(exc, run):
    """(state, reason) of a run that ended by `exc`."""
    if isinstance(exc, RunStopped):
        return STOPPED, str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return STOPPED, f"interrupted (KeyboardInterrupt); {_kept(run)}"
    if isinstance(exc, TrainingDiverged):
        return FAILED, f"diverged: {exc}"
    return FAILED, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _epochs(run, start, schedule, checkpoints, config, overrides, board, writing):
    """The epochs from `start` (a Position, None for a fresh run) to run.epochs, checkpointing as asked; a signal
    stops them after the current step (RunStopped)."""
    first = start.epoch if start is not None else 1
    config = normalized(config)

    def save(epoch, position=None, loader_state=None):
        if writing:
            save_checkpoint(run.checkpoint, run.model, run.optimizer, epoch, run.train_loader, run.history,
                            config=config, overrides=overrides, position=position, loader_state=loader_state)
            run.last_good = (epoch, position["steps"] if position else 0)

    for epoch in range(first, run.epochs + 1):
        if _stop_asked(run, boundary=True):
            if epoch == first:      # nothing trained yet: what is on disk stays as it is
                where = "before its first step" if first == 1 and not start else "before it trained on"
                raise RunStopped(run.stops.received or signal.SIGTERM, _stopped(run, where, saved=False))
            if run.last_good != (epoch - 1, 0):
                save(epoch - 1)
            raise RunStopped(run.stops.received or signal.SIGTERM, _stopped(run, f"after epoch {epoch - 1}"))
        if schedule is not None:
            run.optimizer.lr = schedule(epoch)
        try:
            record = run_epoch(run, epoch, show=run.show, start=start if epoch == first else None)
        except _StopInside as inside:
            at = inside.position
            where = f"at epoch {epoch}, step {at.steps} of {len(run.train_loader)}"
            if run.comm is not None and run.comm.size > 1 and stateful_layers(run.model):
                raise RunStopped(run.stops.received or signal.SIGTERM, _stopped(run, where, saved=False)) from None
            save(epoch - 1, {"steps": at.steps, "totals": at.totals, "seconds": round(at.seconds, 4)},
                 at.loader_state)
            raise RunStopped(run.stops.received or signal.SIGTERM, _stopped(run, where)) from None
        run.history.append(record)
        if board is not None:
            board.write(record)
        if epoch % checkpoints.every == 0 or epoch == run.epochs:
            save(epoch)


def _stopped(run, where, saved=True):
    name = run.stops.name or "a signal on another rank"
    if not run.checkpoint:
        return f"stopped by {name} {where} (no output folder: nothing was written)"
    if saved and run.last_good is not None:
        return f"stopped by {name} {where}; the checkpoint holds that point: continue with --resume"
    return f"stopped by {name} {where}; {_kept(run)}"


def _stop_asked(run, boundary):
    """Whether a signal asks the run to stop now. The ranks of a data-parallel run agree at each boundary (a window
    of steps read back, an epoch's end) with one small allreduce, so that they stop after the same step."""
    asked = run.stops is not None and run.stops.received is not None
    if run.comm is None or run.comm.size == 1:
        return asked
    if not boundary:
        return False
    flag = numpy.array([1.0 if asked else 0.0])
    run.comm.allreduce_mean_([flag])
    return bool(flag[0] > 0)


def train_step(run, x, y):
    """One mini-batch through run.step (a TrainStep, made on the first call): zero the gradients, forward, loss,
    backward, clip (when asked), update. Returns (prediction, loss), both still on the device."""
    if run.step is None:
        run.step = TrainStep(run.model, run.loss, run.optimizer, graph=run.graph, clip_norm=run.clip_norm,
                             stream=run.progress.out)
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
    if not run.last_good:
        return "no checkpoint was written yet"
    epoch, steps = run.last_good
    where = f"epoch {epoch}" + (f" and {steps} steps of the next" if steps else "")
    return f"the last good checkpoint ({run.checkpoint}, {where}) is kept"


def run_epoch(run, epoch, show=False, start=None):
    """One pass over run.train_loader (then an evaluation on run.eval_loader); returns the epoch's record. `start`
    (a Position inside this epoch) continues a run stopped there. NumPy's floating-point errors raise inside and end
    the run as TrainingDiverged."""
    bar = run.progress.epoch(epoch, run.epochs, len(run.train_loader), show)
    try:
        with run.watch.numpy_errors():
            return _epoch(run, epoch, bar, start)
    except FloatingPointError as exc:
        bar.close("stopped")
        raise TrainingDiverged(f"numpy reported '{exc}' at epoch {epoch}: the model diverged; training stopped "
                               f"({_kept(run)}); try a smaller learning rate (gpudl train: --lr)") from None


def _sum_over_ranks(comm, totals):
    """Replace the epoch's loss sum, sample and hit counts by their sums over the ranks (the global batch's)."""
    keys = ("loss", "seen", "correct", "counted")
    values = numpy.array([totals[key] for key in keys], dtype=numpy.float64)
    comm.allreduce_mean_([values])
    values *= comm.size
    totals.update({key: (float(v) if key == "loss" else round(v)) for key, v in zip(keys, values)})


def _epoch(run, epoch, bar, start):
    loader, metric, watch = run.train_loader, run.metric, run.watch
    reset_state(run.model)
    loader_state = loader.state_dict() if hasattr(loader, "state_dict") else None
    done = start.steps if start is not None else 0
    totals = dict(start.totals) if done else {"loss": 0.0, "seen": 0, "correct": 0, "counted": 0, "steps": 0}
    t0 = time.perf_counter() - (start.seconds if done else 0.0)
    window = ReadBack()         # the steps whose loss is still on the device
    batches = iter(loader)
    for _ in range(done):       # the steps done before the run stopped: the same batches, drawn again and skipped
        next(batches)
    if done:
        restore_carried_state(run.model, start.carried)
        bar.update(steps=done)

    def read_back():
        losses, hits = window.drain()
        for value, size in losses:
            totals["steps"] += 1
            if watch.diverged(value):
                bar.close("stopped")
                raise TrainingDiverged(f"the loss became {value} at epoch {epoch}, step {totals['steps']}; training "
                                       f"stopped ({_kept(run)}); try a smaller learning rate (gpudl train: --lr)")
            totals["loss"] += value * size
            totals["seen"] += size
        totals["correct"] += sum(h for h, _ in hits)
        totals["counted"] += sum(int(n) for _, n in hits)

    for step, (x, y) in enumerate(batches, done + 1):
        pred, value = train_step(run, x, y)
        window.add(value, len(x), *(metric(pred, y) if metric is not None else ()))
        last = step >= len(loader)
        boundary = len(window) >= watch.sync_every or last
        stop = not last and _stop_asked(run, boundary)
        if not (boundary or stop):
            bar.update()
            continue
        read_back()
        if stop:
            bar.close(f"stopped after step {step} of {len(loader)}")
            raise _StopInside(Position(epoch, step, dict(totals), time.perf_counter() - t0, loader_state))
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
            run.eval_step = EvalStep(run.model, run.loss, graph=run.graph, stream=run.progress.out)
        record["test_loss"], record["test_accuracy"] = evaluate(run.model, run.loss, run.eval_loader, metric,
                                                                run.eval_step)
        if watch.diverged(record["test_loss"]):
            bar.close("stopped")
            raise TrainingDiverged(f"the test loss became {record['test_loss']} at epoch {epoch}; training stopped "
                                   f"({_kept(run)}); try a smaller learning rate (gpudl train: --lr)")
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
