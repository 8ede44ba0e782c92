"""The `gpudl` command (also `python -m gpudl`).

    gpudl train {perceptron,xor,lenet5,charlm} [--device auto|cpu|cuda] [--epochs N] [--batch-size N] [--lr X]
                [--seed S] [--data-dir DIR] [--out DIR] [--resume]
                charlm: [--text FILE] [--max-chars N] [--seq-len T] [--hidden H] [--temperature X] [--sample-length N]
    gpudl predict RUN_DIR [--input FILE.npy]              charlm runs: [--start TEXT] [--temperature X] [--length N]
    gpudl experiment {gradients,long-term} ...           (the experiment's own options follow)
    gpudl info
    gpudl bench ...

Bad input ends with one line on stderr ("gpudl: error: ...") and a non-zero exit status, never a traceback
(set GPUDL_DEBUG=1 to see one). A model is added by writing a `_train_<name>` function and listing it in TRAINERS
(and, for `gpudl predict`, in `build_model`).
"""
import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import numpy

from . import __version__
from .backend import DeviceError, gpu_status, to_device, to_numpy
from .backend import device as resolve_device
from .train import TrainingDiverged

EXTRAS_HINT = 'pip install "gpudl[examples]"'


class CLIError(Exception):
    """A mistake in the command line or its inputs, reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line instead of usage text plus the error."""

    def error(self, message):
        self.exit(2, f"gpudl: error: {message} (see '{self.prog} --help')\n")


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and numpy.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _int_at_least(minimum, words):
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


_positive_int = _int_at_least(1, "at least 1")
_seed = _int_at_least(0, "0 or more")


def _rng(seed, stream):
    """An independent generator per purpose (0 weights, 1 shuffling, 2 data split), all from one --seed."""
    return numpy.random.default_rng([seed, stream])


def _to_stderr(text):
    print(text, file=sys.stderr)


def _out_dir(args):
    return args.out or os.path.join("runs", args.model)


