"""MNIST from its IDX files in a folder the user names, gzipped or raw, checked before use.

An IDX file is a big-endian header, then the data: a magic number (2051 for images: unsigned bytes, 3 dimensions;
2049 for labels: unsigned bytes, 1 dimension), one uint32 per dimension, then prod(dims) bytes. A file whose magic,
dimensions or length disagree with that is refused with an IDXError that names the file and what is wrong.
"""
import gzip
import os
import zlib

import numpy

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
SPLITS = {"train": "train", "test": "t10k"}


class IDXError(ValueError):
    """An IDX file that is not what it claims to be (bad magic, wrong sizes, truncated, corrupt gzip)."""


def _read_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def read_idx(path, magic=None):
    """The array stored in an IDX file of unsigned bytes (shape from its header); `magic` is checked when given."""
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if magic is not None and found != magic:
        raise IDXError(f"{path}: magic number {found}, expected {magic} "
                       f"({'images' if magic == IMAGES_MAGIC else 'labels'} file)")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise IDXError(f"{path}: not an IDX file of unsigned bytes (magic number {found})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise IDXError(f"{path}: header of {ndim} dimension(s) is missing or truncated")
    dims = tuple(int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
    expected = int(numpy.prod(dims))
    body = len(data) - header
    if body < expected:
        raise IDXError(f"{path}: truncated: the header promises {'x'.join(map(str, dims))} = {expected} bytes "
                       f"of data, the file holds {body}")
    if body > expected:
        raise IDXError(f"{path}: {body - expected} unexpected byte(s) after the {expected} bytes of data "
                       f"the header describes")
    return numpy.frombuffer(data, dtype=numpy.uint8, offset=header).reshape(dims)


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
    if len(images) != len(labels):
        raise IDXError(f"{paths['images-idx3-ubyte']} holds {len(images)} images but "
                       f"{paths['labels-idx1-ubyte']} holds {len(labels)} labels")
    if len(labels) and labels.max() > 9:
        raise IDXError(f"{paths['labels-idx1-ubyte']}: label {int(labels.max())} is not a digit 0-9")
    X = (images[:, None].astype(dtype) / 255).astype(dtype)
    return X, labels.astype(numpy.int64)
