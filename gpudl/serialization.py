"""Saving and loading model parameters as .npz: plain arrays by name, readable on any device, never unpickled.

Reading checks before it allocates: the zip directory gives each member's name and unpacked size, each member's .npy
header its shape and dtype; names, shapes and dtypes are compared with what the caller expects and with those sizes,
and the total is capped relative to the file's size, before any array is read. A load into a model assigns nothing
unless every parameter passed.
"""
import contextlib
import os
import re
import secrets
import zipfile
import zlib

import numpy
import numpy.lib.format as npy_format

from .backend import device_of, to_device, to_numpy
from .readers import MAX_NPY_HEADER, FileFormatError, describe_size, open_regular, read_npy_header

FORMAT_KEY = "__gpudl_format__"
FORMAT_VERSION = 1
PARAMETER_DTYPES = (numpy.float32, numpy.float64)
# Members may unpack to at most this many times the file's size (or MIN_UNPACKED_CAP, for small files): savez
# stores arrays uncompressed (ratio 1) and savez_compressed of trained weights reaches about 1.1, while a crafted
# archive of zeros reaches 1000.
UNPACK_RATIO_CAP = 16
MIN_UNPACKED_CAP = 64 << 20
KIND_NAMES = {"b": "boolean", "i": "integer", "u": "unsigned integer", "f": "float", "c": "complex",
              "U": "string", "S": "bytes"}
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError)


def _temp_name(path):
    """.tmp-<name>-<pid>-<8 random hex digits>, beside `path`: no other writer picks the same name."""
    folder, base = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".tmp-{base}-{os.getpid()}-{secrets.token_hex(4)}")


