"""nn.RNN and nn.LSTM: forward against per-step references, BPTT against central differences, truncated BPTT,
input checks, and (where torch is installed) parity with torch.nn.LSTM."""
import numpy
import pytest

import gpudl
from gpudl import nn, optim
from gpudl.gradient_check import directional_derivatives


def _sig(v):
    return 1 / (1 + numpy.exp(-v))


def rnn_reference(x, W_x, W_h, b, h):
    """Eqs. 35-37 one sample and one unit at a time."""
    n, t, _ = x.shape
    out = numpy.zeros((n, t, W_h.shape[0]))
    for s in range(n):
        hs = h[s].copy()
        for step in range(t):
            hs = numpy.array([numpy.tanh(x[s, step] @ W_x[:, j] + hs @ W_h[:, j] + b[j])
                              for j in range(W_h.shape[0])])
            out[s, step] = hs
    return out


def lstm_reference(x, W_x, W_h, b, h, c):
    """Eqs. 45-48 with the gate blocks i, f, g, o written out."""
    size = W_h.shape[0]
    n, t, _ = x.shape
    out = numpy.zeros((n, t, size))
    for step in range(t):
        a = x[:, step] @ W_x + h @ W_h + b
        i, f = _sig(a[:, :size]), _sig(a[:, size:2 * size])
        g, o = numpy.tanh(a[:, 2 * size:3 * size]), _sig(a[:, 3 * size:])
        c = f * c + i * g
        h = o * numpy.tanh(c)
        out[:, step] = h
    return out, h, c


def make(cls, xp, n=3, t=5, f=4, size=6, seed=0, dtype=numpy.float64):
    rng = numpy.random.default_rng(seed)
    layer = cls(f, size, dtype=dtype, rng=rng)
    layer.b.data[...] += rng.normal(0, 0.3, layer.b.data.shape)
    layer.to(xp.__name__ == "cupy" and "cuda" or "cpu")
    x = xp.asarray(rng.normal(0, 1, (n, t, f)).astype(dtype))
    return layer, x, rng


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM])
def test_shapes_names_and_initial_weights(cls):
    layer = cls(3, 5, rng=numpy.random.default_rng(1))
    gates = 4 if cls is nn.LSTM else 1
    assert [name for name, _ in layer.named_parameters()] == ["W_x", "W_h", "b"]
    assert layer.W_x.shape == (3, 5 * gates) and layer.W_h.shape == (5, 5 * gates) and layer.b.shape == (5 * gates,)
    assert layer.W_x.dtype == numpy.float32
    for w in (layer.W_x.data, layer.W_h.data):
        assert numpy.all(w != 0) and numpy.abs(w).max() <= 1 / numpy.sqrt(5)
    if cls is nn.LSTM:
        assert numpy.all(layer.b.data[5:10] == 1)
        assert numpy.all(layer.b.data[:5] == 0) and numpy.all(layer.b.data[10:] == 0)
    else:
        assert numpy.all(layer.b.data == 0)


