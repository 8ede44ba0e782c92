"""One rank of an NCCL start-up with a stand-in NCCL module, started by tests/test_distributed.py as
`mpiexec -n N python nccl_start.py OUT FORM`: every rank builds gpudl's NCCLCommunicator (without choosing a GPU)
and writes OUT/rankR.json with the id its NcclCommunicator got and, on rank 0, the id get_unique_id gave."""
import json
import os
import sys

from stand_in_nccl import StandInNccl

from gpudl import distributed


def main():
    out, form = sys.argv[1], sys.argv[2]
    nccl = StandInNccl(form)
    distributed.NCCLCommunicator._use_local_gpu = lambda self: None
    comm = distributed.NCCLCommunicator(nccl, distributed._mpi().COMM_WORLD)
    ((ndev, comm_id, rank),) = nccl.communicators
    record = {"size": comm.size, "ndev": ndev, "rank": rank, "id": comm_id.hex(),
              "issued": nccl.issued.hex() if nccl.issued is not None else None}
    with open(os.path.join(out, f"rank{comm.rank}.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle)


if __name__ == "__main__":
    main()
