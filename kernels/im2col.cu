// im2col and col2im for 2-D windows over NCHW images (convolution through one matrix product).
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. pads: top and left are passed; bottom and right only
// show in OH and OW. Each kernel has a 32-bit entry point and a 64-bit one (`_i64`, for arrays or sizes past 2^31;
// index_variants in the shared header); the wrapper picks.
//
// im2col:  col[n, c, i, j, oh, ow] = x[n, c, oh*SH + i - top, ow*SW + j - left], or `fill` outside the image.
// col2im:  img[n, c, y, x] = sum over (i, j) of col[n, c, i, j, oh, ow] where oh*SH + i - top = y and
//          ow*SW + j - left = x; a gather (each image cell sums the columns that read it), so no atomics and a
//          fixed summation order (i, then j), the same as the NumPy path.
//
// Index math. One thread per run of VEC consecutive output elements (the shared header's runs: 4 floats or 2
// doubles), grid-stride loop: consecutive threads take consecutive runs, so the 16-byte stores of a warp are
// contiguous (and, at stride 1, its reads). The cost per run is the split of its first flat index into digits: four
// divisions (by OW, OH, KW, KH) for im2col, two (by W, H) for col2im, each a multiply-high, an add and a shift in the
// 32-bit variant (the shared header's divider, set up once per thread); the run's other elements step the digits.
// col2im then visits only the windows that cover its cell, found with two divisions by the stride per axis
// (for_each_covering_window), not a test of every offset.
#include "common.cuh"

template <typename index_t>
__device__ __forceinline__ void im2col_body(const real_t* __restrict__ x, real_t* __restrict__ col,
                                            WINDOW_PARAMS_OF(index_t), real_t fill)
{
    const divider<index_t> by_OW(OW), by_OH(OH), by_KW(KW), by_KH(KH);
    const long long total = (long long)N * C * KH * KW * OH * OW;
    for_each_index(run, runs_of(total)) {
        const long long first = run * VEC;
        index_t nc = (index_t)first;                     // becomes n * C + c once the digits below are split off
        index_t ow = split(nc, by_OW), oh = split(nc, by_OH), j = split(nc, by_KW), i = split(nc, by_KH);
        real_t values[VEC] = {};
        for (int e = 0; e < VEC && first + e < total; ++e) {
            const index_t y = oh * SH + i - top;
            const index_t xx = ow * SW + j - left;
            const bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
            values[e] = inside ? x[(nc * H + y) * W + xx] : fill;
            if (++ow == OW) {                            // the next element's digits
                ow = 0;
                if (++oh == OH) {
                    oh = 0;
                    next_cell(i, j, nc, KH, KW);
                }
            }
        }
        store_run(col, first, total, values);
    }
}

template <typename index_t>
__device__ __forceinline__ void col2im_body(const real_t* __restrict__ col, real_t* __restrict__ img,
                                            WINDOW_PARAMS_OF(index_t))
{
    gather(img, WINDOW_ARGS, [=](index_t, index_t nc, index_t i, index_t j, index_t oh, index_t ow) {
        return col[(((nc * KH + i) * KW + j) * OH + oh) * OW + ow];
    });
}

index_variants(im2col, (const real_t* __restrict__ x, real_t* __restrict__ col, WINDOW_PARAMS, real_t fill),
               (x, col, WINDOW_ARGS, fill))
index_variants(col2im, (const real_t* __restrict__ col, real_t* __restrict__ img, WINDOW_PARAMS),
               (col, img, WINDOW_ARGS))
