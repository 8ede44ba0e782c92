"""One vanilla RNN time step (lecture eqs. 35-37) and its backward.

h_t = tanh(a_t),  a_t = x_t W_x + b + h_{t-1} W_h   (nn.RNN adds h_{t-1} W_h into a_t before the step).
Backward: da_t = dh_t (1 - h_t^2),  dh_{t-1} += da_t W_h^T. The product of these step Jacobians over t - k steps is
what makes dL_t/dh_k vanish or explode (gpudl.experiments.gradients multiplies them out).

Both write into a given array (out=), so nn.RNN's time loop allocates nothing; on the kernel path each is one launch.
"""
from .activations import tanh, tanh_backward


def rnn_step(a, out=None):
    """h_t = tanh(a_t) for the pre-activations a (N, H); out: h_t's buffer."""
    return tanh(a, out=out)


def rnn_step_backward(dh, h, out=None):
    """da_t = dh_t (1 - h_t^2) from dL/dh_t (N, H) and the step's output h_t; out: da_t's buffer."""
    return tanh_backward(h, dh, out=out)
