"""The CPU kernels: Numba-compiled twins of the CUDA kernels in gpudl.kernels, one module per concern named as its
twin (im2col, conv, pooling, elementwise, reduce, softmax, lstm, loops, optim), products through NumPy's own BLAS
(blas.py), compiling, caching and threads in loader.py.

Each op takes and returns numpy arrays, has the name and signature of its CUDA twin and gives the results of the
NumPy reference of the same name in gpudl.functional, which calls it for numpy arrays (gpudl.functional.dispatch).
Importing this package imports numba and binds NumPy's BLAS: an ImportError says the CPU kernels cannot run here.
"""
from .blas import gemm
from .conv import conv2d, conv2d_backward
from .elementwise import (activation, activation_backward, add_bias, bias_activation, copy, fill, fill_all, mse,
                          swap01)
from .im2col import col2im, im2col
from .loader import cache_report, compile_seconds
from .loops import replayed
from .lstm import lstm_step, lstm_step_backward
from .optim import adam_scalars, adam_step, adam_steps, sgd_step, sgd_steps
from .pooling import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from .reduce import activation_backward_sum, clip_by_global_norm, scaled_sum, sum_axes
from .softmax import softmax_cross_entropy
from . import loader

__all__ = ["activation", "activation_backward", "activation_backward_sum", "adam_scalars", "adam_step", "adam_steps",
           "add_bias", "avg_pool2d", "avg_pool2d_backward", "bias_activation", "cache_report", "clip_by_global_norm",
           "col2im", "compile_seconds", "conv2d", "conv2d_backward", "copy", "fill", "fill_all", "gemm", "im2col",
           "lstm_step", "lstm_step_backward", "max_pool2d", "max_pool2d_backward", "mse", "replayed", "scaled_sum",
           "sgd_step", "sgd_steps", "softmax_cross_entropy", "sum_axes", "swap01"]
