"""Text for character-level language models: loading, a default corpus, a vocabulary, and batches for truncated BPTT.

The default corpus is not shipped with gpudl: it is read at run time from the documentation strings of a fixed list
of Python standard-library modules, text that every Python installation carries.
"""
import importlib
import inspect
import json
import os
import re

import numpy

from ..backend import device as resolve_device
from ..backend import to_device
from ..readers import FileFormatError, describe_size, open_regular
from .loader import _check_shard

# Modules whose docstrings make the default corpus, in this order (deterministic for a given Python version).
CORPUS_MODULES = (
    "abc", "argparse", "bisect", "calendar", "collections", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "enum", "fractions", "functools", "heapq", "inspect", "itertools", "json", "logging",
    "math", "operator", "os", "pathlib", "pprint", "random", "re", "shutil", "statistics", "string", "textwrap",
    "threading", "typing", "unittest", "zipfile",
)


MAX_TEXT_BYTES = 256 << 20      # a character model encodes each character as an int64: 8 bytes of memory each
# Bytes that plain text never holds (C0 controls other than tab, newline, vertical tab, form feed, carriage return
# and escape): their presence says "binary file" (or UTF-16, whose ASCII characters come with NULs).
BINARY_BYTE = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def load_text(path):
    """The contents of a UTF-8 text file; a clear one-line error for anything else.

    Refused: a missing path, a folder, a FIFO or device (checked before opening), an empty or blank file, a file
    over MAX_TEXT_BYTES, binary data (NUL and other control bytes) and bytes that are not UTF-8.
    """
    path = os.fspath(path)
    f, size = open_regular(path, "text file")
    with f:
        if size > MAX_TEXT_BYTES:
            raise FileFormatError(f"{path}: {describe_size(size)} is more text than gpudl trains on "
                                  f"(at most {describe_size(MAX_TEXT_BYTES)}); cut it, e.g. with head -c")
        raw = f.read(size)
    if not raw:
        raise FileFormatError(f"{path}: holds no text (the file is empty)")
    binary = BINARY_BYTE.search(raw)
    if binary is not None:
        byte = raw[binary.start()]
        kind = "NUL byte" if byte == 0 else f"control byte 0x{byte:02x}"
        raise FileFormatError(f"{path}: holds a {kind} at offset {binary.start()}: a binary file (or UTF-16 "
                              f"text), not UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path}: is not UTF-8 text (undecodable byte 0x{raw[exc.start]:02x} at offset "
                              f"{exc.start}); convert it, e.g. with iconv -t UTF-8") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise FileFormatError(f"{path}: holds no text (only white space)")
    return text


def _docstrings(module_name):
    """The module's docstring, then those of its public classes and functions, by name."""
    module = importlib.import_module(module_name)
    yield inspect.getdoc(module)
    for name in sorted(vars(module)):
        obj = getattr(module, name)
        if (not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
                and getattr(obj, "__module__", None) == module_name):
            yield inspect.getdoc(obj)


def default_corpus(max_chars=200_000):
    """Up to `max_chars` characters of standard-library documentation strings (printable ASCII and newlines).

    Raises RuntimeError when Python runs without docstrings (python -OO): pass a text file instead.
    """
    if max_chars < 1:
        raise ValueError(f"default_corpus: max_chars must be positive, got {max_chars}")
    seen, pieces, total = set(), [], 0
    for module_name in CORPUS_MODULES:
        for doc in _docstrings(module_name):
            doc = "".join(ch for ch in (doc or "") if ch == "\n" or " " <= ch <= "~").strip()
            if len(doc) < 40 or doc in seen:
                continue
            seen.add(doc)
            pieces.append(doc + "\n\n")
            total += len(doc) + 2
            if total >= max_chars:
                return "".join(pieces)[:max_chars]
    if not pieces:
        raise RuntimeError("default_corpus: this Python carries no docstrings (was it started with -OO?); "
                           "name a text file instead")
    return "".join(pieces)


