"""Text for character-level language models: loading, a default corpus, a vocabulary, and batches for truncated BPTT.

The default corpus is not shipped with gpudl: it is read at run time from the documentation strings of a fixed list
of Python standard-library modules, text that every Python installation carries.
"""
import importlib
import inspect
import json
import os

import numpy

from ..backend import device as resolve_device
from ..backend import to_device

# Modules whose docstrings make the default corpus, in this order (deterministic for a given Python version).
CORPUS_MODULES = (
    "abc", "argparse", "bisect", "calendar", "collections", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "enum", "fractions", "functools", "heapq", "inspect", "itertools", "json", "logging",
    "math", "operator", "os", "pathlib", "pprint", "random", "re", "shutil", "statistics", "string", "textwrap",
    "threading", "typing", "unittest", "zipfile",
)


def load_text(path):
    """The contents of a UTF-8 text file, or a clear error for a missing, unreadable, empty or non-UTF-8 file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such text file: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a folder; expected a UTF-8 text file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: is not UTF-8 text (undecodable byte at offset {exc.start}); "
                         f"convert it, e.g. with iconv -t UTF-8") from None
    if not text.strip():
        raise ValueError(f"{path}: holds no text")
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
            raise ValueError("Vocabulary: expected a JSON array of characters")
        return cls(chars)


class SequenceBatches:
    """(inputs, targets) batches of shape (N, T) for truncated BPTT over one long index sequence.

    The sequence is cut into N streams of equal length; batch k holds characters k*T .. k*T + T - 1 of every stream
    and the targets are the same positions shifted by one. Row n of batch k+1 continues row n of batch k, so a
    stateful recurrent layer carries its state from one batch to the next.
    """

    def __init__(self, indices, batch_size, seq_len):
        indices = numpy.asarray(indices)
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"SequenceBatches: batch_size and seq_len must be positive, got {batch_size}, {seq_len}")
        stream = (len(indices) - 1) // batch_size
        if stream < seq_len:
            raise ValueError(f"SequenceBatches: {len(indices)} characters are too few for {batch_size} streams of "
                             f"at least {seq_len + 1}; use a longer text, a smaller batch size or a shorter seq_len")
        self.seq_len = seq_len
        self.inputs = indices[:batch_size * stream].reshape(batch_size, stream)
        self.targets = indices[1:batch_size * stream + 1].reshape(batch_size, stream)

    def __len__(self):
        return self.inputs.shape[1] // self.seq_len

    def __iter__(self):
        for k in range(len(self)):
            cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
            yield self.inputs[:, cols], self.targets[:, cols]


class TextBatches:
    """A loader for `train.fit`: the (inputs, targets) batches of SequenceBatches, each moved to `device`.

    Row n of batch k+1 continues row n of batch k (a stateful recurrent layer's carried state belongs to it). The
    order is fixed, so there is no generator state to checkpoint.
    """

    def __init__(self, indices, batch_size, seq_len, device="cpu"):
        self.batches = SequenceBatches(indices, batch_size, seq_len)
        self.device = resolve_device(device)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for inputs, targets in self.batches:
            yield to_device(inputs, self.device), to_device(targets, self.device)