def test_rnn_forward_matches_reference(xp):
    layer, x, rng = make(nn.RNN, xp)
    h0 = rng.normal(0, 0.5, (3, 6))
    y = layer.forward(x, xp.asarray(h0))
    P = [gpudl.to_numpy(p.data) for p in layer.parameters()]
    want = rnn_reference(gpudl.to_numpy(x), *P, h0)
    numpy.testing.assert_allclose(gpudl.to_numpy(y), want, rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(gpudl.to_numpy(layer.state), want[:, -1], rtol=1e-12, atol=1e-12)


def test_lstm_forward_matches_reference(xp):
    layer, x, rng = make(nn.LSTM, xp)
    h0, c0 = rng.normal(0, 0.5, (3, 6)), rng.normal(0, 0.5, (3, 6))
    y = layer.forward(x, (xp.asarray(h0), xp.asarray(c0)))
    P = [gpudl.to_numpy(p.data) for p in layer.parameters()]
    want, hT, cT = lstm_reference(gpudl.to_numpy(x), *P, h0, c0)
    numpy.testing.assert_allclose(gpudl.to_numpy(y), want, rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(gpudl.to_numpy(layer.state[0]), hT, rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(gpudl.to_numpy(layer.state[1]), cT, rtol=1e-12, atol=1e-12)


def test_zero_initial_state_by_default():
    layer, x, _ = make(nn.LSTM, numpy)
    y0 = layer.forward(x)
    y1 = layer.forward(x, (numpy.zeros((3, 6)), numpy.zeros((3, 6))))
    numpy.testing.assert_array_equal(y0, y1)


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM])
def test_the_pre_activations_buffer_is_kept_per_shape_and_never_leaks_into_results(cls, xp, monkeypatch):
    """A layer keeps its (T*N, G*H) buffer of pre-activations from call to call (a fresh one of 32 MiB came from the
    OS every call), one per sequence shape, at most WORKSPACES_KEPT, least recently used dropped; what an earlier
    call left there (da, for the LSTM) changes no result; model.to() lets them go."""
    from gpudl.nn import recurrent
    monkeypatch.setattr(recurrent, "WORKSPACES_KEPT", 2)
    layer, x, rng = make(cls, xp)
    fresh, _, _ = make(cls, xp)
    kept, seen = layer._workspaces, []
    for t in (5, 5, 2, 5):
        y = layer.forward(x[:, :t])
        layer.backward(xp.asarray(rng.normal(0, 1, y.shape)))
        numpy.testing.assert_array_equal(gpudl.to_numpy(y), gpudl.to_numpy(fresh.forward(x[:, :t])))
        seen.append(next(buffer for key, buffer in kept.items() if key[2][0] == 3 * t))
    assert seen[0] is seen[1] is seen[3] and seen[2] is not seen[0]
    assert [key[2] for key in kept] == [(6, 6 * cls.gates), (15, 6 * cls.gates)]
    assert all(any(b is a for a in layer.state_arrays()) for b in kept.values())
    layer.forward(x[:, :1])
    layer.forward(x[:, :3])
    assert [key[2][0] for key in kept] == [3, 9]       # T=2's and T=5's dropped
    layer.to("cpu" if xp is numpy else "cuda")
    assert not layer._workspaces


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM])
def test_bptt_matches_central_differences(cls, xp):
    """One random direction over x, the initial state and every parameter, several time steps, float64.

    L weighs the whole hidden sequence and the final state, so gradient flows in at every step and at the end.
    """
    layer, x, rng = make(cls, xp, n=2, t=6, f=3, size=4, seed=3)
    parts = 2 if cls is nn.LSTM else 1
    state = [xp.asarray(rng.normal(0, 0.5, (2, 4))) for _ in range(parts)]

    def forward(x, *state):
        y = layer.forward(x, state[0] if parts == 1 else tuple(state))
        return (y, layer.state) if parts == 1 else (y, *layer.state)

    def backward(weights):
        w_seq, *w_fin = weights
        dx = layer.backward(w_seq, w_fin[0] if parts == 1 else tuple(w_fin))
        return (dx, layer.state_grad) if parts == 1 else (dx, *layer.state_grad)

    analytic, numerical = directional_derivatives(forward, backward, [x, *state], layer.parameters(), seed=3)
    assert analytic != 0.0
    assert abs(analytic - numerical) <= 1e-7 * max(1.0, abs(numerical)), (analytic, numerical)


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM])
def test_backward_with_only_sequence_or_only_final_gradient(cls):
    layer, x, rng = make(cls, numpy)
    y = layer.forward(x)
    dy = numpy.zeros_like(y)
    dy[:, -1] = rng.normal(size=(3, 6))
    layer.zero_grad()
    dx_seq = layer.backward(dy)
    g_seq = [p.grad.copy() for p in layer.parameters()]
    layer.forward(x)
    layer.zero_grad()
    final = dy[:, -1] if cls is nn.RNN else (dy[:, -1], None)
    dx_fin = layer.backward(None, final)
    numpy.testing.assert_allclose(dx_fin, dx_seq, rtol=1e-12)
    for p, g in zip(layer.parameters(), g_seq):
        numpy.testing.assert_allclose(p.grad, g, rtol=1e-12)
    assert numpy.abs(dx_seq[:, 0]).max() > 0   # the gradient reached the first step


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM])
def test_stateful_carries_state_and_truncates_gradient(cls):
    layer, x, rng = make(cls, numpy, n=2, t=8, f=3, size=4, seed=5)
    full = layer.forward(x)
    dy = rng.normal(size=full.shape)
    layer.zero_grad()
    layer.backward(dy)
    full_grads = [p.grad.copy() for p in layer.parameters()]

    layer.stateful = True
    layer.reset_state()
    first = layer.forward(x[:, :4])
    carried = layer.state
    second = layer.forward(x[:, 4:])
    numpy.testing.assert_allclose(numpy.concatenate([first, second], axis=1), full, rtol=1e-12)
    layer.zero_grad()
    layer.backward(dy[:, 4:])
    truncated = [p.grad.copy() for p in layer.parameters()]

    # The same as a fresh pass over the second half from the carried state taken as a constant ...
    fresh = cls(3, 4, dtype=numpy.float64)
    for p, q in zip(fresh.parameters(), layer.parameters()):
        p.data[...] = q.data
    fresh.forward(x[:, 4:], carried)
    fresh.backward(dy[:, 4:])
    for p, g in zip(fresh.parameters(), truncated):
        numpy.testing.assert_allclose(p.grad, g, rtol=1e-12)
    # ... and not the full BPTT gradient: nothing flowed back into the first half.
    assert not numpy.allclose(truncated[1], full_grads[1])
    layer.reset_state()
    numpy.testing.assert_allclose(layer.forward(x[:, 4:]), fresh.forward(x[:, 4:]), rtol=1e-12)


