"""Mini-batches: a loader that shuffles with its own seeded generator and hands each batch to the model's device.

The generator's state is part of a checkpoint (`state_dict`), so a resumed run draws the same batches as one that
was never interrupted.

Data-parallel training (gpudl.distributed) gives each rank a `shard=(rank, size)` loader over the same data with the
same seed. Every rank draws the same permutation each epoch and cuts it into the same global batches of
`batch_size` rows that one process would use; rank r keeps rows r, r + size, r + 2 size, ... of each (the epoch's
order[rank::size], batch by batch, as PyTorch's DistributedSampler). So every sample is read once per epoch by
exactly one rank, and every rank takes the same number of steps. When `batch_size` is a multiple of `size` every
shard has batch_size / size rows and the mean over ranks of the shards' mean gradients is the global batch's mean
gradient: N ranks step exactly as one process. Otherwise (and in the last, smaller batch of an epoch) the shards
differ by one row, and the average over ranks weighs the rows of the smaller shards a little more. A last batch with
fewer rows than ranks would leave a rank with nothing to do: it is dropped.
"""
import json

import numpy

from ..backend import device as resolve_device
from ..backend import to_device


class DataLoader:
    """Iterate over (x, y) batches of `batch_size` rows; a fresh permutation each pass when `shuffle` is on.

    The arrays are copied to `device` once, up front; the last, smaller batch is kept unless `drop_last`.
    `transform(x, rng)`, when given, changes each input batch (e.g. `random_shift`) drawing from the same generator;
    with a shard of several ranks it draws from a generator of its own per epoch and rank instead (seeded from the
    shared generator), so the ranks' permutations stay in step. `shard=(rank, size)`: see the module's docstring;
    `batch_size` stays the global batch.
    """

    def __init__(self, X, y, batch_size=64, shuffle=True, seed=0, device="cpu", drop_last=False, transform=None,
                 shard=None):
        if len(X) != len(y):
            raise ValueError(f"DataLoader: {len(X)} inputs but {len(y)} targets")
        if len(X) == 0:
            raise ValueError("DataLoader: the data set is empty")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.rank, self.ranks = _check_shard(shard)
        if batch_size < self.ranks:
            raise ValueError(f"DataLoader: batch_size {batch_size} is the global batch and must give each of the "
                             f"{self.ranks} ranks a row at least")
        self.device = resolve_device(device)
        self.X, self.y = to_device(X, self.device), to_device(y, self.device)
        self.batch_size, self.shuffle, self.drop_last, self.transform = batch_size, shuffle, drop_last, transform
        self.rng = numpy.random.default_rng(seed)

    def __len__(self):
        n = len(self.X)
        full, rest = divmod(n, self.batch_size)
        return full + (0 < rest and rest >= self.ranks and not self.drop_last)

    @property
    def num_samples(self):
        return len(self.X)

    def __iter__(self):
        n = len(self.X)
        order = self.rng.permutation(n) if self.shuffle else None
        if order is not None:
            order = to_device(order, self.device)
        rng = self.rng
        if self.ranks > 1:
            if order is None:
                order = to_device(numpy.arange(n), self.device)
            if self.transform is not None:
                rng = numpy.random.default_rng([int(self.rng.integers(2 ** 63)), self.rank])
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            if order is None:
                x, y = self.X[start:start + self.batch_size], self.y[start:start + self.batch_size]
            else:
                index = order[start:start + self.batch_size][self.rank::self.ranks]
                x, y = self.X[index], self.y[index]
            yield (x if self.transform is None else self.transform(x, rng)), y

    @property
    def shard(self):
        """(rank, size): this loader's part of each batch."""
        return self.rank, self.ranks

    def state_dict(self):
        """The shuffling generator's state as a JSON string (no pickle)."""
        return json.dumps(self.rng.bit_generator.state)

    def load_state_dict(self, state):
        """Restore a state returned by `state_dict`."""
        self.rng.bit_generator.state = json.loads(str(state))


def _check_shard(shard, owner="DataLoader"):
    """(rank, size) from `shard`, (0, 1) when it is None; an error names `owner`."""
    if shard is None:
        return 0, 1
    try:
        rank, size = shard
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: shard must be (rank, size), got {shard!r}") from None
    if not (isinstance(size, int) and size >= 1 and isinstance(rank, int) and 0 <= rank < size):
        raise ValueError(f"{owner}: shard must be (rank, size) with 0 <= rank < size, got {shard!r}")
    return rank, size
