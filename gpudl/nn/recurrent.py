"""Recurrent layers over batch-first sequences (N, T, F), trained by backpropagation through time (BPTT).

RNN (lecture eqs. 35-37):  h_t = tanh(x_t W_x + h_{t-1} W_h + b).
LSTM (lecture eqs. 45-48): a_t = x_t W_x + h_{t-1} W_h + b split into gate blocks i, f, g, o;
                           c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)  (see functional.lstm_step).

x_t W_x for every t is one matrix product before the time loop, into a buffer the layer keeps from call to call
(one per sequence shape); each step then costs one product h_{t-1} W_h plus the step's elementwise arithmetic (one
fused kernel for the LSTM). The backward loop collects da_t for every step and finishes with one product each for
dW_x, dW_h and dx.

On a GPU the time loop is bound by host time (each CuPy call costs more Python and driver time than the step's
arithmetic takes on the device), so the loops make few calls and allocate nothing: buffers are time-major (T, N, .)
so that every step's slice is contiguous; functional.matmul_add adds h_{t-1} W_h into a_t in one GEMM (beta = 1);
the step ops write into the buffers through `out=`; the backward writes da_t over a_t and adds da_t W_h^T into
dL/dh_{t-1} in place. An LSTM step is then one GEMM and one kernel launch, forward and backward, and the LSTM's
whole time loop is one functional op each way (functional.lstm_forward_loop, lstm_backward_loop), which on a GPU
records the loop once per set of buffers and replays it as one CUDA graph from then on, in eager use too.

State: `forward(x, state)` starts from `state` (zeros when None) and leaves the final state in `layer.state`
(h_T for the RNN, (h_T, c_T) for the LSTM). Truncated BPTT: with `stateful=True` the next forward starts from
that state; gradients stop at the batch boundary, because the carried state is a plain array that remembers
nothing of the batch that produced it. `backward` leaves dL/d(initial state) in `layer.state_grad`.
"""
import math
from collections import OrderedDict

import numpy

from .. import functional as F
from ..backend import get_array_module
from . import init
from .module import Module, Parameter, check_input


WORKSPACES_KEPT = 4      # pre-activation buffers kept per layer, one per sequence shape (least recently used dropped)


def _carry_key(h):
    """The key of the carried arrays for a state part h (N, H): array type, dtype and batch size."""
    return type(h), str(h.dtype), h.shape[0]


