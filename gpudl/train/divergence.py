"""The divergence watch: a loss that turns NaN, infinite or enormous, or a NumPy floating-point error inside an
epoch, ends the run with TrainingDiverged instead of training on garbage."""
import math
from dataclasses import dataclass

import numpy

LOSS_LIMIT = 1e30       # float32 overflows at 3.4e38, and a learning model's loss never comes near 1e30
SYNC_EVERY = 16         # training steps whose losses are read back to the host together


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite (or NumPy met an overflow or invalid operation while training)."""


@dataclass(frozen=True)
class DivergenceWatch:
    """How fit watches the loss: read back every `sync_every` steps (and at each epoch's end), a value that is not
    finite or beyond `limit` stops the run, naming its step."""
    sync_every: int = SYNC_EVERY
    limit: float = LOSS_LIMIT

    def __post_init__(self):
        if not (isinstance(self.sync_every, int) and self.sync_every >= 1):
            raise ValueError(f"DivergenceWatch: sync_every must be a positive int, got {self.sync_every!r}")
        if not self.limit > 0:
            raise ValueError(f"DivergenceWatch: limit must be positive, got {self.limit!r}")

    def diverged(self, value):
        """True for a loss that is NaN, infinite, or beyond the limit."""
        return not math.isfinite(value) or abs(value) > self.limit

    @staticmethod
    def numpy_errors():
        """The context an epoch runs in: NumPy's overflow, division by zero and invalid operation raise."""
        return numpy.errstate(over="raise", divide="raise", invalid="raise")
