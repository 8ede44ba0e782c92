"""The ops of im2col.cu: im2col and its adjoint col2im, on NCHW images, over a geometry.Window."""
from ..backend import get_array_module
from .loader import launch, real_input, runs, window_ints, window_variant


def im2col(x, window, fill=0.0):
    """col (N, C, KH, KW, OH, OW) from x (N, C, H, W); padded cells read `fill`."""
    x = real_input(x, "im2col: x", 4)
    window.check_input("im2col", x.shape)
    n, c = x.shape[:2]
    col = get_array_module(x).empty((n, c, window.kh, window.kw, window.oh, window.ow), dtype=x.dtype)
    launch("im2col.cu", window_variant("im2col", n, c, window, (x.size, col.size)), runs(col.size, x.dtype),
           (x, col) + window_ints(n, c, window) + (x.dtype.type(fill),))
    return col


def col2im(col, window):
    """Image (N, C, H, W) where each cell sums the column entries that read it (the adjoint of im2col)."""
    col = real_input(col, "col2im: col", 6)
    n, c = col.shape[:2]
    if tuple(col.shape[2:]) != (window.kh, window.kw, window.oh, window.ow):
        raise ValueError(f"col2im: col of shape {tuple(col.shape)} does not fit {window}")
    img = get_array_module(col).empty((n, c, window.h, window.w), dtype=col.dtype)
    launch("im2col.cu", window_variant("col2im", n, c, window, (col.size, img.size)), runs(img.size, col.dtype),
           (col, img) + window_ints(n, c, window))
    return img
