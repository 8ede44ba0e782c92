"""The training step: zero-grad, forward, loss, backward and update, eagerly or replayed as one recorded graph.

    step = TrainStep(model, loss, optimizer, graph="auto")
    loss_value = step(x, y)         # 0-d, on the device; step.pred is the prediction, step.graphed says how it ran

EvalStep(model, loss, graph="auto") does the same for an evaluation batch: the forward and the loss only.

On a GPU the host time per operation (Python and the driver, for every CuPy call or kernel launch) dominates a
small model's step; recorded once as a CUDA graph, the whole step (an LSTM's T-step time loop included) is one launch.
What changes from step to step is read from device memory, never baked into the graph: the inputs (copied into the
graph's static buffers x and y), the learning rate and Adam's step count (gpudl.optim), the momentum and moment
buffers, the parameters (updated in place, so gpudl.save, checkpoints and evaluation see them) and a recurrent
layer's carried state (reset_state zeroes it in place).

graph="auto" records on the kernel path (cupy arrays: a CUDA graph; the tests' host build of the kernels: a tape of
launches) and runs eagerly on NumPy; graph=True is the same but raises where it cannot record (plain NumPy, a capture
that fails); graph=False always runs eagerly.

Per (x shape, x dtype, y shape, y dtype), the first call runs one eager step (it makes the optimizer's buffers and
checks the inputs: value checks are off while recording, F.value_checks(False), since a check reads values back to
the host) and then records the step without running it; later calls copy x and y in and replay. Each batch shape
gets its own graph, so the short last batch of an epoch never replays a stale shape: the last RECORDINGS_KEPT shapes
are kept, least recently used dropped first. A graph is recorded again when the arrays it reads were replaced
(model.to(), an optimizer state that did not exist before, a recurrent layer's state for another batch size): the
model's and the optimizer's state_arrays() name them. Where recording fails, "auto" runs eagerly from then on for
that shape and says so once on stderr, naming the cause.
"""
import sys
from collections import OrderedDict

from .. import functional as F
from ..backend import get_array_module
from ..functional.dispatch import step_recorder
from ..optim import Optimizer, clip_grad_norm

RECORDINGS_KEPT = 4     # recorded steps kept, one per batch shape


class _Recorded:
    """One recorded step: its recorder, static inputs and outputs, and the arrays it was recorded over."""

    def __init__(self, recorder, x, y, pred, loss, arrays):
        self.recorder, self.x, self.y, self.pred, self.loss, self.arrays = recorder, x, y, pred, loss, arrays


def _arrays_read(model, optimizer):
    """The long-lived arrays a recorded step reads and writes, as the model and the optimizer name them. A recording
    is valid while these stay the same."""
    return model.state_arrays() + (optimizer.state_arrays() if optimizer is not None else [])


