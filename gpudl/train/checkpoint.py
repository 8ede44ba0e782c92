"""Checkpoints of a training run: parameters, optimizer state, epoch, the loader's generator state, the history and
the run's configuration, in one .npz written atomically (serialization.save_arrays: a temporary file, then a
rename; temporaries that killed writers left are removed), so a killed run never leaves a half-written checkpoint
and a resumed run ends where an uninterrupted one does.

Reading is checked before anything is assigned: names, shapes and dtypes through serialization.load_arrays, the
optimizer buffers against the parameters they belong to, the JSON fields parsed; a checkpoint that fails changes
neither the model, nor the optimizer, nor the loader.
"""
import json
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy

from ..backend import device_of, to_device, to_numpy
from ..readers import FileFormatError
from ..serialization import load_arrays, save_arrays


def _optim_state(optimizer):
    return {f"optim/{k}": numpy.asarray(v) for k, v in optimizer.state_dict().items()}


def save_checkpoint(path, model, optimizer, epoch, loader=None, history=(), config=None, overrides=()):
    """Write model, optimizer, epoch, loader generator state, history, the run's `config` (a dict) and the
    `overrides` accepted on resumes so far to `path` atomically."""
    arrays = {f"model/{name}": to_numpy(p.data) for name, p in model.named_parameters()}
    arrays.update(_optim_state(optimizer))
    arrays["epoch"] = numpy.array(epoch)
    arrays["history"] = numpy.array(json.dumps(list(history)))
    if config is not None:
        arrays["config"] = numpy.array(json.dumps(config))
    if overrides:
        arrays["overrides"] = numpy.array(json.dumps(list(overrides)))
    if hasattr(loader, "state_dict"):
        arrays["loader_rng"] = numpy.array(loader.state_dict())
    save_arrays(path, arrays)


@dataclass
class Checkpoint:
    """A checkpoint read and checked against a model and optimizer, not yet applied (see apply)."""
    path: str
    epoch: int
    history: list
    config: Optional[dict]          # None for checkpoints written before configurations were recorded
    overrides: list
    parameters: dict                # {name: host array}
    optimizer_state: dict
    loader_state: Optional[str]
    _targets: Any = field(default=None, repr=False)

    def apply(self, loader=None):
        """Assign the generator state (when the loader takes one; it is the one part whose content only the loader
        can check, hence first), the optimizer state and the parameters."""
        model, optimizer = self._targets
        if self.loader_state is not None and hasattr(loader, "load_state_dict"):
            try:
                loader.load_state_dict(self.loader_state)
            except (ValueError, TypeError, KeyError) as exc:
                raise FileFormatError(f"{self.path}: field loader_rng is not a state this loader takes "
                                      f"({type(exc).__name__}: {exc})") from None
        params = dict(model.named_parameters())
        values = {name: to_device(value.astype(params[name].data.dtype), device_of(params[name].data))
                  for name, value in self.parameters.items()}
        optimizer.load_state_dict(self.optimizer_state)
        for name, value in values.items():
            params[name].data[...] = value


def _json_field(path, arrays, name, default, kind):
    if name not in arrays:
        return default
    try:
        value = json.loads(str(arrays[name].item()))
    except ValueError as exc:
        raise FileFormatError(f"{path}: field {name} is not valid JSON ({exc})") from None
    if kind is not None and not isinstance(value, kind):
        raise FileFormatError(f"{path}: field {name} holds a {type(value).__name__}, expected a {kind.__name__}")
    return value


def _check_optimizer_state(path, state, params):
    """Every optimizer buffer "KEY.i" must belong to parameter i and have its shape."""
    for key, value in state.items():
        if key == "steps":
            continue
        _, _, index = key.rpartition(".")
        if not index.isdigit() or int(index) >= len(params):
            raise FileFormatError(f"{path}: optimizer state optim/{key} belongs to no parameter of this model "
                                  f"({len(params)} parameters)")
        if tuple(value.shape) != tuple(params[int(index)].data.shape):
            raise FileFormatError(f"{path}: optimizer state optim/{key} has shape {tuple(value.shape)}, its "
                                  f"parameter has {tuple(params[int(index)].data.shape)}")


def read_checkpoint(path, model, optimizer):
    """Read and check the checkpoint at `path` against `model` and `optimizer`; assigns nothing (see
    Checkpoint.apply). A missing field, a parameter of another shape, a buffer for no parameter or broken JSON is a
    FileFormatError of one line naming the file."""
    params = model.named_parameters()
    fields = {"epoch": ((), "iu", True), "history": ((), "U", True), "config": ((), "U", False),
              "overrides": ((), "U", False), "loader_rng": ((), "U", False), "optim/steps": ((), "iu", True)}
    arrays = load_arrays(path, parameters={f"model/{name}": p.data.shape for name, p in params}, fields=fields,
                         other_prefixes=("optim/",))
    state = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    _check_optimizer_state(path, state, [p for _, p in params])
    _json_field(path, arrays, "loader_rng", None, dict)
    epoch = int(arrays["epoch"])
    if epoch < 0:
        raise FileFormatError(f"{path}: field epoch is {epoch}; expected 0 or more")
    return Checkpoint(path=str(path), epoch=epoch, history=_json_field(path, arrays, "history", [], list),
                      config=_json_field(path, arrays, "config", None, dict),
                      overrides=_json_field(path, arrays, "overrides", [], list),
                      parameters={name: arrays[f"model/{name}"] for name, _ in params}, optimizer_state=state,
                      loader_state=str(arrays["loader_rng"].item()) if "loader_rng" in arrays else None,
                      _targets=(model, optimizer))


def load_checkpoint(path, model, optimizer, loader=None):
    """Restore what save_checkpoint wrote, all or nothing; returns (epoch, history)."""
    checkpoint = read_checkpoint(path, model, optimizer)
    checkpoint.apply(loader)
    return checkpoint.epoch, checkpoint.history
