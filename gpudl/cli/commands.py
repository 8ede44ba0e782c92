"""The subcommands train, predict, export, experiment and bench; each takes the parsed arguments and returns an exit
status. Everything a model knows lives in its registry entry; these functions only check what is common to all
models."""
import contextlib
import importlib
import os
import sys

from ..backend import device as resolve_device
from ..distributed import rank_device
from ..readers import read_report
from ..train import CHECKPOINT, MODEL, REPORT, ResumeMismatch, RunStopped, StopSignals, claim_run_folder
from ..train.checkpoint import recorded_config
from ..train.folder import FINISHED, describe_run
from ..train.tensorboard import summary_writer_class
from .common import CLIError, out_dir
from .predictions import load_input, network_predictions, print_predictions
from .ranks import join_ranks, rank_zero_speaks
from .registry import MODELS, owners

EXPERIMENTS = {"gradients": "gpudl.experiments.gradients", "long-term": "gpudl.experiments.long_term"}
RECORDED = ("seed", "lr", "epochs", "batch_size", "data_dir")    # shared settings a resume takes from its checkpoint
CONTENT = {"text_sha256": "the content of --text", "data_sha256": "the content of the data (--data-dir)",
           "schedule": "the learning-rate schedule (--epochs, --lr)"}


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
    if args.out is not None and not args.out.strip():
        raise CLIError("--out: the folder name is empty; pass a folder for the run's files")
    if args.override and not args.resume:
        raise CLIError("--override applies with --resume only (it lets a resumed run change its settings)")
    if args.force and args.resume:
        raise CLIError("--force replaces the run in the output folder and --resume continues it: pass one of them")
    if args.resume and not entry.resumable:
        raise CLIError(f"--resume applies to the models trained by gradient descent, not to {args.model}")
    if args.tensorboard and not entry.resumable:
        raise CLIError(f"--tensorboard logs the epochs of models trained by gradient descent, not {args.model}'s")
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise CLIError(f"--data-dir {args.data_dir}: no such folder")
    if args.distributed and not entry.distributed:
        raise CLIError(f"--distributed applies to {', '.join(n for n, e in MODELS.items() if e.distributed)}, not "
                       f"to {args.model}")
    if args.tensorboard:
        try:
            summary_writer_class()
        except ImportError as exc:
            raise CLIError(f"--tensorboard: {exc}") from None
    args.dev = resolve_device(args.device)      # None: GPUDL_DEVICE, else auto
    args.graph = {"auto": "auto", "on": True, "off": False}[args.graph]     # fit's graph=
    if args.graph is True and args.dev.kind == "cpu":
        raise CLIError("--graph on: the CPU has no CUDA graph to record; pass --graph auto or off (or --device cuda)")
    args.model_settings = tuple(option.dest for option in entry.train_options)
    args.comm = join_ranks(args.dev) if args.distributed else None
    with StopSignals() as stops:
        try:
            with rank_zero_speaks(args.comm):
                if args.comm is not None:
                    args.dev = rank_device(args.comm, args.dev)
                status = _train(entry, args)
        except RunStopped as exc:
            print(f"gpudl: {exc}", file=sys.stderr, flush=True)
            return exc.exit_status
    if stops.received is not None:
        print(f"gpudl: {stops.name} arrived after the run completed; its files are complete", file=sys.stderr)
    return status


def _train(entry, args):
    """Train in the run folder, which rank 0 (or the one process) claims; every rank waits until it holds it. A
    resume takes the settings the command line leaves out from the checkpoint's record."""
    out = out_dir(args)
    lead = args.comm is None or args.comm.rank == 0
    with claim_run_folder(out, resume=args.resume, force=args.force) if lead else contextlib.nullcontext():
        checkpoint = os.path.join(out, CHECKPOINT)
        if lead and args.resume and not os.path.exists(checkpoint):
            held = describe_run(out)
            if held is not None and held.before_first_checkpoint:
                raise CLIError(f"--resume: no checkpoint in {out}: it holds {held}, which ended before its first "
                               f"one; run the same command without --resume to start afresh")
            raise CLIError(f"--resume: no checkpoint in {out} (train once without --resume first)")
        if args.comm is not None:
            args.comm.barrier()     # no rank reads the folder (a checkpoint to resume) before rank 0 holds it
        if args.resume:
            recorded = recorded_config(checkpoint)
            for dest in RECORDED + args.model_settings:
                if getattr(args, dest, None) is None and recorded.get(dest) is not None:
                    setattr(args, dest, recorded[dest])
        if args.seed is None:
            args.seed = 0
        try:
            return entry.train(args)
        except ResumeMismatch as exc:
            raise CLIError(_in_flags(exc, out, args.model_settings)) from None


def _shown(value):
    text = repr(value)
    return text if len(text) <= 24 else text[:20] + "...'"


def _in_flags(exc, out, settings):
    """A ResumeMismatch of fit in the words of the command line (its flags)."""
    if not exc.changes:
        return str(exc)
    named = []
    for key, (old, new) in exc.changes.items():
        if key == "model_args":
            continue
        if key in CONTENT:
            named.append(f"{CONTENT[key]} changed" if key != "schedule" else f"{CONTENT[key]}: {old} -> {new}")
        elif key in RECORDED + settings:
            named.append(f"{_flag(key)} {_shown(old)} -> {_shown(new)}")
        else:
            named.append(f"{key} {_shown(old)} -> {_shown(new)}")
    listed = "; ".join(named) or "its model_args"
    if "model_args" in exc.changes:
        return (f"--resume: {out} holds a model built with other settings ({listed}); a resumed run keeps the model "
                f"its checkpoint holds: leave those options out, or start a new run with --force or another --out")
    return (f"--resume: {out} was trained with other settings ({listed}); continuing with them changes the result: "
            f"pass --override to continue with the new values")


def _finished_run(run):
    """(report's config, model path) of the run folder `run`, checked to hold both files."""
    if not os.path.exists(run):
        raise CLIError(f"{run}: no such folder (gpudl predict and export take a run folder, or an .onnx model)")
    if not os.path.isdir(run):
        raise CLIError(f"{run}: is a file, not a run folder (an ONNX model's name ends in .onnx)")
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
    if os.path.isdir(args.run):
        raise CLIError(f"{args.run}: is a folder, not an ONNX file")
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
    _, config, model_path = _finished_run(args.run)
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
