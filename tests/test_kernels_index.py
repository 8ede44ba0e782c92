"""The index math of the window kernels: 32-bit and 64-bit entry points give the same bits, the wrapper picks the
32-bit one exactly when every size is below 2^31, and the 32-bit divider of common.cuh divides exactly.

The choice is tested on sizes around 2^31 without allocating them; both variants run on small arrays (the host build
of the .cu files, or a GPU), with INT32_LIMIT lowered to force the 64-bit one.
"""
import os

import numpy
import pytest
from cuda_host import build_library

from gpudl import functional as F
from gpudl.backend import to_numpy
from gpudl.geometry import Window
from gpudl.kernels import loader

LIMIT = 2 ** 31
DTYPES = [numpy.float32, numpy.float64]
# (H, W, kernel, strides, pads (top, bottom, left, right)): padding, asymmetric pads, stride > kernel, whole image
GEOMETRIES = [
    (5, 6, (3, 3), (1, 1), (1, 1, 1, 1)),
    (6, 5, (2, 2), (1, 1), (0, 1, 0, 1)),
    (7, 8, (3, 3), (2, 2), (1, 1, 0, 1)),
    (7, 7, (2, 2), (3, 3), (0, 0, 0, 0)),
    (6, 9, (1, 2), (2, 3), (0, 0, 0, 1)),
    (4, 5, (4, 5), (1, 1), (0, 0, 0, 0)),
]


def variant(x_shape=(1, 1, 8, 8), k=(2, 2), out=(4, 4), s=(2, 2), pads=(0, 0, 0, 0), counts=(64, 16)):
    n, c, h, w = x_shape
    return loader.window_variant("op", n, c, Window(h, w, *k, *s, *pads, *out), counts)


@pytest.mark.parametrize("change", [
    dict(counts=(LIMIT, 16)),                                  # the input has 2^31 elements
    dict(counts=(64, LIMIT)),                                  # the output has
    dict(x_shape=(LIMIT, 1, 1, 1)),                            # one size alone
    dict(x_shape=(1, 1, 8, LIMIT)),
    dict(out=(LIMIT, 1)),
    dict(s=(1, LIMIT)),                                        # a stride
    dict(k=(LIMIT, 1)),
    dict(x_shape=(1, 1, LIMIT - 2, 8), pads=(1, 1, 0, 0)),    # the padded height, not the height, reaches 2^31
    dict(x_shape=(1, 1, 8, LIMIT - 1), pads=(0, 0, 0, 1)),    # the padded width
])
def test_64_bit_from_2_to_the_31_on(change):
    assert variant() == "op"
    assert variant(**change) == "op_i64"
    below = {key: tuple(v - 1 if v >= LIMIT - 2 else v for v in value) for key, value in change.items()}
    assert variant(**below) == "op"                            # one less everywhere: 32 bits suffice


def test_every_wrapper_asks_for_its_variant(monkeypatch, kernel_path):
    """Each op launches `name` normally and `name_i64` once its sizes pass the limit (lowered here to 50)."""
    launched = []
    real_get_kernel = loader.get_kernel
    monkeypatch.setattr(loader, "get_kernel", lambda xp, file, name, dtype: launched.append(name) or
                        real_get_kernel(xp, file, name, dtype))
    x = kernel_path.asarray(numpy.ones((1, 2, 4, 4)))           # 32 elements, col 2*2*2*3*3 = 72 > 50
    run_all_ops(x, 2, 2, 1, 1, (0, 0, 0, 0))
    monkeypatch.setattr(loader, "INT32_LIMIT", 50)
    run_all_ops(x, 2, 2, 1, 1, (0, 0, 0, 0))
    names = ["im2col", "im2col", "col2im", "max_pool_forward_a8", "max_pool_backward_a8", "avg_pool_forward",
             "avg_pool_backward"]
    pooled = ["max_pool_forward_a8", "max_pool_backward_a8", "avg_pool_forward", "avg_pool_backward"]
    # at limit 50, only im2col and col2im touch an array of 50 or more elements (col); the poolings stay 32-bit
    assert launched == names + ["im2col_i64", "im2col_i64", "col2im_i64"] + pooled


