"""Devices: which array module holds an array, and moving arrays between devices.

This is the one place CuPy is imported. It imports cleanly without CuPy; the GPU is looked at only when asked for.
"""
import os
import sys

import numpy

_cupy = None            # the cupy module once imported, else None
_cupy_error = None      # why CuPy could not be used, for error messages
_cupy_tried = False
_notice_given = False


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide."""


def _load_cupy():
    """Import CuPy once; remember why it failed if it did."""
    global _cupy, _cupy_error, _cupy_tried
    if not _cupy_tried:
        _cupy_tried = True
        try:
            import cupy
            _cupy = cupy
        except Exception as exc:  # ImportError, or a CUDA library that fails to load
            _cupy_error = f"CuPy is not importable ({type(exc).__name__}: {exc})"
    return _cupy


def gpu_status():
    """(usable, reason): whether a CUDA device can run work, and why not when it cannot."""
    cupy = _load_cupy()
    if cupy is None:
        return False, _cupy_error or "CuPy is not installed (pip install 'gpudl[cuda13]' or 'gpudl[cuda12]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy is installed but no CUDA device is usable ({type(exc).__name__}: {exc})"
    if count < 1:
        return False, "CuPy is installed but reports no CUDA device"
    return True, f"{count} CUDA device(s)"


def gpu_available():
    """True when a CUDA device is usable through CuPy."""
    return gpu_status()[0]


class Device:
    """A place arrays live: the CPU (NumPy) or one CUDA device (CuPy)."""

    def __init__(self, kind, index=None):
        self.kind = kind
        self.index = index if kind == "cuda" else None

    @property
    def xp(self):
        """The array module of this device: numpy or cupy."""
        return numpy if self.kind == "cpu" else _cupy

    def __eq__(self, other):
        return isinstance(other, Device) and (self.kind, self.index) == (other.kind, other.index)

    def __hash__(self):
        return hash((self.kind, self.index))

    def __repr__(self):
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    __str__ = __repr__


CPU = Device("cpu")


def device(spec=None):
    """Resolve a device spec: "auto" | "cpu" | "cuda" | "cuda:N" (a Device passes through).

    With no spec, the environment variable GPUDL_DEVICE decides, else "auto". "auto" takes the GPU when one is usable,
    else the CPU with a one-line notice. An explicit "cuda" without a usable GPU raises DeviceError.
    """
    global _notice_given
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return _device_from_environment()
    if not isinstance(spec, str):
        raise TypeError(f"device spec must be a string like 'cpu' or 'cuda:0', got {type(spec).__name__}")
    text = spec.strip().lower()
    if text == "cpu":
        return CPU
    if text == "auto":
        usable, reason = gpu_status()
        if usable:
            return Device("cuda", _cupy.cuda.runtime.getDevice())
        if not _notice_given:
            _notice_given = True
            print(f"gpudl: no usable GPU ({reason}); running on the CPU", file=sys.stderr)
        return CPU
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text[5:] if text.startswith("cuda:") else None
        if index_text is not None and not index_text.isdigit():
            raise ValueError(f"device spec {spec!r}: the index after 'cuda:' must be a non-negative integer")
        usable, reason = gpu_status()
        if not usable:
            raise DeviceError(f"device {spec!r} is not usable: {reason}")
        count = _cupy.cuda.runtime.getDeviceCount()
        index = int(index_text) if index_text is not None else _cupy.cuda.runtime.getDevice()
        if index >= count:
            raise DeviceError(f"device {spec!r} is not usable: only {count} CUDA device(s) exist")
        return Device("cuda", index)
    raise ValueError(f"unknown device spec {spec!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def _device_from_environment():
    """The device GPUDL_DEVICE names ("auto" when it is unset or empty); a bad value is an error naming the variable."""
    spec = os.environ.get("GPUDL_DEVICE", "").strip() or "auto"
    try:
        return device(spec)
    except DeviceError as exc:
        raise DeviceError(f"GPUDL_DEVICE={spec}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"GPUDL_DEVICE={spec}: {exc}") from None


def is_cupy_array(array):
    """True for a cupy.ndarray, also when the user imported CuPy before gpudl looked for it."""
    if _cupy is None and not (_cupy_tried or sys.modules.get("cupy") is None):
        _load_cupy()
    return _cupy is not None and isinstance(array, _cupy.ndarray)


def get_array_module(*arrays):
    """numpy or cupy: the module of the first cupy array among `arrays`, else numpy."""
    for array in arrays:
        if is_cupy_array(array):
            return _cupy
    return numpy


def device_of(array):
    """The Device an array lives on."""
    if is_cupy_array(array):
        return Device("cuda", array.device.id)
    return CPU


def to_device(array, dev):
    """A copy of `array` on device `dev` (the array itself when it is already there)."""
    dev = device(dev)
    if dev.kind == "cpu":
        return to_numpy(array)
    if is_cupy_array(array) and array.device.id == dev.index:
        return array
    with _cupy.cuda.Device(dev.index):
        return _cupy.asarray(array)


def to_numpy(array):
    """The array as a numpy.ndarray on the host (copied from the GPU when needed)."""
    if is_cupy_array(array):
        return _cupy.asnumpy(array)
    return numpy.asarray(array)


def output_arrays(what, out, shapes, like):
    """Arrays for an op's results: new ones of `shapes` (like's dtype and device) when out is None, else `out`.

    out is a tuple of one array per shape, of like's array type and dtype, of exactly that shape, and C-contiguous;
    anything else is a TypeError/ValueError naming `what`. The NumPy paths use this too, so both paths accept the
    same `out`. An output may only overlap an input where the op says so.
    """
    xp = get_array_module(like)
    if out is None:
        return tuple(xp.empty(shape, dtype=like.dtype) for shape in shapes)
    if not isinstance(out, (tuple, list)) or len(out) != len(shapes):
        raise TypeError(f"{what}: out must be a tuple of {len(shapes)} arrays, got {type(out).__name__}")
    for k, (array, shape) in enumerate(zip(out, shapes)):
        if get_array_module(array) is not xp or getattr(array, "dtype", None) != like.dtype:
            raise TypeError(f"{what}: out[{k}] must be a {xp.__name__} array of dtype {like.dtype}, got "
                            f"{type(array).__name__} of dtype {getattr(array, 'dtype', None)}")
        if tuple(array.shape) != shape or not array.flags.c_contiguous:
            raise ValueError(f"{what}: out[{k}] must be C-contiguous of shape {shape}, got shape "
                             f"{tuple(array.shape)}{'' if array.flags.c_contiguous else ' (not C-contiguous)'}")
    return tuple(out)
