"""Saving and loading model parameters as .npz: plain arrays by name, readable on any device, never unpickled."""
import os
import tempfile
import zipfile

import numpy

from .backend import device_of, to_device, to_numpy

FORMAT_KEY = "__gpudl_format__"
FORMAT_VERSION = 1


def save_arrays(path, arrays):
    """Write a dict of host arrays to `path` atomically: a temporary file in the same folder, then a rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            numpy.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_arrays(path):
    """Read a .npz into a dict of host arrays; object arrays (pickles) are refused, never executed."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a readable .npz checkpoint (not a zip archive; truncated or another format?)")
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError(f"{path}: holds pickled Python objects; gpudl never unpickles a file "
                             f"(it could run arbitrary code), so it refuses to load it") from None
        raise ValueError(f"{path}: not a readable .npz checkpoint ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz checkpoint ({type(exc).__name__}: {exc})") from None


def save(model, path):
    """Write every parameter of `model` to `path` (.npz), copied to the host; the model stays where it is."""
    arrays = {name: to_numpy(p.data) for name, p in model.named_parameters()}
    arrays[FORMAT_KEY] = numpy.array(FORMAT_VERSION)
    save_arrays(path, arrays)


def load(model, path):
    """Read parameters saved by `save` into `model`, onto the device and dtype each parameter has now."""
    arrays = load_arrays(path)
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(arrays))
    unexpected = sorted(set(arrays) - set(params) - {FORMAT_KEY})
    if missing or unexpected:
        raise ValueError(f"{path}: does not fit this model (missing {missing or 'none'}, "
                         f"unexpected {unexpected or 'none'})")
    for name, p in params.items():
        value = arrays[name]
        if value.shape != tuple(p.data.shape):
            raise ValueError(f"{path}: parameter {name} has shape {value.shape}, the model has {tuple(p.data.shape)}")
        p.data[...] = to_device(value.astype(p.data.dtype), device_of(p.data))
    return model
