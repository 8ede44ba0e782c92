"""Mini-batches: a loader that shuffles with its own seeded generator and hands each batch to the model's device.

The generator's state is part of a checkpoint (`state_dict`), so a resumed run draws the same batches as one that
was never interrupted.
"""
import json

import numpy

from ..backend import device as resolve_device
from ..backend import to_device


class DataLoader:
    """Iterate over (x, y) batches of `batch_size` rows; a fresh permutation each pass when `shuffle` is on.

    The arrays are copied to `device` once, up front; the last, smaller batch is kept unless `drop_last`.
    `transform(x, rng)`, when given, changes each input batch (e.g. `random_shift`) drawing from the same generator.
    """

    def __init__(self, X, y, batch_size=64, shuffle=True, seed=0, device="cpu", drop_last=False, transform=None):
        if len(X) != len(y):
            raise ValueError(f"DataLoader: {len(X)} inputs but {len(y)} targets")
        if len(X) == 0:
            raise ValueError("DataLoader: the data set is empty")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.device = resolve_device(device)
        self.X, self.y = to_device(X, self.device), to_device(y, self.device)
        self.batch_size, self.shuffle, self.drop_last, self.transform = batch_size, shuffle, drop_last, transform
        self.rng = numpy.random.default_rng(seed)

    def __len__(self):
        n = len(self.X)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self):
        return len(self.X)

    def __iter__(self):
        n = len(self.X)
        order = self.rng.permutation(n) if self.shuffle else None
        if order is not None:
            order = to_device(order, self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            if order is None:
                x, y = self.X[start:start + self.batch_size], self.y[start:start + self.batch_size]
            else:
                index = order[start:start + self.batch_size]
                x, y = self.X[index], self.y[index]
            yield (x if self.transform is None else self.transform(x, self.rng)), y

    def state_dict(self):
        """The shuffling generator's state as a JSON string (no pickle)."""
        return json.dumps(self.rng.bit_generator.state)

    def load_state_dict(self, state):
        """Restore a state returned by `state_dict`."""
        self.rng.bit_generator.state = json.loads(str(state))
