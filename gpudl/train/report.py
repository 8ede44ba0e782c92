"""The run report of a training run: report.json (written atomically) and, when matplotlib is installed, curves.png
of the loss and accuracy per epoch. The names of the files a run folder holds live here.

report.json is strict JSON (RFC 8259): a value that is not a finite number (a NaN or infinite loss, an overflowing
perplexity) is written as null, never as the NaN/Infinity that Python's json module would otherwise emit.
"""
import json
import math
import os
import tempfile

CHECKPOINT, REPORT, MODEL, CURVES = "checkpoint.npz", "report.json", "model.npz", "curves.png"
RUN_FILES = (CHECKPOINT, REPORT, MODEL, CURVES)     # what a run leaves in its folder


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
    """Write `value` to `path` as strict JSON, atomically: a temporary file of a name no other writer uses (in the
    same folder), then a rename; the temporary file is removed when the write fails."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.path.basename(path)}-{os.getpid()}-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(strict_json(value), f, indent=2, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_report(out, report):
    """report.json (strict JSON, written atomically) and, when matplotlib is installed, curves.png of loss and
    accuracy."""
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, REPORT), report)
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
    fig.savefig(path, dpi=100)
    return path
