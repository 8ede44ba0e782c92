"""Output sizes and padding of sliding windows (convolution and pooling), per spatial axis."""
import math

PADDING_MODES = ("valid", "same")


def pair(value, name):
    """An int or a pair of ints as a pair (used for kernel sizes and strides)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def check_padding(padding):
    """Reject anything but 'valid', 'same' or a non-negative int."""
    if isinstance(padding, str):
        if padding.lower() not in PADDING_MODES:
            raise ValueError(f"unknown padding {padding!r}: expected 'valid', 'same' or a non-negative int")
        return padding.lower()
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return padding
    raise ValueError(f"padding must be 'valid', 'same' or a non-negative int, got {padding!r}")


def pad_amounts(size, kernel, stride, padding):
    """(before, after): cells added at the top/left and bottom/right of one axis.

    "valid" adds none; an int p adds p on both sides; "same" follows TensorFlow: the output has ceil(size / stride)
    cells and any odd cell of padding goes to the bottom/right (for stride 1 that is floor(k/2) before and
    k - 1 - floor(k/2) after; the slides' floor(k/2)+1 is a slip).
    """
    padding = check_padding(padding)
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2
    return padding, padding


def output_size(size, kernel, stride, before, after):
    """Number of window positions along one axis: floor((size + before + after - kernel) / stride) + 1."""
    return (size + before + after - kernel) // stride + 1
