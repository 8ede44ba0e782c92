"""The run report of a training run: report.json (written atomically) and, when matplotlib is installed, curves.png
of the loss and accuracy per epoch. The names of the files a run folder holds live here.
"""
import json
import os

CHECKPOINT, REPORT, MODEL, CURVES = "checkpoint.npz", "report.json", "model.npz", "curves.png"


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
