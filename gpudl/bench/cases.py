"""The registry: every benchmark case at quick (CI) or full sizes, gathered from the modules that build them.

    layer_cases   Dense, Conv2D, pooling (fwd and fwd+bwd), im2col and col2im, bias-gradient sums
    lstm_cases    the LSTM gates, one cell step, a whole sequence
    model_cases   whole training steps beside their PyTorch twins
    startup       a fresh process up to its first training step
    distributed_cases  the allreduce of LeNet-5's gradients (data-parallel training)
"""
from .distributed_cases import allreduce_cases
from .layer_cases import bias_gradient_cases, conv_cases, dense_cases, pool_cases, unroll_cases
from .lstm_cases import lstm_cell_cases, lstm_gate_cases, lstm_sequence_cases
from .model_cases import char_lstm_cases, lenet_cases, xor_cases
from .startup import startup_cases


def all_cases(quick=False):
    """Every case, at quick sizes (what CI runs) or full sizes (the figures the targets speak of).

    The largest shapes run on the GPU alone; the CPU gets a smaller batch of the same shape, also timed on the GPU
    so the GPU-vs-CPU speedup has a pair to compare.
    """
    gpu = ("cuda",)
    if quick:
        return [
            *dense_cases(64, 256, 256),
            *conv_cases(16, 1, 6, 5, 28, "same", label="lenet c1 "),
            *conv_cases(16, 6, 16, 5, 14, "valid", label="lenet c3 "),
            *conv_cases(1, 64, 64, 3, 28, "same"),
            *pool_cases("max", 4, 16, 56, 2), *pool_cases("avg", 4, 16, 56, 2),
            *unroll_cases(1, 64, 28, 3),
            *lstm_gate_cases(16, 64), *lstm_cell_cases(16, 32, 64), *lstm_sequence_cases(8, 16, 16, 32),
            *xor_cases(), *lenet_cases([16]), *char_lstm_cases(8, 16, 16, 32),
            *startup_cases(), *allreduce_cases(),
        ]
    return [
        *dense_cases(1024, 1024, 1024),
        *conv_cases(64, 1, 6, 5, 28, "same", label="lenet c1 "),
        *conv_cases(64, 6, 16, 5, 14, "valid", label="lenet c3 "),
        *conv_cases(64, 64, 64, 3, 56, "same", devices=gpu), *conv_cases(16, 64, 64, 3, 56, "same"),
        *pool_cases("max", 64, 64, 112, 2, devices=gpu), *pool_cases("max", 16, 64, 112, 2),
        *pool_cases("avg", 64, 64, 112, 2, devices=gpu), *pool_cases("avg", 16, 64, 112, 2),
        *unroll_cases(64, 64, 56, 3, devices=gpu), *unroll_cases(16, 64, 56, 3),
        *bias_gradient_cases(1024, 6, 28 * 28, "lenet5 b1024 conv1"),
        *bias_gradient_cases(64 * 128, 4 * 256, 1, "lstm b64 T128 H256"),
        *lstm_gate_cases(64, 256), *lstm_cell_cases(64, 128, 256), *lstm_sequence_cases(64, 128, 128, 256),
        *xor_cases(), *lenet_cases([64, 256, 1024]), *char_lstm_cases(64, 64, 64, 256),
        *startup_cases(), *allreduce_cases(),
    ]
