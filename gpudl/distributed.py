"""Data-parallel training: every rank holds the whole model, reads its own shard of each batch, and the ranks average
their gradients before every update, so N ranks with global batch B take the steps of one process with batch B.

    comm = distributed.init()                       # "auto": nccl, mpi or local
    distributed.broadcast_parameters(model, comm)   # rank 0's initial weights everywhere
    optimizer = distributed.DistributedOptimizer(optim.SGD(model.parameters(), 0.1), comm)
    loader = DataLoader(X, y, batch_size=B, shard=(comm.rank, comm.size))

The ranks are started by MPI (`mpiexec -n N python train.py`); MPI (mpi4py) coordinates them and reduces host
arrays, NCCL (CuPy's `cupy.cuda.nccl`) reduces GPU arrays. The mean over ranks of each rank's mean gradient is the
gradient of the mean loss over the global batch when the shards are of equal size:
    g = 1/B sum_i dJ_i/dw = 1/N sum_r (1/(B/N) sum_{i in shard r} dJ_i/dw).

Failure: once a communicator spans several ranks, an exception that no one catches on any rank prints the rank that
failed and aborts every rank (MPI_Abort) instead of leaving the others waiting in a collective forever. A rank
killed from outside (SIGKILL, out of memory) is seen by the MPI launcher, which ends the others; its report names
the process id, and rank 0 prints which rank each process id is at start-up.
"""
import json
import os
import socket
import sys
import time

import numpy

from .backend import device, get_array_module, gpu_status, to_numpy
from .optim import clip_grad_norm

BACKENDS = ("auto", "mpi", "nccl", "local")

# Variables that MPICH (Hydra), Open MPI and PMI/PMIx launchers set in every rank they start.
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
                      "MPI_LOCALNRANKS", "HYDI_CONTROL_FD")


class DistributedError(RuntimeError):
    """The ranks disagree (different models), or a backend cannot be used."""


def _mpi():
    """mpi4py's MPI module (importing it initializes MPI), or a clear error naming the extra that provides it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(f"the mpi backend needs mpi4py and an MPI library ({exc}); "
                               "install them with: pip install \"gpudl[mpi]\"") from exc
    return MPI


def launched_by_mpi():
    """True when this process was started by mpiexec/mpirun (or MPI is already initialized here)."""
    if any(name in os.environ for name in LAUNCHER_VARIABLES):
        return True
    mpi = sys.modules.get("mpi4py.MPI")
    return mpi is not None and mpi.Is_initialized()


def _nccl():
    """CuPy's NCCL bindings when a GPU is usable and NCCL loads, else (None, why not)."""
    usable, reason = gpu_status()
    if not usable:
        return None, reason
    try:
        from cupy.cuda import nccl
        if not nccl.available:
            return None, "CuPy finds no NCCL library (pip install \"gpudl[nccl13]\" or \"gpudl[nccl12]\")"
        nccl.get_version()
    except Exception as exc:  # noqa: BLE001  ImportError, or libnccl that fails to load
        return None, f"NCCL does not load through CuPy ({type(exc).__name__}: {exc})"
    return nccl, "NCCL " + str(nccl.get_version())


def backend_for(dev):
    """The backend for training on `dev` (a Device or spec): "auto" on a GPU (NCCL when it loads); on the CPU "mpi"
    under an MPI launcher, else "local" (never NCCL for host arrays, even where a GPU is present)."""
    if str(dev).startswith("cuda"):
        return "auto"
    return "mpi" if launched_by_mpi() else "local"


def init(backend="auto", abort_on_error=True):
    """A Communicator over every rank this program was started with.

    "local": one rank, no MPI. "mpi": mpi4py over MPI_COMM_WORLD; host arrays directly, GPU arrays through host
    copies. "nccl": NCCL for GPU arrays (each rank first takes the GPU local_rank % devices), MPI to start it and for
    host arrays. "auto": nccl when a GPU is usable and NCCL loads, else mpi when started by an MPI launcher, else
    local. With `abort_on_error` and more than one rank, an uncaught exception aborts every rank (see above).
    """
    if backend not in BACKENDS:
        raise ValueError(f"distributed.init: unknown backend {backend!r}; expected one of {BACKENDS}")
    if backend == "auto":
        if _nccl()[0] is not None:
            backend = "nccl"
        else:
            backend = "mpi" if launched_by_mpi() else "local"
    if backend == "local":
        return LocalCommunicator()
    if backend == "mpi":
        comm = MPICommunicator(_mpi().COMM_WORLD)
    else:
        nccl, reason = _nccl()
        if nccl is None:
            raise DistributedError(f"the nccl backend is not usable: {reason}")
        world = _mpi().COMM_WORLD if launched_by_mpi() else None
        comm = NCCLCommunicator(nccl, world)
    if comm.size > 1:
        comm.announce()
        if abort_on_error:
            _abort_all_on_uncaught(comm)
    return comm


