"""Experiment 2: a long-term dependency that an LSTM learns and a vanilla RNN of the same size does not.

The adding problem (Hochreiter & Schmidhuber, 1997): each step of a sequence of length T carries a random number in
[0, 1) and a marker bit; exactly two steps are marked, one in the first half and one in the second, and the answer
after the last step is the sum of the two marked numbers. The first one lies at least T/2 steps in the past.
Predicting the mean (1.0) every time gives the baseline: a mean squared error of 1/6 and about 19% of answers within
0.1 of the truth. Solving it needs a multiplicative interaction (store the number only where the marker is set),
which the LSTM's input gate provides; a vanilla RNN's gradient from the answer back to the first marker also shrinks
geometrically with the distance (experiment 1), while the LSTM's cell path c_t = f c_{t-1} + i g keeps it alive.

    python -m gpudl.experiments.long_term --lengths 10 30 --iterations 600
"""
import argparse
import time

import numpy

from .. import nn, optim
from ..backend import device as resolve_device
from ..backend import to_numpy

TOLERANCE = 0.1   # an answer within this of the true sum counts as correct


def adding_batch(rng, batch_size, length):
    """(x (N, T, 2), target (N, 1)): channel 0 the numbers, channel 1 the two markers; target the marked sum."""
    if length < 2:
        raise ValueError(f"adding_batch: the sequence length must be at least 2, got {length}")
    rows = numpy.arange(batch_size)
    x = numpy.zeros((batch_size, length, 2))
    x[:, :, 0] = rng.uniform(0, 1, (batch_size, length))
    x[rows, rng.integers(0, length // 2, batch_size), 1] = 1
    x[rows, rng.integers(length // 2, length, batch_size), 1] = 1
    return x, (x[:, :, 0] * x[:, :, 1]).sum(axis=1, keepdims=True)


def baseline(test_size=4096, length=20, seed=12345):
    """(mse, accuracy) of always answering 1.0, the target's mean: what "no memory" scores."""
    _, target = adding_batch(numpy.random.default_rng(seed), test_size, length)
    return float(((target - 1.0) ** 2).mean()), float((numpy.abs(target - 1.0) < TOLERANCE).mean())


class SequenceRegressor(nn.Module):
    """A recurrent layer (RNN or LSTM) read out at the last step by a Dense layer: (N, T, F) -> (N, outputs)."""

    def __init__(self, cell, input_size, hidden_size, outputs=1, dtype=numpy.float32, rng=None):
        if cell not in ("rnn", "lstm"):
            raise ValueError(f"SequenceRegressor: cell must be 'rnn' or 'lstm', got {cell!r}")
        layer = nn.RNN if cell == "rnn" else nn.LSTM
        self.recurrent = layer(input_size, hidden_size, dtype=dtype, rng=rng)
        self.head = nn.Dense(hidden_size, outputs, dtype=dtype, rng=rng)

    def forward(self, x):
        return self.head.forward(self.recurrent.forward(x)[:, -1])

    def backward(self, dy, input_grad=True):
        dh = self.head.backward(dy)
        return self.recurrent.backward(None, dh if isinstance(self.recurrent, nn.RNN) else (dh, None),
                                       input_grad=input_grad)


def train_adding(cell, length, hidden_size=16, iterations=600, batch_size=32, lr=0.02, clip=1.0, test_size=1024,
                 seed=0, device="cpu", dtype=numpy.float32):
    """Train one model on the adding problem with sequences of `length`; evaluate on fresh sequences.

    Returns {"cell", "length", "mse", "accuracy", "baseline_mse", "baseline_accuracy", "seconds"}; accuracy is the
    share of answers within TOLERANCE of the true sum.
    """
    dev = resolve_device(device)
    rng = numpy.random.default_rng(seed)
    model = SequenceRegressor(cell, 2, hidden_size, 1, dtype, rng).to(dev)
    params = model.parameters()
    opt = optim.Adam(params, lr=lr)
    loss_fn = nn.MSELoss(check=False)
    start = time.perf_counter()
    for _ in range(iterations):
        x, target = adding_batch(rng, batch_size, length)
        opt.zero_grad()
        loss_fn.forward(model.forward(dev.xp.asarray(x, dtype=dtype)), dev.xp.asarray(target, dtype=dtype))
        model.backward(loss_fn.backward(), input_grad=False)
        optim.clip_grad_norm(params, clip)
        opt.step()
    seconds = time.perf_counter() - start
    test_rng = numpy.random.default_rng(seed + 10_000)
    x, target = adding_batch(test_rng, test_size, length)
    error = to_numpy(model.forward(dev.xp.asarray(x, dtype=dtype))).astype(numpy.float64) - target
    base_mse, base_acc = baseline(test_size, length, seed + 10_000)
    return {"cell": cell, "length": length, "mse": float((error ** 2).mean()),
            "accuracy": float((numpy.abs(error) < TOLERANCE).mean()), "baseline_mse": base_mse,
            "baseline_accuracy": base_acc, "seconds": seconds}


def compare(lengths=(10, 30), cells=("rnn", "lstm"), **options):
    """train_adding for every (length, cell): a list of result dicts, length by length."""
    return [train_adding(cell, length, **options) for length in lengths for cell in cells]


def table(results):
    lines = [f"{'T':>4} {'cell':>5} {'test MSE':>9} {'within 0.1':>11} {'baseline MSE':>13} {'baseline within':>16} "
             f"{'seconds':>8}"]
    for r in results:
        lines.append(f"{r['length']:>4} {r['cell']:>5} {r['mse']:>9.4f} {r['accuracy']:>11.3f} "
                     f"{r['baseline_mse']:>13.4f} {r['baseline_accuracy']:>16.3f} {r['seconds']:>8.1f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpudl.experiments.long_term", description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 30],
                        help="sequence lengths T; the first marked number lies at least T/2 steps back (default 10 30)")
    parser.add_argument("--cells", nargs="+", choices=["rnn", "lstm"], default=["rnn", "lstm"])
    parser.add_argument("--hidden-size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.02, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    args = parser.parse_args(argv)
    results = compare(args.lengths, args.cells, hidden_size=args.hidden_size, iterations=args.iterations,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device)
    print(table(results))
    return results


if __name__ == "__main__":
    main()
