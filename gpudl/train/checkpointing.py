"""Checkpointing a run: when fit writes out/checkpoint.npz and the final model, and what a resume may change.

A resume is refused (ResumeMismatch) when the run's `config` differs from the checkpoint's in a setting outside
`free_on_resume`, or when the schedule gives other learning rates for the epochs already trained than the history
recorded, unless `override`; the changes accepted are recorded (old and new value) in the report's "overrides". A
change of config["model_args"] (the model's shape) is refused even then: the checkpoint's parameters fit only the
model they came from. A checkpoint that already holds every epoch asked for leaves nothing to train.
"""
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from ..serialization import save
from .checkpoint import read_checkpoint, recorded_config

FREE_ON_RESUME = ("epochs", "device", "gpudl")  # config keys a resume may change without --override


class ResumeMismatch(ValueError):
    """A resume with settings that change the result, or with nothing left to train; `changes` holds
    {setting: (checkpoint's value, this run's value)}."""

    def __init__(self, message, changes=None):
        super().__init__(message)
        self.changes = changes or {}


@dataclass(frozen=True)
class Checkpoints:
    """How fit checkpoints: every `every` epochs and after the last (and where a signal stops it), keys of the
    config a resume may change (`free_on_resume`), and `save_model(model, path)`, which writes the final model file
    of a completed run (gpudl.save; a model that needs more in its file, such as charlm's vocabulary, passes its
    own)."""
    every: int = 1
    free_on_resume: tuple = FREE_ON_RESUME
    save_model: Callable = save

    def __post_init__(self):
        if not (isinstance(self.every, int) and self.every >= 1):
            raise ValueError(f"Checkpoints: every must be a positive int, got {self.every!r}")


def normalized(config):
    """`config` as it reads back from JSON (tuples become lists), for comparing with a checkpoint's."""
    return json.loads(json.dumps(config or {}))


def resume_changes(checkpoint, config, schedule, free_on_resume=FREE_ON_RESUME):
    """{setting: (checkpoint's value, this run's value)} for every setting that changes a resumed run's result:
    each config key outside `free_on_resume` that the checkpoint records, and "schedule" when `schedule(epoch)`
    differs from the learning rate the history recorded for an epoch already trained."""
    changes = {}
    old, new = (checkpoint.config if hasattr(checkpoint, "config") else checkpoint), normalized(config)
    if old is not None:
        for key in sorted(old):
            if key not in free_on_resume and old.get(key) != new.get(key):
                changes[key] = (old.get(key), new.get(key))
    if schedule is not None:
        for record in getattr(checkpoint, "history", ()):
            recorded, planned = record.get("lr"), schedule(record["epoch"])
            if isinstance(recorded, (int, float)) and not math.isclose(recorded, planned, rel_tol=1e-9):
                changes["schedule"] = (f"lr {recorded:.6g} at epoch {record['epoch']}", f"lr {planned:.6g}")
                break
    return changes


def _listed(changes):
    return "; ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())


def resume(path, model, optimizer, loader, epochs, config, schedule, override, free_on_resume):
    """Read the checkpoint at `path`, refuse what fit must not continue, apply it; returns (checkpoint, overrides
    so far)."""
    if not path or not os.path.exists(path):
        raise FileNotFoundError(f"nothing to resume: no checkpoint at {path or '(no output folder given)'}")
    recorded = recorded_config(path)
    if "model_args" in recorded and normalized(config).get("model_args", recorded["model_args"]) != \
            recorded["model_args"]:
        changes = resume_changes(recorded, config, None, free_on_resume)
        raise ResumeMismatch(f"{path} holds another model ({_listed(changes)}); a resumed run keeps the model its "
                             f"checkpoint holds", changes)
    checkpoint = read_checkpoint(path, model, optimizer)
    if checkpoint.epoch >= epochs:
        raise ResumeMismatch(f"nothing to train: {path} already holds epoch {checkpoint.epoch} and the run asks "
                             f"for {epochs} epochs in all; ask for more epochs (gpudl train: --epochs N with N > "
                             f"{checkpoint.epoch})")
    changes = resume_changes(checkpoint, config, schedule, free_on_resume)
    overrides = list(checkpoint.overrides)
    if changes and not override:
        raise ResumeMismatch(f"{path} was trained with other settings ({_listed(changes)}); resuming with them "
                             f"changes the result: pass --override (fit: override=True) to continue with the new "
                             f"values", changes)
    if changes:
        overrides.append({"epoch": checkpoint.epoch,
                          "changes": {key: {"checkpoint": old, "now": new} for key, (old, new) in changes.items()}})
    checkpoint.apply(loader)
    return checkpoint, overrides
