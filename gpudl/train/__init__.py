"""Training: the loop (`fit`, one `train_step` per batch, `evaluate`), checkpoints, and the run report.

    loop.py        fit, RunState, train_step, run_epoch, evaluate, accuracy, cosine_schedule, SYNC_EVERY,
                   TrainingDiverged
    step.py        TrainStep, EvalStep: one training (evaluation) step, eager or recorded once and replayed (a CUDA
                   graph on a GPU)
    checkpoint.py  save_checkpoint, read_checkpoint / load_checkpoint (atomic, checked, all or nothing)
    report.py      write_report (strict JSON), plot_curves, and the file names of a run folder
    folder.py      claim_run_folder: one run at a time per folder, a finished run replaced only when asked
"""
from .checkpoint import Checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
from .folder import RunFolderError, claim_run_folder
from .loop import (FREE_ON_RESUME, SYNC_EVERY, ResumeMismatch, RunState, TrainingDiverged, accuracy, cosine_schedule,
                   evaluate, fit, resume_changes, run_epoch, train_step)
from .report import CHECKPOINT, CURVES, MODEL, REPORT, RUN_FILES, plot_curves, strict_json, write_json, write_report
from .step import RECORDINGS_KEPT, EvalStep, TrainStep

__all__ = ["CHECKPOINT", "CURVES", "Checkpoint", "EvalStep", "FREE_ON_RESUME", "MODEL", "RECORDINGS_KEPT", "REPORT",
           "RUN_FILES", "ResumeMismatch", "RunFolderError", "RunState", "SYNC_EVERY", "TrainStep", "TrainingDiverged",
           "accuracy", "claim_run_folder", "cosine_schedule", "evaluate", "fit", "load_checkpoint", "plot_curves",
           "read_checkpoint", "resume_changes", "run_epoch", "save_checkpoint", "strict_json", "train_step",
           "write_json", "write_report"]
