"""How the piece size of reduce.cu's per-channel sums (kernels.reduce.CHUNK) sets their speed on a GPU.

    python benchmarks/reduce_pieces.py [--chunks 1024 2048 4096 8192 16384]

For each piece size, the bias-gradient sums of LeNet-5's convolutions (x of shape (N, C, H*W)) are timed as
`gpudl bench` times its "bias gradient" case: SUMS_PER_CALL sums recorded once and replayed as one CUDA graph,
medians after warm-up. The piece size changes which elements a block adds, so each size gives its own (fixed) bits;
the figure to compare is GB/s against the device's copy bandwidth (read + write, measured here the same way).
"""
import argparse

import numpy

from gpudl.backend import gpu_status
from gpudl.bench.layer_cases import SUMS_PER_CALL
from gpudl.bench.timing import copy_bandwidth, cupy_sync, time_call

SHAPES = [(1024, 6, 784), (256, 6, 784), (64, 6, 784), (1024, 16, 100), (256, 16, 100)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    args = parser.parse_args()
    usable, reason = gpu_status()
    if not usable:
        raise SystemExit(f"reduce_pieces.py needs a GPU: {reason}")
    import cupy

    from gpudl import kernels
    from gpudl.kernels import loops, reduce

    copy = copy_bandwidth(cupy, cupy_sync, nbytes=1 << 30)
    print(f"copy bandwidth {copy / 1e9:.0f} GB/s; {SUMS_PER_CALL} sums per call, replayed; float32")
    print(f"{'shape':<18} {'CHUNK':>6} {'us per sum':>11} {'GB/s':>7} {'% copy':>7}")
    chosen = reduce.CHUNK
    try:
        for shape in SHAPES:
            x = cupy.asarray(numpy.random.default_rng(0).standard_normal(shape).astype(numpy.float32))
            out = cupy.zeros((shape[1],), dtype=cupy.float32)
            for chunk in args.chunks:
                reduce.CHUNK = chunk
                loops.forget()                  # a recording holds the piece size it was recorded with

                def sums():
                    for _ in range(SUMS_PER_CALL):
                        kernels.sum_axes(x, out=out, inner=shape[2])
                timing = time_call(lambda: kernels.replayed("reduce pieces", (x, out), sums), cupy_sync, repeat=10)
                per_sum = timing.median / SUMS_PER_CALL
                rate = x.nbytes / per_sum
                print(f"{'x'.join(map(str, shape)):<18} {chunk:>6} {per_sum * 1e6:>11.2f} {rate / 1e9:>7.0f} "
                      f"{100 * rate / copy:>6.0f}%", flush=True)
    finally:
        reduce.CHUNK = chosen
        loops.forget()


if __name__ == "__main__":
    main()