class RecordedStep:
    """What TrainStep and EvalStep share: per batch shape, one eager call, then a recording replayed ever after
    (see the module docstring for graph=). A subclass says what a call does (_ops)."""

    optimizer = None

    def __init__(self, model, loss, graph="auto", stream=None):
        if graph not in ("auto", True, False):
            raise ValueError(f"{type(self).__name__}: graph must be 'auto', True or False, got {graph!r}")
        self.model, self.loss, self.graph = model, loss, graph
        self.stream = stream if stream is not None else sys.stderr
        self.graphed = False        # whether the last call replayed a recorded step
        self.replays = 0            # calls that replayed a recorded step
        self.pred = None            # the last step's prediction (a recorded step's output buffer)
        self.notice = None          # why a requested graph was not used, once said
        self._recorded = OrderedDict()
        self._eager_only = set()    # shapes whose recording failed (graph="auto")

    def __call__(self, x, y):
        """Run one step on the batch (x, y); returns the loss (0-d, on the device)."""
        self.graphed = False
        if self.graph is False:
            return self._eager(x, y)
        key = (tuple(x.shape), str(x.dtype), tuple(y.shape), str(y.dtype))
        recorded = self._recorded.get(key)
        if recorded is not None and self._still_valid(recorded):
            self._recorded.move_to_end(key)
            return self._replay(recorded, x, y)
        self._recorded.pop(key, None)
        why = self._why_eager(x)
        if why is not None or key in self._eager_only:
            if why is not None and self.graph is True:
                raise RuntimeError(f"{type(self).__name__}(graph=True): {why}")
            if why is not None and step_recorder(x) is not None:
                self._say(why)                      # on NumPy, eager is the expected way: no word about it
            return self._eager(x, y)
        value = self._eager(x, y)                   # the warm-up: makes every lazily created buffer
        try:
            self._record(key, x, y)
        except Exception as exc:
            if self.graph is True:
                raise
            self._eager_only.add(key)
            self._say(f"recording the step failed ({type(exc).__name__}: {exc})")
        return value

    def _why_eager(self, x):
        """Why this step cannot be recorded, or None when it can."""
        if step_recorder(x) is None:
            return (f"the batch is a {get_array_module(x).__name__} array, which runs on the NumPy path (the CPU): "
                    f"there is no CUDA graph to capture; use graph='auto' or False")
        if self.optimizer is not None and not isinstance(self.optimizer, Optimizer):
            return (f"the optimizer is a {type(self.optimizer).__name__}, not one of gpudl.optim's, and its work "
                    f"(e.g. a collective over the host) is not recorded")
        return None

    def _say(self, why):
        if self.notice is None:
            self.notice = why
            print(f"gpudl: the training step runs eagerly: {why}", file=self.stream, flush=True)

    def _eager(self, x, y):
        self.pred, value = self._ops(x, y)
        return value

    def _record(self, key, x, y):
        xp = get_array_module(x)
        static_x, static_y = xp.empty(x.shape, dtype=x.dtype), xp.empty(y.shape, dtype=y.dtype)
        recorder = step_recorder(x)
        with F.value_checks(False):
            pred, value = recorder.record(lambda: self._ops(static_x, static_y))
        self._recorded[key] = _Recorded(recorder, static_x, static_y, pred, value,
                                        _arrays_read(self.model, self.optimizer))
        while len(self._recorded) > RECORDINGS_KEPT:
            self._recorded.popitem(last=False)

    def _still_valid(self, recorded):
        """Are the arrays the step was recorded over all still in use? (The recording holds them, so their ids
        cannot have been reused.)"""
        now = {id(a) for a in _arrays_read(self.model, self.optimizer)}
        return all(id(a) in now for a in recorded.arrays)

    def _replay(self, recorded, x, y):
        recorded.x[...] = x
        recorded.y[...] = y
        recorded.recorder.replay()
        self.graphed = True
        self.replays += 1
        self.pred = recorded.pred
        return F.copied(recorded.loss)      # a new 0-d array: the caller may keep it past the next step


class TrainStep(RecordedStep):
    """One training step of `model` under `loss` and `optimizer`: zero-grad, forward, loss, backward, update; see
    the module docstring for graph=.

    clip_norm, when given, scales the gradients to a global L2 norm of at most clip_norm before the update
    (optim.clip_grad_norm, on the device, recorded with the rest of the step).
    The gradient of the model's input is read by nothing: the model's backward is asked to skip it
    (backward(dpred, input_grad=False), the Module protocol).
    """

    def __init__(self, model, loss, optimizer, graph="auto", clip_norm=None, stream=None):
        super().__init__(model, loss, graph, stream)
        self.optimizer, self.clip_norm = optimizer, clip_norm

    def _ops(self, x, y):
        self.optimizer.zero_grad()
        pred = self.model.forward(x)
        value = self.loss.forward(pred, y)
        self.model.backward(self.loss.backward(), input_grad=False)
        if self.clip_norm is not None:
            clip_grad_norm(self.model.parameters(), self.clip_norm)
        self.optimizer.step()
        return pred, value


class EvalStep(RecordedStep):
    """The forward and the loss of an evaluation batch, recorded and replayed like TrainStep (`pred` holds the
    prediction for a metric, computed eagerly after it)."""

    def _ops(self, x, y):
        pred = self.model.forward(x)
        return pred, self.loss.forward(pred, y)
