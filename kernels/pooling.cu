// Max and average pooling over KH x KW windows of NCHW images, forward and backward, computed directly.
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. One thread per output element, grid-stride loop,
// 64-bit indices. Window (oh, ow) covers rows oh*SH - top + i and columns ow*SW - left + j, 0 <= i < KH, 0 <= j < KW;
// cells outside the image are padding: max pooling never picks them, average pooling does not count them.
//
// Max forward:  y = the window's maximum, argmax = i*KW + j of its FIRST maximum (row-major; NaN wins like numpy).
// Backwards are gathers: input cell (y, x) sums, over the windows that cover it (i ascending, then j, the NumPy
// path's order), dy of the window (max: only where argmax names this cell; average: dy / count).
#include "common.cuh"

extern "C" __global__ void max_pool_forward(const real_t* __restrict__ x, real_t* __restrict__ out,
                                            long long* __restrict__ argmax, WINDOW_PARAMS)
{
    for_each_index(idx, N * C * OH * OW) {
        nchw_cell(idx, OH, OW, oh, ow, nc);
        const real_t* plane = x + nc * H * W;
        real_t best = 0;
        long long best_k = -1;                           // every window holds a real cell (pads < window)
        for_each_real_cell(oh, ow, i, j, y, xx) {
            const real_t v = plane[y * W + xx];
            if (best_k < 0 || (best == best && (v > best || v != v))) {   // x != x: NaN
                best = v;
                best_k = i * KW + j;
            }
        }
        out[idx] = best;
        argmax[idx] = best_k;
    }
}

extern "C" __global__ void max_pool_backward(const real_t* __restrict__ dy, const long long* __restrict__ argmax,
                                             real_t* __restrict__ dx, WINDOW_PARAMS)
{
    for_each_index(idx, N * C * H * W) {
        nchw_cell(idx, H, W, y, xx, nc);
        real_t sum = 0;
        for_each_covering_window(y, xx, i, j, oh, ow) {
            const long long window = (nc * OH + oh) * OW + ow;
            if (argmax[window] == i * KW + j) sum += dy[window];
        }
        dx[idx] = sum;
    }
}

// Number of real (unpadded) cells in window (oh, ow).
__device__ __forceinline__ long long window_count(long long oh, long long ow, long long H, long long W,
                                                  long long KH, long long KW, long long SH, long long SW,
                                                  long long top, long long left)
{
    const long long y0 = oh * SH - top, x0 = ow * SW - left;
    const long long rows = (y0 + KH < H ? y0 + KH : H) - (y0 > 0 ? y0 : 0);
    const long long cols = (x0 + KW < W ? x0 + KW : W) - (x0 > 0 ? x0 : 0);
    return rows * cols;
}

extern "C" __global__ void avg_pool_forward(const real_t* __restrict__ x, real_t* __restrict__ out, WINDOW_PARAMS)
{
    for_each_index(idx, N * C * OH * OW) {
        nchw_cell(idx, OH, OW, oh, ow, nc);
        const real_t* plane = x + nc * H * W;
        real_t sum = 0;
        for_each_real_cell(oh, ow, i, j, y, xx)
            sum += plane[y * W + xx];
        out[idx] = sum / (real_t)window_count(oh, ow, H, W, KH, KW, SH, SW, top, left);
    }
}

extern "C" __global__ void avg_pool_backward(const real_t* __restrict__ dy, real_t* __restrict__ dx, WINDOW_PARAMS)
{
    for_each_index(idx, N * C * H * W) {
        nchw_cell(idx, H, W, y, xx, nc);
        real_t sum = 0;
        for_each_covering_window(y, xx, i, j, oh, ow) {
            const long long count = window_count(oh, ow, H, W, KH, KW, SH, SW, top, left);
            sum += dy[(nc * OH + oh) * OW + ow] / (real_t)count;
        }
        dx[idx] = sum;
    }
}
