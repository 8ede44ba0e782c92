"""Naive loop implementations: the definitions, written the slow and obvious way, to test the fast paths against."""
import numpy as np

from gpudl.geometry import Window, pad_amounts


def window(x_shape, kernel, strides, pads):
    """The checked Window of kernel and strides (pairs) with explicit pads over images of x_shape."""
    return Window.with_pads(x_shape, kernel, strides, pads)


def pads_of(h, w, kernel, strides, padding):
    top, bottom = pad_amounts(h, kernel[0], strides[0], padding)
    left, right = pad_amounts(w, kernel[1], strides[1], padding)
    return top, bottom, left, right


def conv2d(x, W, b, strides, padding):
    """y[n,f,p,q] = b[f] + sum_{c,i,j} W[f,c,i,j] x[n, c, p*sh + i - top, q*sw + j - left] (zero outside)."""
    n, c, h, w = x.shape
    f, _, kh, kw = W.shape
    sh, sw = strides
    top, bottom, left, right = pads_of(h, w, (kh, kw), strides, padding)
    oh = (h + top + bottom - kh) // sh + 1
    ow = (w + left + right - kw) // sw + 1
    y = np.zeros((n, f, oh, ow))
    for p in range(oh):
        for q in range(ow):
            for i in range(kh):
                for j in range(kw):
                    r, s = p * sh + i - top, q * sw + j - left
                    if 0 <= r < h and 0 <= s < w:
                        y[:, :, p, q] += x[:, :, r, s] @ W[:, :, i, j].T
    return y + b[None, :, None, None]


def pool2d(x, kernel, strides, padding, reduce):
    """Max or mean over the real (unpadded) cells of each window."""
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    top, bottom, left, right = pads_of(h, w, kernel, strides, padding)
    oh = (h + top + bottom - kh) // sh + 1
    ow = (w + left + right - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for p in range(oh):
        for q in range(ow):
            r0, s0 = p * sh - top, q * sw - left
            window = x[:, :, max(r0, 0):min(r0 + kh, h), max(s0, 0):min(s0 + kw, w)]
            y[:, :, p, q] = window.max(axis=(2, 3)) if reduce == "max" else window.mean(axis=(2, 3))
    return y