def test_stateful_batch_size_change_is_a_clear_error():
    layer = nn.LSTM(3, 4, stateful=True)
    layer.forward(numpy.zeros((2, 5, 3), numpy.float32))
    with pytest.raises(ValueError, match=r"LSTM\(3, 4.*\(5, 4\).*reset_state"):
        layer.forward(numpy.zeros((5, 5, 3), numpy.float32))
    layer.reset_state()
    assert layer.forward(numpy.zeros((5, 5, 3), numpy.float32)).shape == (5, 5, 4)


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM])
def test_bad_inputs_give_clear_errors(cls):
    layer = cls(3, 4)
    with pytest.raises(ValueError, match=r"rank 3.*\(N, T, 3\).*\(2, 3\)"):
        layer.forward(numpy.zeros((2, 3), numpy.float32))
    with pytest.raises(ValueError, match=r"\(N, T, 3\).*\(2, 5, 7\)"):
        layer.forward(numpy.zeros((2, 5, 7), numpy.float32))
    with pytest.raises(TypeError, match="dtype float64"):
        layer.forward(numpy.zeros((2, 5, 3)))
    with pytest.raises(TypeError, match="floating-point"):
        layer.forward(numpy.zeros((2, 5, 3), numpy.int64))
    with pytest.raises(ValueError, match="empty"):
        layer.forward(numpy.zeros((2, 0, 3), numpy.float32))
    bad = numpy.zeros((2, 5), numpy.float32)
    with pytest.raises((ValueError, TypeError), match=r"\(2, 5\)|state"):
        layer.forward(numpy.zeros((2, 5, 3), numpy.float32), bad if cls is nn.RNN else (bad, bad))
    with pytest.raises(RuntimeError, match="before forward"):
        cls(3, 4).backward(numpy.zeros((2, 5, 4), numpy.float32))
    layer.forward(numpy.zeros((2, 5, 3), numpy.float32))
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(2, 5, 4\)"):
        layer.backward(numpy.zeros((2, 4, 4), numpy.float32))


def test_lstm_state_must_be_a_pair():
    layer = nn.LSTM(3, 4)
    with pytest.raises(TypeError, match=r"\(h0, c0\)"):
        layer.forward(numpy.zeros((2, 5, 3), numpy.float32), numpy.zeros((2, 4), numpy.float32))


def test_clipping_and_training_reduce_a_loss():
    """A tiny end-to-end check: LSTM + Dense fit a short sequence-sum target with clip_grad_norm in the loop."""
    rng = numpy.random.default_rng(0)
    lstm, head = nn.LSTM(1, 8, rng=rng), nn.Dense(8, 1, rng=rng)
    params = lstm.parameters() + head.parameters()
    opt = optim.Adam(params, lr=0.02)
    x = rng.uniform(-1, 1, (32, 6, 1)).astype(numpy.float32)
    y = x.sum(axis=1) / 3
    mse = nn.MSELoss()
    losses = []
    for _ in range(60):
        opt.zero_grad()
        hs = lstm.forward(x)
        loss = mse.forward(head.forward(hs[:, -1]), y)
        dh_last = head.backward(mse.backward())
        lstm.backward(None, (dh_last, None))
        norm = float(optim.clip_grad_norm(params, 1.0))
        assert numpy.isfinite(norm)
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]


