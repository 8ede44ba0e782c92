// Max and average pooling over KH x KW windows of NCHW images, forward and backward, computed directly.
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. Window (oh, ow) covers rows oh*SH - top + i and
// columns ow*SW - left + j, 0 <= i < KH, 0 <= j < KW; cells outside the image are padding: max pooling never picks
// them, average pooling does not count them. Each kernel has a 32-bit entry point and a 64-bit one (`_i64`, for arrays
// or sizes past 2^31; index_variants in the shared header); the wrapper picks.
//
// Max forward:  y = the window's maximum, argmax = i*KW + j of its FIRST maximum (row-major; NaN wins like numpy),
//               stored in the smallest type that holds it: signed char for windows of up to 128 cells (`_a8`), else
//               int (`_a32`); the backward reads the same type.
// Backwards are gathers: input cell (y, x) sums, over the windows that cover it (i ascending, then j, the NumPy
// path's order), dy of the window (max: only where argmax names this cell; average: dy / count).
//
// Index math. One thread per run of VEC consecutive outputs (forwards: windows along a row; backwards: input cells;
// the shared header's runs), grid-stride loop: consecutive threads take consecutive runs, so a warp's 16-byte stores
// are contiguous and its reads (windows side by side, rows of the same planes) fall in the same few lines. The split
// of a run's first flat index costs two divisions (by OW and OH, or W and H), each a multiply-high, an add and a
// shift in the 32-bit variant (the shared header's divider, set up once per thread); the run's other outputs step the
// digits. The forwards walk only the real cells of a window (no test per cell); the backwards visit only the covering
// windows, two divisions by the stride per axis.
#include "common.cuh"

template <typename index_t, typename arg_t>
__device__ __forceinline__ void max_pool_forward_body(const real_t* __restrict__ x, real_t* __restrict__ out,
                                                      arg_t* __restrict__ argmax, WINDOW_PARAMS_OF(index_t))
{
    const divider<index_t> by_OW(OW), by_OH(OH);
    const long long total = (long long)N * C * OH * OW;
    for_each_index(run, runs_of(total)) {
        const long long first = run * VEC;
        nchw_cell(first, by_OH, by_OW, oh, ow, nc);
        real_t maxima[VEC] = {};
        arg_t winners[VEC] = {};
        for (int e = 0; e < VEC && first + e < total; ++e) {
            const real_t* plane = x + nc * H * W;
            real_t best = 0;
            index_t best_k = -1;                         // every window holds a real cell (pads < window)
            for_each_real_cell(oh, ow, i, j, y, xx) {
                const real_t v = plane[y * W + xx];
                if (best_k < 0 || (best == best && (v > best || v != v))) {   // x != x: NaN
                    best = v;
                    best_k = i * KW + j;
                }
            }
            maxima[e] = best;
            winners[e] = (arg_t)best_k;
            next_cell(oh, ow, nc, OH, OW);
        }
        store_run(out, first, total, maxima);
        store_run(argmax, first, total, winners);
    }
}

template <typename index_t, typename arg_t>
__device__ __forceinline__ void max_pool_backward_body(const real_t* __restrict__ dy, const arg_t* __restrict__ argmax,
                                                       real_t* __restrict__ dx, WINDOW_PARAMS_OF(index_t))
{
    gather(dx, WINDOW_ARGS, [=](index_t window, index_t, index_t i, index_t j, index_t, index_t) {
        return (index_t)argmax[window] == i * KW + j ? dy[window] : (real_t)0;  // + 0 leaves a sum's bits as they are
    });
}

// The two argmax types, each a template of index_t alone for index_variants.
#define argmax_type_of(name, suffix, arg_t, PARAMS, ARGS)                                                           \
    template <typename index_t>                                                                                     \
    __device__ __forceinline__ void name##suffix##_body PARAMS { name##_body<index_t, arg_t> ARGS; }

argmax_type_of(max_pool_forward, _a8, signed char, (const real_t* __restrict__ x, real_t* __restrict__ out,
               signed char* __restrict__ argmax, WINDOW_PARAMS_OF(index_t)), (x, out, argmax, WINDOW_ARGS))
argmax_type_of(max_pool_forward, _a32, int, (const real_t* __restrict__ x, real_t* __restrict__ out,
               int* __restrict__ argmax, WINDOW_PARAMS_OF(index_t)), (x, out, argmax, WINDOW_ARGS))
argmax_type_of(max_pool_backward, _a8, signed char, (const real_t* __restrict__ dy,
               const signed char* __restrict__ argmax, real_t* __restrict__ dx, WINDOW_PARAMS_OF(index_t)),
               (dy, argmax, dx, WINDOW_ARGS))
argmax_type_of(max_pool_backward, _a32, int, (const real_t* __restrict__ dy, const int* __restrict__ argmax,
               real_t* __restrict__ dx, WINDOW_PARAMS_OF(index_t)), (dy, argmax, dx, WINDOW_ARGS))

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
    const long long total = (long long)N * C * OH * OW;
    for_each_index(run, runs_of(total)) {
        const long long first = run * VEC;
        nchw_cell(first, by_OH, by_OW, oh, ow, nc);
        real_t means[VEC] = {};
        for (int e = 0; e < VEC && first + e < total; ++e) {
            const real_t* plane = x + nc * H * W;
            real_t sum = 0;
            for_each_real_cell(oh, ow, i, j, y, xx)
                sum += plane[y * W + xx];
            means[e] = sum / (real_t)window_count(oh, ow, H, W, KH, KW, SH, SW, top, left);
            next_cell(oh, ow, nc, OH, OW);
        }
        store_run(out, first, total, means);
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

index_variants(max_pool_forward_a8, (const real_t* __restrict__ x, real_t* __restrict__ out,
                                     signed char* __restrict__ argmax, WINDOW_PARAMS), (x, out, argmax, WINDOW_ARGS))
index_variants(max_pool_forward_a32, (const real_t* __restrict__ x, real_t* __restrict__ out,
                                      int* __restrict__ argmax, WINDOW_PARAMS), (x, out, argmax, WINDOW_ARGS))
index_variants(max_pool_backward_a8, (const real_t* __restrict__ dy, const signed char* __restrict__ argmax,
                                      real_t* __restrict__ dx, WINDOW_PARAMS), (dy, argmax, dx, WINDOW_ARGS))
index_variants(max_pool_backward_a32, (const real_t* __restrict__ dy, const int* __restrict__ argmax,
                                       real_t* __restrict__ dx, WINDOW_PARAMS), (dy, argmax, dx, WINDOW_ARGS))
index_variants(avg_pool_forward, (const real_t* __restrict__ x, real_t* __restrict__ out, WINDOW_PARAMS),
               (x, out, WINDOW_ARGS))
index_variants(avg_pool_backward, (const real_t* __restrict__ dy, real_t* __restrict__ dx, WINDOW_PARAMS),
               (dy, dx, WINDOW_ARGS))
