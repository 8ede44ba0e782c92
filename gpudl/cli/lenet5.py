"""`gpudl train lenet5`: LeNet-5 on scikit-learn's digits (resized to 28x28) or on MNIST IDX files in --data-dir."""
import argparse
import os
import sys

from .. import nn, optim
from ..data import DataLoader, load_digits, load_mnist, random_shift
from ..data.mnist import has_split
from ..models import LeNet5
from ..train import FREE_ON_RESUME, Checkpoints, cosine_schedule, fit
from .common import CLIError, out_dir, rng, run_config, settle, sha256_of, to_stderr
from .entry import ModelEntry
from .predictions import load_input, network_predictions, print_predictions
from .ranks import shard


def digits_or_mnist(args):
    """((X_train, y_train), (X_test, y_test), description) from args.data_dir and args.seed."""
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


def train(args):
    (Xtr, ytr), (Xte, yte), description = digits_or_mnist(args)
    settle(args, lr=1e-3, epochs=30 if not args.data_dir else 10, batch_size=32)
    print(f"lenet5: {description}; {len(Xtr)} training and {len(Xte)} test images, device {args.dev}",
          file=sys.stderr)
    model = LeNet5(rng=rng(args.seed, 0)).to(args.dev)
    if not args.quiet:
        model.summary((1, 28, 28), print_fn=to_stderr)
    optimizer = optim.Adam(model.parameters(), args.lr)
    shift = 0 if args.data_dir else 2  # few digits images: random shifts of up to 2 pixels keep LeNet-5 general
    train_loader = DataLoader(Xtr, ytr, args.batch_size, seed=[args.seed, 1], device=args.dev,
                              transform=random_shift(shift) if shift else None, shard=shard(args.comm))
    test_loader = DataLoader(Xte, yte, 500, shuffle=False, device=args.dev)
    out = out_dir(args)
    config = dict(run_config(args, in_channels=1, num_classes=10), data_sha256=sha256_of(Xtr, ytr, Xte, yte))
    report = fit(model, nn.SoftmaxCrossEntropy(check=False), optimizer, train_loader, test_loader,
                 epochs=args.epochs, out=out, graph=args.graph, resume=args.resume, override=args.override,
                 config=config, schedule=cosine_schedule(args.lr, args.epochs), comm=args.comm,
                 progress=not args.quiet, checkpoints=Checkpoints(free_on_resume=FREE_ON_RESUME + ("data_dir",)),
                 tensorboard=args.tensorboard)     # data_dir: a folder moved elsewhere is fine; data_sha256 decides
    final = report["final"]
    print(f"lenet5: test accuracy {final['test_accuracy']:.4f} after {args.epochs} epochs "
          f"({report['seconds']:.1f} s of training); model, checkpoint and report in {out}")
    return 0


def build(model_args):
    return LeNet5(**model_args)


def export_shape(model_args):
    return (model_args.get("in_channels", 1), 28, 28)


def load_images(path):
    """The --input file as images (N, 1, 28, 28); (28, 28) and (N, 28, 28) arrays are reshaped."""
    X = load_input(path)
    if X.ndim == 2:
        X = X[None]
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim != 4 or X.shape[1:] != (1, 28, 28):
        raise CLIError(f"--input {path}: expected 28x28 images ((N, 28, 28) or (N, 1, 28, 28)), got {X.shape}")
    return X


def predict(args, model, config, device):
    if args.input:
        X, y = load_images(args.input), None
    else:
        saved = argparse.Namespace(seed=config["seed"], data_dir=config.get("data_dir"))
        if saved.data_dir and not os.path.isdir(saved.data_dir):
            raise CLIError(f"the run trained on {saved.data_dir}, which is gone; pass --input")
        _, (X, y), description = digits_or_mnist(saved)
        print(f"predicting the held-out test images of {description}")
    predicted, scores = network_predictions(model, X, device)
    return print_predictions(predicted, scores, y, args.show)


ENTRY = ModelEntry(name="lenet5", help="LeNet-5 on handwritten digits", train=train, build=build, predict=predict,
                   export=export_shape, distributed=True)
