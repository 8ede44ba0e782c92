"""One rank of a data-parallel run, started by tests/test_distributed.py as `mpiexec -n N python train_ranks.py OUT`.

Every rank starts from weights of its own seed (100 + rank), takes rank 0's through broadcast_parameters, trains
each model x optimizer of workload.py on its shard, and writes OUT/MODEL-OPTIMIZER-rankR.npz with the parameters
before the broadcast ("before.I") and after training ("after.I"). Options make one rank misbehave:
--fail raise|kill --fail-rank R (bad labels, or SIGKILL, at the second step), --mismatch-rank R (a wider model).
"""
import argparse
import os
import signal

import numpy
import workload

from gpudl import distributed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--backend", default="mpi")
    parser.add_argument("--models", default=",".join(workload.MODELS))
    parser.add_argument("--optimizers", default=",".join(workload.OPTIMIZERS))
    parser.add_argument("--fail", choices=("raise", "kill"))
    parser.add_argument("--fail-rank", type=int, default=1)
    parser.add_argument("--mismatch-rank", type=int)
    args = parser.parse_args()
    comm = distributed.init(args.backend)

    def misbehave(step, x, y):
        if args.fail and comm.rank == args.fail_rank and step == 1:
            if args.fail == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            y = y + 100                             # labels out of range: the loss raises
        return x, y

    for model_name in args.models.split(","):
        for optimizer_name in args.optimizers.split(","):
            hidden = 17 if comm.rank == args.mismatch_rank else 16
            model = workload.build_model(model_name, 100 + comm.rank, hidden)
            before = [p.data.copy() for p in model.parameters()]
            distributed.broadcast_parameters(model, comm)
            optimizer = distributed.DistributedOptimizer(
                workload.build_optimizer(optimizer_name, model.parameters()), comm)
            workload.train(model, optimizer, workload.loader(model_name, (comm.rank, comm.size)),
                           before_step=misbehave)
            arrays = {f"before.{i}": a for i, a in enumerate(before)}
            arrays.update({f"after.{i}": p.data for i, p in enumerate(model.parameters())})
            numpy.savez(os.path.join(args.out, f"{model_name}-{optimizer_name}-rank{comm.rank}.npz"), **arrays)
    comm.barrier()


if __name__ == "__main__":
    main()
