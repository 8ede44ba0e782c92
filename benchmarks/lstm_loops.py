"""The LSTM's time loops alone on the CPU: functional.lstm_forward_loop then lstm_backward_loop, by batch size and
thread count (the figures RESULTS.md gives for the fused loops).

    python benchmarks/lstm_loops.py [--batches 8 32 64 128] [--threads 1 2] [--steps 128] [--hidden 256]

float32. The loops work in place, so every call starts from the same buffers, copied in before the clock starts;
forward and backward are timed apart, 2 calls of warm-up (the first compiles), then the median and minimum of
--calls calls. Run it under two installs (say main's and a branch's, through PYTHONPATH) to compare them.
"""
import argparse
import statistics
import time

import numpy as np

import gpudl
from gpudl import functional as F


def time_loops(steps, batch, hidden, calls, warmup=2, seed=0):
    """([forward seconds], [backward seconds]) of `calls` timed calls each."""
    rng = np.random.default_rng(seed)
    a0 = (0.5 * rng.standard_normal((steps, batch, 4 * hidden))).astype(np.float32)
    W = (0.05 * rng.standard_normal((hidden, 4 * hidden))).astype(np.float32)
    W_T = np.ascontiguousarray(W.T)
    dh0 = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
    hs, cs = np.zeros((steps + 1, batch, hidden), np.float32), np.zeros((steps + 1, batch, hidden), np.float32)
    a, dh, dc = np.empty_like(a0), np.empty_like(dh0), np.empty((batch, hidden), np.float32)
    forward, backward = [], []
    for call in range(warmup + calls):
        a[...], dh[...], dc[...] = a0, dh0, 0
        start = time.perf_counter()
        F.lstm_forward_loop(a, hs, cs, W)
        middle = time.perf_counter()
        F.lstm_backward_loop(a, cs, dh, dc, W_T)
        end = time.perf_counter()
        if call >= warmup:
            forward.append(middle - start)
            backward.append(end - middle)
    return forward, backward


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32, 64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    print(f"T{args.steps} H{args.hidden} float32, ms: median (min) of {args.calls} calls")
    for threads in args.threads:
        gpudl.set_num_threads(threads)
        for batch in args.batches:
            figures = time_loops(args.steps, batch, args.hidden, args.calls)
            print(f"threads {threads} batch {batch:4d}: " + "  ".join(
                f"{name} {statistics.median(t) * 1e3:7.1f} ({min(t) * 1e3:.1f})"
                for name, t in zip(("fwd", "bwd"), figures)), flush=True)


if __name__ == "__main__":
    main()