def _config(args, **model_args):
    return {"model": args.model, "model_args": model_args, "seed": args.seed, "lr": args.lr,
            "epochs": args.epochs, "batch_size": args.batch_size, "device": str(args.dev),
            "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None, "gpudl": __version__}


# ---------------------------------------------------------------------------------------------------- models


def build_model(name, model_args):
    """The model a run directory's report describes (for `gpudl predict`)."""
    from .models import MLP, LeNet5, Perceptron
    if name == "lenet5":
        return LeNet5(**model_args)
    if name == "xor":
        return MLP(model_args["sizes"])
    if name == "perceptron":
        model = Perceptron(model_args["n_features"])
        model.signed = bool(model_args.get("signed", False))
        return model
    raise CLIError(f"gpudl predict does not know how to rebuild a {name!r} model")


def _train_perceptron(args):
    from .data import separable_points, xor
    from .models import Perceptron
    from .serialization import save
    from .train import write_report
    if args.resume:
        raise CLIError("--resume applies to the models trained by gradient descent, not to the perceptron")
    if args.data_dir:
        raise CLIError("the perceptron trains on generated points (--data separable|xor), not on --data-dir")
    lr = 1.0 if args.lr is None else args.lr
    if lr > 1:
        raise CLIError(f"the perceptron's learning rate must lie in (0, 1], got {lr}")
    epochs = args.epochs or 100
    X, y = xor(numpy.float64) if args.data == "xor" else separable_points(200, seed=args.seed, dtype=numpy.float64)
    model = Perceptron(X.shape[1], lr=lr, max_epochs=epochs).to(args.dev)
    result = model.fit(X, y)  # the rule is sequential: it runs on the host, the weights are copied back
    weights, bias = to_numpy(model.W.data)[:, 0], float(to_numpy(model.b.data)[0])
    accuracy = float((to_numpy(model.predict(X)) == y).mean())
    out = _out_dir(args)
    os.makedirs(out, exist_ok=True)
    save(model, os.path.join(out, "model.npz"))
    args.lr, args.epochs = lr, epochs
    report = {"config": _config(args, n_features=X.shape[1], signed=model.signed), "data": args.data,
              "status": "converged" if result.converged else "not converged", "epochs_run": result.epochs,
              "updates": result.updates, "train_accuracy": accuracy,
              "weights": weights.tolist(), "bias": bias, "history": []}
    write_report(out, report)
    print(f"perceptron on {args.data} points: {result}; training accuracy {accuracy:.3f}")
    print(f"w = {numpy.round(weights, 4).tolist()}, b = {bias:.4f}; "
          f"model and report in {out}")
    return 0


def _train_xor(args):
    from . import nn, optim
    from .data import DataLoader, xor
    from .models import MLP
    from .train import fit
    if args.data_dir:
        raise CLIError("xor trains on the four XOR points; it takes no --data-dir")
    if args.hidden is None:
        args.hidden = 4
    X, y = xor()
    Y = y[:, None].astype(numpy.float32)
    sizes = [2, args.hidden, 1] if args.hidden else [2, 1]
    lr = 1.0 if args.lr is None else args.lr
    epochs = args.epochs or 1000
    batch = args.batch_size or 4
    args.lr, args.epochs, args.batch_size = lr, epochs, batch
    model = MLP(sizes, rng=_rng(args.seed, 0)).to(args.dev)
    if not args.quiet:
        model.summary((2,), print_fn=_to_stderr)
    optimizer = optim.SGD(model.parameters(), lr, momentum=0.9)
    loader = DataLoader(X, Y, batch, seed=[args.seed, 1], device=args.dev)
    every_tenth = max(1, epochs // 10)
    report = fit(model, nn.MSELoss(check=False), optimizer, loader, DataLoader(X, Y, 4, shuffle=False, device=args.dev),
                 epochs=epochs, out=_out_dir(args), resume=args.resume, checkpoint_every=every_tenth,
                 log_every=every_tenth, progress=not args.quiet, config=_config(args, sizes=sizes))
    outputs = to_numpy(model.forward(to_device(X, args.dev)))[:, 0]
    print("x1 x2 | target  output")
    for (a, b), t, o in zip(X, y, outputs):
        print(f" {a:.0f}  {b:.0f} |   {t}     {o:.3f}")
    solved = bool(((outputs >= 0.5) == (y == 1)).all())
    layers = "no hidden layer" if not args.hidden else f"one hidden layer of {args.hidden}"
    if solved:
        print(f"XOR solved by an MLP with {layers} (loss {report['final']['train_loss']:.4f})")
    else:
        print(f"XOR not solved by an MLP with {layers}"
              + (": without a hidden layer the network draws one line, and no line separates XOR"
                 if not args.hidden else "; try more --epochs or another --seed"))
    return 0


def _digits_or_mnist(args):
    """((X_train, y_train), (X_test, y_test), description) for LeNet-5."""
    from .data import load_digits, load_mnist
    from .data.mnist import has_split
    if not args.data_dir:
        try:
            train, test = load_digits(seed=[args.seed, 2])
        except ImportError as exc:
            raise CLIError(f"{exc} (or pass --data-dir with MNIST IDX files)") from None
        return train, test, "scikit-learn digits (8x8 resized to 28x28), stratified 80/20 split"
    folder = args.data_dir
    if has_split(folder, "train"):
        return load_mnist(folder, "train"), load_mnist(folder, "test"), f"MNIST from {folder}"
    X, y = load_mnist(folder, "test")
    cut = len(X) * 4 // 5
    return ((X[:cut], y[:cut]), (X[cut:], y[cut:]),
            f"MNIST t10k from {folder}: first {cut} images to train, last {len(X) - cut} to test")


def _train_lenet5(args):
    from . import nn, optim
    from .data import DataLoader, random_shift
    from .models import LeNet5
    from .train import cosine_schedule, fit
    (Xtr, ytr), (Xte, yte), description = _digits_or_mnist(args)
    lr = 1e-3 if args.lr is None else args.lr
    epochs = args.epochs or (30 if not args.data_dir else 10)
    batch = args.batch_size or 32
    args.lr, args.epochs, args.batch_size = lr, epochs, batch
    print(f"lenet5: {description}; {len(Xtr)} training and {len(Xte)} test images, device {args.dev}",
          file=sys.stderr)
    model = LeNet5(rng=_rng(args.seed, 0)).to(args.dev)
    if not args.quiet:
        model.summary((1, 28, 28), print_fn=_to_stderr)
    optimizer = optim.Adam(model.parameters(), lr)
    shift = 0 if args.data_dir else 2  # few digits images: random shifts of up to 2 pixels keep LeNet-5 general
    train = DataLoader(Xtr, ytr, batch, seed=[args.seed, 1], device=args.dev,
                       transform=random_shift(shift))
    test = DataLoader(Xte, yte, 500, shuffle=False, device=args.dev)
    out = _out_dir(args)
    report = fit(model, nn.SoftmaxCrossEntropy(check=False), optimizer, train, test, epochs=epochs, out=out,
                 resume=args.resume, schedule=cosine_schedule(lr, epochs), progress=not args.quiet,
                 config=_config(args, in_channels=1, num_classes=10))
    final = report["final"]
    print(f"lenet5: test accuracy {final['test_accuracy']:.4f} after {epochs} epochs "
          f"({report['seconds']:.1f} s of training); model, checkpoint and report in {out}")
    return 0


def _train_charlm(args):
    try:
        charlm = importlib.import_module("gpudl.experiments.charlm")
    except ModuleNotFoundError as exc:
        if exc.name not in ("gpudl.experiments", "gpudl.experiments.charlm"):
            raise
        raise CLIError("charlm is not available in this version of gpudl "
                       "(the module gpudl.experiments.charlm is missing)") from None
    return charlm.run_cli(args)


TRAINERS = {"perceptron": _train_perceptron, "xor": _train_xor, "lenet5": _train_lenet5, "charlm": _train_charlm}


# ---------------------------------------------------------------------------------------------------- commands


CHARLM_OPTIONS = ("text", "max_chars", "seq_len", "temperature", "sample_length")


def cmd_train(args):
    if args.model == "charlm":
        if args.data_dir:
            raise CLIError("charlm trains on --text FILE (default: standard-library docstrings), not on --data-dir")
    else:
        given = [name for name in CHARLM_OPTIONS if getattr(args, name, None) is not None]
        if given:
            raise CLIError(f"--{given[0].replace('_', '-')} applies to charlm only, not to {args.model}")
        if args.hidden is not None and args.model != "xor":
            raise CLIError(f"--hidden applies to xor and charlm, not to {args.model}")
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise CLIError(f"--data-dir {args.data_dir}: no such folder")
    checkpoint = os.path.join(_out_dir(args), "checkpoint.npz")
    if args.resume and args.model != "perceptron" and not os.path.exists(checkpoint):
        raise CLIError(f"--resume: no checkpoint in {_out_dir(args)} (train once without --resume first)")
    if args.model == "charlm":  # resolves its own device and options
        return _train_charlm(args)
    args.dev = resolve_device(args.device)
    return TRAINERS[args.model](args)


def _load_input(path, model_name):
    if not os.path.isfile(path):
        raise CLIError(f"--input {path}: no such file")
    try:
        X = numpy.load(path, allow_pickle=False)
    except ValueError as exc:
        raise CLIError(f"--input {path}: not a readable .npy array of numbers ({exc})") from None
    if X.dtype == numpy.uint8:
        X = X / 255.0
    X = X.astype(numpy.float32)
    if model_name == "lenet5":
        if X.ndim == 2:
            X = X[None]
        if X.ndim == 3:
            X = X[:, None]
        if X.ndim != 4 or X.shape[1:] != (1, 28, 28):
            raise CLIError(f"--input {path}: expected 28x28 images ((N, 28, 28) or (N, 1, 28, 28)), got {X.shape}")
    elif X.ndim != 2:
        raise CLIError(f"--input {path}: expected points of shape (N, features), got {X.shape}")
    return X


def cmd_predict(args):
    from .serialization import load
    report_path = os.path.join(args.run, "report.json")
    model_path = os.path.join(args.run, "model.npz")
    for path in (report_path, model_path):
        if not os.path.isfile(path):
            raise CLIError(f"{args.run} is not a finished run folder: {os.path.basename(path)} is missing")
    with open(report_path) as f:
        config = json.load(f)["config"]
    name = config["model"]
    if name == "charlm":
        return _predict_charlm(args, model_path, config)
    for option in ("start", "temperature", "length"):
        if getattr(args, option, None) is not None:
            raise CLIError(f"--{option} applies to charlm runs only; {args.run} holds a {name} model")
    model = build_model(name, config["model_args"])
    dev = resolve_device(args.device)
    load(model.to(dev), model_path)
    model.eval()
    if args.input:
        X, y = _load_input(args.input, name), None
    elif name == "lenet5":
        ns = argparse.Namespace(seed=config["seed"], data_dir=config.get("data_dir"))
        if ns.data_dir and not os.path.isdir(ns.data_dir):
            raise CLIError(f"the run trained on {ns.data_dir}, which is gone; pass --input")
        _, (X, y), description = _digits_or_mnist(ns)
        print(f"predicting the held-out test images of {description}")
    else:
        from .data import separable_points, xor
        X, y = xor() if name == "xor" or config.get("data") == "xor" else separable_points(200, seed=config["seed"])
    if name == "perceptron":
        predicted = to_numpy(model.predict(X.astype(numpy.float64))).astype(int)
        scores = None
    else:
        outputs = []
        for start in range(0, len(X), 500):
            outputs.append(to_numpy(model.forward(to_device(X[start:start + 500], dev))))
        out = numpy.concatenate(outputs)
        if out.shape[1] == 1:
            predicted, scores = (out[:, 0] >= 0.5).astype(int), out[:, 0]
        else:
            shifted = numpy.exp(out - out.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
            predicted, scores = probs.argmax(axis=1), probs.max(axis=1)
    shown = min(len(predicted), args.show)
    for k in range(shown):
        line = f"{k}: {predicted[k]}"
        if scores is not None:
            line += f" ({scores[k]:.3f})"
        if y is not None:
            line += f", label {y[k]}"
        print(line)
    if shown < len(predicted):
        print(f"... {len(predicted) - shown} more (--show N prints more)")
    if y is not None:
        print(f"accuracy {float((predicted == y).mean()):.4f} on {len(y)} samples")
    return 0


def _predict_charlm(args, model_path, config):
    """Print a sample of a trained character model: --start, then --length characters at --temperature."""
    from .experiments.charlm import load_charlm, sample
    if args.input:
        raise CLIError("a charlm run samples text: use --start TEXT instead of --input")
    model, vocab = load_charlm(model_path, resolve_device(args.device))
    temperature = args.temperature if args.temperature is not None else config.get("temperature", 0.7)
    length = args.length if args.length is not None else 200
    unknown = sorted(set(args.start or "") - set(vocab.chars))
    if unknown:
        raise CLIError(f"--start: the model never saw the characters {''.join(unknown)!r}")
    rng = numpy.random.default_rng(args.seed)
    print(sample(model, vocab, args.start or "", length, temperature, rng))
    return 0


def _version(module_name):
    try:
        module = importlib.import_module(module_name)
    except Exception:
        return None
    return getattr(module, "__version__", "installed")


def _kernel_sources():
    try:
        kernels = importlib.import_module("gpudl.kernels")
        folder = getattr(kernels, "KERNEL_DIR", None)
    except Exception:
        folder = None
    if folder is None:
        folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")
    if not os.path.isdir(folder):
        return folder, []
    return folder, sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".cu"))


def kernel_report(usable):
    """One line per CUDA source: compiled through CuPy on the GPU, else through nvcc --ptx, else unchecked."""
    folder, sources = _kernel_sources()
    if not sources:
        return [f"kernels: no CUDA sources found (looked in {folder})"]
    nvcc = shutil.which("nvcc")
    lines = []
    for src in sources:
        name = os.path.basename(src)
        if usable:
            try:
                import cupy
                with open(src) as f:
                    cupy.RawModule(code=f.read(), options=("-std=c++17",)).compile()
                lines.append(f"kernels: {name} compiles (CuPy, on the GPU)")
            except Exception as exc:
                lines.append(f"kernels: {name} FAILS to compile: {str(exc).splitlines()[0][:200]}")
        elif nvcc:
            with tempfile.TemporaryDirectory() as tmp:
                run = subprocess.run([nvcc, "--ptx", "-arch=sm_80", "-o", os.path.join(tmp, "k.ptx"), src],
                                     capture_output=True, text=True)
            if run.returncode == 0:
                lines.append(f"kernels: {name} compiles (nvcc --ptx; no GPU to run it)")
            else:
                first = ((run.stderr or run.stdout).strip().splitlines() or ["unknown error"])[0]
                lines.append(f"kernels: {name} FAILS to compile: {first[:200]}")
        else:
            lines.append(f"kernels: {name} not checked (no usable GPU and no nvcc)")
    return lines


def cmd_info(args):
    usable, reason = gpu_status()
    print(f"gpudl {__version__}")
    print(f"python {platform.python_version()} ({sys.executable}), numpy {numpy.__version__}")
    cupy_version = _version("cupy")
    print(f"cupy {cupy_version}" if cupy_version else "cupy: not installed (pip install \"gpudl[cuda13]\")")
    extras = [(label, _version(mod)) for label, mod in (("scikit-learn", "sklearn"), ("tqdm", "tqdm"),
                                                          ("matplotlib", "matplotlib"))]
    print("optional: " + ", ".join(f"{label} {v}" if v else f"{label} missing" for label, v in extras)
          + ("" if all(v for _, v in extras) else f" ({EXTRAS_HINT})"))
    print(f"devices: cpu ({os.cpu_count()} cores)")
    if usable:
        import cupy
        for index in range(cupy.cuda.runtime.getDeviceCount()):
            props = cupy.cuda.runtime.getDeviceProperties(index)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            print(f"devices: cuda:{index} {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB")
    else:
        print(f"devices: no usable GPU ({reason})")
    for line in kernel_report(usable):
        print(line)
    return 0


def cmd_bench(args):
    try:
        bench = importlib.import_module("gpudl.bench")
    except ImportError:
        raise CLIError("gpudl bench is not available in this version of gpudl (gpudl.bench is missing)") from None
    return bench.main(args.bench_args)


EXPERIMENTS = {"gradients": "gpudl.experiments.gradients", "long-term": "gpudl.experiments.long_term"}


def cmd_experiment(args):
    module = importlib.import_module(EXPERIMENTS[args.name])
    module.main(args.experiment_args)
    return 0


def make_parser():
    parser = _Parser(prog="gpudl", description="Train and run the classic neural networks on the CPU or a GPU.")
    parser.add_argument("--version", action="version", version=f"gpudl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,predict,experiment,info,bench}", parser_class=_Parser)
    sub.required = True

    train = sub.add_parser("train", help="train a model from the command line")
    train.add_argument("model", choices=sorted(TRAINERS), help="which model to train")
    train.add_argument("--device", default="auto", help="auto (GPU when usable), cpu, cuda or cuda:N")
    train.add_argument("--epochs", type=_positive_int, help="epochs (perceptron: epoch limit); default per model")
    train.add_argument("--batch-size", type=_positive_int, help="mini-batch size; default per model")
    train.add_argument("--lr", type=_positive_float, help="learning rate; default per model")
    train.add_argument("--seed", type=_seed, default=0, help="seed of weights, shuffling and data split (0)")
    train.add_argument("--data-dir", help="lenet5: a folder of MNIST IDX files (default: scikit-learn's digits)")
    train.add_argument("--out", help="output folder (default runs/MODEL)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    train.add_argument("--data", choices=["separable", "xor"], default="separable", help="perceptron: which points")
    train.add_argument("--hidden", type=int, help="xor: hidden units (4; 0 = no hidden layer); charlm: LSTM units (128)")
    train.add_argument("--text", metavar="FILE", help="charlm: UTF-8 text to train on (default: stdlib docstrings)")
    train.add_argument("--max-chars", type=_positive_int, help="charlm: use at most this many characters (100000)")
    train.add_argument("--seq-len", type=_positive_int, help="charlm: steps of truncated BPTT per batch (50)")
    train.add_argument("--temperature", type=_positive_float, help="charlm: sampling temperature (0.7)")
    train.add_argument("--sample-length", type=_positive_int, help="charlm: characters sampled at the end (200)")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="predict with a model saved by gpudl train")
    predict.add_argument("run", help="the output folder of a training run (holds model.npz and report.json)")
    predict.add_argument("--input", help=".npy file of inputs (default: the run's held-out data)")
    predict.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    predict.add_argument("--show", type=int, default=10, help="how many predictions to print (10)")
    predict.add_argument("--start", help="charlm: text the sample begins with")
    predict.add_argument("--temperature", type=_positive_float, help="charlm: sampling temperature (the run's)")
    predict.add_argument("--length", type=_positive_int, help="charlm: characters to sample (200)")
    predict.add_argument("--seed", type=_seed, help="charlm: seed of the sampling (default: fresh randomness)")
    predict.set_defaults(func=cmd_predict)

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
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("gpudl: interrupted (a training run continues from its last checkpoint with --resume)", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("GPUDL_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, (CLIError, DeviceError, OSError, ValueError, TrainingDiverged)):
            message = f"{type(exc).__name__}: {message}"
        print(f"gpudl: error: {message}", file=sys.stderr)
        return 1