def test_gates_use_the_functional_step(monkeypatch):
    """The layer goes through functional's time loops, whose steps are lstm_step / lstm_step_backward (where the
    fused kernel lives); on the NumPy reference, since the CPU kernels run each loop as one kernel
    (tests/test_cpu_lstm_loops.py)."""
    from gpudl.functional import dispatch
    from gpudl.functional import lstm as functional
    monkeypatch.setattr(dispatch, "use_cpu_kernels", False)
    calls = []
    step, step_back = functional.lstm_step, functional.lstm_step_backward
    monkeypatch.setattr(functional, "lstm_step", lambda *a, **k: calls.append("f") or step(*a, **k))
    monkeypatch.setattr(functional, "lstm_step_backward", lambda *a, **k: calls.append("b") or step_back(*a, **k))
    layer, x, _ = make(nn.LSTM, numpy, t=4)
    layer.backward(layer.forward(x))
    assert calls == ["f"] * 4 + ["b"] * 4


def test_lstm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = numpy.random.default_rng(7)
    n, t, f, size = 3, 7, 5, 4
    layer = nn.LSTM(f, size, dtype=numpy.float64, rng=rng)
    layer.b.data[...] = rng.normal(0, 0.5, 4 * size)
    ref = torch.nn.LSTM(f, size, batch_first=True).double()
    with torch.no_grad():   # torch keeps W as (4H, in) and two biases; same i, f, g, o order
        ref.weight_ih_l0.copy_(torch.from_numpy(layer.W_x.data.T.copy()))
        ref.weight_hh_l0.copy_(torch.from_numpy(layer.W_h.data.T.copy()))
        ref.bias_ih_l0.copy_(torch.from_numpy(layer.b.data.copy()))
        ref.bias_hh_l0.zero_()
    x = rng.normal(size=(n, t, f))
    h0, c0 = rng.normal(size=(n, size)), rng.normal(size=(n, size))
    dy, dhT, dcT = rng.normal(size=(n, t, size)), rng.normal(size=(n, size)), rng.normal(size=(n, size))

    y = layer.forward(x, (h0, c0))
    dx = layer.backward(dy, (dhT, dcT))

    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(h0[None], requires_grad=True)
    tc0 = torch.tensor(c0[None], requires_grad=True)
    ty, (thT, tcT) = ref(tx, (th0, tc0))
    ((ty * torch.from_numpy(dy)).sum() + (thT[0] * torch.from_numpy(dhT)).sum()
     + (tcT[0] * torch.from_numpy(dcT)).sum()).backward()

    close = dict(rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(y, ty.detach().numpy(), **close)
    numpy.testing.assert_allclose(layer.state[0], thT[0].detach().numpy(), **close)
    numpy.testing.assert_allclose(layer.state[1], tcT[0].detach().numpy(), **close)
    numpy.testing.assert_allclose(dx, tx.grad.numpy(), **close)
    numpy.testing.assert_allclose(layer.state_grad[0], th0.grad[0].numpy(), **close)
    numpy.testing.assert_allclose(layer.state_grad[1], tc0.grad[0].numpy(), **close)
    numpy.testing.assert_allclose(layer.W_x.grad, ref.weight_ih_l0.grad.numpy().T, **close)
    numpy.testing.assert_allclose(layer.W_h.grad, ref.weight_hh_l0.grad.numpy().T, **close)
    numpy.testing.assert_allclose(layer.b.grad, ref.bias_ih_l0.grad.numpy(), **close)


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM])
def test_float32_on_device_matches_float64_on_cpu(cls, xp):
    """The same float32 layer forward and backward on xp agrees with the float64 NumPy computation."""
    layer64, x64, rng = make(cls, numpy, n=4, t=9, f=5, size=7, seed=11)
    dy = rng.normal(size=(4, 9, 7))
    y64 = layer64.forward(x64)
    dx64 = layer64.backward(dy)
    layer32 = cls(5, 7)
    for p, q in zip(layer32.parameters(), layer64.parameters()):
        p.data[...] = q.data
    layer32.to("cuda" if xp.__name__ == "cupy" else "cpu")
    y32 = layer32.forward(xp.asarray(x64, dtype=xp.float32))
    dx32 = layer32.backward(xp.asarray(dy, dtype=xp.float32))
    numpy.testing.assert_allclose(gpudl.to_numpy(y32), y64, rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(gpudl.to_numpy(dx32), dx64, rtol=1e-4, atol=1e-5)
    for p, q in zip(layer32.parameters(), layer64.parameters()):
        numpy.testing.assert_allclose(gpudl.to_numpy(p.grad), q.grad, rtol=1e-4, atol=1e-4)
