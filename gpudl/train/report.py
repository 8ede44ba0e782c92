"""The run report: report.json (strict JSON, written atomically) with the run's state, and curves.png of the loss
and accuracy per epoch (with matplotlib). The names of the files a run folder holds live here.

A run is in one of four states, each written with its reason: running (from its start on), completed, stopped (a
signal; the checkpoint holds where) or failed (an error, a diverged loss). report.json is strict JSON (RFC 8259): a
value that is not a finite number is written as null, never as the NaN/Infinity Python's json module would emit.
"""
import json
import math
import os

from ..serialization import write_atomically

CHECKPOINT, REPORT, MODEL, CURVES, ONNX = "checkpoint.npz", "report.json", "model.npz", "curves.png", "model.onnx"
RUN_FILES = (CHECKPOINT, REPORT, MODEL, CURVES, ONNX)   # what a run (and `gpudl export`) leaves in its folder
EVENTS_PREFIX, EVENTS_SUFFIX = "events.out.tfevents.", ".gpudl"     # TensorBoard event files fit writes
RUNNING, COMPLETED, STOPPED, FAILED = "running", "completed", "stopped", "failed"
STATES = (RUNNING, COMPLETED, STOPPED, FAILED)


def is_events_file(name):
    """Whether `name` is a TensorBoard events file written by fit (tensorboard.py)."""
    return name.startswith(EVENTS_PREFIX) and name.endswith(EVENTS_SUFFIX)


def run_artefacts(out):
    """The names of the files of a run in folder `out` (RUN_FILES and event files), those that exist."""
    try:
        names = os.listdir(out)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if name in RUN_FILES or is_events_file(name))


def strict_json(value):
    """`value` with every non-finite float (NaN, +-inf) replaced by None, so that it dumps as strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(path, value):
    """Write `value` to `path` as strict JSON, atomically (serialization.write_atomically)."""
    text = json.dumps(strict_json(value), indent=2, allow_nan=False)
    write_atomically(path, lambda f: f.write(text), binary=False)


def write_report(out, report, curves=True):
    """report.json and, when `curves` and matplotlib is installed, curves.png of loss and accuracy."""
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, REPORT), report)
    if curves and report.get("history"):
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
        if all(r.get(key) is not None and math.isfinite(r[key]) for r in history):
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
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return path
