"""The geometry of sliding windows over NCHW images (convolution and pooling), said once for every layer above.

Per spatial axis, a window of `kernel` cells moves by `stride` over an axis of `size` cells padded with `before` and
`after` cells: it takes floor((size + before + after - kernel) / stride) + 1 positions. Pads travel as one tuple
(top, bottom, left, right). A layer describes its windows over one input by a `Window`, checked once where it is made
and passed whole to every op below.
"""
import math
from dataclasses import dataclass

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


# -- the window value ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """KH x KW windows moved by (SH, SW) over an H x W image padded by (top, bottom, left, right): OH x OW of them.

    Made (and checked) once where a layer meets its input, by `Window.of`; every window op below takes it whole,
    the NumPy path and the kernels alike. The bottom and right pads only show in OH and OW.
    """
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    top: int
    bottom: int
    left: int
    right: int
    oh: int
    ow: int

    @property
    def pads(self):
        """(top, bottom, left, right)."""
        return self.top, self.bottom, self.left, self.right

    @property
    def padded_hw(self):
        """The height and width of the padded image."""
        return self.h + self.top + self.bottom, self.w + self.left + self.right

    @classmethod
    def of(cls, x_shape, kernel, strides, padding, what="window", pooling=False):
        """The window of a layer (kernel size, strides: ints or pairs; padding: "valid", "same" or an int) over
        images of shape (N, C, H, W), or a TypeError/ValueError naming `what`.

        pooling: each window must also hold a real cell (pads smaller than the window).
        """
        (kh, kw), (sh, sw), padding = check_window_args(what, kernel, strides, padding)
        h, w = x_shape[-2:]
        pads = pad_amounts(h, kh, sh, padding) + pad_amounts(w, kw, sw, padding)
        return cls.with_pads(x_shape, (kh, kw), (sh, sw), pads, what, pooling)

    @classmethod
    def with_pads(cls, x_shape, kernel, strides, pads, what="window", pooling=False):
        """The window with explicit pads (top, bottom, left, right), checked like `of`."""
        (kh, kw), (sh, sw) = kernel, strides
        h, w = x_shape[-2:]
        top, bottom, left, right = pads
        if min(kh, kw, sh, sw) < 1 or min(pads) < 0:
            raise ValueError(f"{what}: window {kh}x{kw}, strides {sh}x{sw} and pads {tuple(pads)} must be positive "
                             f"(pads non-negative)")
        if pooling and (max(top, bottom) >= kh or max(left, right) >= kw):
            raise ValueError(f"{what}: padding {tuple(pads)} must be smaller than the pool size {kh}x{kw}")
        if h + top + bottom < kh or w + left + right < kw:
            raise ValueError(f"{what}: kernel {kh}x{kw} is larger than the padded input {h + top + bottom}x"
                             f"{w + left + right} (input shape {tuple(x_shape)})")
        oh, ow = output_hw(h, w, kh, kw, sh, sw, pads)
        return cls(h, w, kh, kw, sh, sw, top, bottom, left, right, oh, ow)

    def check_input(self, what, x_shape):
        """A ValueError naming `what` unless images of x_shape (N, C, H, W) are the ones this window was made for."""
        if len(x_shape) != 4 or tuple(x_shape[2:]) != (self.h, self.w):
            raise ValueError(f"{what}: an array of shape {tuple(x_shape)} does not fit a window over {self.h}x"
                             f"{self.w} images")

    def check_output(self, what, name, y_shape, x_shape):
        """A ValueError naming `what` unless `name` of y_shape is (N, C, OH, OW) for the images of x_shape."""
        expected = (x_shape[0], x_shape[1], self.oh, self.ow)
        if tuple(y_shape) != expected:
            raise ValueError(f"{what}: {name} has shape {tuple(y_shape)}, expected {expected} for input shape "
                             f"{tuple(x_shape)}")


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


# -- padded images and window views -------------------------------------------------------------------------------

def padded(x, window, fill):
    """x (N, C, H, W) with `fill` added around it by the window's pads."""
    if not any(window.pads):
        return x
    return get_array_module(x).pad(x, ((0, 0), (0, 0), (window.top, window.bottom), (window.left, window.right)),
                                   mode="constant", constant_values=fill)


def blank_padded(n, c, window, xp, dtype):
    """A zero image (N, C, H, W) plus the window's padding, to gather window contributions into."""
    return xp.zeros((n, c) + window.padded_hw, dtype=dtype)


def unpadded(img, window):
    """The H x W interior of a padded image."""
    return img[:, :, window.top:window.top + window.h, window.left:window.left + window.w]


def window_views(img, window):
    """For each window offset (i, j), the strided view v of the padded image with
    v[n, c, p, q] = img[n, c, p*SH + i, q*SW + j].

    Yields (i * KW + j, v): the offset's row-major index within the window, and a view that writes through to img.
    """
    sh, sw, oh, ow = window.sh, window.sw, window.oh, window.ow
    for i in range(window.kh):
        for j in range(window.kw):
            yield i * window.kw + j, img[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
