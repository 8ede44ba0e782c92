"""Data-parallel scaling on the CPU: LeNet-5 epochs on 1 rank x 1 thread against N ranks x 1 thread each.

    python benchmarks/distributed_scaling.py                 # ranks 1 and 2, 4096 samples, global batch 64
    python benchmarks/distributed_scaling.py --ranks 1,2,4 --batch 128

Each rank count is one `mpiexec -n N` launch of this file (mpiexec beside the interpreter first, as the mpich wheel
installs it) with OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1, so every rank computes on one core. The
ranks train float32 LeNet-5 (61,706 parameters) with SGD and momentum through DistributedOptimizer on random images of
MNIST's shape, the global batch split over the ranks. Reported, as medians over the timed epochs after one warm-up
epoch: epoch time, throughput and its ratio to one rank; the time of one allreduce of the 61,706 gradients
(allreduce_mean_ on the flat buffer, alone, after the epochs) as a share of a step; and the share of each epoch spent
in DistributedOptimizer.synchronize (copy in, allreduce, copy out, and any wait for a slower rank).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy


def _mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def worker(args):
    """One rank: rank 0 prints one JSON line with the figures."""
    from gpudl import distributed, models, nn, optim
    from gpudl.data import DataLoader

    comm = distributed.init("mpi")
    model = models.LeNet5(rng=numpy.random.default_rng(0))
    distributed.broadcast_parameters(model, comm)
    optimizer = distributed.DistributedOptimizer(optim.SGD(model.parameters(), 0.01, momentum=0.9), comm)
    data = numpy.random.default_rng(1)
    X = data.standard_normal((args.samples, 1, 28, 28)).astype(numpy.float32)
    y = data.integers(0, 10, args.samples)
    loader = DataLoader(X, y, args.batch, seed=2, shard=(comm.rank, comm.size))
    loss = nn.SoftmaxCrossEntropy(check=False)

    synchronize, sync_seconds = optimizer.synchronize, [0.0]

    def timed_synchronize():
        start = time.perf_counter()
        synchronize()
        sync_seconds[0] += time.perf_counter() - start

    optimizer.synchronize = timed_synchronize
    epochs, sync_shares = [], []
    for epoch in range(args.epochs + 1):
        comm.barrier()
        sync_seconds[0], start = 0.0, time.perf_counter()
        for x, labels in loader:
            optimizer.zero_grad()
            loss.forward(model.forward(x), labels)
            model.backward(loss.backward(), input_grad=False)
            optimizer.step()
        comm.barrier()
        if epoch > 0:                       # epoch 0 warms up
            epochs.append(time.perf_counter() - start)
            sync_shares.append(sync_seconds[0] / epochs[-1])

    flat = numpy.ones(sum(p.data.size for p in model.parameters()), dtype=numpy.float32)
    reduce_times = []
    for _ in range(args.allreduces):
        comm.barrier()
        start = time.perf_counter()
        comm.allreduce_mean_([flat])
        reduce_times.append(time.perf_counter() - start)
    if comm.rank == 0:
        epoch_time = float(numpy.median(epochs))
        print(json.dumps({"ranks": comm.size, "epoch_s": epoch_time, "samples_per_s": args.samples / epoch_time,
                          "step_s": epoch_time / len(loader), "gradients": int(flat.size),
                          "allreduce_s": float(numpy.median(reduce_times[10:])),
                          "sync_share": float(numpy.median(sync_shares))}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default 1,2)")
    parser.add_argument("--samples", type=int, default=4096, help="images per epoch (default 4096)")
    parser.add_argument("--batch", type=int, default=64, help="global batch (default 64)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up one (default 3)")
    parser.add_argument("--allreduces", type=int, default=210, help="timed allreduces (default 210, first 10 dropped)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if _mpiexec() is None:
        sys.exit("distributed_scaling: no mpiexec beside the interpreter or on the PATH (pip install \"gpudl[mpi]\")")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows, load_before = [], os.getloadavg()[0]
    for ranks in (int(r) for r in args.ranks.split(",")):
        command = [_mpiexec(), "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker",
                   "--samples", str(args.samples), "--batch", str(args.batch), "--epochs", str(args.epochs),
                   "--allreduces", str(args.allreduces)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            sys.exit(f"distributed_scaling: {ranks} rank(s) failed:\n{done.stderr}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"LeNet-5 float32, {args.samples} random 28x28 images per epoch, global batch {args.batch}, "
          f"1 thread per rank, medians of {args.epochs} epochs after a warm-up; 1-minute load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("| ranks | epoch s | images/s | speed-up | step ms | allreduce ms (61,706 floats) | allreduce / step "
          "| synchronize / epoch |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['ranks']} | {row['epoch_s']:.3f} | {row['samples_per_s']:.0f} | "
              f"{row['samples_per_s'] / rows[0]['samples_per_s']:.2f}x | {1e3 * row['step_s']:.2f} | "
              f"{1e3 * row['allreduce_s']:.3f} | {100 * row['allreduce_s'] / row['step_s']:.1f}% | "
              f"{100 * row['sync_share']:.1f}% |")


if __name__ == "__main__":
    main()
