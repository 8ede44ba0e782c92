"""`gpudl train charlm`: a character-level LSTM language model (models.CharLSTM) trained by train.fit with truncated
BPTT on a text file, or on standard-library docstrings read at run time; `gpudl predict RUN --start TEXT` samples it.

Each epoch reports the mean cross-entropy per character, the per-character accuracy and the perplexity exp(loss), on
the training text and on a held-out tail. model.npz also holds the vocabulary (models.save_charlm writes it,
models.load_charlm reads it back), and `gpudl predict` decodes with it. The checkpoint records the SHA-256 of the
text trained on, so a resume on another text is noticed whatever its path. With --distributed each rank trains on
its streams of every batch (TextBatches(shard=...)), --batch-size streams in all, and evaluates the whole held-out
tail.
"""
import os
import sys

import numpy

from .. import nn, optim
from ..data import TextBatches, Vocabulary, default_corpus, load_text
from ..models import CharLSTM, load_charlm, report_perplexity, sample, save_charlm
from ..train import FREE_ON_RESUME, Checkpoints, fit
from .common import CLIError, out_dir, positive_float, positive_int, run_config, seed, settle, sha256_of
from .entry import ModelEntry, Option
from .ranks import shard

DEFAULTS = {"epochs": 10, "seq_len": 50, "batch_size": 32, "hidden": 128, "lr": 0.01, "max_chars": 100_000,
            "temperature": 0.7, "sample_length": 200}
# what a resume may change besides fit's own: sampling, and the text's path and sizes (its content's hash decides)
FREE = FREE_ON_RESUME + ("temperature", "sample_length", "text", "characters", "held_out_characters")
CLIP = 5.0              # global gradient norm (optim.clip_grad_norm): an LSTM's gradients can still explode
HELD_OUT = 0.1          # the fraction of the text, at its end, kept for the test perplexity


def text_loaders(codes, batch_size, seq_len, device, ranks=None):
    """(training batches, held-out batches or None): the first 90% of the text (this rank's streams of it with
    ranks=(rank, size)), then its tail."""
    split = len(codes) - int(len(codes) * HELD_OUT)
    train = TextBatches(codes[:split], batch_size, seq_len, device, shard=ranks)
    tail = codes[split:]
    if len(tail) <= seq_len + 1:
        return train, None
    return train, TextBatches(tail, max(1, min(batch_size, (len(tail) - 1) // (seq_len + 1))), seq_len, device)


def train(args):
    if args.data_dir:
        raise CLIError("charlm trains on --text FILE (default: standard-library docstrings), not on --data-dir")
    settle(args, **DEFAULTS)
    if args.hidden < 1:
        raise CLIError(f"charlm: --hidden must be at least 1, got {args.hidden}")
    out = out_dir(args)
    text = (load_text(args.text) if args.text else default_corpus(args.max_chars))[:args.max_chars]
    vocab = Vocabulary.from_text(text)
    codes = vocab.encode(text)
    train_batches, held_out = text_loaders(codes, args.batch_size, args.seq_len, args.dev, shard(args.comm))
    held_chars = int(len(codes) * HELD_OUT) if held_out else 0
    print(f"charlm: {len(codes) - int(len(codes) * HELD_OUT)} characters to train on, {held_chars} held out, "
          f"{len(vocab)} distinct; {len(train_batches)} batches of {args.batch_size} x {args.seq_len} per epoch; "
          f"device {args.dev}; text: {args.text or 'standard-library docstrings (no --text given)'}", file=sys.stderr)
    model = CharLSTM(len(vocab), args.hidden, rng=numpy.random.default_rng(args.seed)).to(args.dev)
    config = run_config(args, vocabulary=vocab.chars, hidden_size=args.hidden)
    config.update(text=os.path.abspath(args.text) if args.text else None, text_sha256=sha256_of(text), clip=CLIP,
                  characters=len(text), held_out_characters=held_chars)
    report = fit(model, nn.SequenceCrossEntropy(check=False), optim.Adam(model.parameters(), lr=args.lr),
                 train_batches, held_out, epochs=args.epochs, out=out, graph=args.graph, resume=args.resume,
                 override=args.override, config=config, clip_norm=CLIP, on_epoch_end=report_perplexity,
                 progress=not args.quiet, tensorboard=args.tensorboard, comm=args.comm,
                 checkpoints=Checkpoints(free_on_resume=FREE, save_model=lambda m, path: save_charlm(m, vocab, path)))
    first, last = report["history"][0], report["history"][-1]
    print(f"charlm: perplexity {first['perplexity']:.2f} after epoch {first['epoch']}, "
          f"{last['perplexity']:.2f} after epoch {last['epoch']}"
          + (f" (held out: {last['test_perplexity']:.2f})" if last.get("test_perplexity") is not None else "")
          + f"; model, checkpoint and report in {out}")
    print(f"sample at temperature {args.temperature}:")
    print(sample(model, vocab, "", args.sample_length, args.temperature, numpy.random.default_rng(args.seed)))
    return 0


def build(model_args):
    return CharLSTM(len(model_args["vocabulary"]), model_args["hidden_size"])


def export_shape(model_args):
    return (None, len(model_args["vocabulary"]))     # sequences of any length, one-hot characters


def load(model_path, config, device):
    return load_charlm(model_path, device)[0]       # with the vocabulary its file holds


def predict(args, model, config, device):
    """Print --start followed by --length characters sampled at --temperature (default: the run's)."""
    if args.input:
        raise CLIError("a charlm run samples text: use --start TEXT instead of --input")
    vocab = model.vocabulary
    temperature = args.temperature if args.temperature is not None else config.get("temperature", 0.7)
    unknown = sorted(set(args.start or "") - set(vocab.chars))
    if unknown:
        raise CLIError(f"--start: the model never saw the characters {''.join(unknown)!r}")
    print(sample(model, vocab, args.start or "", args.length or 200, temperature, numpy.random.default_rng(args.seed)))
    return 0


ENTRY = ModelEntry(
    name="charlm", help="a character-level LSTM language model", train=train, build=build, predict=predict, load=load,
    export=export_shape, distributed=True,
    train_options=(
        Option("--hidden", "LSTM units (128)", {"type": int}),
        Option("--text", "UTF-8 text to train on (default: stdlib docstrings)", {"metavar": "FILE"}),
        Option("--max-chars", "use at most this many characters (100000)", {"type": positive_int}),
        Option("--seq-len", "steps of truncated BPTT per batch (50)", {"type": positive_int}),
        Option("--temperature", "sampling temperature (0.7)", {"type": positive_float}),
        Option("--sample-length", "characters sampled at the end (200)", {"type": positive_int})),
    predict_options=(
        Option("--start", "text the sample begins with"),
        Option("--temperature", "sampling temperature (the run's)", {"type": positive_float}),
        Option("--length", "characters to sample (200)", {"type": positive_int}),
        Option("--seed", "seed of the sampling (default: fresh randomness)", {"type": seed})))
