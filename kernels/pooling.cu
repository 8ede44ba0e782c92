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
//
// Tiled windows. The common pooling layers tile the image: stride = window, no padding, H = OH*KH, W = OW*KW. Every
// input cell then lies in exactly one window, so the `_tiled` kernels skip what makes the general ones
// instruction-bound: the forwards walk each window without bounds tests, and the backwards scatter each window's
// gradient over its own cells (max: dy where argmax names the cell, else 0; average: dy / (KH*KW)) instead of
// searching, two divisions per axis and cell, for the windows that cover a cell. Threads take runs of VEC windows as
// the general forwards do; a run of whole windows side by side in one row of windows reads (writes) KH rows of VEC*KW
// contiguous cells, which for KW = 2 and 3 (a compile-time width) go through registers in 16-byte loads (stores)
// where aligned. The comparisons and sums are the general kernels', in the same order, and a backward writes
// 0 + value as the gather's sum does (-0 becomes +0): the tiled kernels give the general ones' bits. The wrapper
// (pooling.py) picks them.
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

// ---- Tiled windows (stride = window, no padding, the image exactly covered: see the top of this file) ------------
//
// Window (oh, ow) of plane nc is the tile of cells (oh*KH + i, ow*KW + j), 0 <= i < KH, 0 <= j < KW, all real. The
// run of windows first .. first + VEC - 1 is a row run when they are whole and side by side in one row of windows:
// row i of their tiles is then VEC*KW contiguous cells.

template <typename index_t>
__device__ __forceinline__ index_t tile_start(index_t nc, index_t oh, index_t ow, index_t H, index_t W, index_t KH,
                                              index_t KW)
{
    return (nc * H + oh * KH) * W + ow * KW;
}

template <typename index_t>
__device__ __forceinline__ bool row_run(long long first, long long total, index_t ow, index_t OW)
{
    return first + VEC <= total && ow + VEC <= OW;
}

// values[e] = in[e] for e < VEC: one load of the whole run where `in` is aligned for it (store_run's twin).
template <typename T>
__device__ __forceinline__ void load_run(const T* __restrict__ in, T* values)
{
    if ((unsigned long long)in % sizeof(run_of<T>) == 0) {
        const run_of<T> run = *reinterpret_cast<const run_of<T>*>(in);
        for (int e = 0; e < VEC; ++e) values[e] = run.v[e];
        return;
    }
    for (int e = 0; e < VEC; ++e) values[e] = in[e];
}

// The general forward's rule for max pooling: v at offset k replaces the maximum so far (never a NaN) when greater,
// or NaN. Starting from the window's first cell, the first maximum (or first NaN) wins.
template <typename index_t>
__device__ __forceinline__ void keep_first_maximum(real_t& best, index_t& best_k, real_t v, index_t k)
{
    if (best == best && (v > best || v != v)) {
        best = v;
        best_k = k;
    }
}

// Max forward of a row run of KW_-wide windows from `row` (the first tile's first cell), rows of KW_ loads each.
template <int KW_, typename index_t>
__device__ __forceinline__ void max_of_row_run(const real_t* __restrict__ row, index_t W, index_t KH, real_t* best,
                                               index_t* best_k)
{
    for (int e = 0; e < VEC; ++e) {
        best[e] = row[e * KW_];
        best_k[e] = 0;
    }
    for (index_t i = 0; i < KH; ++i, row += W) {
        real_t cells[VEC * KW_];
        for (int c = 0; c < KW_; ++c) load_run(row + c * VEC, cells + c * VEC);
        for (int e = 0; e < VEC; ++e)
            for (int j = 0; j < KW_; ++j) keep_first_maximum(best[e], best_k[e], cells[e * KW_ + j], i * KW_ + j);
    }
}

template <typename index_t, typename arg_t>
__device__ __forceinline__ void max_pool_forward_tiled_body(const real_t* __restrict__ x, real_t* __restrict__ out,
                                                            arg_t* __restrict__ argmax, WINDOW_PARAMS_OF(index_t))
{
    const divider<index_t> by_OW(OW), by_OH(OH);
    const long long total = (long long)N * C * OH * OW;
    for_each_index(run, runs_of(total)) {
        const long long first = run * VEC;
        nchw_cell(first, by_OH, by_OW, oh, ow, nc);
        real_t maxima[VEC] = {};
        index_t winners[VEC] = {};
        const real_t* tile = x + tile_start(nc, oh, ow, H, W, KH, KW);
        if (KW == 2 && row_run(first, total, ow, OW)) max_of_row_run<2>(tile, W, KH, maxima, winners);
        else if (KW == 3 && row_run(first, total, ow, OW)) max_of_row_run<3>(tile, W, KH, maxima, winners);
        else for (int e = 0; e < VEC && first + e < total; ++e) {
            tile = x + tile_start(nc, oh, ow, H, W, KH, KW);
            maxima[e] = tile[0];
            for (index_t i = 0; i < KH; ++i)
                for (index_t j = 0; j < KW; ++j) keep_first_maximum(maxima[e], winners[e], tile[i * W + j], i * KW + j);
            next_cell(oh, ow, nc, OH, OW);
        }
        arg_t narrow[VEC];
        for (int e = 0; e < VEC; ++e) narrow[e] = (arg_t)winners[e];
        store_run(out, first, total, maxima);
        store_run(argmax, first, total, narrow);
    }
}

