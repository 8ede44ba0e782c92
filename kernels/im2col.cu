// im2col and col2im for 2-D windows over NCHW images (convolution through one matrix product).
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. One thread per output element, grid-stride loop,
// 64-bit indices. pads: top and left are passed; bottom and right only show in OH and OW.
//
// im2col:  col[n, c, i, j, oh, ow] = x[n, c, oh*SH + i - top, ow*SW + j - left], or `fill` outside the image.
// col2im:  img[n, c, y, x] = sum over (i, j) of col[n, c, i, j, oh, ow] where oh*SH + i - top = y and
//          ow*SW + j - left = x; a gather (each image cell sums the columns that read it), so no atomics and a
//          fixed summation order (i, then j), the same as the NumPy path.
#include "common.cuh"

extern "C" __global__ void im2col(const real_t* __restrict__ x, real_t* __restrict__ col, WINDOW_PARAMS, real_t fill)
{
    for_each_index(idx, N * C * KH * KW * OH * OW) {
        long long rest = idx;
        const long long ow = rest % OW; rest /= OW;
        const long long oh = rest % OH; rest /= OH;
        const long long j = rest % KW;  rest /= KW;
        const long long i = rest % KH;  rest /= KH;
        const long long nc = rest;                       // n * C + c
        const long long y = oh * SH + i - top;
        const long long xx = ow * SW + j - left;
        const bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
        col[idx] = inside ? x[(nc * H + y) * W + xx] : fill;
    }
}

extern "C" __global__ void col2im(const real_t* __restrict__ col, real_t* __restrict__ img, WINDOW_PARAMS)
{
    for_each_index(idx, N * C * H * W) {
        nchw_cell(idx, H, W, y, xx, nc);
        real_t sum = 0;
        for_each_covering_window(y, xx, i, j, oh, ow)
            sum += col[(((nc * KH + i) * KW + j) * OH + oh) * OW + ow];
        img[idx] = sum;
    }
}
