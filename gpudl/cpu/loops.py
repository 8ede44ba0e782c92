"""A layer's time loop as one op (the twin of kernels/loops.py, which records it once and replays it on a GPU).

On the CPU there is nothing to record: an LSTM's loops run as one parallel kernel each (lstm.forward_loop and
backward_loop: every step split over the threads by hidden units, one join a step), and other loops run as they are.
"""
from . import lstm

_FUSED = {"lstm_forward_loop": lstm.forward_loop, "lstm_backward_loop": lstm.backward_loop}


def replayed(what, arrays, body):
    """Run the loop `what` over `arrays`: its fused kernel where there is one, else body()."""
    fused = _FUSED.get(what)
    if fused is None:
        body()
    else:
        fused(*arrays)
