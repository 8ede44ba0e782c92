"""A stand-in for CuPy's NCCL module (cupy.cuda.nccl) as far as a communicator's start-up goes: get_unique_id and
NcclCommunicator, in the form of CuPy 14 and later ("bytes": the id is a bytes object of 128, and NcclCommunicator
takes nothing else) or of earlier CuPy ("tuple": a tuple of 128 ints, each stored into a signed C char, so a value
outside [-128, 127] is an OverflowError as Cython's conversion raises it)."""
import os

NCCL_UNIQUE_ID_BYTES = 128


class StandInNccl:
    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 6, 7, 8, 0     # ncclDataType_t, ncclRedOp_t

    def __init__(self, form):
        if form not in ("bytes", "tuple"):
            raise ValueError(f"form must be 'bytes' or 'tuple', got {form!r}")
        self.form = form
        self.issued = None          # the id get_unique_id gave, as bytes
        self.communicators = []

    def get_unique_id(self):
        raw = bytes([0x80, 0xff, 0x00, 0x7f]) + os.urandom(NCCL_UNIQUE_ID_BYTES - 4)     # bytes above 127 included
        self.issued = raw
        return raw if self.form == "bytes" else tuple(b - 256 if b > 127 else b for b in raw)

    def NcclCommunicator(self, ndev, comm_id, rank):    # CuPy's name
        if self.form == "bytes" and not isinstance(comm_id, bytes):
            raise TypeError(f"Argument 'commId' has incorrect type (expected bytes, got {type(comm_id).__name__})")
        if self.form == "tuple":
            if not isinstance(comm_id, tuple):
                raise TypeError(f"Argument 'commId' has incorrect type (expected tuple, got {type(comm_id).__name__})")
            if any(not -128 <= c <= 127 for c in comm_id):
                raise OverflowError("value too large to convert to char")
        if len(comm_id) != NCCL_UNIQUE_ID_BYTES:
            raise ValueError(f"commId length {len(comm_id)} != {NCCL_UNIQUE_ID_BYTES}.")
        raw = comm_id if isinstance(comm_id, bytes) else bytes(c % 256 for c in comm_id)
        self.communicators.append((ndev, raw, rank))
        return self.communicators[-1]