class LocalCommunicator:
    """One rank: every collective is the identity."""

    backend, rank, size, local_rank = "local", 0, 1, 0

    def allreduce_mean_(self, arrays):
        """Replace each array by its mean over the ranks (here: itself)."""

    def broadcast_(self, arrays, root=0):
        """Overwrite each array with root's copy (here: itself)."""
        _check_root(root, self.size)

    def barrier(self):
        """Wait until every rank arrives (here: at once)."""

    def allgather_text(self, text):
        """Every rank's `text`, in rank order."""
        return [text]

    def __repr__(self):
        return f"{type(self).__name__}(backend={self.backend!r}, rank={self.rank}, size={self.size})"


class MPICommunicator(LocalCommunicator):
    """MPI_COMM_WORLD through mpi4py's buffer (uppercase) methods, reducing in place."""

    backend = "mpi"

    def __init__(self, world):
        self.world = world
        self.rank, self.size = world.Get_rank(), world.Get_size()
        node = world.Split_type(_mpi().COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = node.Get_rank()
        node.Free()

    def allreduce_mean_(self, arrays):
        for array in arrays:
            self._on_host(array, lambda host: self.world.Allreduce(_mpi().IN_PLACE, host, op=_mpi().SUM))
            array /= self.size

    def broadcast_(self, arrays, root=0):
        _check_root(root, self.size)
        for array in arrays:
            self._on_host(array, lambda host: self.world.Bcast(host, root=root))

    def barrier(self):
        self.world.Barrier()

    def allgather_text(self, text):
        data = numpy.frombuffer(text.encode(), dtype=numpy.uint8)
        lengths = numpy.zeros(self.size, dtype=numpy.int64)
        self.world.Allgather(numpy.array([len(data)], dtype=numpy.int64), lengths)
        gathered = numpy.empty(int(lengths.sum()), dtype=numpy.uint8)
        self.world.Allgatherv(data, [gathered, lengths.tolist()])
        ends = numpy.cumsum(lengths)
        return [gathered[end - n:end].tobytes().decode() for n, end in zip(lengths, ends)]

    @staticmethod
    def _on_host(array, operate):
        """Run `operate` on a contiguous host array holding `array`'s values and write the result back."""
        if isinstance(array, numpy.ndarray) and array.flags.c_contiguous:
            operate(array)
            return
        host = numpy.ascontiguousarray(to_numpy(array))
        operate(host)
        array[...] = get_array_module(array).asarray(host)

    def announce(self):
        """Rank 0 prints where every rank runs, so a launcher's report of a dead process id names its rank."""
        places = self.allgather_text(f"{socket.gethostname()}:{os.getpid()}")
        if self.rank == 0:
            where = ", ".join(f"rank {r} pid {place.split(':')[1]} on {place.split(':')[0]}"
                              for r, place in enumerate(places))
            print(f"gpudl.distributed: {self.size} ranks ({self.backend}): {where}", file=sys.stderr, flush=True)


class NCCLCommunicator(MPICommunicator):
    """GPU arrays reduced by NCCL on the current stream; host arrays and start-up through MPI.

    Without an MPI launcher it is one rank and needs no mpi4py (NCCL's unique id never has to travel).
    """

    backend = "nccl"

    def __init__(self, nccl, world):
        if world is not None:
            super().__init__(world)
        else:
            self.world, self.rank, self.size, self.local_rank = None, 0, 1, 0
        self.nccl, self.cupy = nccl, self._use_local_gpu()
        self.comm = nccl.NcclCommunicator(self.size, exchange_unique_id(nccl, world, self.rank), self.rank)
        self._types = {numpy.dtype(numpy.float32): nccl.NCCL_FLOAT32, numpy.dtype(numpy.float64): nccl.NCCL_FLOAT64,
                       numpy.dtype(numpy.float16): nccl.NCCL_FLOAT16}

    def _use_local_gpu(self):
        """Make GPU local_rank % (GPUs on this machine) the current device; returns cupy."""
        import cupy
        cupy.cuda.Device(self.local_rank % cupy.cuda.runtime.getDeviceCount()).use()
        return cupy

    def _on_gpu(self, array):
        """NCCL's dtype code for a contiguous cupy array, or None when MPI has to take it."""
        if get_array_module(array) is numpy or not array.flags.c_contiguous:
            return None
        if array.dtype not in self._types:
            raise TypeError(f"nccl backend: cannot reduce arrays of dtype {array.dtype}")
        return self._types[array.dtype]

    def allreduce_mean_(self, arrays):
        for array in arrays:
            kind = self._on_gpu(array)
            if kind is None:
                if self.world is not None:
                    super().allreduce_mean_([array])
                continue
            stream = self.cupy.cuda.get_current_stream().ptr
            self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, kind, self.nccl.NCCL_SUM, stream)
            array /= self.size

    def broadcast_(self, arrays, root=0):
        _check_root(root, self.size)
        for array in arrays:
            kind = self._on_gpu(array)
            if kind is None:
                if self.world is not None:
                    super().broadcast_([array], root)
                continue
            stream = self.cupy.cuda.get_current_stream().ptr
            self.comm.bcast(array.data.ptr, array.size, kind, root, stream)

    def barrier(self):
        self.cupy.cuda.get_current_stream().synchronize()
        if self.world is not None:
            self.world.Barrier()

    def allgather_text(self, text):
        return super().allgather_text(text) if self.world is not None else [text]


