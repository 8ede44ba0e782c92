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

extern "C" __global__ void im2col(const real_t* __restrict__ x, real_t* __restrict__ col,
                                  long long N, long long C, long long H, long long W,
                                  long long KH, long long KW, long long OH, long long OW,
                                  long long SH, long long SW, long long top, long long left, real_t fill)
{
    const long long total = N * C * KH * KW * OH * OW;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += step) {
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

extern "C" __global__ void col2im(const real_t* __restrict__ col, real_t* __restrict__ img,
                                  long long N, long long C, long long H, long long W,
                                  long long KH, long long KW, long long OH, long long OW,
                                  long long SH, long long SW, long long top, long long left)
{
    const long long total = N * C * H * W;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += step) {
        const long long xx = idx % W;
        const long long y = (idx / W) % H;
        const long long nc = idx / (W * H);
        real_t sum = 0;
        for (long long i = 0; i < KH; ++i) {
            long long oh, ow;
            if (!covering_window(y, top, i, SH, OH, &oh)) continue;
            for (long long j = 0; j < KW; ++j) {
                if (!covering_window(xx, left, j, SW, OW, &ow)) continue;
                sum += col[(((nc * KH + i) * KW + j) * OH + oh) * OW + ow];
            }
        }
        img[idx] = sum;
    }
}
