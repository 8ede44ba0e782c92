"""Checked reading of the files users hand to gpudl: .npy arrays, run reports, and the pieces every reader shares.

Every reader follows the same order: the path must name a regular file (checked with os.stat before opening, so a
FIFO, a device such as /dev/zero or a folder is refused without blocking); the header is read and compared with the
file's real size; only then is memory allocated and the data read. A file that fails is refused with a
FileFormatError whose message is one line, "PATH: problem".
"""
import io
import json
import math
import os
import stat

import numpy
import numpy.lib.format as npy_format

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
MAX_NPY_HEADER = 10_000          # numpy's own limit on a .npy header (read_array's max_header_size)
MAX_REPORT_BYTES = 64 << 20      # far above any report.json gpudl writes


class FileFormatError(ValueError):
    """A file that is not what gpudl expects there; the message names the file and the problem in one line."""


class FolderGivenError(FileFormatError, IsADirectoryError):
    """A folder where a file was expected (also an IsADirectoryError, as the text reader raised before)."""


def describe_size(n):
    """`n` bytes in words a person reads at a glance: "512 bytes", "2147483648 bytes (2.0 GiB)"."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n} bytes ({n / (1 << shift):.1f} {unit})"
    return f"{n} byte{'s' if n != 1 else ''}"


def _kind_of(mode):
    for test, kind in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "special file"


def _check_regular(path, mode, what):
    if stat.S_ISDIR(mode):
        raise FolderGivenError(f"{path}: is a folder; expected a {what}")
    if not stat.S_ISREG(mode):
        raise FileFormatError(f"{path}: is a {_kind_of(mode)}, not a regular file; gpudl reads {what}s "
                              f"from regular files only")


def regular_file_size(path, what="file"):
    """The size in bytes of the regular file at `path`; a missing path, a folder, a FIFO or a device is refused."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such {what}: {path}") from None
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    _check_regular(path, st.st_mode, what)
    return st.st_size


def open_regular(path, what="file"):
    """(binary file, size) for the regular file at `path`, opened without ever blocking on a FIFO.

    The path is checked with os.stat before opening, and the opened file with os.fstat again (in case the path was
    replaced in between); O_NONBLOCK makes an open of a FIFO return at once instead of waiting for a writer.
    """
    path = os.fspath(path)
    regular_file_size(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        _check_regular(path, st.st_mode, what)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), st.st_size


def read_exactly(f, n, where, what):
    """`n` bytes from `f`, or a FileFormatError saying `what` is truncated."""
    data = f.read(n)
    if len(data) != n:
        raise FileFormatError(f"{where}: truncated {what} ({len(data)} of {n} bytes)")
    return data


def _check_dtype(dtype, where):
    if dtype.hasobject:
        raise FileFormatError(f"{where}: holds pickled Python objects; gpudl never unpickles a file "
                              f"(it could run arbitrary code), so it refuses to load it")
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind not in "biufcSU":
        raise FileFormatError(f"{where}: has dtype {dtype}; gpudl reads plain arrays of booleans, numbers or "
                              f"strings only (no structured, void or date types)")
    if dtype.itemsize == 0:
        raise FileFormatError(f"{where}: has dtype {dtype} of zero-size items")


