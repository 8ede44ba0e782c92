"""`gpudl train perceptron`: Rosenblatt's rule on generated points (separable, or XOR where it cannot converge)."""
import os

import numpy

from ..backend import to_numpy
from ..data import separable_points, xor
from ..models import Perceptron
from ..serialization import save
from ..train import MODEL, write_report
from ..train.report import COMPLETED
from .common import CLIError, out_dir, run_config
from .entry import ModelEntry, Option
from .predictions import load_points, print_predictions


def points(kind, seed, dtype=numpy.float64):
    return xor(dtype) if kind == "xor" else separable_points(200, seed=seed, dtype=dtype)


def train(args):
    if args.data_dir:
        raise CLIError("the perceptron trains on generated points (--data separable|xor), not on --data-dir")
    lr = 1.0 if args.lr is None else args.lr
    if lr > 1:
        raise CLIError(f"the perceptron's learning rate must lie in (0, 1], got {lr}")
    args.lr, args.epochs, args.data = lr, args.epochs or 100, args.data or "separable"
    X, y = points(args.data, args.seed)
    model = Perceptron(X.shape[1], lr=lr, max_epochs=args.epochs).to(args.dev)
    result = model.fit(X, y)  # the rule is sequential: it runs on the host, the weights are copied back
    weights, bias = to_numpy(model.W.data)[:, 0], float(to_numpy(model.b.data)[0])
    accuracy = float((to_numpy(model.predict(X)) == y).mean())
    out = out_dir(args)
    os.makedirs(out, exist_ok=True)
    save(model, os.path.join(out, MODEL))
    config = dict(run_config(args, n_features=X.shape[1], signed=model.signed), data=args.data)
    report = {"config": config, "data": args.data, "status": COMPLETED, "reason": str(result),
              "converged": bool(result.converged), "epochs_run": result.epochs,
              "updates": result.updates, "train_accuracy": accuracy,
              "weights": weights.tolist(), "bias": bias, "history": []}
    write_report(out, report)
    print(f"perceptron on {args.data} points: {result}; training accuracy {accuracy:.3f}")
    print(f"w = {numpy.round(weights, 4).tolist()}, b = {bias:.4f}; "
          f"model and report in {out}")
    return 0


def build(model_args):
    model = Perceptron(model_args["n_features"])
    model.signed = bool(model_args.get("signed", False))
    return model


def export_shape(model_args):
    return (model_args["n_features"],)


def predict(args, model, config, device):
    X, y = (load_points(args.input), None) if args.input else points(config.get("data"), config["seed"], numpy.float32)
    predicted = to_numpy(model.predict(X.astype(numpy.float64))).astype(int)
    return print_predictions(predicted, None, y, args.show)


ENTRY = ModelEntry(
    name="perceptron", help="Rosenblatt's perceptron on generated points", train=train, build=build, predict=predict,
    train_options=(Option("--data", "which points (separable)", {"choices": ["separable", "xor"]}),),
    resumable=False, export=export_shape)
