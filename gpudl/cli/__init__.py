"""The `gpudl` command (also `python -m gpudl`).

    gpudl train {perceptron,xor,lenet5,charlm} [--device auto|cpu|cuda] [--epochs N] [--batch-size N] [--lr X]
                [--seed S] [--data-dir DIR] [--out DIR] [--resume [--override]] [--force]
                [--graph auto|on|off] [--distributed] [--tensorboard]
                perceptron: [--data separable|xor]   xor: [--hidden H]
                charlm: [--text FILE] [--max-chars N] [--seq-len T] [--hidden H] [--temperature X] [--sample-length N]
    gpudl predict RUN_DIR [--input FILE.npy]              charlm runs: [--start TEXT] [--temperature X] [--length N]
    gpudl predict MODEL.onnx --input FILE.npy
    gpudl export RUN_DIR [OUT.onnx]
    gpudl experiment {gradients,long-term} ...           (the experiment's own options follow)
    gpudl info
    gpudl bench ...

Bad input ends with one line on stderr ("gpudl: error: ...") and a non-zero exit status, never a traceback
(set GPUDL_DEBUG=1 to see one). SIGINT and SIGTERM stop a training run after its current step, with its checkpoint,
report and curves written, and exit 130 and 143.
GPUDL_DEVICE sets the device of every command that takes --device (train and predict, and bench and
experiment when their own --device is not given); a bad value is refused naming it.
A training run owns its --out folder while it runs (train.claim_run_folder). Each model is one ModelEntry
(cli/entry.py) listed in cli/registry.py: how to train it, rebuild it from a run, predict with it, and the options
only it takes.

    common.py       CLIError, argument types, the run's folder, seed streams and config
    entry.py        ModelEntry, Option
    registry.py     MODELS; perceptron.py, xor.py, lenet5.py, charlm.py: one entry each
    predictions.py  --input files and printing the predictions of the array models
    commands.py     train, predict, export, experiment, bench
    ranks.py        train --distributed: the ranks, their devices, rank 0 alone writing, a failing rank ending all
    info.py         gpudl info (versions, devices, kernel compile report)
"""
import argparse
import os
import sys

from ..functional.host_memory import keep_freed_memory_if_asked
from .commands import EXPERIMENTS, cmd_bench, cmd_experiment, cmd_export, cmd_predict, cmd_train
from .common import CLIError, __version__, count, error_message, positive_float, positive_int, seed
from .info import cmd_info, kernel_report
from .registry import MODELS, model_options

__all__ = ["MODELS", "CLIError", "kernel_report", "main", "make_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line instead of usage text plus the error."""

    def error(self, message):
        self.exit(2, f"gpudl: error: {message} (see '{self.prog} --help')\n")


def _add_model_options(parser, which):
    for flag, (kwargs, help_text) in model_options(which).items():
        parser.add_argument(flag, help=help_text, **kwargs)


def make_parser():
    parser = _Parser(prog="gpudl", description="Train and run the classic neural networks on the CPU or a GPU.")
    parser.add_argument("--version", action="version", version=f"gpudl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,predict,export,experiment,info,bench}",
                                parser_class=_Parser)
    sub.required = True

    train = sub.add_parser("train", help="train a model from the command line")
    train.add_argument("model", choices=sorted(MODELS), help="which model to train: "
                       + "; ".join(f"{name}: {entry.help}" for name, entry in MODELS.items()))
    train.add_argument("--device", help="auto (GPU when usable), cpu, cuda or cuda:N (default: GPUDL_DEVICE, else "
                       "auto)")
    train.add_argument("--epochs", type=positive_int, help="epochs (perceptron: epoch limit); default per model")
    train.add_argument("--batch-size", type=positive_int, help="mini-batch size; default per model")
    train.add_argument("--lr", type=positive_float, help="learning rate; default per model")
    train.add_argument("--seed", type=seed, help="seed of weights, shuffling and data split (0)")
    train.add_argument("--data-dir", help="lenet5: a folder of MNIST IDX files (default: scikit-learn's digits)")
    train.add_argument("--out", help="output folder (default runs/MODEL)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder "
                       "(the settings left out are the checkpoint's)")
    train.add_argument("--override", action="store_true", help="with --resume: continue although settings that "
                       "change the result differ from the checkpoint's (the report records old and new values)")
    train.add_argument("--force", action="store_true", help="replace the run the output folder holds")
    train.add_argument("--graph", choices=("auto", "on", "off"), default="auto",
                       help="record each training step once and replay it as one CUDA graph: auto (on a GPU), on "
                       "(an error where it cannot), off (eager steps)")
    train.add_argument("--distributed", action="store_true", help="data-parallel training on the ranks mpiexec "
                       "started (mpiexec -n N gpudl train MODEL --distributed); --batch-size stays the global batch")
    train.add_argument("--tensorboard", action="store_true", help="also log each epoch's scalars for TensorBoard "
                       "into the output folder (needs gpudl[tensorboard])")
    _add_model_options(train, "train_options")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="predict with a model saved by gpudl train")
    predict.add_argument("run", help="the output folder of a training run (holds model.npz and report.json), or an "
                         ".onnx model (then --input is required)")
    predict.add_argument("--input", help=".npy file of inputs (default: the run's held-out data)")
    predict.add_argument("--device", help="cpu, auto, cuda or cuda:N (default: GPUDL_DEVICE, else cpu)")
    predict.add_argument("--show", type=count, default=10, help="how many predictions to print (10)")
    _add_model_options(predict, "predict_options")
    predict.set_defaults(func=cmd_predict)

    export = sub.add_parser("export", help="export a finished run's model to ONNX (needs gpudl[onnx])")
    export.add_argument("run", help="the output folder of a finished training run")
    export.add_argument("output", nargs="?", help="the .onnx file to write (default RUN_DIR/model.onnx)")
    export.set_defaults(func=cmd_export)

    experiment = sub.add_parser("experiment", help="the recurrent experiments: gradients, long-term "
                                "(their own options follow the name; NAME --help lists them)")
    experiment.add_argument("name", choices=sorted(EXPERIMENTS), help="which experiment")

    info = sub.add_parser("info", help="versions, devices, and whether the CUDA kernels compile")
    info.set_defaults(func=cmd_info)

    sub.add_parser("bench", help="benchmarks (gpudl.bench; its own options follow)", add_help=False)
    return parser


def main(argv=None):
    """Entry point of the `gpudl` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after "bench" belongs to gpudl.bench, options included
        args = argparse.Namespace(func=cmd_bench, bench_args=argv[1:])
    elif argv[:1] == ["experiment"] and argv[1:2] and argv[1] in EXPERIMENTS:  # the rest is the experiment's
        args = argparse.Namespace(func=cmd_experiment, name=argv[1], experiment_args=argv[2:])
    else:
        args = make_parser().parse_args(argv)
    try:
        keep_freed_memory_if_asked(default=True)    # the command trains in this process: it keeps freed memory
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("gpudl: interrupted (a training run continues from its last checkpoint with --resume)", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("GPUDL_DEBUG"):
            raise
        print(f"gpudl: error: {error_message(exc)}", file=sys.stderr)
        return 1
