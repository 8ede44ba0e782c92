"""MNIST from its IDX files in a folder the user names, gzipped or raw, checked before use.

An IDX file is a big-endian header, then the data: a magic number (2051 for images: unsigned bytes, 3 dimensions;
2049 for labels: unsigned bytes, 1 dimension), one uint32 per dimension, then prod(dims) bytes. A file whose magic,
dimensions or length disagree with that is refused with an IDXError that names the file and what is wrong.
"""
import gzip
import math
import os
import zlib

import numpy

from ..readers import FileFormatError, describe_size, open_regular

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
SPLITS = {"train": "train", "test": "t10k"}
GZIP_MAGIC = b"\x1f\x8b"
# A gzipped IDX file may unpack to at most this many times its size (or MIN_UNPACKED_CAP, for small files): MNIST's
# own files unpack about 2-5 times; a crafted "gzip bomb" of zeros 1000 times.
GZIP_RATIO_CAP = 100
MIN_UNPACKED_CAP = 64 << 20
CHUNK = 1 << 20


class IDXError(FileFormatError):
    """An IDX file that is not what it claims to be (bad magic, wrong sizes, truncated, corrupt gzip)."""


def _promise(dims):
    return f"the header promises {'x'.join(map(str, dims))} = {math.prod(dims)} bytes of data"


def _read(stream, dims, path):
    """The prod(dims) bytes of data of `stream` in a new bytearray, read (and decompressed) a chunk at a time."""
    n = math.prod(dims)
    out = bytearray(n)
    view, filled = memoryview(out), 0
    while filled < n:
        got = stream.readinto(view[filled:filled + CHUNK])
        if not got:
            break
        filled += got
    if filled < n:
        raise IDXError(f"{path}: truncated: {_promise(dims)}, the file holds {filled}")
    return out


def _header(stream, path, magic):
    """(dims, header length) from the start of an IDX stream, checked against `magic` when it is given."""
    start = stream.read(4)
    if len(start) < 4:
        raise IDXError(f"{path}: too short to be an IDX file ({len(start)} bytes)")
    found = int.from_bytes(start, "big")
    if magic is not None and found != magic:
        raise IDXError(f"{path}: magic number {found}, expected {magic} "
                       f"({'images' if magic == IMAGES_MAGIC else 'labels'} file)")
    if start[0] != 0 or start[1] != 0 or start[2] != 0x08:
        raise IDXError(f"{path}: not an IDX file of unsigned bytes (magic number {found})")
    ndim = start[3]
    raw_dims = stream.read(4 * ndim)
    if ndim == 0 or len(raw_dims) < 4 * ndim:
        raise IDXError(f"{path}: header of {ndim} dimension(s) is missing or truncated")
    dims = tuple(int.from_bytes(raw_dims[4 * k:4 * k + 4], "big") for k in range(ndim))
    return dims, 4 + 4 * ndim


def _read_raw(f, size, path, magic):
    dims, header = _header(f, path, magic)
    expected, body = math.prod(dims), size - header
    if body < expected:
        raise IDXError(f"{path}: truncated: {_promise(dims)}, the file holds {body}")
    if body > expected:
        raise IDXError(f"{path}: {body - expected} unexpected byte(s) after the {expected} bytes of data "
                       f"the header describes")
    return dims, _read(f, dims, path)


def _read_gzip(f, size, path, magic):
    """Decompress no more than the header promises, and refuse a promise beyond GZIP_RATIO_CAP times the file."""
    stream = gzip.GzipFile(fileobj=f, mode="rb")
    dims, header = _header(stream, path, magic)
    expected = math.prod(dims)
    if header + expected > max(MIN_UNPACKED_CAP, GZIP_RATIO_CAP * size):
        raise IDXError(f"{path}: {_promise(dims)} from {describe_size(size)} of gzip; gpudl refuses more than "
                       f"{GZIP_RATIO_CAP} times the compressed size (at least {describe_size(MIN_UNPACKED_CAP)})")
    data = _read(stream, dims, path)
    if stream.read(1):
        raise IDXError(f"{path}: unexpected byte(s) after the {expected} bytes of data the header describes")
    return dims, data


def read_idx(path, magic=None):
    """The array stored in an IDX file of unsigned bytes (shape from its header); `magic` is checked when given.

    The header is checked against the file's real size (gzipped: against GZIP_RATIO_CAP times it) before the data
    is read, and a gzipped file is decompressed a chunk at a time, never past what the header promises.
    """
    path = os.fspath(path)
    f, size = open_regular(path, "IDX file")
    with f:
        gzipped = f.read(2) == GZIP_MAGIC
        f.seek(0)
        if not gzipped:
            dims, data = _read_raw(f, size, path, magic)
        else:
            try:
                dims, data = _read_gzip(f, size, path, magic)
            except (OSError, EOFError, zlib.error) as exc:
                raise IDXError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    return numpy.frombuffer(data, dtype=numpy.uint8).reshape(dims)


def find_file(folder, stem):
    """The path of `stem` (e.g. "t10k-images-idx3-ubyte") in `folder`, gzipped or raw, or None."""
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def has_split(folder, split):
    """True when both files of `split` ("train" or "test") are in `folder`."""
    prefix = SPLITS[split]
    return all(find_file(folder, f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))


def load_mnist(folder, split="train", dtype=numpy.float32):
    """(X, y) of one MNIST split from `folder`: X (N, 1, 28, 28) scaled to [0, 1], y (N,) int64 in 0..9.

    split "train" reads train-images-idx3-ubyte / train-labels-idx1-ubyte, "test" the t10k-* files, each with or
    without .gz.
    """
    folder = os.fspath(folder)
    if split not in SPLITS:
        raise ValueError(f"load_mnist: split must be 'train' or 'test', got {split!r}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"MNIST folder {folder} does not exist")
    prefix = SPLITS[split]
    paths = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        stem = f"{prefix}-{kind}"
        paths[kind] = find_file(folder, stem)
        if paths[kind] is None:
            raise FileNotFoundError(f"MNIST folder {folder} has no {stem} (or {stem}.gz)")
    images = read_idx(paths["images-idx3-ubyte"], IMAGES_MAGIC)
    labels = read_idx(paths["labels-idx1-ubyte"], LABELS_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IDXError(f"{paths['images-idx3-ubyte']}: images of size {'x'.join(map(str, images.shape[1:]))}, "
                       f"expected 28x28")
    if labels.ndim != 1:
        raise IDXError(f"{paths['labels-idx1-ubyte']}: labels must have one dimension, got shape {labels.shape}")
    if len(images) == 0:
        raise IDXError(f"{paths['images-idx3-ubyte']}: holds no images")
    if len(images) != len(labels):
        raise IDXError(f"{paths['images-idx3-ubyte']} holds {len(images)} images but "
                       f"{paths['labels-idx1-ubyte']} holds {len(labels)} labels")
    if len(labels) and labels.max() > 9:
        raise IDXError(f"{paths['labels-idx1-ubyte']}: label {int(labels.max())} is not a digit 0-9")
    X = (images[:, None].astype(dtype) / 255).astype(dtype)
    return X, labels.astype(numpy.int64)
