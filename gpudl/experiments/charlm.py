"""Experiment 3: a character-level language model with an LSTM, trained by the one training loop (gpudl.train.fit).

The model reads one character at a time (one-hot), and predicts the next: logits = Dense(LSTM(one_hot(x))).
It trains with truncated BPTT on a text cut into parallel streams (data.text.SequenceBatches): within an epoch the
LSTM carries its state from one batch to the next but back-propagates only through the current seq_len steps; every
epoch (and every evaluation) starts from a zero state, so checkpoints need not hold it. Each epoch reports the mean
cross-entropy per character, the per-character accuracy and the perplexity exp(loss), on the training text and on a
held-out tail. With no text file it trains on standard-library docstrings read at run time (data.text.default_corpus).

    gpudl train charlm --text book.txt --epochs 5 --out runs/charlm
    gpudl predict runs/charlm --start "The " --temperature 0.7
    python -m gpudl.experiments.charlm --text book.txt --epochs 5 --out runs/charlm      (the same, without gpudl)
    python -m gpudl.experiments.charlm --load runs/charlm --start "The " --temperature 0.7
"""
import argparse
import json
import math
import os
import sys

import numpy

from .. import __version__, nn, optim
from ..backend import device as resolve_device
from ..backend import device_of, get_array_module, to_device, to_numpy
from ..data.text import SequenceBatches, Vocabulary, default_corpus, load_text
from ..serialization import FORMAT_KEY, FORMAT_VERSION, load_arrays, save_arrays
from ..train import CHECKPOINT, MODEL, REPORT, fit

VOCAB_KEY = "__vocabulary__"
DEFAULTS = dict(epochs=10, seq_len=50, batch_size=32, hidden_size=128, lr=0.01, max_chars=100_000, clip=5.0,
                temperature=0.7, sample_length=200, validation=0.1)


class CharLSTM(nn.Module):
    """one-hot (N, T, V) -> LSTM(V, H) -> Dense(H, V): next-character logits (N, T, V).

    The LSTM is stateful: consecutive forwards continue the text (truncated BPTT); reset_state() starts afresh.
    """

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
        xp = get_array_module(w)
        indices = to_device(indices, device_of(w))
        if indices.ndim != 2:
            raise ValueError(f"{self!r}: expected character indices of shape (N, T), got {tuple(indices.shape)}")
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= self.vocab_size):
            raise ValueError(f"{self!r}: character indices must lie in [0, {self.vocab_size})")
        return xp.eye(self.vocab_size, dtype=w.dtype)[indices]

    def forward(self, x):
        """Logits (N, T, V) for indices (N, T) or one-hot inputs (N, T, V)."""
        if hasattr(x, "dtype") and numpy.issubdtype(x.dtype, numpy.integer):
            x = self.one_hot(x)
        hs = self.lstm.forward(x)
        n, t, h = hs.shape
        return self.head.forward(hs.reshape(n * t, h)).reshape(n, t, self.vocab_size)

    def backward(self, dlogits):
        """dL/d(one-hot input) (N, T, V) from dL/dlogits (N, T, V); parameter gradients accumulate."""
        n, t, v = dlogits.shape
        dh = self.head.backward(dlogits.reshape(n * t, v))
        return self.lstm.backward(dh.reshape(n, t, self.hidden_size))

    def __repr__(self):
        return f"CharLSTM({self.vocab_size}, {self.hidden_size})"


class SequenceCrossEntropy:
    """Mean cross-entropy per character: logits (N, T, V) against integer targets (N, T), as (N*T, V) rows."""

    def __init__(self):
        self.inner = nn.SoftmaxCrossEntropy(check=False)
        self.shape = None

    def forward(self, logits, targets):
        n, t, v = logits.shape
        self.shape = logits.shape
        return self.inner.forward(logits.reshape(n * t, v), targets.reshape(n * t))

    def backward(self):
        return self.inner.backward().reshape(self.shape)


