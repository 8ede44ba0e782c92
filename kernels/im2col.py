"""The ops of im2col.cu: im2col and its adjoint col2im, on NCHW images."""
from ..backend import get_array_module
from ..geometry import window_output
from .loader import launch, real_input, window_ints, window_variant


def im2col(x, kh, kw, sh, sw, pads, fill=0.0):
    """col (N, C, KH, KW, OH, OW) from x (N, C, H, W); padded cells read `fill`. pads = (top, bottom, left, right)."""
    x = real_input(x, "im2col: x", 4)
    n, c = x.shape[:2]
    oh, ow = window_output("im2col", x.shape, kh, kw, sh, sw, pads)
    col = get_array_module(x).empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    window = (kh, kw, oh, ow, sh, sw, pads)
    launch("im2col.cu", window_variant("im2col", x.shape, *window, (x.size, col.size)), col.size,
           (x, col) + window_ints(x.shape, *window) + (x.dtype.type(fill),))
    return col


def col2im(col, h, w, sh, sw, pads):
    """Image (N, C, H, W) where each cell sums the column entries that read it (the adjoint of im2col)."""
    col = real_input(col, "col2im: col", 6)
    n, c, kh, kw, oh, ow = col.shape
    if (oh, ow) != window_output("col2im", (n, c, h, w), kh, kw, sh, sw, pads):
        raise ValueError(f"col2im: col of shape {tuple(col.shape)} does not fit an image {h}x{w} with strides "
                         f"{sh}x{sw} and pads {tuple(pads)}")
    img = get_array_module(col).empty((n, c, h, w), dtype=col.dtype)
    window = (kh, kw, oh, ow, sh, sw, pads)
    launch("im2col.cu", window_variant("col2im", img.shape, *window, (col.size, img.size)), img.size,
           (col, img) + window_ints(img.shape, *window))
    return img
