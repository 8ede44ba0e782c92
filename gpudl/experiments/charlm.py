"""Experiment 3: a character-level language model with an LSTM.

The model reads one character at a time (one-hot), and predicts the next: logits = Dense(LSTM(one_hot(x))).
It trains with truncated BPTT on a text cut into parallel streams (data.text.SequenceBatches): the LSTM carries its
state from one batch to the next but back-propagates only through the current seq_len steps. Each epoch reports
the mean cross-entropy per character and the perplexity exp(loss) on the training text and a held-out tail.
With no text file it trains on standard-library docstrings read at run time (data.text.default_corpus).

    python -m gpudl.experiments.charlm --text book.txt --epochs 5 --out runs/charlm.npz
    python -m gpudl.experiments.charlm --load runs/charlm.npz --start "The " --temperature 0.7
"""
import argparse
import math
import os
import time

import numpy

from .. import nn, optim
from ..backend import device as resolve_device
from ..backend import device_of, get_array_module, to_device, to_numpy
from ..data.text import SequenceBatches, Vocabulary, default_corpus, load_text
from ..serialization import FORMAT_KEY, FORMAT_VERSION, load_arrays, save_arrays

VOCAB_KEY = "__vocabulary__"


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


def sequence_loss(model, loss_fn, inputs, targets):
    """Mean cross-entropy per character of the model's predictions for (N, T) inputs against (N, T) targets."""
    logits = model.forward(inputs)
    n, t, v = logits.shape
    labels = to_device(targets, device_of(logits)).reshape(n * t)
    return loss_fn.forward(logits.reshape(n * t, v), labels)


def evaluate(model, indices, batch_size, seq_len):
    """Mean cross-entropy per character over an index sequence, carrying the state through it (no training)."""
    loss_fn = nn.SoftmaxCrossEntropy(check=False)
    model.reset_state()
    total, count = 0.0, 0
    for inputs, targets in SequenceBatches(indices, batch_size, seq_len):
        total += float(sequence_loss(model, loss_fn, inputs, targets)) * inputs.size
        count += inputs.size
    model.reset_state()
    return total / count


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
    model.reset_state()
    logits = model.forward(codes[None, :])[0, -1]
    out = []
    for _ in range(length):
        z = to_numpy(logits).astype(numpy.float64) / temperature
        p = numpy.exp(z - z.max())
        code = int(rng.choice(len(p), p=p / p.sum()))
        out.append(code)
        logits = model.forward(numpy.array([[code]]))[0, -1]
    model.reset_state()
    return start + vocab.decode(out)


def save_charlm(model, vocab, path):
    """Parameters (as gpudl.save names them) and the vocabulary as a JSON array of characters, in one .npz."""
    arrays = {name: to_numpy(p.data) for name, p in model.named_parameters()}
    arrays[FORMAT_KEY] = numpy.array(FORMAT_VERSION)
    arrays[VOCAB_KEY] = numpy.array(vocab.to_json())
    save_arrays(path, arrays)


def load_charlm(path, device="cpu", dtype=numpy.float32):
    """(model, vocabulary) from a file written by save_charlm; the model lands on `device`."""
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


