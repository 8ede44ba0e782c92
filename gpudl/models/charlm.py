"""A character-level language model: one-hot characters -> stateful LSTM -> next-character logits.

logits = Dense(LSTM(one_hot(x))). It trains with truncated BPTT (data.TextBatches: within an epoch the LSTM carries
its state from one batch to the next but back-propagates only through the current seq_len steps; reset_state()
starts afresh) and the loss nn.SequenceCrossEntropy. Its quality is the perplexity exp(mean cross-entropy per
character); `sample` draws text from it, and save_charlm / load_charlm keep the vocabulary with the weights.
`gpudl train charlm` and `gpudl predict RUN --start TEXT` drive it from the command line.
"""
import math
import os

import numpy

from .. import functional as F
from .. import nn
from ..backend import device_of, to_device, to_numpy
from ..data.text import Vocabulary
from ..serialization import FORMAT_KEY, FORMAT_VERSION, load_arrays, save_arrays

VOCAB_KEY = "__vocabulary__"
RUN_MODEL_FILE = "model.npz"    # the model file of a run folder (load_charlm accepts the folder)


class CharLSTM(nn.Module):
    """one-hot (N, T, V) -> LSTM(V, H) -> Dense(H, V): next-character logits (N, T, V).

    The LSTM is stateful: consecutive forwards continue the text (truncated BPTT); reset_state() starts afresh.
    """

    vocabulary = None   # the Vocabulary its indices stand for, when known (load_charlm sets it from the file)

    def __init__(self, vocab_size, hidden_size, dtype=numpy.float32, rng=None):
        if vocab_size < 1 or hidden_size < 1:
            raise ValueError(f"CharLSTM: vocab_size and hidden_size must be positive, got {vocab_size}, {hidden_size}")
        self.vocab_size, self.hidden_size = int(vocab_size), int(hidden_size)
        self.lstm = nn.LSTM(vocab_size, hidden_size, dtype=dtype, rng=rng, stateful=True)
        self.head = nn.Dense(hidden_size, vocab_size, dtype=dtype, rng=rng)

    def reset_state(self):
        self.lstm.reset_state()

    def to(self, device=None, dtype=None):
        self.reset_state()
        return super().to(device, dtype)

    def one_hot(self, indices):
        """(N, T) integer indices -> (N, T, V) one-hot in the model's dtype, on the model's device."""
        w = self.head.W.data
        indices = to_device(indices, device_of(w))
        if indices.ndim != 2:
            raise ValueError(f"{self!r}: expected character indices of shape (N, T), got {tuple(indices.shape)}")
        # the range check reads two values back to the host: skipped where value checks are off (a recorded step)
        if F.value_checks_enabled() and indices.size and \
                (int(indices.min()) < 0 or int(indices.max()) >= self.vocab_size):
            raise ValueError(f"{self!r}: character indices must lie in [0, {self.vocab_size})")
        n, t = indices.shape
        return F.one_hot_rows(indices.reshape(n * t), self.vocab_size, w.dtype).reshape(n, t, self.vocab_size)

    def forward(self, x):
        """Logits (N, T, V) for indices (N, T) or one-hot inputs (N, T, V)."""
        if hasattr(x, "dtype") and numpy.issubdtype(x.dtype, numpy.integer):
            x = self.one_hot(x)
        hs = self.lstm.forward(x)
        n, t, h = hs.shape
        return self._forward_output(self.head.forward(hs.reshape(n * t, h)).reshape(n, t, self.vocab_size))

    def backward(self, dlogits, input_grad=True):
        """dL/d(one-hot input) (N, T, V) from dL/dlogits (N, T, V); parameter gradients accumulate.
        input_grad=False: the LSTM skips the input gradient and None is returned."""
        n, t, v = self._backward_input(dlogits).shape
        dh = self.head.backward(dlogits.reshape(n * t, v))
        return self.lstm.backward(dh.reshape(n, t, self.hidden_size), input_grad=input_grad)

    def __repr__(self):
        return f"CharLSTM({self.vocab_size}, {self.hidden_size})"


def perplexity(loss):
    """exp(mean cross-entropy per character): the number of equally likely characters the model hesitates between."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def report_perplexity(record):
    """fit's on_epoch_end: adds perplexity (and test_perplexity) to the epoch's record and to its progress line."""
    record["perplexity"] = perplexity(record["train_loss"])
    text = f"perplexity {record['perplexity']:.2f}"
    if record.get("test_loss") is not None:
        record["test_perplexity"] = perplexity(record["test_loss"])
        text += f", test perplexity {record['test_perplexity']:.2f}"
    return text


def sample(model, vocab, start="", length=200, temperature=1.0, rng=None):
    """`start` followed by `length` characters drawn one at a time from softmax(logits / temperature).

    Low temperatures (0.5) pick likely characters, 1.0 samples the model's distribution, higher ones add variety.
    The model's carried state is reset before and after.
    """
    if not temperature > 0:
        raise ValueError(f"sample: temperature must be positive, got {temperature!r}")
    rng = rng if rng is not None else numpy.random.default_rng()
    prime = start or ("\n" if "\n" in vocab.index else vocab.chars[0])
    codes = vocab.encode(prime)
    was_training = model.training
    model.eval()
    model.reset_state()
    try:
        logits = model.forward(codes[None, :])[0, -1]
        out = []
        for _ in range(length):
            p = F.softmax(to_numpy(logits).astype(numpy.float64) / temperature)
            code = int(rng.choice(len(p), p=p / p.sum()))
            out.append(code)
            logits = model.forward(numpy.array([[code]]))[0, -1]
    finally:
        model.reset_state()
        model.train(was_training)
    return start + vocab.decode(out)


def save_charlm(model, vocab, path):
    """Parameters (as gpudl.save names them) and the vocabulary as a JSON array of characters, in one .npz."""
    arrays = {name: to_numpy(p.data) for name, p in model.named_parameters()}
    arrays[FORMAT_KEY] = numpy.array(FORMAT_VERSION)
    arrays[VOCAB_KEY] = numpy.array(vocab.to_json())
    save_arrays(path, arrays)


def load_charlm(path, device="cpu", dtype=numpy.float32):
    """(model, vocabulary) from a file written by save_charlm, or a run folder holding one as model.npz."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, RUN_MODEL_FILE)
    arrays = load_arrays(path)
    if VOCAB_KEY not in arrays or "lstm.W_h" not in arrays:
        raise ValueError(f"{path}: not a character-model checkpoint (no vocabulary or LSTM weights)")
    vocab = Vocabulary.from_json(str(arrays.pop(VOCAB_KEY)))
    arrays.pop(FORMAT_KEY, None)
    model = CharLSTM(len(vocab), arrays["lstm.W_h"].shape[0], dtype=dtype)
    params = dict(model.named_parameters())
    if set(params) != set(arrays):
        raise ValueError(f"{path}: parameters {sorted(arrays)} do not fit {model!r} ({sorted(params)})")
    for name, p in params.items():
        if arrays[name].shape != p.shape:
            raise ValueError(f"{path}: parameter {name} has shape {arrays[name].shape}, {model!r} needs {p.shape}")
        p.data[...] = arrays[name]
    model.vocabulary = vocab
    return model.to(device), vocab