def run_all_ops(x, kh, kw, sh, sw, pads):
    """Every window op once: im2col (fill 0 and -inf), col2im, max and average pooling forward and backward; their
    results in order."""
    window = Window.with_pads(x.shape, (kh, kw), (sh, sw), pads)
    col = F.im2col(x, window)
    col_min = F.im2col(x, window, fill=-numpy.inf)
    img = F.col2im(col, window)
    y_max, argmax = F.max_pool2d(x, window)
    dx_max = F.max_pool2d_backward(y_max + 0.5, argmax, x.shape, window)
    y_avg = F.avg_pool2d(x, window)
    dx_avg = F.avg_pool2d_backward(y_avg - 0.25, x.shape, window)
    return [col, col_min, img, y_max, argmax, dx_max, y_avg, dx_avg]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_32_and_64_bit_variants_give_the_same_bits(monkeypatch, kernel_path, dtype, geometry):
    h, w, (kh, kw), (sh, sw), pads = geometry
    rng = numpy.random.default_rng(0)
    x = kernel_path.asarray(rng.integers(-3, 3, size=(2, 3, h, w)).astype(dtype) + 0.5)   # ties, exact sums
    x32 = run_all_ops(x, kh, kw, sh, sw, pads)
    monkeypatch.setattr(loader, "INT32_LIMIT", 0)              # every launch takes its _i64 entry point
    x64 = run_all_ops(x, kh, kw, sh, sw, pads)
    for got32, got64 in zip(x32, x64):
        numpy.testing.assert_array_equal(to_numpy(got32), to_numpy(got64))
    with kernel_path.reference():
        reference = run_all_ops(to_numpy(x), kh, kw, sh, sw, pads)
    for got, want in zip(x32[:6], reference[:6]):              # im2col, col2im, max pooling: exact sums here
        numpy.testing.assert_array_equal(to_numpy(got), want)


DIVIDER_HARNESS = """
#include "{header}"
extern "C" void divide_all(const int* n, const int* d, int* quotient, int* remainder, long long count)
{{
    for (long long k = 0; k < count; ++k) {{
        const divider<int> by(d[k]);
        int rest = n[k];
        remainder[k] = split(rest, by);
        quotient[k] = rest;
    }}
}}
"""


def test_32_bit_divider_is_exact(host_kernels, tmp_path):
    """divider<int> (multiply-high, add, shift) against floor division, at the edges of every power of two."""
    import ctypes
    source = tmp_path / "divider.cu"
    source.write_text(DIVIDER_HARNESS.format(header=os.path.join(loader.KERNEL_DIR, "common.cuh")))
    lib = build_library(str(source), numpy.float32, str(tmp_path))
    edges = sorted({v for p in range(32) for v in (2 ** p - 1, 2 ** p, 2 ** p + 1) if 1 <= v < LIMIT})
    rng = numpy.random.default_rng(0)
    divisors = numpy.array(edges + [3, 5, 7, 28, 56, 112, 3136, 10 ** 9 + 7] +
                           list(rng.integers(1, LIMIT, 200)), dtype=numpy.int64)
    numerators = numpy.array(edges + [0, LIMIT - 2] + list(rng.integers(0, LIMIT, 300)), dtype=numpy.int64)
    d, n = (a.ravel().astype(numpy.int32) for a in numpy.meshgrid(divisors, numerators))
    near = numpy.concatenate([divisors * k + e for k in (1, 2, 3) for e in (-1, 0, 1)])   # n around multiples of d
    keep = (near >= 0) & (near < LIMIT)
    d = numpy.concatenate([d, numpy.tile(divisors, 9)[keep].astype(numpy.int32)])
    n = numpy.concatenate([n, near[keep].astype(numpy.int32)])
    quotient, remainder = numpy.empty_like(n), numpy.empty_like(n)
    pointer = ctypes.c_void_p
    lib.divide_all(*(pointer(a.ctypes.data) for a in (n, d, quotient, remainder)), ctypes.c_longlong(n.size))
    numpy.testing.assert_array_equal(quotient, n // d)
    numpy.testing.assert_array_equal(remainder, n % d)
    assert n.max() == LIMIT - 1 and d.max() == LIMIT - 1 and n.size > 100_000
