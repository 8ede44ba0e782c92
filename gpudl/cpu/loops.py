"""A layer's time loop as one op (the twin of kernels/loops.py, which records it once and replays it on a GPU): on
the CPU there is nothing to record, and the loop runs as it is."""


def replayed(what, arrays, body):
    """Run body(), the loop `what` over `arrays`."""
    body()
