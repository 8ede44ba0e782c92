"""Training: the loop (`fit`, one `train_step` per batch, `evaluate`), checkpoints, and the run report.

    loop.py        fit, RunState, train_step, run_epoch, evaluate, accuracy, cosine_schedule, SYNC_EVERY,
                   TrainingDiverged
    checkpoint.py  save_checkpoint, load_checkpoint (atomic, resumable bit for bit)
    report.py      write_report, plot_curves, and the file names of a run folder
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .loop import (SYNC_EVERY, RunState, TrainingDiverged, accuracy, cosine_schedule, evaluate, fit, run_epoch,
                   train_step)
from .report import CHECKPOINT, CURVES, MODEL, REPORT, plot_curves, write_report

__all__ = ["CHECKPOINT", "CURVES", "MODEL", "REPORT", "RunState", "SYNC_EVERY", "TrainingDiverged", "accuracy",
           "cosine_schedule", "evaluate", "fit", "load_checkpoint", "plot_curves", "run_epoch", "save_checkpoint",
           "train_step", "write_report"]
