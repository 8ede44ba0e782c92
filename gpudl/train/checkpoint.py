"""Checkpoints of a training run: parameters, optimizer state, epoch, the loader's generator state and the history,
in one .npz written atomically (serialization.save_arrays: a temporary file, then a rename), so a killed run never
leaves a half-written checkpoint and a resumed run ends where an uninterrupted one does.
"""
import json

import numpy

from ..backend import device_of, to_device, to_numpy
from ..serialization import load_arrays, save_arrays


def _optim_state(optimizer):
    return {f"optim/{k}": numpy.asarray(v) for k, v in optimizer.state_dict().items()}


def save_checkpoint(path, model, optimizer, epoch, loader=None, history=()):
    """Write model, optimizer, epoch, loader generator state and history to `path` atomically."""
    arrays = {f"model/{name}": to_numpy(p.data) for name, p in model.named_parameters()}
    arrays.update(_optim_state(optimizer))
    arrays["epoch"] = numpy.array(epoch)
    arrays["history"] = numpy.array(json.dumps(list(history)))
    if hasattr(loader, "state_dict"):
        arrays["loader_rng"] = numpy.array(loader.state_dict())
    save_arrays(path, arrays)


def load_checkpoint(path, model, optimizer, loader=None):
    """Restore what save_checkpoint wrote; returns (epoch, history)."""
    arrays = load_arrays(path)
    params = dict(model.named_parameters())
    names = {k[len("model/"):] for k in arrays if k.startswith("model/")}
    if names != set(params):
        raise ValueError(f"{path}: the checkpoint does not fit this model (parameters {sorted(names)} "
                         f"vs {sorted(params)})")
    for name, p in params.items():
        value = arrays[f"model/{name}"]
        if value.shape != tuple(p.data.shape):
            raise ValueError(f"{path}: parameter {name} has shape {value.shape}, the model has {tuple(p.data.shape)}")
        p.data[...] = to_device(value.astype(p.data.dtype), device_of(p.data))
    optimizer.load_state_dict({k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")})
    if "loader_rng" in arrays and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(arrays["loader_rng"].item())
    return int(arrays["epoch"]), json.loads(arrays["history"].item())
