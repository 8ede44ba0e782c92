"""Data-parallel training: what averaging LeNet-5's gradients over the ranks costs each step.

The case times DistributedOptimizer.synchronize() on LeNet-5's 61,706 float32 gradients: the copy into one flat
buffer, one allreduce, the copy back, on the communicator `gpudl train --distributed` would use
(distributed.backend_for): on the CPU the local one, or MPI under `mpiexec -n 1`; on a GPU NCCL when it loads. It
runs on one rank (the figure is the call, the copies and a one-rank collective); benchmarks/distributed_scaling.py
times the allreduce of several ranks beside a training step.
"""
import numpy

from .. import distributed, models, optim
from ..backend import to_device
from .common import FLOAT, Case, Unavailable


def allreduce_cases():
    """LeNet-5's gradient allreduce per step on the communicator of each device."""
    def build(dev):
        comm = distributed.init(distributed.backend_for(dev))
        if comm.size > 1:   # each rank would pick its own number of calls per repeat, and the collectives hang
            raise Unavailable(f"the allreduce case times one rank, not {comm.size}; benchmarks/distributed_scaling.py "
                              "times several")
        model = models.LeNet5(rng=numpy.random.default_rng(0)).to(dev)
        for p in model.parameters():
            p.grad[...] = to_device(numpy.random.default_rng(1).standard_normal(p.grad.shape).astype(FLOAT), dev)
        return distributed.DistributedOptimizer(optim.SGD(model.parameters(), 0.01), comm).synchronize

    count = sum(p.data.size for p in models.LeNet5().parameters())
    return [Case("lenet5 gradient allreduce", f"{count:,} fp32", build)]
