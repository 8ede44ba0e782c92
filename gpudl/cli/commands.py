"""The subcommands train, predict, export, experiment and bench; each takes the parsed arguments and returns an exit
status. Everything a model knows lives in its registry entry; these functions only check what is common to all
models."""
import contextlib
import importlib
import os

from ..backend import device as resolve_device
from ..readers import read_report
from ..train import CHECKPOINT, MODEL, REPORT, claim_run_folder
from .common import CLIError, out_dir
from .predictions import load_input, network_predictions, print_predictions
from ..distributed import rank_device
from .ranks import join_ranks, rank_zero_speaks
from .registry import MODELS, owners

EXPERIMENTS = {"gradients": "gpudl.experiments.gradients", "long-term": "gpudl.experiments.long_term"}
FINISHED = ("completed", "converged", "not converged")      # the statuses of a run that ended normally


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
    if args.override and not args.resume:
        raise CLIError("--override applies with --resume only (it lets a resumed run change its settings)")
    if args.force and args.resume:
        raise CLIError("--force replaces the run in the output folder and --resume continues it: pass one of them")
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise CLIError(f"--data-dir {args.data_dir}: no such folder")
    if args.distributed and not entry.distributed:
        raise CLIError(f"--distributed applies to {', '.join(n for n, e in MODELS.items() if e.distributed)}, not "
                       f"to {args.model}")
    args.dev = resolve_device(args.device)      # None: GPUDL_DEVICE, else auto
    args.graph = {"auto": "auto", "on": True, "off": False}[args.graph]     # fit's graph=
    args.comm = join_ranks(args.dev) if args.distributed else None
    with rank_zero_speaks(args.comm):
        if args.comm is not None:
            args.dev = rank_device(args.comm, args.dev)
        return _train(entry, args)


def _train(entry, args):
    """Train in the run folder, which rank 0 (or the one process) claims; every rank waits until it holds it."""
    out = out_dir(args)
    lead = args.comm is None or args.comm.rank == 0
    with claim_run_folder(out, resume=args.resume, force=args.force) if lead else contextlib.nullcontext():
        if lead and args.resume and entry.resumable and not os.path.exists(os.path.join(out, CHECKPOINT)):
            raise CLIError(f"--resume: no checkpoint in {out} (train once without --resume first)")
        if args.comm is not None:
            args.comm.barrier()     # no rank reads the folder (a checkpoint to resume) before rank 0 holds it
        return entry.train(args)


def _finished_run(run):
    """(report's config, model path) of the run folder `run`, checked to hold both files."""
    report_path, model_path = os.path.join(run, REPORT), os.path.join(run, MODEL)
    for path in (report_path, model_path):
        if not os.path.isfile(path):
            raise CLIError(f"{run} is not a finished run folder: {os.path.basename(path)} is missing")
    report = read_report(report_path)
    config = report["config"]
    if config["model"] not in MODELS:
        raise CLIError(f"{report_path}: gpudl does not know how to rebuild a {config['model']!r} model")
    return report, config, model_path


def _trained_model(entry, model_path, config, dev, report_path):
    try:
        return entry.load_trained(model_path, config, dev)
    except (KeyError, TypeError) as exc:
        raise CLIError(f"{report_path}: its model_args do not describe a {entry.name} model "
                       f"({type(exc).__name__}: {exc})") from None


def _predict_device(args):
    """--device, else GPUDL_DEVICE, else the CPU (predictions are cheap; the GPU only when asked for)."""
    return resolve_device(args.device or (None if os.environ.get("GPUDL_DEVICE", "").strip() else "cpu"))


def _onnx(function):
    """gpudl.onnx.load or .export, or a CLIError naming the extra when onnx is not installed."""
    try:
        module = importlib.import_module("gpudl.onnx")
        module.extra.require("onnx")
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    return getattr(module, function)


def _predict_onnx(args):
    if not args.input:
        raise CLIError(f"predict {args.run}: an ONNX model needs --input FILE.npy (it carries no data set)")
    if not os.path.isfile(args.run):
        raise CLIError(f"{args.run}: no such ONNX file")
    load = _onnx("load")
    X = load_input(args.input)
    dev = _predict_device(args)
    model = load(args.run).to(dev)
    model.eval()
    if model.dtype is not None:
        X = X.astype(model.dtype)
    predicted, scores = network_predictions(model, X, dev)
    return print_predictions(predicted, scores, None, args.show)


def cmd_predict(args):
    if args.run.lower().endswith(".onnx"):
        return _predict_onnx(args)
    report, config, model_path = _finished_run(args.run)
    entry = MODELS[config["model"]]
    refused = _given(args, entry, "predict_options")
    if refused:
        dest, names = refused[0]
        raise CLIError(f"{_flag(dest)} applies to {' and '.join(names)} runs only; {args.run} holds a "
                       f"{entry.name} model")
    dev = _predict_device(args)
    model = _trained_model(entry, model_path, config, dev, os.path.join(args.run, REPORT))
    return entry.predict(args, model, config, dev)


def cmd_export(args):
    report, config, model_path = _finished_run(args.run)
    entry = MODELS[config["model"]]
    if report.get("status") not in FINISHED:
        raise CLIError(f"{args.run} holds an unfinished run (status {report.get('status')!r}); finish it with "
                       f"gpudl train ... --resume first")
    if entry.export is None:
        raise CLIError(f"gpudl export does not know the input shape of a {entry.name} model")
    output = args.output or os.path.join(args.run, "model.onnx")
    if os.path.isdir(output):
        raise CLIError(f"{output}: is a folder; name the .onnx file to write")
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise CLIError(f"{output}: its folder does not exist")
    export = _onnx("export")
    model = _trained_model(entry, model_path, config, resolve_device("cpu"), os.path.join(args.run, REPORT))
    shape = entry.export(config["model_args"])
    export(model, output, shape)
    print(f"{entry.name} model of {args.run} exported to {output} (inputs of shape (N, "
          + ", ".join("T" if d is None else str(d) for d in shape) + "))")
    return 0


def _environment_device(argv):
    """The Device GPUDL_DEVICE names (checked: a bad value is an error naming it) when it is set and `argv` (of
    bench or an experiment) names no --device of its own; else None."""
    if not os.environ.get("GPUDL_DEVICE", "").strip():
        return None
    if any(arg == "--device" or arg.startswith("--device=") for arg in argv):
        return None
    return resolve_device(None)


def cmd_bench(args):
    dev = _environment_device(args.bench_args)
    argv = args.bench_args + (["--device", dev.kind] if dev is not None else [])
    return importlib.import_module("gpudl.bench").main(argv)


def cmd_experiment(args):
    dev = _environment_device(args.experiment_args)
    argv = args.experiment_args + (["--device", str(dev)] if dev is not None else [])
    importlib.import_module(EXPERIMENTS[args.name]).main(argv)
    return 0
