"""Loops of launches recorded once and replayed, in eager use too: an LSTM's time loop is T GEMMs and T kernel
launches each way, and launching them one by one from the host costs far more than the GPU spends on them.

`replayed(what, arrays, body)` runs body(), a loop whose launches and GEMMs (through loader.run) touch only
`arrays`, and keeps a recording of it (kernels.graph: a CUDA graph on a GPU, the host tape in the tests) for the
next time the same loop runs over the same arrays; from then on it replays the recording instead of running body.

A recording is a function of where its arrays live and of their shapes, not of the array objects: its launches hold
addresses. So the key of a recording is `what` and, for every array, its address, shape, strides and dtype; another
array that later lies at the same address with the same layout is served correctly by the same recording. A loop is
recorded the second time its key comes (a loop over arrays allocated anew every time would otherwise record at every
call), and the last KEPT recordings are kept. Where recording fails, the key runs eagerly from then on. Inside the
recording of a whole step (TrainStep, or any loader.recording()), body() runs as it is, into that recording.
"""
from collections import OrderedDict

import numpy

from ..backend import get_array_module
from . import graph, loader

KEPT = 16           # recordings kept (least recently used dropped first)
SEEN = 256          # keys remembered between their first and second coming

_recordings = OrderedDict()     # key -> recorder
_seen = OrderedDict()           # key -> None: met once, not recorded yet
_eager = set()                  # keys whose recording failed


def _layout(a):
    address = getattr(a.data, "ptr", None)
    if address is None:
        address = a.ctypes.data
    return address, tuple(a.shape), tuple(a.strides), str(a.dtype)


def inside_a_recording(xp):
    """Is a step being recorded right now (the host tape of loader.recording(), or a CUDA stream capture)?"""
    if loader._tape is not None:
        return True
    return xp is not numpy and xp.cuda.get_current_stream().is_capturing()


def replayed(what, arrays, body):
    """Run body() (see the module docstring): eagerly, or from a recording of it over the same arrays."""
    xp = get_array_module(arrays[0])
    if inside_a_recording(xp):
        body()
        return
    key = (what, tuple(_layout(a) for a in arrays))
    recorder = _recordings.get(key)
    if recorder is None:
        if key in _eager or key not in _seen:
            _remember(key)
            body()
            return
        recorder = graph.recorder_for(xp)
        try:
            recorder.record(body)
        except Exception:           # noqa: BLE001 - any failure to record means: run this loop eagerly
            _eager.add(key)
            body()
            return
        _seen.pop(key, None)
        _recordings[key] = recorder
        while len(_recordings) > KEPT:
            _recordings.popitem(last=False)
    _recordings.move_to_end(key)
    recorder.replay()


def _remember(key):
    _seen[key] = None
    _seen.move_to_end(key)
    while len(_seen) > SEEN:
        _seen.popitem(last=False)


def forget():
    """Drop every recording and every key met (the tests start from a clean state)."""
    _recordings.clear()
    _seen.clear()
    _eager.clear()
