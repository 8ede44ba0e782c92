"""One vanilla RNN time step (lecture eqs. 35-37) and its backward.

h_t = tanh(a_t),  a_t = x_t W_x + b + h_{t-1} W_h  (x_t W_x + b arrives precomputed for all t as `xw`).
Backward: da_t = dh_t (1 - h_t^2),  dh_{t-1} = da_t W_h^T: the product of these Jacobians over t - k steps is
what makes dL_t/dh_k vanish or explode.

These are the one-step reference; nn.RNN computes the same inside its time loop in place (matmul_add into its
buffer of x_t W_x + b, tanh written into the hidden-state buffer), so a step allocates nothing.
"""
from .activations import tanh, tanh_backward


def rnn_step(xw, h_prev, W_h):
    """h_t (N, H) from xw = x_t W_x + b (N, H), h_{t-1} (N, H) and W_h (H, H)."""
    return tanh(xw + h_prev @ W_h)


def rnn_step_backward(dh, h, W_h):
    """(da_t, dh_{t-1}) from dL/dh_t (N, H), the step's output h_t and W_h."""
    da = tanh_backward(h, dh)
    return da, da @ W_h.T
