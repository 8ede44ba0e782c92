"""Experiment 1: vanishing and exploding gradients in a vanilla RNN.

For L_T = u . h_T (u a unit vector), back-propagation through time gives
    dL_T/dh_k = J_{k+1}^T ... J_T^T u,   J_t = dh_t/dh_{t-1} = diag(1 - h_t^2) W_h^T,
a product of T - k Jacobians. W_h is set to gamma * Q with Q a random orthogonal matrix, so every singular value of
W_h is gamma; since tanh' <= 1, ||J_t|| <= gamma. With gamma < 1 the norm must shrink geometrically (vanishing);
with gamma well above 1 it grows geometrically wherever the units are not saturated (exploding).

    python -m gpudl.experiments.gradients --steps 50 --scales 0.5 1.0 3.0 --plot gradients.png
"""
import argparse
import sys

import numpy

from .. import functional as F
from .. import nn
from ..backend import device as resolve_device
from ..backend import get_array_module, to_numpy


def backprop_norms(layer, x, u):
    """Mean ||dL_T/dh_k|| over the batch for t - k = 0 .. T-1, with L_T = u . h_T, walked back one step at a time."""
    xp = get_array_module(x)
    hs = layer.forward(x)
    dh = u                                   # dL_T/dh_T
    norms = [xp.linalg.norm(dh, axis=1).mean()]
    for k in range(x.shape[1] - 1, 0, -1):   # dL/dh_{k+1} -> dL/dh_k; h_k is hs[:, k-1]
        dh = F.matmul(F.rnn_step_backward(dh, hs[:, k]), layer.W_h.data.T)
        norms.append(xp.linalg.norm(dh, axis=1).mean())
    return to_numpy(xp.stack(norms))


def gradient_norms(scales=(0.5, 1.0, 3.0), steps=50, hidden_size=32, input_size=4, batch_size=16, seed=0,
                   device="cpu"):
    """{gamma: mean ||dL_T/dh_k|| for t - k = 0, 1, ..., steps - 1} for W_h = gamma * a random orthogonal matrix.

    Inputs x_t ~ N(0, 1); u is a random unit vector per sequence; every gamma sees the same inputs and weights.
    """
    if steps < 2:
        raise ValueError(f"gradient_norms: steps must be at least 2, got {steps}")
    dev = resolve_device(device)
    results = {}
    for gamma in scales:
        rng = numpy.random.default_rng(seed)
        layer = nn.RNN(input_size, hidden_size, dtype=numpy.float64, rng=rng)
        q, _ = numpy.linalg.qr(rng.normal(size=(hidden_size, hidden_size)))
        layer.W_h.data[...] = gamma * q
        layer.to(dev)
        x = rng.normal(size=(batch_size, steps, input_size))
        u = rng.normal(size=(batch_size, hidden_size))
        u /= numpy.linalg.norm(u, axis=1, keepdims=True)
        results[float(gamma)] = backprop_norms(layer, dev.xp.asarray(x), dev.xp.asarray(u))
    return results


def table(results, lags=None):
    """The norms as text: one row per lag t - k, one column per gamma."""
    scales = list(results)
    steps = len(next(iter(results.values())))
    if lags is None:
        lags = sorted({lag for lag in (0, 1, 2, 5, 10, 20, 30, 40, 50, 75, 100, 150, 200) if lag < steps}
                      | {steps - 1})
    lines = ["t-k  " + "".join(f"{'W_h x ' + format(g, 'g'):>14}" for g in scales)]
    for lag in lags:
        lines.append(f"{lag:>3}  " + "".join(f"{results[g][lag]:>14.3e}" for g in scales))
    return "\n".join(lines)


def plot(results, path):
    """Write a semilog PNG of the norms against t - k; returns False (and writes nothing) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for gamma, norms in results.items():
        ax.semilogy(numpy.arange(len(norms)), norms, label=f"W_h = {gamma:g} x orthogonal")
    ax.set_xlabel("t - k (steps back in time)")
    ax.set_ylabel("mean ||dL_t / dh_k||")
    ax.set_title("Vanilla RNN: vanishing and exploding gradients")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpudl.experiments.gradients", description=__doc__.split("\n")[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 3.0],
                        help="gamma values: W_h = gamma x a random orthogonal matrix (default 0.5 1.0 3.0)")
    parser.add_argument("--steps", type=int, default=50, help="sequence length T (default 50)")
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--plot", metavar="PNG", help="also write the plot to this PNG file (needs matplotlib)")
    args = parser.parse_args(argv)
    results = gradient_norms(args.scales, args.steps, args.hidden_size, batch_size=args.batch_size, seed=args.seed,
                             device=args.device)
    print(table(results))
    if args.plot:
        if plot(results, args.plot):
            print(f"plot written to {args.plot}")
        else:
            print("matplotlib is not installed: no plot written", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
