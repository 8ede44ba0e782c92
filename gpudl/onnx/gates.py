"""gpudl's recurrent weights <-> the ONNX RNN and LSTM operators' weights.

gpudl: a_t = x_t W_x + h_{t-1} W_h + b with W_x (in, G*H), W_h (H, G*H), b (G*H,), LSTM gate blocks i, f, g, o.
ONNX:  a_t = x_t W^T + h_{t-1} R^T + Wb + Rb with W [1, G*H, in], R [1, G*H, H], B = [Wb, Rb] [1, 2*G*H], LSTM gate
blocks i, o, f, c (c is gpudl's g, the candidate C~). The export puts gpudl's b in Wb and zeros in Rb; the import
adds Wb and Rb.
"""
import numpy

# ONNX's block k holds gpudl's block ONNX_ORDER[k]: i, o, f, c <- i (0), o (3), f (1), g (2).
LSTM_ORDER = (0, 3, 1, 2)
RNN_ORDER = (0,)


def _reorder(matrix, order):
    """Regroup the gate blocks along the last axis of a (rows, G*H) matrix."""
    blocks = numpy.split(matrix, len(order), axis=-1)
    return numpy.concatenate([blocks[k] for k in order], axis=-1)


def _restore(matrix, order):
    """The inverse of _reorder."""
    blocks = numpy.split(matrix, len(order), axis=-1)
    restored = [None] * len(order)
    for onnx_k, gpudl_k in enumerate(order):
        restored[gpudl_k] = blocks[onnx_k]
    return numpy.concatenate(restored, axis=-1)


def to_onnx(W_x, W_h, b, order):
    """(W, R, B) in the ONNX operator's layout from gpudl's (W_x, W_h, b), numpy arrays."""
    W = _reorder(W_x, order).T[None]
    R = _reorder(W_h, order).T[None]
    Wb = _reorder(b[None], order)
    return numpy.ascontiguousarray(W), numpy.ascontiguousarray(R), numpy.concatenate([Wb, numpy.zeros_like(Wb)], 1)


def from_onnx(W, R, B, order):
    """gpudl's (W_x, W_h, b) from the ONNX operator's (W, R, B); B may be None (no bias)."""
    W_x = _restore(W[0].T, order)
    W_h = _restore(R[0].T, order)
    width = W.shape[1]
    bias = numpy.zeros(width, dtype=W.dtype) if B is None else B[0, :width] + B[0, width:]
    return W_x, W_h, _restore(bias[None], order)[0]