def _remove_stale_temporaries(path):
    """Delete temporary files that killed writers of `path` left: ours by name, and their process is gone."""
    if os.name != "posix":      # os.kill(pid, 0) only asks "is it alive?" on POSIX
        return
    folder, base = os.path.split(os.path.abspath(path))
    ours = re.compile(re.escape(f".tmp-{base}-") + r"(\d+)-[a-z0-9_]{8}(\.npz|\.json)?")
    for name in os.listdir(folder):
        match = ours.fullmatch(name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
        except (PermissionError, OverflowError):
            pass


def _naming(path, exc):
    """`exc` (an OSError) as one that names `path`, the file the caller meant to write, not a temporary one."""
    return OSError(exc.errno, exc.strerror or str(exc), os.fspath(path))


def write_atomically(path, write, binary=True):
    """Call write(f) on a new temporary file beside `path`, then rename it to `path`: readers see the old file or
    the new one, never half of one. The file gets the mode a plain open() gives (0666 less the umask). An OSError
    (disk full, read-only folder) names `path`; the temporary file is removed whenever the write fails."""
    path = os.fspath(path)
    tmp = _temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise _naming(path, exc) from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            raise _naming(path, exc) from None
        raise
    _remove_stale_temporaries(path)


def save_arrays(path, arrays):
    """Write a dict of host arrays to `path` (.npz) atomically (write_atomically). Temporary files that writers of
    the same `path` left when they were killed (their process no longer exists) are removed after a save."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise _naming(folder, exc) from None
    write_atomically(path, lambda f: numpy.savez(f, **arrays))


def _directory(path, archive, size):
    """{name: ZipInfo} of the archive's members, each checked to be a stored or deflated .npy inside the file."""
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise FileFormatError(f"{path}: member {info.filename!r} is not a .npy array")
        name = info.filename[:-len(".npy")]
        if name in members:
            raise FileFormatError(f"{path}: member {info.filename!r} appears twice")
        if info.flag_bits & 0x1:
            raise FileFormatError(f"{path}: member {info.filename!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FileFormatError(f"{path}: member {info.filename!r} uses compression method {info.compress_type};"
                                  f" gpudl reads stored or deflated members only")
        if info.header_offset + info.compress_size > size:
            raise FileFormatError(f"{path}: the zip directory puts member {info.filename!r} past the end of the "
                                  f"file (truncated?)")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise FileFormatError(f"{path}: member {info.filename!r} is stored uncompressed but its sizes disagree "
                                  f"({info.compress_size} vs {info.file_size} bytes)")
        members[name] = info
    return members


def _check_unpacked_size(path, members, size):
    total, cap = sum(info.file_size for info in members.values()), max(MIN_UNPACKED_CAP, UNPACK_RATIO_CAP * size)
    if total > cap:
        raise FileFormatError(f"{path}: its members would unpack to {describe_size(total)} from a file of "
                              f"{describe_size(size)}; gpudl refuses more than {UNPACK_RATIO_CAP} times the "
                              f"file's size (at least {describe_size(MIN_UNPACKED_CAP)})")


def _check_names(path, names, parameters, fields, other_prefixes):
    expected = set(parameters) | set(fields)
    missing = sorted(name for name in parameters if name not in names)
    missing += sorted(name for name, (_, _, required) in fields.items() if required and name not in names)
    unexpected = sorted(name for name in names
                        if name not in expected and not name.startswith(tuple(other_prefixes)))
    if missing or unexpected:
        raise FileFormatError(f"{path}: does not fit this model (missing {missing or 'none'}, "
                              f"unexpected {unexpected or 'none'})")


def _check_header(path, name, shape, dtype, parameters, fields):
    if name in parameters:
        want, kinds = tuple(parameters[name]), None
        if dtype not in PARAMETER_DTYPES:
            raise FileFormatError(f"{path}: parameter {name} has dtype {dtype}; expected float32 or float64")
    elif name in fields:
        want, kinds, _ = fields[name]
        want = None if want is None else tuple(want)
    else:
        return
    if want is not None and shape != want:
        owner = "the model has" if name in parameters else "expected"
        raise FileFormatError(f"{path}: {'parameter' if kinds is None else 'field'} {name} has shape {shape}, "
                              f"{owner} {want}")
    if kinds is not None and dtype.kind not in kinds:
        raise FileFormatError(f"{path}: field {name} has dtype {dtype}; expected "
                              f"{' or '.join(KIND_NAMES[kind] for kind in kinds)} values")


def load_arrays(path, parameters=None, fields=None, other_prefixes=()):
    """Read a .npz into a dict of host arrays; pickled objects are refused, never executed.

    With no expectations, any plain arrays (numbers, booleans, strings) are read, within the size cap. `parameters`
    ({name: shape}) names float32/float64 arrays of exactly that shape with finite values, all required; `fields`
    ({name: (shape or None, dtype kinds such as "iu" or None, required)}) names other arrays. When either is given,
    a member named in neither and not starting with one of `other_prefixes` is refused. Every name, shape and dtype
    is checked from the zip directory and the .npy headers before any array is read.
    """
    path = os.fspath(path)
    parameters, fields = parameters or {}, fields or {}
    f, size = open_regular(path, "checkpoint file")
    with f:
        try:
            archive = zipfile.ZipFile(f)
        except _ZIP_ERRORS + (ValueError,) as exc:
            raise FileFormatError(f"{path}: not a readable .npz checkpoint (not a zip archive; truncated or "
                                  f"another format?: {exc})") from None
        with archive:
            members = _directory(path, archive, size)
            if parameters or fields:
                _check_names(path, set(members), parameters, fields, other_prefixes)
            _check_unpacked_size(path, members, size)
            for name, info in members.items():
                where = f"{path}: member {info.filename!r}"
                try:
                    with archive.open(info) as member:
                        shape, dtype = read_npy_header(member, info.file_size, where)
                except _ZIP_ERRORS as exc:
                    raise FileFormatError(f"{where}: corrupt data ({type(exc).__name__}: {exc})") from None
                _check_header(path, name, shape, dtype, parameters, fields)
            arrays = {}
            for name, info in members.items():
                try:
                    with archive.open(info) as member:
                        arrays[name] = npy_format.read_array(member, allow_pickle=False,
                                                             max_header_size=MAX_NPY_HEADER)
                except _ZIP_ERRORS + (ValueError,) as exc:
                    raise FileFormatError(f"{path}: member {info.filename!r}: corrupt data "
                                          f"({type(exc).__name__}: {exc})") from None
    for name in parameters:
        if not numpy.isfinite(arrays[name]).all():
            raise FileFormatError(f"{path}: parameter {name} holds NaN or infinite values")
    return arrays


def save(model, path):
    """Write every parameter of `model` to `path` (.npz), copied to the host; the model stays where it is."""
    arrays = {name: to_numpy(p.data) for name, p in model.named_parameters()}
    arrays[FORMAT_KEY] = numpy.array(FORMAT_VERSION)
    save_arrays(path, arrays)


def load(model, path):
    """Read parameters saved by `save` into `model`, onto the device and dtype each parameter has now.

    All or nothing: every parameter's name, shape, dtype and values are checked, and converted, before any is
    assigned, so a load that fails leaves the model as it was.
    """
    params = dict(model.named_parameters())
    arrays = load_arrays(path, parameters={name: p.data.shape for name, p in params.items()},
                         fields={FORMAT_KEY: ((), "iu", False)})
    if FORMAT_KEY in arrays and int(arrays[FORMAT_KEY]) != FORMAT_VERSION:
        raise FileFormatError(f"{path}: written in gpudl file format {int(arrays[FORMAT_KEY])}; this gpudl reads "
                              f"format {FORMAT_VERSION}")
    values = {}
    for name, p in params.items():
        with numpy.errstate(over="ignore"):   # an overflow is reported just below, in gpudl's words
            value = arrays[name].astype(p.data.dtype)
        if not numpy.isfinite(value).all():
            raise FileFormatError(f"{path}: parameter {name} holds values beyond the range of {p.data.dtype}")
        values[name] = to_device(value, device_of(p.data))
    for name, p in params.items():
        p.data[...] = values[name]
    return model