class _Recurrent(Module):
    """What RNN and LSTM share: weights, input and state checks, and the carried state."""

    gates = 1           # blocks of H columns in W_x, W_h and b
    state_parts = 1     # arrays in a state: h, or (h, c)

    def __init__(self, input_size, hidden_size, dtype=numpy.float32, rng=None, stateful=False):
        name = f"{type(self).__name__}({input_size}, {hidden_size})"
        if int(input_size) < 1 or int(hidden_size) < 1:
            raise ValueError(f"{name}: input_size and hidden_size must be positive")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.stateful = bool(stateful)
        width = self.gates * self.hidden_size
        # Small non-zero weights, U(-1/sqrt(H), 1/sqrt(H)): the units start in tanh's linear range and differ.
        bound = 1.0 / math.sqrt(self.hidden_size)
        self.W_x = Parameter(init.uniform((self.input_size, width), bound, dtype, rng))
        self.W_h = Parameter(init.uniform((self.hidden_size, width), bound, dtype, rng))
        self.b = Parameter(numpy.zeros(width, dtype=dtype))
        self.state = None
        self.state_grad = None
        self._carried = {}          # per batch size and dtype: the arrays the final state is written into
        self._snapshot = None       # the copy of them last handed out as `state`
        self._workspaces = OrderedDict()    # per sequence shape and dtype: the pre-activations a (T, N, G*H)

    def reset_state(self):
        """Forget the carried state: the next forward of a stateful layer starts from zeros.

        The arrays that carry the state are zeroed in place, so a captured step that reads them starts afresh too.
        """
        self.state = None
        for parts in self._carried.values():
            for part in parts:
                F.fill_(part, 0)

    def to(self, device=None, dtype=None):
        self.reset_state()
        self._carried = {}
        self._workspaces.clear()
        return super().to(device, dtype)

    def carried_arrays(self):
        """The arrays the final state is carried in, for every batch size seen (see _carry), and the pre-activation
        buffers kept (see _workspace)."""
        return [part for parts in self._carried.values() for part in parts] + list(self._workspaces.values())

    def _workspace(self, shape, like):
        """The (T*N, G*H) buffer of pre-activations for a sequence of this shape, kept from call to call: a new one
        each time would come fresh from the OS (at b64 T128 H256 it is 32 MiB, past malloc's largest threshold for
        reusing freed memory) and fault in every page again. The forward writes all of it before reading any."""
        key = (type(like), str(like.dtype), shape)
        buffer = self._workspaces.pop(key, None)
        if buffer is None:
            buffer = get_array_module(like).empty(shape, dtype=like.dtype)
        self._workspaces[key] = buffer
        while len(self._workspaces) > WORKSPACES_KEPT:
            self._workspaces.popitem(last=False)
        return buffer

    def _carry(self, *finals):
        """Keep the final state (h_T, or h_T and c_T) in this layer's own arrays, written in place from batch to
        batch (one set per batch size and dtype), which the next forward of a stateful layer reads (so a captured
        step carries it too); `self.state` gets a copy of it."""
        key = _carry_key(finals[0])
        carried = self._carried.get(key)
        if carried is None:
            carried = self._carried[key] = tuple(get_array_module(f).empty(f.shape, dtype=f.dtype) for f in finals)
        for part, final in zip(carried, finals):
            F.copy_into(part, final)
        snapshot = tuple(F.copied(part) for part in carried)
        self.state = self._snapshot = snapshot[0] if self.state_parts == 1 else snapshot

    def _carried_state(self, n, x):
        """The carried arrays as a state for a batch of n like x, or None when they do not fit it."""
        carried = self._carried.get((type(x), str(x.dtype), n))
        if carried is None:
            return None
        return carried[0] if self.state_parts == 1 else carried

    def _check(self, x, state):
        """Validate x (N, T, F) and the initial state; return the state as a tuple of (N, H) arrays."""
        check_input(self, x, 3, f"(N, T, {self.input_size})")
        n, t, f = x.shape
        if f != self.input_size:
            raise ValueError(f"{self!r}: expected input of shape (N, T, {self.input_size}), got {tuple(x.shape)}")
        if t < 1:
            raise ValueError(f"{self!r}: the sequence is empty (input shape {tuple(x.shape)})")
        if state is None and self.stateful:
            state = self.state
            if state is None or state is self._snapshot:      # ours: read the carried arrays (zeroed by a reset)
                carried = self._carried_state(n, x)
                state = state if carried is None else carried
        if state is None:
            return tuple(F.zeros((n, self.hidden_size), x) for _ in range(self.state_parts))
        parts = (state,) if self.state_parts == 1 else state
        what = "h0 of shape (N, H)" if self.state_parts == 1 else "(h0, c0), each of shape (N, H)"
        if not isinstance(parts, (tuple, list)) or len(parts) != self.state_parts:
            raise TypeError(f"{self!r}: the state must be {what}, got {type(state).__name__}")
        for part in parts:
            if not hasattr(part, "shape") or not hasattr(part, "dtype"):
                raise TypeError(f"{self!r}: the state must be {what}, got {type(part).__name__}")
            if tuple(part.shape) != (n, self.hidden_size):
                hint = " (call reset_state() when the batch size changes)" if self.stateful else ""
                raise ValueError(f"{self!r}: state of shape {tuple(part.shape)} does not fit input of shape "
                                 f"{tuple(x.shape)}; expected ({n}, {self.hidden_size}){hint}")
            if get_array_module(part) is not get_array_module(x) or part.dtype != x.dtype:
                raise TypeError(f"{self!r}: the state ({get_array_module(part).__name__}, {part.dtype}) must be on "
                                f"the input's device and of its dtype ({get_array_module(x).__name__}, {x.dtype})")
        return tuple(get_array_module(x).ascontiguousarray(part) for part in parts)

    def _input_products(self, x):
        """x time-major (T, N, F), and x_t W_x + b for every t at once: one (T*N, F) x (F, G*H) product (T, N, G*H),
        in the layer's kept buffer (_workspace).

        Transposing x, not the product, moves F columns per row instead of G*H; the backward keeps x time-major too.
        """
        n, t, f = x.shape
        x_tm = F.swap01(x)
        xw = F.dense(x_tm.reshape(t * n, f), self.W_x.data, self.b.data,
                     out=self._workspace((t * n, self.gates * self.hidden_size), x))
        return x_tm, xw.reshape(t, n, -1)

    def _weight_grads(self, da, input_grad):
        """From da (T, N, G*H) of every step: dW_x, dW_h and db in one product each, and dx (N, T, F) (None
        without input_grad)."""
        t, n, width = da.shape
        da_2d = da.reshape(t * n, width)
        dx, _, _ = F.dense_backward(self._x.reshape(t * n, -1), self.W_x.data, da_2d,
                                    into=(self.W_x.grad, self.b.grad), input_grad=input_grad)
        F.matmul_add(self._hs[:-1].reshape(t * n, -1).T, da_2d, self.W_h.grad)
        return None if dx is None else F.swap01(dx.reshape(t, n, self.input_size))

    def _upstream(self, dh_seq, dstate):
        """Check the incoming gradients; return dh_seq (or None) and the gradient of the final state as a tuple of
        new arrays (zeros where none is given), which the backward loop may overwrite."""
        if getattr(self, "_hs", None) is None:
            raise RuntimeError(f"{self!r}: backward() called before forward(), or twice for one forward()")
        t, n, h = self._hs.shape[0] - 1, self._hs.shape[1], self.hidden_size
        if dh_seq is not None and tuple(getattr(dh_seq, "shape", ())) != (n, t, h):
            raise ValueError(f"{self!r}: backward() got a gradient of shape {tuple(getattr(dh_seq, 'shape', ()))}, "
                             f"but forward() returned shape {(n, t, h)}")
        if dstate is None:
            return dh_seq, tuple(F.zeros((n, h), self._hs) for _ in range(self.state_parts))
        parts = (dstate,) if self.state_parts == 1 else tuple(dstate)
        for part in parts:
            if part is not None and tuple(part.shape) != (n, h):
                raise ValueError(f"{self!r}: final-state gradient of shape {tuple(part.shape)}, expected ({n}, {h})")
        return dh_seq, tuple(F.zeros((n, h), self._hs) if p is None else F.copied(p.astype(self._hs.dtype))
                             for p in parts)

    def _direct_grads(self, dh_seq, dh_last, final_given=True):
        """dL/dh_t as it arrives from above, time-major (T, N, H) in a new buffer the backward loop adds into.

        Step t + 1 of the loop adds da_{t+1} W_h^T into row t, which then holds the whole dL/dh_t. dL/dh_T
        (dh_last) is added into row T - 1 when it was given (final_given), not when it is zeros.
        """
        t, n = self._hs.shape[0] - 1, self._hs.shape[1]
        if dh_seq is None:
            dh = F.zeros((t, n, self.hidden_size), self._hs)
        else:
            dh = F.swap01(dh_seq.astype(self._hs.dtype, copy=False))
        if final_given:
            F.add_into(dh[t - 1], dh_last)
        return dh

    def _output(self, hs):
        """The hidden sequence (N, T, H) from the time-major buffer (T+1, N, H) holding h_0 .. h_T."""
        return F.swap01(hs[1:])

    def __repr__(self):
        extra = ", stateful=True" if self.stateful else ""
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"