NCCL_UNIQUE_ID_BYTES = 128     # sizeof(ncclUniqueId)


def exchange_unique_id(nccl, world, rank):
    """Rank 0's NCCL unique id on every rank (broadcast over MPI `world`; None: one rank), in the form this CuPy's
    nccl.NcclCommunicator takes, which is the form its get_unique_id gives: bytes (CuPy 14 and later), or a tuple of
    ints, the C chars of the id (earlier CuPy, whose NcclCommunicator stores each in a signed char)."""
    message = numpy.zeros(NCCL_UNIQUE_ID_BYTES + 1, dtype=numpy.uint8)     # the id, then 1 if it came as bytes
    if rank == 0:
        uid = nccl.get_unique_id()
        as_bytes = isinstance(uid, bytes)
        raw = uid if as_bytes else bytes(int(c) % 256 for c in uid)
        if len(raw) != NCCL_UNIQUE_ID_BYTES:
            raise DistributedError(f"nccl.get_unique_id() gave {len(raw)} bytes, not the {NCCL_UNIQUE_ID_BYTES} of "
                                   "an ncclUniqueId")
        message[:-1] = numpy.frombuffer(raw, dtype=numpy.uint8)
        message[-1] = as_bytes
    if world is not None:
        world.Bcast(message, root=0)
    uid = message[:-1]
    return uid.tobytes() if message[-1] else tuple(uid.view(numpy.int8).tolist())


def _check_root(root, size):
    if not (isinstance(root, int) and 0 <= root < size):
        raise ValueError(f"broadcast_: root must be a rank in [0, {size}), got {root!r}")


def _abort_all_on_uncaught(comm):
    """Chain sys.excepthook: print the failing rank and the error, then MPI_Abort every rank."""
    previous = sys.excepthook

    def hook(kind, value, trace):
        previous(kind, value, trace)
        print(f"gpudl.distributed: rank {comm.rank} of {comm.size} failed ({kind.__name__}: {value}); "
              "aborting every rank", file=sys.stderr, flush=True)
        abort_every_rank(comm)

    sys.excepthook = hook


FORWARD_SECONDS = 0.5   # time mpiexec gets to pass on what a failing rank printed before MPI_Abort tears it down


