"""LSTM cases: one step's gate arithmetic, one whole cell step, and nn.LSTM over a whole sequence."""
from .. import functional as F
from .. import nn
from .common import ALL_DEVICES, BYTES, fwd_and_bwd, gpudl_variant, rand, require_torch, torch_variant, trand
from .layer_cases import layer_build


def _torch_gates(torch, a, c_prev):
    i, f, g, o = a.chunk(4, 1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c_prev + i * g
    return o * torch.tanh(c), c


def lstm_gate_cases(n, h, devices=ALL_DEVICES):
    """functional.lstm_step (the fused gate kernel on a GPU) against the same expressions in PyTorch eager."""
    def build(dev, backward):
        a, c_prev = rand((n, 4 * h), dev), rand((n, h), dev, seed=1)
        dh, dc = rand((n, h), dev, seed=2), rand((n, h), dev, seed=3)
        return gpudl_variant(lambda: F.lstm_step(a, c_prev),
                             lambda out: F.lstm_step_backward(dh, dc, a, c_prev, out[1]), backward)

    def peer(dev, backward):
        torch = require_torch()
        a, c_prev = trand(torch, (n, 4 * h), dev, grad=backward), trand(torch, (n, h), dev, 1, grad=backward)
        dh, dc = trand(torch, (n, h), dev, 2), trand(torch, (n, h), dev, 3)
        return torch_variant(torch, lambda: _torch_gates(torch, a, c_prev), [a, c_prev], (dh, dc), backward)
    # forward reads a (4H) and c_prev, writes h and c; backward reads dh, dc, a, c_prev, c, writes da and dc_prev
    return fwd_and_bwd("lstm gates", f"b{n} H{h}", build, {"eager": peer}, devices,
                       bytes=(BYTES * n * h * 7, BYTES * n * h * 13))


def lstm_cell_cases(n, fin, h, devices=ALL_DEVICES):
    """One whole LSTM cell step: a = x W_x + h W_h + b (two GEMMs), the gates, and the backward of both."""
    def build(dev, backward):
        x, h0, c0 = rand((n, fin), dev), rand((n, h), dev, 1), rand((n, h), dev, 2)
        Wx, Wh, b = rand((fin, 4 * h), dev, 3, 0.1), rand((h, 4 * h), dev, 4, 0.1), rand((4 * h,), dev, 5)
        dh, dc = rand((n, h), dev, 6), rand((n, h), dev, 7)

        def forward():
            a = F.dense(x, Wx, b) + h0 @ Wh
            return a, F.lstm_step(a, c0)

        def backward_of(out):
            a, (_, c) = out
            da, _ = F.lstm_step_backward(dh, dc, a, c0, c)
            F.dense_backward(x, Wx, da)
            da @ Wh.T, h0.T @ da
        return gpudl_variant(forward, backward_of, backward)

    def peer(dev, backward):
        torch = require_torch()
        cell = torch.nn.LSTMCell(fin, h).to(dev)
        x, h0, c0 = (trand(torch, (n, fin), dev, 0, grad=backward), trand(torch, (n, h), dev, 1, grad=backward),
                     trand(torch, (n, h), dev, 2, grad=backward))
        dh, dc = trand(torch, (n, h), dev, 6), trand(torch, (n, h), dev, 7)
        return torch_variant(torch, lambda: cell(x, (h0, c0)), [x, h0, c0], (dh, dc), backward)
    flops = 2 * n * (fin + h) * 4 * h
    return fwd_and_bwd("lstm cell step", f"b{n} in{fin} H{h}", build, {"nn.LSTMCell": peer}, devices,
                       flops=(flops, 2 * flops))


def lstm_sequence_cases(n, t, fin, h, devices=ALL_DEVICES):
    """gpudl.nn.LSTM over a whole sequence against nn.LSTM (cuDNN on a GPU) and a Python loop over nn.LSTMCell."""
    def cudnn(dev, backward):
        torch = require_torch()
        lstm = torch.nn.LSTM(fin, h, batch_first=True).to(dev)
        x, dy = trand(torch, (n, t, fin), dev, grad=backward), trand(torch, (n, t, h), dev, 1)
        return torch_variant(torch, lambda: lstm(x)[0], [x], dy, backward)

    def cell_loop(dev, backward):
        torch = require_torch()
        cell = torch.nn.LSTMCell(fin, h).to(dev)
        x, dy = trand(torch, (n, t, fin), dev, grad=backward), trand(torch, (n, t, h), dev, 1)

        def forward():
            hs, state = [], None
            for step in range(t):
                state = cell(x[:, step], state)
                hs.append(state[0])
            return torch.stack(hs, 1)
        return torch_variant(torch, forward, [x], dy, backward)
    flops = 2 * n * t * (fin + h) * 4 * h
    return fwd_and_bwd("lstm seq", f"b{n} T{t} in{fin} H{h}", layer_build(lambda: nn.LSTM(fin, h), (n, t, fin)),
                       {"nn.LSTM": cudnn, "LSTMCell loop": cell_loop}, devices, flops=(flops, 2 * flops))
