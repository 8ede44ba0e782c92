"""Shared by the reader tests: crafted bad files, and the checks every refusal must pass.

A refusal must raise the expected error with a one-line message that names the file and the problem, keep the
memory it allocates under MEMORY_BOUND (traced by tracemalloc, which sees NumPy's allocations too), and leave the
folder of the file exactly as it was.
"""
import hashlib
import io
import os
import re
import tracemalloc
import zipfile

import numpy
import pytest

from gpudl.readers import FileFormatError, FolderGivenError

MEMORY_BOUND = 100 << 20


def snapshot(folder):
    """{name: (size, mtime, sha256)} of the files in `folder` (what "nothing on disk changed" compares)."""
    state = {}
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        st = os.lstat(full)
        digest = None
        if os.path.isfile(full) and not os.path.islink(full) and st.st_size < (16 << 20):
            with open(full, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        state[name] = (st.st_size, st.st_mtime_ns, digest)
    return state


def assert_refused(read, path, *patterns, error=FileFormatError):
    """Call read(path): it must raise `error` naming `path` and matching every regex in `patterns`, in one line,
    within MEMORY_BOUND, and change nothing in path's folder. Returns the message."""
    path = os.fspath(path)
    folder = os.path.dirname(path)
    watched = folder if not folder.startswith("/dev") else None
    before = snapshot(watched) if watched else None
    tracemalloc.start()
    try:
        with pytest.raises(error) as info:
            read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "\n" not in message.strip(), message
    assert path in message, message
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    assert "allow_pickle" not in message, message
    assert peak < MEMORY_BOUND, f"reading {path} allocated {peak} bytes"
    if watched:
        assert snapshot(watched) == before
    return message


def npy_bytes(array):
    """The .npy file of `array`, as bytes."""
    buffer = io.BytesIO()
    numpy.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header(descr, shape, version=(1, 0), text=None):
    """A .npy header (magic, version, length, dict) claiming `descr` and `shape`, padded as numpy pads it."""
    text = text if text is not None else f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    length_bytes = 2 if version == (1, 0) else 4
    preamble = 6 + 2 + length_bytes
    body = text.encode("latin1")
    body += b" " * (-(preamble + len(body) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + len(body).to_bytes(length_bytes, "little") + body


def write_npz(path, members, compression=zipfile.ZIP_STORED):
    """A zip of {member file name: bytes}, as numpy.savez lays it out (or with another compression)."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


SPECIAL_PATHS = ["missing", "folder", "fifo", "dev_zero"]


def assert_refused_special(refuse, folder, name, what, kind):
    """refuse(path, *patterns, error=...) on a path that is no regular file: missing, a folder, a FIFO (which would
    block a reader that opened it) or /dev/zero (which a reader would read forever)."""
    path = os.path.join(folder, name)
    if kind == "missing":
        return refuse(path, f"no such {re.escape(what)}", error=FileNotFoundError)
    if kind == "folder":
        os.mkdir(path)
        return refuse(path, "is a folder", error=FolderGivenError)
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this system")
        os.mkfifo(path)
        return refuse(path, "FIFO", "not a regular file")
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this system")
    return refuse("/dev/zero", "character device", "not a regular file")


def sparse_file(path, size):
    """A file of `size` zero bytes that takes no disk space."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def cli_refuses(argv, capsys, *patterns, unchanged=None, status=None):
    """Run gpudl.cli.main(argv): it must fail (exit status != 0, or `status`) with exactly one line on stderr,
    "gpudl: error: ..." matching every regex in `patterns`, print no traceback, and leave the folder `unchanged`
    (when given) exactly as it was. Returns the line."""
    from gpudl.cli import main
    before = snapshot(unchanged) if unchanged is not None else None
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:       # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    assert code not in (0, None) and (status is None or code == status), (code, captured.err)
    lines = [line for line in captured.err.splitlines() if not line.startswith("gpudl: no usable GPU")]
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith("gpudl: error: "), line
    for pattern in patterns:
        assert re.search(pattern, line), f"{pattern!r} not in {line!r}"
    assert "Traceback" not in captured.err + captured.out and "Warning" not in captured.err
    assert "allow_pickle" not in line
    if unchanged is not None:
        assert snapshot(unchanged) == before
    return line
