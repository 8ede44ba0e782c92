"""`gpudl train xor`: an MLP on the four XOR points (with one hidden layer it solves them, without it cannot)."""
import numpy

from .. import nn, optim
from ..backend import to_device, to_numpy
from ..data import DataLoader, xor
from ..models import MLP
from ..train import Checkpoints, Progress, fit
from .common import CLIError, out_dir, rng, run_config, settle, to_stderr
from .entry import ModelEntry, Option
from .predictions import load_points, network_predictions, print_predictions
from .ranks import shard


def train(args):
    if args.data_dir:
        raise CLIError("xor trains on the four XOR points; it takes no --data-dir")
    settle(args, hidden=4, lr=1.0, epochs=1000, batch_size=4)
    X, y = xor()
    Y = y[:, None].astype(numpy.float32)
    sizes = [2, args.hidden, 1] if args.hidden else [2, 1]
    model = MLP(sizes, rng=rng(args.seed, 0)).to(args.dev)
    if not args.quiet:
        model.summary((2,), print_fn=to_stderr)
    optimizer = optim.SGD(model.parameters(), args.lr, momentum=0.9)
    loader = DataLoader(X, Y, args.batch_size, seed=[args.seed, 1], device=args.dev, shard=shard(args.comm))
    every_tenth = max(1, args.epochs // 10)
    report = fit(model, nn.MSELoss(check=False), optimizer, loader, DataLoader(X, Y, 4, shuffle=False, device=args.dev),
                 epochs=args.epochs, out=out_dir(args), graph=args.graph, resume=args.resume, override=args.override,
                 config=run_config(args, sizes=sizes), comm=args.comm, checkpoints=Checkpoints(every=every_tenth),
                 progress=Progress(every=every_tenth) if not args.quiet else False, tensorboard=args.tensorboard)
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


def build(model_args):
    return MLP(model_args["sizes"])


def export_shape(model_args):
    return (model_args["sizes"][0],)


def predict(args, model, config, device):
    X, y = (load_points(args.input), None) if args.input else xor()
    predicted, scores = network_predictions(model, X, device)
    return print_predictions(predicted, scores, y, args.show)


ENTRY = ModelEntry(
    name="xor", help="an MLP on the XOR points", train=train, build=build, predict=predict, export=export_shape,
    distributed=True,
    train_options=(Option("--hidden", "hidden units (4; 0 = no hidden layer)", {"type": int}),))
