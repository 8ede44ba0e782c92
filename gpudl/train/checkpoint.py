"""Checkpoints of a training run, in one .npz written atomically (serialization.save_arrays), so a killed run never
leaves a half-written checkpoint: the parameters (model/NAME), the optimizer state (optim/KEY), the epochs done, the
loader's generator state, the history, the run's configuration and the overrides accepted on resumes.

A run stopped inside an epoch also records its `position` there (the steps done, the epoch's running totals; the
generator state is then the one the epoch started from, so a resume draws the same batches and skips those done) and
the carried state of its stateful recurrent layers (carried/I.J: part J of the I-th such layer).

Reading is checked before anything is assigned: names, shapes and dtypes through serialization.load_arrays, the
optimizer buffers against the parameters they belong to, the JSON fields parsed; a checkpoint that fails changes
neither the model, nor the optimizer, nor the loader.
"""
import json
from dataclasses import dataclass, field
from typing import Any

import numpy

from ..backend import device_of, to_device, to_numpy
from ..readers import FileFormatError
from ..serialization import load_arrays, save_arrays


def stateful_layers(model):
    """The layers of `model` that carry their state from one batch to the next (stateful RNN and LSTM)."""
    return [m for m in model.modules() if getattr(m, "stateful", False) and hasattr(m, "state")]


def carried_state(model):
    """{"carried/I.J": host array}: the state each stateful layer carries now (empty when none carries any)."""
    arrays = {}
    for i, layer in enumerate(stateful_layers(model)):
        state = layer.state
        if state is None:
            continue
        for j, part in enumerate(state if isinstance(state, tuple) else (state,)):
            arrays[f"carried/{i}.{j}"] = to_numpy(part)
    return arrays


def restore_carried_state(model, arrays):
    """Hand each stateful layer the state `arrays` (carried_state's) holds for it, on its device and dtype."""
    for i, layer in enumerate(stateful_layers(model)):
        parts = [arrays[key] for key in sorted(k for k in arrays if k.startswith(f"carried/{i}."))]
        if parts:
            like = layer.parameters()[0].data
            parts = tuple(to_device(p.astype(like.dtype), device_of(like)) for p in parts)
            layer.state = parts if len(parts) > 1 else parts[0]


def _optim_state(optimizer):
    return {f"optim/{k}": numpy.asarray(v) for k, v in optimizer.state_dict().items()}


def save_checkpoint(path, model, optimizer, epoch, loader=None, history=(), config=None, overrides=(),
                    position=None, loader_state=None):
    """Write model, optimizer, epochs done, the loader's generator state (`loader_state`, else the loader's state
    now), history, the run's `config` (a dict) and the `overrides` accepted so far to `path` atomically. `position`
    (a dict: steps done in the next epoch and their totals) marks a run stopped inside an epoch; the carried state
    of stateful layers is written with it."""
    arrays = {f"model/{name}": to_numpy(p.data) for name, p in model.named_parameters()}
    arrays.update(_optim_state(optimizer))
    arrays["epoch"] = numpy.array(epoch)
    arrays["history"] = numpy.array(json.dumps(list(history)))
    if config is not None:
        arrays["config"] = numpy.array(json.dumps(config))
    if overrides:
        arrays["overrides"] = numpy.array(json.dumps(list(overrides)))
    if loader_state is None and hasattr(loader, "state_dict"):
        loader_state = loader.state_dict()
    if loader_state is not None:
        arrays["loader_rng"] = numpy.array(loader_state)
    if position is not None:
        arrays["position"] = numpy.array(json.dumps(position))
        arrays.update(carried_state(model))
    save_arrays(path, arrays)


@dataclass
class Checkpoint:
    """A checkpoint read and checked against a model and optimizer, not yet applied (see apply)."""
    path: str
    epoch: int
    history: list
    config: dict | None          # None for checkpoints written before configurations were recorded
    overrides: list
    parameters: dict                # {name: host array}
    optimizer_state: dict
    loader_state: str | None
    position: dict | None = None     # where inside epoch `epoch + 1` a stopped run was
    carried: dict = field(default_factory=dict)
    _targets: Any = field(default=None, repr=False)

    def apply(self, loader=None):
        """Assign the generator state (when the loader takes one; it is the one part whose content only the loader
        can check, hence first), the optimizer state and the parameters. The carried state is the loop's to hand
        over (restore_carried_state), after it has skipped the batches done."""
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


def _check_position(path, position, carried, model):
    for key in ("steps", "totals"):
        if key not in position:
            raise FileFormatError(f"{path}: field position has no {key!r}")
    if not (isinstance(position["steps"], int) and position["steps"] >= 1):
        raise FileFormatError(f"{path}: field position has steps {position['steps']!r}; expected 1 or more")
    layers = stateful_layers(model)
    for key, value in carried.items():
        index, _, part = key[len("carried/"):].partition(".")
        if not (index.isdigit() and part.isdigit() and int(index) < len(layers)):
            raise FileFormatError(f"{path}: {key} belongs to no stateful layer of this model ({len(layers)})")
        hidden = layers[int(index)].hidden_size
        if value.ndim != 2 or value.shape[1] != hidden or value.dtype.kind != "f":
            raise FileFormatError(f"{path}: {key} has shape {value.shape} ({value.dtype}); expected (N, {hidden}) "
                                  f"floats")


def recorded_config(path):
    """The configuration a checkpoint records (a dict; {} for one written before configurations were)."""
    arrays = load_arrays(path)
    return _json_field(path, arrays, "config", None, dict) or {}


def read_checkpoint(path, model, optimizer):
    """Read and check the checkpoint at `path` against `model` and `optimizer`; assigns nothing (see
    Checkpoint.apply). A missing field, a parameter of another shape, a buffer for no parameter or broken JSON is a
    FileFormatError of one line naming the file."""
    params = model.named_parameters()
    fields = {"epoch": ((), "iu", True), "history": ((), "U", True), "config": ((), "U", False),
              "overrides": ((), "U", False), "loader_rng": ((), "U", False), "optim/steps": ((), "iu", True),
              "position": ((), "U", False)}
    arrays = load_arrays(path, parameters={f"model/{name}": p.data.shape for name, p in params}, fields=fields,
                         other_prefixes=("optim/", "carried/"))
    state = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    _check_optimizer_state(path, state, [p for _, p in params])
    _json_field(path, arrays, "loader_rng", None, dict)
    epoch = int(arrays["epoch"])
    if epoch < 0:
        raise FileFormatError(f"{path}: field epoch is {epoch}; expected 0 or more")
    position = _json_field(path, arrays, "position", None, dict)
    carried = {k: v for k, v in arrays.items() if k.startswith("carried/")}
    if position is not None:
        _check_position(path, position, carried, model)
    return Checkpoint(path=str(path), epoch=epoch, history=_json_field(path, arrays, "history", [], list),
                      config=_json_field(path, arrays, "config", None, dict),
                      overrides=_json_field(path, arrays, "overrides", [], list),
                      parameters={name: arrays[f"model/{name}"] for name, _ in params}, optimizer_state=state,
                      loader_state=str(arrays["loader_rng"].item()) if "loader_rng" in arrays else None,
                      position=position, carried=carried, _targets=(model, optimizer))


def load_checkpoint(path, model, optimizer, loader=None):
    """Restore what save_checkpoint wrote, all or nothing; returns (epoch, history)."""
    checkpoint = read_checkpoint(path, model, optimizer)
    checkpoint.apply(loader)
    return checkpoint.epoch, checkpoint.history
