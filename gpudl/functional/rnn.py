"""The backward of one vanilla RNN time step (lecture eqs. 35-37), the Jacobian of the vanishing-gradient experiment.

h_t = tanh(a_t),  a_t = x_t W_x + b + h_{t-1} W_h.
Backward: da_t = dh_t (1 - h_t^2),  dh_{t-1} = da_t W_h^T: the product of these Jacobians over t - k steps is
what makes dL_t/dh_k vanish or explode (gpudl.experiments.gradients multiplies them out). nn.RNN computes the same
inside its time loop in place, so a step allocates nothing.
"""
from .activations import tanh_backward


def rnn_step_backward(dh, h, W_h):
    """(da_t, dh_{t-1}) from dL/dh_t (N, H), the step's output h_t and W_h."""
    da = tanh_backward(h, dh)
    return da, da @ W_h.T
