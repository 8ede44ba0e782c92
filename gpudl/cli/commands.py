"""The subcommands train, predict, experiment and bench; each takes the parsed arguments and returns an exit status.
Everything a model knows lives in its registry entry; these functions only check what is common to all models."""
import importlib
import json
import os

from ..backend import device as resolve_device
from ..train import CHECKPOINT, MODEL, REPORT
from .common import CLIError, out_dir
from .registry import MODELS, owners

EXPERIMENTS = {"gradients": "gpudl.experiments.gradients", "long-term": "gpudl.experiments.long_term"}


def _given(args, entry, which):
    """The model-specific options set on the command line that `entry` does not take: [(dest, owner names)]."""
    taken = {option.dest for option in getattr(entry, which)}
    every = {option.dest for other in MODELS.values() for option in getattr(other, which)}
    return [(dest, owners(dest, which)) for dest in sorted(every - taken) if getattr(args, dest, None) is not None]


def _flag(dest):
    return "--" + dest.replace("_", "-")


def cmd_train(args):
    entry = MODELS[args.model]
    refused = _given(args, entry, "train_options")
    if refused:
        dest, names = refused[0]
        scope = f"{names[0]} only" if len(names) == 1 else " and ".join(names)
        raise CLIError(f"{_flag(dest)} applies to {scope}, not to {args.model}")
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise CLIError(f"--data-dir {args.data_dir}: no such folder")
    if args.resume and entry.resumable and not os.path.exists(os.path.join(out_dir(args), CHECKPOINT)):
        raise CLIError(f"--resume: no checkpoint in {out_dir(args)} (train once without --resume first)")
    args.dev = resolve_device(args.device)
    return entry.train(args)


def cmd_predict(args):
    report_path, model_path = os.path.join(args.run, REPORT), os.path.join(args.run, MODEL)
    for path in (report_path, model_path):
        if not os.path.isfile(path):
            raise CLIError(f"{args.run} is not a finished run folder: {os.path.basename(path)} is missing")
    with open(report_path) as f:
        config = json.load(f)["config"]
    name = config["model"]
    entry = MODELS.get(name)
    if entry is None:
        raise CLIError(f"gpudl predict does not know how to rebuild a {name!r} model")
    refused = _given(args, entry, "predict_options")
    if refused:
        dest, names = refused[0]
        raise CLIError(f"{_flag(dest)} applies to {' and '.join(names)} runs only; {args.run} holds a {name} model")
    dev = resolve_device(args.device)
    return entry.predict(args, entry.load_trained(model_path, config, dev), config, dev)


def cmd_bench(args):
    return importlib.import_module("gpudl.bench").main(args.bench_args)


def cmd_experiment(args):
    importlib.import_module(EXPERIMENTS[args.name]).main(args.experiment_args)
    return 0
