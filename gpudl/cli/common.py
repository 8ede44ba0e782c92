"""What every part of the `gpudl` command shares: the one-line error, argument types, and the run's seed, folder
and config."""
import argparse
import hashlib
import os
import sys
from importlib.metadata import version

import numpy

from ..backend import DeviceError
from ..train import TrainingDiverged

__version__ = version("gpudl")


class CLIError(Exception):
    """A mistake in the command line or its inputs, reported as one line."""


def error_message(exc):
    """The one line that reports `exc`: its message, prefixed by its type unless it is one of gpudl's own kinds of
    error (a bad command line, device, file or value, or a diverged run)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"     # the file a system call failed on, in one line
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, (CLIError, DeviceError, OSError, ValueError, TrainingDiverged)):
        message = f"{type(exc).__name__}: {message}"
    return message


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and numpy.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def int_at_least(minimum, words):
    """An argparse type: a whole number >= minimum, else an error that says `words`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
        return value
    return parse


positive_int = int_at_least(1, "at least 1")
seed = int_at_least(0, "0 or more")
count = int_at_least(0, "0 or more")


def rng(seed, stream):
    """An independent generator per purpose (0 weights, 1 shuffling, 2 data split), all from one --seed."""
    return numpy.random.default_rng([seed, stream])


def to_stderr(text):
    print(text, file=sys.stderr)


def out_dir(args):
    """The run folder: --out, else runs/MODEL."""
    return args.out if args.out is not None else os.path.join("runs", args.model)


def run_config(args, **model_args):
    """The `config` of a run's report.json and checkpoint: what `gpudl predict` rebuilds the model from, and every
    setting the run used (the shared ones and the model's own options, under their options' names, from which a
    resume takes those its command line leaves out)."""
    config = {"model": args.model, "model_args": model_args, "seed": args.seed, "lr": args.lr,
              "epochs": args.epochs, "batch_size": args.batch_size, "device": str(args.dev),
              "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None, "gpudl": __version__}
    config.update({dest: getattr(args, dest, None) for dest in getattr(args, "model_settings", ())})
    return config


def sha256_of(*parts):
    """The SHA-256 (hex) of arrays or strings, in order: what a checkpoint records of the data a run trained on,
    so that a resume on other data is noticed whatever its path."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else numpy.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


def settle(args, **defaults):
    """Replace each option left at None by this model's default (so the report records what ran)."""
    for name, default in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, default)
