"""Training: the step (eager or one recorded graph), the loop `fit` and its parts (checkpoints, evaluation,
progress, divergence watch, signals, TensorBoard), the run report and the run folder."""
from .checkpoint import Checkpoint, load_checkpoint, read_checkpoint, recorded_config, save_checkpoint
from .checkpointing import FREE_ON_RESUME, Checkpoints, ResumeMismatch, resume_changes
from .divergence import LOSS_LIMIT, SYNC_EVERY, DivergenceWatch, TrainingDiverged
from .evaluation import accuracy, evaluate
from .folder import RunFolderError, claim_run_folder
from .loop import RunState, fit, run_epoch, step_report, train_step
from .progress import Progress
from .report import CHECKPOINT, CURVES, MODEL, REPORT, RUN_FILES, plot_curves, strict_json, write_json, write_report
from .schedule import cosine_schedule
from .step import RECORDINGS_KEPT, EvalStep, TrainStep
from .stopping import RunStopped, StopSignals
from .tensorboard import TensorBoard

__all__ = ["CHECKPOINT", "CURVES", "FREE_ON_RESUME", "LOSS_LIMIT", "MODEL", "ONNX",
           "RECORDINGS_KEPT", "REPORT", "RUN_FILES", "SYNC_EVERY", "Checkpoint",
           "Checkpoints", "DivergenceWatch", "EvalStep", "Progress", "ResumeMismatch", "RunFolderError", "RunState",
           "RunStopped", "StopSignals", "TensorBoard", "TrainStep", "TrainingDiverged", "accuracy",
           "claim_run_folder", "cosine_schedule", "evaluate", "fit", "load_checkpoint", "plot_curves",
           "read_checkpoint", "recorded_config", "resume_changes", "run_epoch", "save_checkpoint", "step_report",
           "strict_json", "train_step", "write_json", "write_report"]
