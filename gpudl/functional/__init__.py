"""The math of every layer, written once against `xp` (numpy or cupy).

Each op that has kernels runs the kernel set of its array, chosen by one seam (dispatch.kernels_for: the CUDA kernels
for cupy arrays, the CPU kernels compiled by Numba for numpy arrays), and keeps beside them a short NumPy reference,
the lecture's math, which runs where no kernel set applies. Nothing outside this package branches on the device.
"""
from .activations import (FUSABLE, activate, activate_backward, check_slope, relu, relu_backward, sigmoid,
                          sigmoid_backward, sign, sign_backward, softplus, softplus_backward, step, step_backward, tanh,
                          tanh_backward)
from .arrays import (add_into, all_finite, copied, copy_into, fill_, one_hot_rows, swap01, value_checks,
                     value_checks_enabled, zeros)
from .conv import col2im, conv2d, conv2d_activation, conv2d_activation_backward, conv2d_backward, im2col
from .host_memory import keep_freed_memory, keep_freed_memory_if_asked
from .linear import (dense, dense_activation, dense_activation_backward, dense_backward, matmul, matmul_add,
                     transpose_for_products)
from .losses import log_softmax, mse, one_hot, softmax, softmax_cross_entropy, softmax_cross_entropy_labels
from .lstm import lstm_backward_loop, lstm_forward_loop, lstm_step, lstm_step_backward
from .pooling import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from .rnn import rnn_step, rnn_step_backward

keep_freed_memory_if_asked()    # GPUDL_KEEP_FREED_MEMORY=1 asks for the malloc setting at import; else nothing