class TextBatches:
    """A loader for `fit`: the (inputs, targets) batches of data.text.SequenceBatches, each moved to `device`.

    Row n of batch k+1 continues row n of batch k (the stateful LSTM's carried state belongs to it). The order is
    fixed, so there is no generator state to checkpoint.
    """

    def __init__(self, indices, batch_size, seq_len, device="cpu"):
        self.batches = SequenceBatches(indices, batch_size, seq_len)
        self.device = resolve_device(device)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for inputs, targets in self.batches:
            yield to_device(inputs, self.device), to_device(targets, self.device)


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
            z = to_numpy(logits).astype(numpy.float64) / temperature
            p = numpy.exp(z - z.max())
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
        path = os.path.join(path, MODEL)
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
    return model.to(device), vocab


def _previous_vocabulary(out):
    """The vocabulary of the run being resumed in `out`, from its report.json (None if it has none)."""
    try:
        with open(os.path.join(out, REPORT)) as f:
            chars = json.load(f)["config"]["model_args"]["vocabulary"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return chars


def train_charlm(text=None, path=None, epochs=DEFAULTS["epochs"], seq_len=DEFAULTS["seq_len"],
                 batch_size=DEFAULTS["batch_size"], hidden_size=DEFAULTS["hidden_size"], lr=DEFAULTS["lr"], seed=0,
                 device=None, out=None, resume=False, max_chars=DEFAULTS["max_chars"], clip=DEFAULTS["clip"],
                 temperature=DEFAULTS["temperature"], sample_length=DEFAULTS["sample_length"],
                 validation=DEFAULTS["validation"], progress=True, stream=None, config=None, log=None):
    """Train a CharLSTM on `text`, else the file at `path`, else the default corpus (up to max_chars characters).

    The loop is gpudl.train.fit (Adam, gradients clipped to a global norm of `clip`): with `out` (a folder) it writes
    checkpoint.npz after every epoch, report.json (a perplexity per epoch in its history) and model.npz, which here
    also holds the vocabulary (load_charlm reads it back); `resume=True` continues from out/checkpoint.npz.
    Returns {"model", "vocab", "history", "report", "sample"}: the sample is `sample_length` characters drawn at
    `temperature` after training. `log`, when given, receives one line describing the data before training starts.
    """
    if text is None:
        text = load_text(path) if path is not None else default_corpus(max_chars)
    text = text[:max_chars] if max_chars else text
    if not 0 <= validation < 1:
        raise ValueError(f"train_charlm: validation must lie in [0, 1), got {validation}")
    dev = resolve_device(device)
    vocab = Vocabulary.from_text(text)
    if resume and out is not None:
        before = _previous_vocabulary(out)
        if before is not None and before != vocab.chars:
            raise ValueError(f"--resume: the text has other characters than the run in {out} was trained on; "
                             f"pass the same --text (and --max-chars)")
    codes = vocab.encode(text)
    split = len(codes) - int(len(codes) * validation)
    train_codes, val_codes = codes[:split], codes[split:]
    train = TextBatches(train_codes, batch_size, seq_len, dev)
    held_out = None
    if validation > 0 and len(val_codes) > seq_len + 1:
        val_batch = max(1, min(batch_size, (len(val_codes) - 1) // (seq_len + 1)))
        held_out = TextBatches(val_codes, val_batch, seq_len, dev)

    if log is not None:
        log(f"charlm: {len(train_codes)} characters to train on, {len(val_codes) if held_out else 0} held out, "
            f"{len(vocab)} distinct; {len(train)} batches of {batch_size} x {seq_len} per epoch; device {dev}")
    model = CharLSTM(len(vocab), hidden_size, rng=numpy.random.default_rng(seed)).to(dev)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    config = dict(config or {})
    config.setdefault("model", "charlm")
    config["model_args"] = {"vocabulary": vocab.chars, "hidden_size": hidden_size}
    config.update({"seed": seed, "lr": lr, "epochs": epochs, "batch_size": batch_size, "seq_len": seq_len,
                   "clip": clip, "characters": len(text), "held_out_characters": len(val_codes) if held_out else 0,
                   "temperature": temperature, "device": str(dev), "gpudl": __version__})
    report = fit(model, SequenceCrossEntropy(), optimizer, train, held_out, epochs=epochs, out=out, resume=resume,
                 progress=progress, stream=stream, config=config, clip_norm=clip, on_epoch_end=report_perplexity)
    if out is not None:
        save_charlm(model, vocab, os.path.join(out, MODEL))  # fit's model.npz plus the vocabulary
    text_out = sample(model, vocab, "", sample_length, temperature, numpy.random.default_rng(seed))
    return {"model": model, "vocab": vocab, "history": report["history"], "report": report, "sample": text_out}


def run_cli(args):
    """`gpudl train charlm`: args from gpudl.cli (model, device, epochs, batch_size, lr, seed, data_dir, out, resume,
    quiet, text, max_chars, seq_len, hidden, temperature, sample_length; None means this model's default)."""
    def pick(name, default):
        value = getattr(args, name, None)
        return default if value is None else value

    if getattr(args, "data_dir", None):
        raise ValueError("charlm trains on --text FILE (default: standard-library docstrings), not on --data-dir")
    out = args.out or os.path.join("runs", "charlm")
    if args.resume and not os.path.exists(os.path.join(out, CHECKPOINT)):
        raise FileNotFoundError(f"--resume: no checkpoint in {out} (train once without --resume first)")
    path = getattr(args, "text", None)
    text = load_text(path) if path else None      # a missing, empty or non-UTF-8 file fails here, before training
    options = dict(epochs=pick("epochs", DEFAULTS["epochs"]), seq_len=pick("seq_len", DEFAULTS["seq_len"]),
                   batch_size=pick("batch_size", DEFAULTS["batch_size"]),
                   hidden_size=pick("hidden", DEFAULTS["hidden_size"]), lr=pick("lr", DEFAULTS["lr"]),
                   max_chars=pick("max_chars", DEFAULTS["max_chars"]),
                   temperature=pick("temperature", DEFAULTS["temperature"]),
                   sample_length=pick("sample_length", DEFAULTS["sample_length"]))
    if options["hidden_size"] < 1:
        raise ValueError(f"charlm: --hidden must be at least 1, got {options['hidden_size']}")
    dev = resolve_device(args.device)
    source = path if path else "standard-library docstrings (no --text given)"

    def log(line):
        print(f"{line}; text: {source}", file=sys.stderr)

    result = train_charlm(text=text, seed=args.seed, device=dev, out=out, resume=args.resume,
                          progress=not args.quiet, config={"model": "charlm", "text": os.path.abspath(path) if path
                                                           else None}, log=log, **options)
    history = result["history"]
    first, last = history[0], history[-1]
    print(f"charlm: perplexity {first['perplexity']:.2f} after epoch {first['epoch']}, "
          f"{last['perplexity']:.2f} after epoch {last['epoch']}"
          + (f" (held out: {last['test_perplexity']:.2f})" if last.get("test_perplexity") is not None else "")
          + f"; model, checkpoint and report in {out}")
    print(f"sample at temperature {options['temperature']}:")
    print(result["sample"])
    return 0


def main(argv=None):
    """`python -m gpudl.experiments.charlm`: train (the same code as `gpudl train charlm`), or sample with --load."""
    parser = argparse.ArgumentParser(prog="python -m gpudl.experiments.charlm", description=__doc__.split("\n")[0])
    parser.add_argument("--text", metavar="FILE", help="UTF-8 text to train on (default: stdlib docstrings)")
    parser.add_argument("--max-chars", type=int, default=DEFAULTS["max_chars"], help="use at most this many characters")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--seq-len", type=int, default=DEFAULTS["seq_len"], help="BPTT truncation length")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--hidden-size", "--hidden", dest="hidden", type=int, default=DEFAULTS["hidden_size"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: $GPUDL_DEVICE or auto)")
    parser.add_argument("--out", default=os.path.join("runs", "charlm"), help="the run folder (model, checkpoint, "
                                                                              "report)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--load", metavar="RUN", help="skip training: sample from a run folder or a model .npz")
    parser.add_argument("--start", default="", help="text to begin the sample with")
    parser.add_argument("--temperature", type=float, default=DEFAULTS["temperature"])
    parser.add_argument("--sample-length", type=int, default=DEFAULTS["sample_length"])
    args = parser.parse_args(argv)
    if args.load:
        model, vocab = load_charlm(args.load, resolve_device(args.device))
        print(sample(model, vocab, args.start, args.sample_length, args.temperature,
                     numpy.random.default_rng(args.seed)))
        return 0
    args.model, args.data_dir = "charlm", None
    return run_cli(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as exc:   # a missing or unreadable text file, bad sizes: one line, no traceback
        sys.exit(f"charlm: error: {exc}")