// Average forward of a row run: the sums of the general forward (0, then cell by cell, i ascending, then j).
template <int KW_, typename index_t>
__device__ __forceinline__ void sums_of_row_run(const real_t* __restrict__ row, index_t W, index_t KH, real_t* sums)
{
    for (index_t i = 0; i < KH; ++i, row += W) {
        real_t cells[VEC * KW_];
        for (int c = 0; c < KW_; ++c) load_run(row + c * VEC, cells + c * VEC);
        for (int e = 0; e < VEC; ++e)
            for (int j = 0; j < KW_; ++j) sums[e] += cells[e * KW_ + j];
    }
}

template <typename index_t>
__device__ __forceinline__ void avg_pool_forward_tiled_body(const real_t* __restrict__ x, real_t* __restrict__ out,
                                                            WINDOW_PARAMS_OF(index_t))
{
    const divider<index_t> by_OW(OW), by_OH(OH);
    const long long total = (long long)N * C * OH * OW;
    for_each_index(run, runs_of(total)) {
        const long long first = run * VEC;
        nchw_cell(first, by_OH, by_OW, oh, ow, nc);
        real_t sums[VEC] = {};
        const real_t* tile = x + tile_start(nc, oh, ow, H, W, KH, KW);
        if (KW == 2 && row_run(first, total, ow, OW)) sums_of_row_run<2>(tile, W, KH, sums);
        else if (KW == 3 && row_run(first, total, ow, OW)) sums_of_row_run<3>(tile, W, KH, sums);
        else for (int e = 0; e < VEC && first + e < total; ++e) {
            tile = x + tile_start(nc, oh, ow, H, W, KH, KW);
            for (index_t i = 0; i < KH; ++i)
                for (index_t j = 0; j < KW; ++j) sums[e] += tile[i * W + j];
            next_cell(oh, ow, nc, OH, OW);
        }
        for (int e = 0; e < VEC; ++e) sums[e] /= (real_t)(KH * KW);
        store_run(out, first, total, sums);
    }
}

// What a window hands its tile in a backward: g to the cell at offset `only` (max pooling's argmax), or to every
// cell when only < 0 (average pooling: g = dy / (KH*KW)); 0 elsewhere. Written as 0 + value, the gather's sum.
template <typename index_t>
__device__ __forceinline__ real_t tile_grad(real_t g, index_t only, index_t k)
{
    return (real_t)0 + (only < 0 || only == k ? g : (real_t)0);
}

// The scatter of a row run of KW_-wide windows from `row` (the first tile's first cell): row by row, VEC*KW_ cells
// in registers, then out in stores of VEC cells (wide where aligned).
template <int KW_, typename index_t>
__device__ __forceinline__ void scatter_row_run(real_t* __restrict__ row, index_t W, index_t KH, const real_t* g,
                                                const index_t* only)
{
    for (index_t i = 0; i < KH; ++i, row += W) {
        real_t cells[VEC * KW_];
        for (int e = 0; e < VEC; ++e)
            for (int j = 0; j < KW_; ++j) cells[e * KW_ + j] = tile_grad(g[e], only[e], i * KW_ + j);
        for (int c = 0; c < KW_; ++c) store_run(row, c * VEC, VEC * KW_, cells + c * VEC);
    }
}

// The backward of tiled windows: dx over the tiles of the run of windows first .. first + VEC - 1 (flat index
// first split into nc, oh, ow), window first + e handing g[e] to `only[e]` (tile_grad).
template <typename index_t>
__device__ __forceinline__ void scatter_run(real_t* __restrict__ dx, long long first, long long total, index_t nc,
                                            index_t oh, index_t ow, const real_t* g, const index_t* only,
                                            WINDOW_PARAMS_OF(index_t))
{
    real_t* tile = dx + tile_start(nc, oh, ow, H, W, KH, KW);
    if (KW == 2 && row_run(first, total, ow, OW)) scatter_row_run<2>(tile, W, KH, g, only);
    else if (KW == 3 && row_run(first, total, ow, OW)) scatter_row_run<3>(tile, W, KH, g, only);
    else for (int e = 0; e < VEC && first + e < total; ++e) {
        tile = dx + tile_start(nc, oh, ow, H, W, KH, KW);
        for (index_t i = 0; i < KH; ++i)
            for (index_t j = 0; j < KW; ++j) tile[i * W + j] = tile_grad(g[e], only[e], i * KW + j);
        next_cell(oh, ow, nc, OH, OW);
    }
}

