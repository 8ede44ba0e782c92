"""Our CUDA kernels: the sources in this folder (im2col.cu, pooling.cu, lstm.cu, optim.cu, softmax.cu,
elementwise.cu, reduce.cu, and the header common.cuh they share), compiled at run time by CuPy; matrix products
through cuBLAS (blas.py); a convolution each way in one call (conv.py); tables of arrays for one launch over several
(tables.py); recording and replaying a whole step (graph.py), or a loop in eager use (loops.py).

loader.py compiles, checks and launches; one module per .cu file wraps its kernels as ops. Each op takes and returns
cupy arrays and gives the results of the NumPy path of the same name in gpudl.functional, which calls it when its
input takes the kernel path (gpudl.functional.dispatch).
"""
from .conv import conv2d, conv2d_backward
from .im2col import col2im, im2col
from .loader import COMMON_HEADER, KERNEL_DIR, read_source
from .lstm import lstm_step, lstm_step_backward
from .optim import adam_scalars, adam_step, adam_steps, sgd_step, sgd_steps
from .pooling import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from .softmax import softmax_cross_entropy
from .elementwise import (activation, activation_backward, add_bias, bias_activation, copy, fill, fill_all, mse,
                          one_hot, swap01)
from .blas import gemm
from .reduce import activation_backward_sum, clip_by_global_norm, scaled_sum, sum_axes
from .loops import replayed
from . import graph
