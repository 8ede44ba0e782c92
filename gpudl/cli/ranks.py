"""`gpudl train MODEL --distributed`: data-parallel training on the ranks an MPI launcher started.

    mpiexec -n 2 gpudl train lenet5 --distributed                 (or: mpiexec -n 2 python -m mpi4py -m gpudl ...)

The backend follows the device (distributed.backend_for): on a GPU NCCL when it loads, else MPI, each rank on GPU
local_rank % (GPUs of its machine), whatever index --device names; on the CPU MPI under a launcher, else one local
rank (with a notice). --batch-size stays the global batch: each rank reads its shard of every batch
(DataLoader(shard=(rank, size))), and fit averages the gradients. Rank 0 alone claims and writes the run folder
and prints; the other ranks print nothing but their errors. A signal stops every rank after the same step (fit agrees
on it): each exits with the signal's status and rank 0 writes the checkpoint. An error on any rank prints
"gpudl: error: rank R of N: ..." and aborts every rank (MPI_Abort), so none is left waiting in a collective; the
last checkpoint rank 0 wrote stays, and --resume continues from it.
"""
import contextlib
import os
import sys

from .. import distributed
from ..train import RunStopped
from .common import error_message

NO_LAUNCHER = "gpudl: --distributed without mpiexec: running as one rank"


def join_ranks(dev):
    """The communicator of a run on device `dev` (a GPU or the CPU)."""
    comm = distributed.init(distributed.backend_for(dev))
    if not distributed.launched_by_mpi():
        print(NO_LAUNCHER, file=sys.stderr)
    return comm


def shard(comm):
    """This rank's part of each batch for DataLoader(shard=...), or None for a run without --distributed."""
    return None if comm is None else (comm.rank, comm.size)


@contextlib.contextmanager
def rank_zero_speaks(comm):
    """Silence the output of every rank but 0 for the `with` block; an exception on any rank of several prints
    its rank and message on the real stderr and aborts every rank."""
    if comm is None or comm.size == 1:
        yield
        return
    try:
        with open(os.devnull, "w") as sink, contextlib.ExitStack() as quiet:
            if comm.rank != 0:
                quiet.enter_context(contextlib.redirect_stdout(sink))
                quiet.enter_context(contextlib.redirect_stderr(sink))
            yield
    except RunStopped:              # a signal: every rank agreed on the step to stop after, and stops there
        raise
    except BaseException as exc:    # noqa: BLE001 -- KeyboardInterrupt too: a rank that stops must not leave the others waiting
        print(f"gpudl: error: rank {comm.rank} of {comm.size}: {error_message(exc)}; aborting every rank",
              file=sys.stderr, flush=True)
        distributed.abort_every_rank(comm)
