"""Values that stay on the device until read back together: the losses and hit counts of a window of steps.

One copy to the host per window instead of one per step lets the host queue the next steps while the GPU works.
"""
from ..backend import get_array_module, to_numpy


def host_values(values):
    """Device scalars (0-d arrays) as a list of Python numbers, with one copy to the host."""
    if not values:
        return []
    xp = get_array_module(*values)
    return to_numpy(xp.stack([xp.asarray(v) for v in values])).tolist()


class ReadBack:
    """Per-batch losses and hit counts as returned (device values), read back to the host together by drain()."""

    def __init__(self):
        self.losses, self.sizes, self.hits, self.counts = [], [], [], []

    def __len__(self):
        return len(self.losses)

    def add(self, loss, size, hits=None, count=None):
        self.losses.append(loss)
        self.sizes.append(size)
        if hits is not None:
            self.hits.append(hits)
            self.counts.append(count)

    def drain(self):
        """[(loss, size)] and [(hits, count)] as Python numbers, in batch order; empties the window."""
        losses = host_values(self.losses)
        hits = [int(h) for h in host_values(self.hits)]
        done = list(zip(losses, self.sizes)), list(zip(hits, self.counts))
        self.__init__()
        return done
