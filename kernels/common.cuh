// What every kernel file shares: the element type, the math functions for it, the grid-stride loop, and for the
// window kernels (im2col.cu, pooling.cu) their 12 sizes, the split of a flat NCHW index, and the two ways to walk a
// window. The loader splices this file into each source in place of the line that includes it, so CuPy compiles one
// self-contained source (and its disk cache sees any change to this file); nvcc and the host build include it.
#pragma once

#ifndef real_t
#error "compile with -Dreal_t=float or -Dreal_t=double"
#endif

__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log_(float v) { return logf(v); }
__device__ __forceinline__ double log_(double v) { return log(v); }
__device__ __forceinline__ float tanh_(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_(double v) { return tanh(v); }
__device__ __forceinline__ float sqrt_(float v) { return sqrtf(v); }
__device__ __forceinline__ double sqrt_(double v) { return sqrt(v); }
__device__ __forceinline__ float pow_(float b, float e) { return powf(b, e); }
__device__ __forceinline__ double pow_(double b, double e) { return pow(b, e); }

// Along one axis: does kernel offset i of some window cover input cell y? Window o starts at o*S - pad, so it covers
// y at offset i when y + pad - i == o*S with 0 <= o < O. Sets *o and returns true when it does.
__device__ __forceinline__ bool covering_window(long long y, long long pad, long long i, long long S, long long O,
                                                long long* o)
{
    const long long r = y + pad - i;
    if (r < 0 || r % S != 0 || r / S >= O) return false;
    *o = r / S;
    return true;
}

// The grid-stride loop: thread t of a grid of T threads takes idx = t, t + T, t + 2T, ... below total, in 64 bits.
#define for_each_index(idx, total)                                                                                  \
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x, idx##_step = (long long)blockDim.x *      \
         gridDim.x; idx < (total); idx += idx##_step)

// The sizes every window kernel takes, in this order: images N x C x H x W, windows KH x KW at OH x OW positions,
// strides SH x SW, and the top and left pads (bottom and right only show in OH and OW).
#define WINDOW_PARAMS                                                                                               \
    long long N, long long C, long long H, long long W, long long KH, long long KW, long long OH, long long OW,     \
    long long SH, long long SW, long long top, long long left

// Declares row, col and nc (= n * C + c) of the flat index idx into an NCHW array whose planes are ROWS x COLS.
#define nchw_cell(idx, ROWS, COLS, row, col, nc)                                                                    \
    const long long col = (idx) % (COLS);                                                                           \
    const long long row = ((idx) / (COLS)) % (ROWS);                                                                \
    const long long nc = (idx) / ((COLS) * (ROWS))

// Inside a kernel with WINDOW_PARAMS: the statement that follows runs for every real (unpadded) cell (y, xx) of
// window (oh, ow), at kernel offset (i, j), i ascending, then j.
#define for_each_real_cell(oh, ow, i, j, y, xx)                                                                     \
    for (long long i = 0, y = (oh) * SH - top; i < KH; ++i, ++y)                                                    \
        if (y >= 0 && y < H)                                                                                        \
            for (long long j = 0, xx = (ow) * SW - left; j < KW; ++j, ++xx)                                         \
                if (xx >= 0 && xx < W)

// Inside a kernel with WINDOW_PARAMS, the gather of an adjoint: the statement that follows runs for every window
// (oh, ow) that covers input cell (y, xx), at kernel offset (i, j), i ascending, then j.
#define for_each_covering_window(y, xx, i, j, oh, ow)                                                               \
    for (long long i = 0, oh = 0; i < KH; ++i)                                                                      \
        if (covering_window(y, top, i, SH, OH, &oh))                                                                \
            for (long long j = 0, ow = 0; j < KW; ++j)                                                              \
                if (covering_window(xx, left, j, SW, OW, &ow))