// g[e] = in[first + e] for the run's windows below total (a whole run in one load where aligned).
template <typename T, typename U>
__device__ __forceinline__ void load_windows(const T* __restrict__ in, long long first, long long total, U* values)
{
    T run[VEC] = {};
    if (first + VEC <= total) load_run(in + first, run);
    else for (int e = 0; e < VEC && first + e < total; ++e) run[e] = in[first + e];
    for (int e = 0; e < VEC; ++e) values[e] = (U)run[e];
}

template <typename index_t, typename arg_t>
__device__ __forceinline__ void max_pool_backward_tiled_body(const real_t* __restrict__ dy,
                                                             const arg_t* __restrict__ argmax,
                                                             real_t* __restrict__ dx, WINDOW_PARAMS_OF(index_t))
{
    const divider<index_t> by_OW(OW), by_OH(OH);
    const long long total = (long long)N * C * OH * OW;
    for_each_index(run, runs_of(total)) {
        const long long first = run * VEC;
        nchw_cell(first, by_OH, by_OW, oh, ow, nc);
        real_t g[VEC];
        index_t only[VEC];
        load_windows(dy, first, total, g);
        load_windows(argmax, first, total, only);
        scatter_run(dx, first, total, nc, oh, ow, g, only, WINDOW_ARGS);
    }
}

template <typename index_t>
__device__ __forceinline__ void avg_pool_backward_tiled_body(const real_t* __restrict__ dy, real_t* __restrict__ dx,
                                                             WINDOW_PARAMS_OF(index_t))
{
    const divider<index_t> by_OW(OW), by_OH(OH);
    const long long total = (long long)N * C * OH * OW;
    for_each_index(run, runs_of(total)) {
        const long long first = run * VEC;
        nchw_cell(first, by_OH, by_OW, oh, ow, nc);
        real_t g[VEC];
        index_t every[VEC];
        load_windows(dy, first, total, g);
        for (int e = 0; e < VEC; ++e) {
            g[e] /= (real_t)(KH * KW);
            every[e] = -1;
        }
        scatter_run(dx, first, total, nc, oh, ow, g, every, WINDOW_ARGS);
    }
}

argmax_type_of(max_pool_forward_tiled, _a8, signed char, (const real_t* __restrict__ x, real_t* __restrict__ out,
               signed char* __restrict__ argmax, WINDOW_PARAMS_OF(index_t)), (x, out, argmax, WINDOW_ARGS))
argmax_type_of(max_pool_forward_tiled, _a32, int, (const real_t* __restrict__ x, real_t* __restrict__ out,
               int* __restrict__ argmax, WINDOW_PARAMS_OF(index_t)), (x, out, argmax, WINDOW_ARGS))
argmax_type_of(max_pool_backward_tiled, _a8, signed char, (const real_t* __restrict__ dy,
               const signed char* __restrict__ argmax, real_t* __restrict__ dx, WINDOW_PARAMS_OF(index_t)),
               (dy, argmax, dx, WINDOW_ARGS))
argmax_type_of(max_pool_backward_tiled, _a32, int, (const real_t* __restrict__ dy, const int* __restrict__ argmax,
               real_t* __restrict__ dx, WINDOW_PARAMS_OF(index_t)), (dy, argmax, dx, WINDOW_ARGS))

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
index_variants(max_pool_forward_tiled_a8, (const real_t* __restrict__ x, real_t* __restrict__ out,
                                           signed char* __restrict__ argmax, WINDOW_PARAMS),
               (x, out, argmax, WINDOW_ARGS))
index_variants(max_pool_forward_tiled_a32, (const real_t* __restrict__ x, real_t* __restrict__ out,
                                            int* __restrict__ argmax, WINDOW_PARAMS), (x, out, argmax, WINDOW_ARGS))
index_variants(max_pool_backward_tiled_a8, (const real_t* __restrict__ dy, const signed char* __restrict__ argmax,
                                            real_t* __restrict__ dx, WINDOW_PARAMS), (dy, argmax, dx, WINDOW_ARGS))
index_variants(max_pool_backward_tiled_a32, (const real_t* __restrict__ dy, const int* __restrict__ argmax,
                                             real_t* __restrict__ dx, WINDOW_PARAMS), (dy, argmax, dx, WINDOW_ARGS))
index_variants(avg_pool_forward_tiled, (const real_t* __restrict__ x, real_t* __restrict__ out, WINDOW_PARAMS),
               (x, out, WINDOW_ARGS))
index_variants(avg_pool_backward_tiled, (const real_t* __restrict__ dy, real_t* __restrict__ dx, WINDOW_PARAMS),
               (dy, dx, WINDOW_ARGS))