def read_npy_header(f, size, where):
    """(shape, dtype) from the .npy data of `size` bytes that starts at `f`'s position, checked against `size`.

    The header's length, the dtype (no pickled objects, no structured types) and shape x itemsize = the bytes that
    follow the header are all checked here, so reading the data afterwards allocates exactly what the file holds.
    """
    if size < len(NPY_MAGIC) + 4:
        raise FileFormatError(f"{where}: too short to be a .npy array ({describe_size(size)})")
    start = f.read(len(NPY_MAGIC) + 2)
    if start[:len(NPY_MAGIC)] != NPY_MAGIC:
        if start.startswith(ZIP_MAGIC):
            raise FileFormatError(f"{where}: is a zip archive (an .npz?), not a .npy array")
        raise FileFormatError(f"{where}: does not start with the .npy magic \\x93NUMPY "
                              f"(starts with {start[:8]!r}: a text file or another format?)")
    version = (start[-2], start[-1])
    if version not in ((1, 0), (2, 0)):
        raise FileFormatError(f"{where}: .npy format version {version[0]}.{version[1]}; gpudl reads 1.0 and 2.0")
    length_bytes = 2 if version == (1, 0) else 4
    length_field = read_exactly(f, length_bytes, where, ".npy header")
    header_length = int.from_bytes(length_field, "little")
    data_start = len(start) + length_bytes + header_length
    if header_length > MAX_NPY_HEADER or data_start > size:
        raise FileFormatError(f"{where}: .npy header of {header_length} bytes is longer than the "
                              f"{'file' if data_start > size else str(MAX_NPY_HEADER) + '-byte limit'} allows")
    header = read_exactly(f, header_length, where, ".npy header")
    parse = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    try:
        shape, _, dtype = parse(io.BytesIO(length_field + header))
    except Exception as exc:    # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise FileFormatError(f"{where}: unreadable .npy header ({type(exc).__name__})") from None
    _check_dtype(dtype, where)
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise FileFormatError(f"{where}: .npy header has an invalid shape {shape}")
    count = math.prod(shape)
    if count >= 1 << 63:
        raise FileFormatError(f"{where}: shape {shape} has more elements than a 64-bit index can count")
    claimed, held = count * dtype.itemsize, size - data_start
    if claimed != held:
        raise FileFormatError(f"{where}: header claims shape {shape} of {dtype} = {describe_size(claimed)}, "
                              f"but {describe_size(held)} of data follow it")
    return shape, dtype


def read_npy(path, kinds="iuf"):
    """The array in the .npy file at `path`: numbers whose dtype kind is in `kinds`, finite, at least one value.

    An .npz archive, a text file, strings, pickled objects, an empty array, NaN or infinity are refused with a
    FileFormatError naming the file and the problem; never allow_pickle.
    """
    path = os.fspath(path)
    f, size = open_regular(path, ".npy array file")
    with f:
        shape, dtype = read_npy_header(f, size, path)
        if dtype.kind not in kinds:
            raise FileFormatError(f"{path}: holds {dtype} values; expected numbers (integers or floats)")
        if math.prod(shape) == 0:
            raise FileFormatError(f"{path}: holds an empty array of shape {shape}")
        f.seek(0)
        try:
            array = npy_format.read_array(f, allow_pickle=False, max_header_size=MAX_NPY_HEADER)
        except (ValueError, OSError, EOFError) as exc:
            raise FileFormatError(f"{path}: unreadable .npy data ({exc})") from None
    if dtype.kind == "f" and not numpy.isfinite(array).all():
        raise FileFormatError(f"{path}: holds NaN or infinite values")
    return array


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a float")
    return value


def _unique_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def read_json(path, what="JSON file", max_bytes=MAX_REPORT_BYTES):
    """The value in the strict JSON file at `path` (no NaN/Infinity, no repeated keys, UTF-8, at most max_bytes)."""
    path = os.fspath(path)
    f, size = open_regular(path, what)
    with f:
        if size > max_bytes:
            raise FileFormatError(f"{path}: {describe_size(size)} is larger than any {what} gpudl reads "
                                  f"({describe_size(max_bytes)})")
        raw = f.read(size)
    if not raw.strip():
        raise FileFormatError(f"{path}: is empty; expected a {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path}: is not UTF-8 text (undecodable byte at offset {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}: is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") \
            from None
    except ValueError as exc:
        raise FileFormatError(f"{path}: is not valid JSON ({exc})") from None
    except RecursionError:
        raise FileFormatError(f"{path}: is not a {what}: its JSON is nested too deeply") from None


def read_report(path):
    """The report.json of a run folder, checked to hold a "config" object with the model's name and arguments."""
    path = os.fspath(path)
    report = read_json(path, "report.json")
    if not isinstance(report, dict):
        raise FileFormatError(f"{path}: expected a JSON object, found a {type(report).__name__}")
    config = report.get("config")
    if not isinstance(config, dict):
        raise FileFormatError(f"{path}: has no \"config\" object (not a report written by gpudl train?)")
    if not isinstance(config.get("model"), str) or not config["model"]:
        raise FileFormatError(f"{path}: its config names no model (\"model\" must be a non-empty string)")
    if not isinstance(config.get("model_args"), dict):
        raise FileFormatError(f"{path}: its config has no \"model_args\" object")
    return report
