"""`gpudl predict` for models that map input arrays to classes: reading --input, running the model, printing."""
import numpy

from ..backend import to_device, to_numpy
from ..readers import FileFormatError, read_npy
from .common import CLIError

CHUNK = 500     # samples per forward pass


def load_input(path):
    """The --input .npy file as float32 (uint8 images scaled to [0, 1]); readers.read_npy refuses anything else
    (an .npz, text, strings, pickled objects, an empty array, NaN) in one line."""
    try:
        X = read_npy(path)
    except FileNotFoundError:
        raise CLIError(f"--input {path}: no such file") from None
    except FileFormatError as exc:
        raise CLIError(f"--input {exc}") from None
    if X.dtype == numpy.uint8:
        X = X / 255.0
    return X.astype(numpy.float32)


def load_points(path):
    """The --input file as points (N, features)."""
    X = load_input(path)
    if X.ndim != 2:
        raise CLIError(f"--input {path}: expected points of shape (N, features), got {X.shape}")
    return X


def network_predictions(model, X, device):
    """(predicted classes, their scores): one output thresholded at 0.5, or the arg-max of softmax(logits).

    Inputs so large that the model's arithmetic overflows (NumPy's floating-point errors raise here) or that give
    outputs which are not finite are refused, naming the range of the inputs."""
    try:
        with numpy.errstate(over="raise", invalid="raise", divide="raise"):
            out = numpy.concatenate([to_numpy(model.forward(to_device(X[start:start + CHUNK], device)))
                                     for start in range(0, len(X), CHUNK)])
    except FloatingPointError as exc:
        raise CLIError(_overflow(X, f"NumPy reported '{exc}'")) from None
    if not numpy.isfinite(out).all():
        raise CLIError(_overflow(X, "the model's outputs are not finite"))
    if out.ndim != 2:
        raise CLIError(f"the model returns outputs of shape {out.shape[1:]} per sample; gpudl predict prints "
                       f"classes of models with one output vector per sample")
    if out.shape[1] == 1:
        return (out[:, 0] >= 0.5).astype(int), out[:, 0]
    shifted = numpy.exp(out - out.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return probs.argmax(axis=1), probs.max(axis=1)


def _overflow(X, what):
    return (f"the inputs range over [{float(X.min()):.3g}, {float(X.max()):.3g}] and {what}: the model cannot "
            f"predict from them; pass inputs on the scale it was trained on (e.g. images in [0, 1])")


def print_predictions(predicted, scores, labels, show):
    """One line per prediction (the first `show`), then the accuracy when the labels are known."""
    shown = min(len(predicted), show)
    for k in range(shown):
        line = f"{k}: {predicted[k]}"
        if scores is not None:
            line += f" ({scores[k]:.3f})"
        if labels is not None:
            line += f", label {labels[k]}"
        print(line)
    if shown < len(predicted):
        print(f"... {len(predicted) - shown} more (--show N prints more)")
    if labels is not None:
        print(f"accuracy {float((predicted == labels).mean()):.4f} on {len(labels)} samples")
    return 0