def train_charlm(text=None, path=None, epochs=10, seq_len=50, batch_size=32, hidden_size=128, lr=0.01, seed=0,
                 device=None, out=None, max_chars=100_000, clip=5.0, temperature=0.8, sample_length=200,
                 validation=0.1, log=print):
    """Train a CharLSTM on `text`, else the file at `path`, else the default corpus (up to max_chars characters).

    Returns {"model", "vocab", "history": [{"epoch", "loss", "perplexity", "val_loss", "val_perplexity",
    "seconds"}], "sample", "checkpoint"}; with `out` the model is saved there (.npz) after training.
    `log` receives one line per epoch (pass None for silence).
    """
    if text is None:
        text = load_text(path) if path is not None else default_corpus(max_chars)
    text = text[:max_chars] if max_chars else text
    if not 0 <= validation < 1:
        raise ValueError(f"train_charlm: validation must lie in [0, 1), got {validation}")
    dev = resolve_device(device)
    vocab = Vocabulary.from_text(text)
    codes = vocab.encode(text)
    split = len(codes) - int(len(codes) * validation)
    train_codes, val_codes = codes[:split], codes[split:]
    batches = SequenceBatches(train_codes, batch_size, seq_len)
    val_batch = max(1, min(batch_size, (len(val_codes) - 1) // (seq_len + 1)))
    has_val = validation > 0 and len(val_codes) > seq_len + 1

    rng = numpy.random.default_rng(seed)
    model = CharLSTM(len(vocab), hidden_size, rng=rng).to(dev)
    params = model.parameters()
    opt = optim.Adam(params, lr=lr)
    loss_fn = nn.SoftmaxCrossEntropy(check=False)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.reset_state()
        total = 0.0   # summed on the device; read back once per epoch
        for inputs, targets in batches:
            opt.zero_grad()
            loss = sequence_loss(model, loss_fn, inputs, targets)
            model.backward(loss_fn.backward().reshape(inputs.shape + (len(vocab),)))
            optim.clip_grad_norm(params, clip)
            opt.step()
            total = total + loss
        mean = float(total) / len(batches)
        row = {"epoch": epoch, "loss": mean, "perplexity": math.exp(mean), "val_loss": None,
               "val_perplexity": None, "seconds": time.perf_counter() - start}
        if has_val:
            row["val_loss"] = evaluate(model, val_codes, val_batch, seq_len)
            row["val_perplexity"] = math.exp(row["val_loss"])
        history.append(row)
        if log:
            val = (f", held-out loss {row['val_loss']:.3f} perplexity {row['val_perplexity']:.2f}"
                   if has_val else "")
            log(f"epoch {epoch}: loss {mean:.3f} perplexity {row['perplexity']:.2f}{val} ({row['seconds']:.1f} s)")
    model.reset_state()
    text_out = sample(model, vocab, "", sample_length, temperature, numpy.random.default_rng(seed))
    if out is not None:
        save_charlm(model, vocab, out)
    return {"model": model, "vocab": vocab, "history": history, "sample": text_out, "checkpoint": out}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpudl.experiments.charlm", description=__doc__.split("\n")[0])
    parser.add_argument("--text", metavar="FILE", help="UTF-8 text to train on (default: stdlib docstrings)")
    parser.add_argument("--max-chars", type=int, default=100_000, help="use at most this many characters")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seq-len", type=int, default=50, help="BPTT truncation length")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: $GPUDL_DEVICE or auto)")
    parser.add_argument("--out", default=os.path.join("runs", "charlm.npz"), help="where to save the model")
    parser.add_argument("--load", metavar="NPZ", help="skip training: sample from a saved model")
    parser.add_argument("--start", default="", help="text to begin the sample with")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--sample-length", type=int, default=300)
    args = parser.parse_args(argv)
    if args.load:
        model, vocab = load_charlm(args.load, resolve_device(args.device))
        print(sample(model, vocab, args.start, args.sample_length, args.temperature,
                     numpy.random.default_rng(args.seed)))
        return None
    result = train_charlm(path=args.text, epochs=args.epochs, seq_len=args.seq_len, batch_size=args.batch_size,
                          hidden_size=args.hidden_size, lr=args.lr, seed=args.seed, device=args.device, out=args.out,
                          max_chars=args.max_chars, temperature=args.temperature, sample_length=args.sample_length)
    print(f"saved to {args.out}")
    model, vocab = load_charlm(args.out, resolve_device(args.device))
    print(f"sample from the reloaded model (temperature {args.temperature}):")
    print(sample(model, vocab, args.start, args.sample_length, args.temperature,
                 numpy.random.default_rng(args.seed)))
    return result


if __name__ == "__main__":
    main()
