// Max and average pooling over KH x KW windows of NCHW images, forward and backward, computed directly.
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. Window (oh, ow) covers rows oh*SH - top + i and
// columns ow*SW - left + j, 0 <= i < KH, 0 <= j < KW; cells outside the image are padding: max pooling never picks
// them, average pooling does not count them. Each kernel has a 32-bit entry point and a 64-bit one (`_i64`, for arrays
// or sizes past 2^31; index_variants in the shared header); the wrapper picks.
//
// Max forward:  y = the window's maximum, argmax = i*KW + j of its FIRST maximum (row-major; NaN wins like numpy).
// Backwards are gathers: input cell (y, x) sums, over the windows that cover it (i ascending, then j, the NumPy
// path's order), dy of the window (max: only where argmax names this cell; average: dy / count).
//
// Index math. One thread per output element (forwards: per window; backwards: per input cell), grid-stride loop:
// consecutive threads take consecutive elements, so a warp's writes are contiguous and its reads (windows side by
// side, rows of the same planes) fall in the same few lines. One thread per output row (n, c, oh) would need no
// division per element, but its writes would lie OW apart across a warp; per element, the split of the flat index
// costs two divisions (by OW and OH, or W and H), each a multiply-high, an add and a shift in the 32-bit variant
// (the shared header's divider, set up once per thread). The forwards walk only the real cells of a window (no test per
// cell); the backwards visit only the covering windows, two divisions by the stride per axis.
#include "common.cuh"

template <typename index_t>
__device__ __forceinline__ void max_pool_forward_body(const real_t* __restrict__ x, real_t* __restrict__ out,
                                                      long long* __restrict__ argmax, WINDOW_PARAMS_OF(index_t))
{
    const divider<index_t> by_OW(OW), by_OH(OH);
    for_each_index(flat, N * C * OH * OW) {
        nchw_cell(flat, by_OH, by_OW, oh, ow, nc);
        const real_t* plane = x + nc * H * W;
        real_t best = 0;
        index_t best_k = -1;                             // every window holds a real cell (pads < window)
        for_each_real_cell(oh, ow, i, j, y, xx) {
            const real_t v = plane[y * W + xx];
            if (best_k < 0 || (best == best && (v > best || v != v))) {   // x != x: NaN
                best = v;
                best_k = i * KW + j;
            }
        }
        out[flat] = best;
        argmax[flat] = best_k;
    }
}

template <typename index_t>
__device__ __forceinline__ void max_pool_backward_body(const real_t* __restrict__ dy,
                                                       const long long* __restrict__ argmax, real_t* __restrict__ dx,
                                                       WINDOW_PARAMS_OF(index_t))
{
    gather(dx, WINDOW_ARGS, [=](index_t window, index_t, index_t i, index_t j, index_t, index_t) {
        return argmax[window] == i * KW + j ? dy[window] : (real_t)0;     // + 0 leaves a sum's bits as they are
    });
}

// Number of real (unpadded) cells in window (oh, ow).
template <typename index_t>
__device__ __forceinline__ index_t window_count(index_t oh, index_t ow, index_t H, index_t W, index_t KH, index_t KW,
                                                index_t SH, index_t SW, index_t top, index_t left)
{
    const index_t y0 = oh * SH - top, x0 = ow * SW - left;
    const index_t rows = (y0 + KH < H ? y0 + KH : H) - (y0 > 0 ? y0 : 0);
    const index_t cols = (x0 + KW < W ? x0 + KW : W) - (x0 > 0 ? x0 : 0);
    return rows * cols;
}

template <typename index_t>
__device__ __forceinline__ void avg_pool_forward_body(const real_t* __restrict__ x, real_t* __restrict__ out,
                                                      WINDOW_PARAMS_OF(index_t))
{
    const divider<index_t> by_OW(OW), by_OH(OH);
    for_each_index(flat, N * C * OH * OW) {
        nchw_cell(flat, by_OH, by_OW, oh, ow, nc);
        const real_t* plane = x + nc * H * W;
        real_t sum = 0;
        for_each_real_cell(oh, ow, i, j, y, xx)
            sum += plane[y * W + xx];
        out[flat] = sum / (real_t)window_count(oh, ow, H, W, KH, KW, SH, SW, top, left);
    }
}

template <typename index_t>
__device__ __forceinline__ void avg_pool_backward_body(const real_t* __restrict__ dy, real_t* __restrict__ dx,
                                                       WINDOW_PARAMS_OF(index_t))
{
    gather(dx, WINDOW_ARGS, [=](index_t window, index_t, index_t, index_t, index_t oh, index_t ow) {
        return dy[window] / (real_t)window_count(oh, ow, H, W, KH, KW, SH, SW, top, left);
    });
}

index_variants(max_pool_forward, (const real_t* __restrict__ x, real_t* __restrict__ out,
                                  long long* __restrict__ argmax, WINDOW_PARAMS), (x, out, argmax, WINDOW_ARGS))
index_variants(max_pool_backward, (const real_t* __restrict__ dy, const long long* __restrict__ argmax,
                                   real_t* __restrict__ dx, WINDOW_PARAMS), (dy, argmax, dx, WINDOW_ARGS))
index_variants(avg_pool_forward, (const real_t* __restrict__ x, real_t* __restrict__ out, WINDOW_PARAMS),
               (x, out, WINDOW_ARGS))
index_variants(avg_pool_backward, (const real_t* __restrict__ dy, real_t* __restrict__ dx, WINDOW_PARAMS),
               (dy, dx, WINDOW_ARGS))