class Vocabulary:
    """The characters of a text, each with an index: encode str -> int array, decode indices -> str."""

    def __init__(self, chars):
        chars = list(chars)
        if not chars:
            raise ValueError("Vocabulary: needs at least one character")
        if any(not isinstance(ch, str) or len(ch) != 1 for ch in chars) or len(set(chars)) != len(chars):
            raise ValueError("Vocabulary: expected distinct single characters")
        self.chars = chars
        self.index = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text):
        """The sorted distinct characters of `text`."""
        return cls(sorted(set(text)))

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        """Indices (int64 array) of the characters of `text`; a clear error names characters it does not know."""
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"Vocabulary: characters not in the vocabulary: {''.join(unknown)!r}")
        return numpy.array([self.index[ch] for ch in text], dtype=numpy.int64)

    def decode(self, indices):
        return "".join(self.chars[int(i)] for i in indices)

    def to_json(self):
        """The characters as a JSON array of strings (how checkpoints store the vocabulary; no pickle)."""
        return json.dumps(self.chars)

    @classmethod
    def from_json(cls, text):
        chars = json.loads(text)
        if not isinstance(chars, list):
            raise ValueError("Vocabulary: expected a JSON array of characters")  # noqa: TRY004 (a corrupt file)
        return cls(chars)


class SequenceBatches:
    """(inputs, targets) batches of shape (N, T) for truncated BPTT over one long index sequence.

    The sequence is cut into N streams of equal length; batch k holds characters k*T .. k*T + T - 1 of every stream
    and the targets are the same positions shifted by one. Row n of batch k+1 continues row n of batch k, so a
    stateful recurrent layer carries its state from one batch to the next.

    `shard=(rank, size)` (data-parallel training, gpudl.distributed): N = `batch_size` stays the global number of
    streams, and this rank keeps streams rank, rank + size, ... of every batch (as DataLoader keeps rows). Each rank's
    recurrent layer then carries the state of its own streams, every rank takes the same number of steps, and every
    character is read once per epoch by one rank. When `batch_size` is a multiple of `size`, every rank holds
    batch_size / size streams, and the mean over ranks of their mean losses is the global batch's mean loss: N ranks
    step as one process does.
    """

    def __init__(self, indices, batch_size, seq_len, shard=None):
        indices = numpy.asarray(indices)
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"SequenceBatches: batch_size and seq_len must be positive, got {batch_size}, {seq_len}")
        rank, ranks = _check_shard(shard, "SequenceBatches")
        if batch_size < ranks:
            raise ValueError(f"SequenceBatches: batch_size {batch_size} is the global number of streams and must give "
                             f"each of the {ranks} ranks a stream at least")
        stream = (len(indices) - 1) // batch_size
        if stream < seq_len:
            raise ValueError(f"SequenceBatches: {len(indices)} characters are too few for {batch_size} streams of "
                             f"at least {seq_len + 1}; use a longer text, a smaller batch size or a shorter seq_len")
        self.seq_len = seq_len
        self.inputs = indices[:batch_size * stream].reshape(batch_size, stream)[rank::ranks]
        self.targets = indices[1:batch_size * stream + 1].reshape(batch_size, stream)[rank::ranks]

    def __len__(self):
        return self.inputs.shape[1] // self.seq_len

    def __iter__(self):
        for k in range(len(self)):
            cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
            yield self.inputs[:, cols], self.targets[:, cols]


class TextBatches:
    """A loader for `train.fit`: the (inputs, targets) batches of SequenceBatches, each moved to `device`.

    Row n of batch k+1 continues row n of batch k (a stateful recurrent layer's carried state belongs to it). The
    order is fixed, so there is no generator state to checkpoint. `shard=(rank, size)`: this rank's streams of each
    global batch of `batch_size` streams (see SequenceBatches).
    """

    def __init__(self, indices, batch_size, seq_len, device="cpu", shard=None):
        self.batches = SequenceBatches(indices, batch_size, seq_len, shard)
        self.device = resolve_device(device)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for inputs, targets in self.batches:
            yield to_device(inputs, self.device), to_device(targets, self.device)