class RNN(_Recurrent):
    """Vanilla (Elman) recurrent layer: h_t = tanh(x_t W_x + h_{t-1} W_h + b), W_x (in, H), W_h (H, H), b (H,)."""

    def forward(self, x, state=None):
        """The hidden sequence (N, T, H); h_T is left in `self.state`."""
        (h,) = self._check(x, state)
        xp = get_array_module(x)
        n, t, _ = x.shape
        x_tm, a = self._input_products(x)     # a becomes a_t = x_t W_x + b + h_{t-1} W_h, step by step
        hs = xp.empty((t + 1, n, self.hidden_size), dtype=x.dtype)
        F.copy_into(hs[0], h)
        h_prev, W_h = hs[0], self.W_h.data
        for a_t, h_t in zip(a, hs[1:]):
            F.matmul_add(h_prev, W_h, a_t)
            F.rnn_step(a_t, out=h_t)
            h_prev = h_t
        self._x, self._hs = x_tm, hs
        self._carry(hs[t])
        return self._output(hs)

    def backward(self, dh_seq, dstate=None, input_grad=True):
        """dx (N, T, F) from dL/dh_t for every t (None: zeros) and optionally dL/dh_T; dL/dh_0 -> `state_grad`.
        input_grad=False skips dx (returns None); the parameter gradients and state_grad are the same.

        dh_t = dL/dh_t (direct) + da_{t+1} W_h^T;  da_t = dh_t (1 - h_t^2).
        """
        dh_seq, (dh_last,) = self._upstream(dh_seq, dstate)
        xp = get_array_module(self._hs)
        dh = self._direct_grads(dh_seq, dh_last, dstate is not None)
        da = xp.empty_like(dh)
        W_h_T = F.transpose_for_products(self.W_h.data)
        da_at, dh_at, h_at = list(da), list(dh), list(self._hs[1:])   # step views, sliced once (see module doc)
        for step in reversed(range(len(da_at))):
            F.rnn_step_backward(dh_at[step], h_at[step], out=da_at[step])
            if step:
                F.matmul_add(da_at[step], W_h_T, dh_at[step - 1])
        self.state_grad = F.matmul(da_at[0], W_h_T)
        dx = self._weight_grads(da, input_grad)
        self._x = self._hs = None
        return dx