def abort_every_rank(comm):
    """End every rank: MPI_Abort, after a pause in which the launcher forwards this rank's last output (MPICH's
    mpiexec drops what it has not yet forwarded when the abort reaches it), then exit without MPI_Finalize (MPICH's
    MPI_Abort can return once it has told the launcher)."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(FORWARD_SECONDS)
    comm.world.Abort(1)
    os._exit(1)


def rank_device(comm, dev):
    """The device this rank trains on: `dev` when it is the CPU; for a GPU, GPU number local_rank % (GPUs on this
    machine), made the current device (so each rank on a machine takes its own GPU)."""
    if dev.kind != "cuda":
        return dev
    cuda = dev.xp.cuda
    mine = device(f"cuda:{comm.local_rank % cuda.runtime.getDeviceCount()}")
    cuda.Device(mine.index).use()
    return mine


def _signature(params):
    return [[list(p.data.shape), str(p.data.dtype)] for p in params]


def check_same_parameters(params, comm):
    """Raise DistributedError on every rank unless all ranks hold parameters of the same shapes and dtypes."""
    signatures = [json.loads(text) for text in comm.allgather_text(json.dumps(_signature(params)))]
    reference = signatures[0]
    for rank, signature in enumerate(signatures[1:], 1):
        if signature == reference:
            continue
        counts = [sum(int(numpy.prod(shape)) for shape, _ in s) for s in (reference, signature)]
        problems = []
        if len(signature) != len(reference) or counts[0] != counts[1]:
            problems.append(f"rank {rank} has {len(signature)} parameter arrays ({counts[1]:,} values), rank 0 has "
                            f"{len(reference)} ({counts[0]:,} values)")
        index = next((i for i, (a, b) in enumerate(zip(reference, signature)) if a != b), None)
        if index is not None:
            problems.append(f"parameter {index} is {tuple(signature[index][0])} {signature[index][1]} on rank "
                            f"{rank} but {tuple(reference[index][0])} {reference[index][1]} on rank 0")
        raise DistributedError("; ".join(problems) + ": the ranks built different models")


def broadcast_parameters(model, comm):
    """Overwrite every rank's parameters with rank 0's (after checking that the ranks hold the same model)."""
    params = model.parameters()
    check_same_parameters(params, comm)
    comm.broadcast_([p.data for p in params], root=0)


class DistributedOptimizer:
    """Wraps an optimizer: step() first replaces each gradient by its mean over the ranks, then takes the step.

    The gradients are copied into one flat buffer per dtype (made once, in parameter order), reduced in one
    collective, and copied back. `synchronize()` does the averaging alone, for work that needs the averaged gradient
    before the step; step() then does not average again. `clip_norm`, when given, scales the averaged gradients to a
    global L2 norm of at most clip_norm before each step (optim.clip_grad_norm after synchronize()), so every rank
    clips the same gradient that one process would.
    """

    def __init__(self, optimizer, comm, clip_norm=None):
        self.optimizer, self.comm, self.clip_norm = optimizer, comm, clip_norm
        self.params = optimizer.params
        check_same_parameters(self.params, comm)
        self._buffers = []              # (flat buffer, [(parameter, view of the buffer shaped like it)])
        for dtype in dict.fromkeys(p.grad.dtype for p in self.params):
            group = [p for p in self.params if p.grad.dtype == dtype]
            flat = get_array_module(group[0].grad).empty(sum(p.grad.size for p in group), dtype=dtype)
            views, offset = [], 0
            for p in group:
                views.append((p, flat[offset:offset + p.grad.size].reshape(p.grad.shape)))
                offset += p.grad.size
            self._buffers.append((flat, views))
        self._synchronized = False

    def synchronize(self):
        """Replace every gradient by its mean over the ranks."""
        for flat, views in self._buffers:
            xp = get_array_module(flat)
            for p, view in views:
                xp.copyto(view, p.grad)
            self.comm.allreduce_mean_([flat])
            for p, view in views:
                xp.copyto(p.grad, view)
        self._synchronized = True

    def step(self):
        if not self._synchronized:
            self.synchronize()
        self._synchronized = False
        if self.clip_norm is not None:
            clip_grad_norm(self.params, self.clip_norm)
        self.optimizer.step()

    def zero_grad(self):
        self.optimizer.zero_grad()

    def state_dict(self):
        return self.optimizer.state_dict()

    def load_state_dict(self, state):
        self.optimizer.load_state_dict(state)

    @property
    def lr(self):
        return self.optimizer.lr

    @lr.setter
    def lr(self, value):
        self.optimizer.lr = value

    @property
    def steps(self):
        return self.optimizer.steps

    def __repr__(self):
        return f"DistributedOptimizer({type(self.optimizer).__name__}, {self.comm!r})"
