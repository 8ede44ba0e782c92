"""The geometry of sliding windows over NCHW images (convolution and pooling), said once for every layer above.

Per spatial axis, a window of `kernel` cells moves by `stride` over an axis of `size` cells padded with `before` and
`after` cells: it takes floor((size + before + after - kernel) / stride) + 1 positions. Pads travel as one tuple
(top, bottom, left, right). The checks here raise the errors that name a bad window argument, for the layers in nn and
for the kernel launches alike.
"""
import math

from .backend import get_array_module

PADDING_MODES = ("valid", "same", "same_lower")


def pair(value, name):
    """An int or a pair of ints as a pair (used for kernel sizes and strides)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def check_padding(padding):
    """Reject anything but 'valid', 'same', 'same_lower' or a non-negative int."""
    if isinstance(padding, str):
        if padding.lower() not in PADDING_MODES:
            raise ValueError(f"unknown padding {padding!r}: expected 'valid', 'same', 'same_lower' or a "
                             f"non-negative int")
        return padding.lower()
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return padding
    raise ValueError(f"padding must be 'valid', 'same', 'same_lower' or a non-negative int, got {padding!r}")


def pad_amounts(size, kernel, stride, padding):
    """(before, after): cells added at the top/left and bottom/right of one axis.

    "valid" adds none; an int p adds p on both sides; "same" follows TensorFlow: the output has ceil(size / stride)
    cells and any odd cell of padding goes to the bottom/right (for stride 1 that is floor(k/2) before and
    k - 1 - floor(k/2) after; the slides' floor(k/2)+1 is a slip). "same_lower" is ONNX's SAME_LOWER: the same
    output size with the odd cell at the top/left.
    """
    padding = check_padding(padding)
    if padding == "valid":
        return 0, 0
    if isinstance(padding, int):
        return padding, padding
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if padding == "same" else (large, small)


def output_size(size, kernel, stride, before, after):
    """Number of window positions along one axis: floor((size + before + after - kernel) / stride) + 1."""
    return (size + before + after - kernel) // stride + 1


def output_hw(h, w, kh, kw, sh, sw, pads):
    """(OH, OW): the window positions over an H x W image with pads (top, bottom, left, right)."""
    top, bottom, left, right = pads
    return output_size(h, kh, sh, top, bottom), output_size(w, kw, sw, left, right)


# -- the checks of window arguments -------------------------------------------------------------------------------

def check_window_args(name, kernel, strides, padding):
    """A window layer's kernel size, strides and padding, normalized, or an error naming `name`."""
    kernel = pair(kernel, f"{name}: kernel size")
    strides = pair(strides, f"{name}: strides")
    if min(kernel) < 1:
        raise ValueError(f"{name}: kernel size must be positive, got {kernel}")
    if min(strides) < 1:
        raise ValueError(f"{name}: strides must be positive, got {strides}")
    try:
        padding = check_padding(padding)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return kernel, strides, padding


def window_output(what, x_shape, kh, kw, sh, sw, pads):
    """(OH, OW) of KH x KW windows over images of shape (N, C, H, W), or a ValueError naming `what`."""
    h, w = x_shape[2], x_shape[3]
    top, bottom, left, right = pads
    if min(kh, kw, sh, sw) < 1 or min(pads) < 0:
        raise ValueError(f"{what}: window {kh}x{kw}, strides {sh}x{sw} and pads {tuple(pads)} must be positive "
                         f"(pads non-negative)")
    if h + top + bottom < kh or w + left + right < kw:
        raise ValueError(f"{what}: kernel {kh}x{kw} is larger than the padded input {h + top + bottom}x"
                         f"{w + left + right} (input shape {tuple(x_shape)})")
    return output_hw(h, w, kh, kw, sh, sw, pads)


def pool_output(what, x_shape, kh, kw, sh, sw, pads):
    """window_output for pooling, where each window must also hold a real cell: pads smaller than the window."""
    if max(pads[:2]) >= kh or max(pads[2:]) >= kw:
        raise ValueError(f"{what}: padding {tuple(pads)} must be smaller than the pool size {kh}x{kw}")
    return window_output(what, x_shape, kh, kw, sh, sw, pads)


def window_pads(what, x_shape, kernel, strides, padding, check=window_output):
    """Pads (top, bottom, left, right) of a window layer's padding mode, checked by `check` to fit x_shape.

    `what` names the layer in an error (a layer itself will do: it is formatted only when an error is raised).
    """
    (kh, kw), (sh, sw) = kernel, strides
    pads = pad_amounts(x_shape[2], kh, sh, padding) + pad_amounts(x_shape[3], kw, sw, padding)
    check(what, x_shape, kh, kw, sh, sw, pads)
    return pads


# -- padded images and window views -------------------------------------------------------------------------------

def padded(x, pads, fill):
    """x (N, C, H, W) with `fill` added around it: pads = (top, bottom, left, right)."""
    if not any(pads):
        return x
    top, bottom, left, right = pads
    return get_array_module(x).pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="constant",
                                   constant_values=fill)


def blank_padded(shape, pads, xp, dtype):
    """A zero image of shape (N, C, H, W) plus its padding, to gather window contributions into."""
    n, c, h, w = shape
    top, bottom, left, right = pads
    return xp.zeros((n, c, h + top + bottom, w + left + right), dtype=dtype)


def unpadded(img, h, w, pads):
    """The H x W interior of a padded image."""
    return img[:, :, pads[0]:pads[0] + h, pads[2]:pads[2] + w]


def window_views(img, kh, kw, sh, sw, oh, ow):
    """For each window offset (i, j), the strided view v of img with v[n, c, p, q] = img[n, c, p*sh + i, q*sw + j].

    Yields (i * kw + j, v): the offset's row-major index within the window, and a view that writes through to img.
    """
    for i in range(kh):
        for j in range(kw):
            yield i * kw + j, img[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