class LSTM(_Recurrent):
    """Long short-term memory layer: W_x (in, 4H), W_h (H, 4H), b (4H,), gate blocks i, f, g, o (lecture eqs. 45-48).

    The forget gate's bias starts at 1, so the cell keeps its memory at the start of training.
    """

    gates = 4
    state_parts = 2

    def __init__(self, input_size, hidden_size, dtype=numpy.float32, rng=None, stateful=False):
        super().__init__(input_size, hidden_size, dtype, rng, stateful)
        self.b.data[self.hidden_size:2 * self.hidden_size] = 1

    def forward(self, x, state=None):
        """The hidden sequence (N, T, H); (h_T, c_T) is left in `self.state`."""
        h, c = self._check(x, state)
        xp = get_array_module(x)
        n, t, _ = x.shape
        size = self.hidden_size
        x_tm, a = self._input_products(x)     # a becomes a_t = x_t W_x + b + h_{t-1} W_h, step by step
        hs = xp.empty((t + 1, n, size), dtype=x.dtype)
        cs = xp.empty((t + 1, n, size), dtype=x.dtype)
        F.copy_into(hs[0], h)
        F.copy_into(cs[0], c)
        F.lstm_forward_loop(a, hs, cs, self.W_h.data)      # a_t += h_{t-1} W_h, then the step, for every t
        self._x, self._a, self._hs, self._cs = x_tm, a, hs, cs
        self._carry(hs[t], cs[t])
        return self._output(hs)

    def backward(self, dh_seq, dstate=None, input_grad=True):
        """dx (N, T, F) from dL/dh_t for every t (None: zeros) and optionally (dL/dh_T, dL/dc_T); input_grad=False
        skips dx (returns None).

        (dL/dh_0, dL/dc_0) is left in `state_grad`. Per step: dh_t = dL/dh_t + da_{t+1} W_h^T, and
        functional.lstm_step_backward turns (dh_t, dc_t) into da_t and dc_{t-1}.
        """
        dh_seq, (dh_last, dc) = self._upstream(dh_seq, dstate)
        a = self._a
        dh = self._direct_grads(dh_seq, dh_last, dstate is not None)
        # dc: dL/dc_t, carried back through the steps in this one buffer (a new array from _upstream)
        W_h_T = F.transpose_for_products(self.W_h.data)
        # a_t is read by the step's backward, then overwritten by da_t (no second (T, N, 4H) buffer)
        F.lstm_backward_loop(a, self._cs, dh, dc, W_h_T)
        self.state_grad = (F.matmul(a[0], W_h_T), dc)
        dx = self._weight_grads(a, input_grad)
        self._x = self._a = self._hs = self._cs = None
        return dx
