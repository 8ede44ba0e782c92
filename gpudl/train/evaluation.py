"""Evaluation on held-out data: the mean loss and a metric (by default the accuracy) over a loader's batches."""
import numpy

from .readback import ReadBack


def accuracy(pred, target):
    """(correct, count): arg-max class against integer labels (any leading axes: (N, T, V) logits against (N, T)
    labels count every position), or outputs thresholded at 0.5 against 0/1 targets of the prediction's shape."""
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


def reset_state(model):
    """Start a model that carries state from batch to batch (truncated BPTT) afresh."""
    if hasattr(model, "reset_state"):
        model.reset_state()


def evaluate(model, loss, loader, metric=accuracy, step=None):
    """(mean loss, accuracy or None) of `model` over the batches of `loader`, weighted by batch size.

    step, when given, is an EvalStep over model and loss that runs each batch (recorded once per batch shape and
    replayed, on a GPU). A model that carries state starts from zeros and is reset again after the pass.
    """
    model.eval()
    reset_state(model)
    window = ReadBack()
    try:
        for x, y in loader:
            if step is None:
                pred = model.forward(x)
                value = loss.forward(pred, y)
            else:
                value, pred = step(x, y), step.pred
            window.add(value, len(x), *(metric(pred, y) if metric is not None else ()))
    finally:
        reset_state(model)
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
