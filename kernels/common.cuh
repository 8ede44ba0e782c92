// What every kernel file shares: the element type, the math functions for it, the grid-stride loop, the activations
// of the fused kernels, tables of arrays (one launch over several arrays), and for the window kernels (im2col.cu,
// pooling.cu) their 12 sizes, their index math in 32 or 64 bits (dividers, the split of a flat index, their two entry
// points), runs of outputs per thread and the two ways to walk a window. The loader splices this file into each
// source in place of the line that includes it, so CuPy compiles one self-contained source (and its disk cache sees
// any change to this file); nvcc and the host build include it.
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

// The grid-stride loop: thread t of a grid of T threads takes idx = t, t + T, t + 2T, ... below total, in 64 bits.
#define for_each_index(idx, total)                                                                                  \
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x, idx##_step = (long long)blockDim.x *      \
         gridDim.x; idx < (total); idx += idx##_step)

// ---- Activations of the fused kernels (elementwise.cu: bias + activation; reduce.cu: its backward + bias sum) -----
//
// act: 0 identity, 1 ReLU, 2 logistic with slope alpha, 3 tanh: the arithmetic of the separate activation kernels of
// elementwise.cu, operation for operation. activation_slope takes the OUTPUT y = phi(v): phi'(v) = [y > 0] for ReLU
// (y > 0 exactly where v > 0, NaN included), alpha y (1 - y) for the logistic function, 1 - y^2 for tanh.
#define ACT_IDENTITY 0
#define ACT_RELU 1
#define ACT_SIGMOID 2
#define ACT_TANH 3

__device__ __forceinline__ real_t activate(long long act, real_t v, real_t alpha)
{
    if (act == ACT_RELU) return (v > 0 || v != v) ? v : (real_t)0;
    if (act == ACT_SIGMOID) {
        const real_t av = alpha * v;
        const real_t z = exp_(-(av < 0 ? -av : av));
        return v >= 0 ? 1 / (1 + z) : z / (1 + z);
    }
    if (act == ACT_TANH) return tanh_(v);
    return v;
}

__device__ __forceinline__ real_t activation_slope(long long act, real_t y, real_t alpha)
{
    if (act == ACT_RELU) return (real_t)(y > 0 ? 1 : 0);
    if (act == ACT_SIGMOID) return alpha * y * (1 - y);
    if (act == ACT_TANH) return 1 - y * y;
    return 1;
}

// ---- Tables of arrays: one launch over several arrays (kernels/tables.py builds them) ------------------------------
//
// A table of n arrays of one dtype is an int64 array: offsets[0 .. n] (offsets[0] = 0, offsets[n] = the elements of
// all of them), then one or more lists of n pointers, list l at table[n + 1 + l * n]. Element g of the arrays laid end
// to end is element g - offsets[k] of array k of each list, for the k with offsets[k] <= g < offsets[k + 1].
template <typename T>
__device__ __forceinline__ T* table_array(const long long* table, long long n, int list, long long k)
{
    return (T*)table[n + 1 + list * n + k];
}

// The first array k' >= k of a table whose elements reach past g (g below offsets[n]).
__device__ __forceinline__ long long table_advance(const long long* offsets, long long g, long long k)
{
    while (g >= offsets[k + 1]) ++k;
    return k;
}

// The grid-stride loop over the elements of a table's arrays: the statement that follows runs for element i of array
// k. A thread's flat index only grows, so its k only moves forward (past the arrays the stride jumps over).
#define for_each_table_element(table, n, k, i)                                                                      \
    for (long long k##_flat = (long long)blockIdx.x * blockDim.x + threadIdx.x, k = 0, i = 0,                       \
         k##_step = (long long)blockDim.x * gridDim.x;                                                              \
         k##_flat < (table)[n] && ((k = table_advance(table, k##_flat, k)), (i = k##_flat - (table)[k]), true);    \
         k##_flat += k##_step)

// ---- Index math of the window kernels (im2col.cu, pooling.cu) ----------------------------------------------------
//
// Each window kernel is a template on its index type, index_t, with two entry points: `name` (int) and `name_i64`
// (long long). The wrapper takes the 32-bit one when every size, the padded image height and width, and the element
// count of every array the launch touches are below 2^31 (gpudl.kernels.loader.window_variant), so every index and
// every intermediate below fits in an int; 64-bit division is a long software routine on a GPU, 32-bit arithmetic is
// native. The grid-stride loop counter itself stays 64-bit (idx + stride may pass 2^31); its value is below 2^31.

// n / d and n % d by a divisor d >= 1 fixed for the whole kernel. long long: the hardware's division.
template <typename index_t>
struct divider {
    index_t d;
    __device__ explicit divider(index_t d) : d(d) {}
    __device__ index_t div(index_t n) const { return n / d; }
};

// int: one multiply-high, one add and one shift per division (Granlund and Montgomery's round-up method), set up once
// per thread. With s = ceil(log2 d) and m = floor(2^32 (2^s - d) / d) + 1 (below 2^32, since 2^s - d < d),
// n / d = (floor(n m / 2^32) + n) >> s for every 0 <= n < 2^31; the sum stays below 2^32.
template <>
struct divider<int> {
    int d;
    unsigned int m, s;
    __device__ explicit divider(int d) : d(d), s(0)
    {
        while ((1u << s) < (unsigned int)d) ++s;
        m = (unsigned int)((((1ull << s) - (unsigned long long)d) << 32) / (unsigned long long)d + 1);
    }
    __device__ int div(int n) const
    {
        const unsigned int high = (unsigned int)(((unsigned long long)(unsigned int)n * m) >> 32);
        return (int)((high + (unsigned int)n) >> s);
    }
};

// Splits n >= 0 into the quotient n / d (left in n) and the remainder (returned): one digit of a flat index.
template <typename index_t>
__device__ __forceinline__ index_t split(index_t& n, const divider<index_t>& by)
{
    const index_t quotient = by.div(n);
    const index_t remainder = n - quotient * by.d;
    n = quotient;
    return remainder;
}

// Declares row, col and nc (= n * C + c) of the flat index flat (< 2^31 for index_t int) into an NCHW array whose
// planes are rows x cols, split by the dividers by_rows and by_cols.
#define nchw_cell(flat, by_rows, by_cols, row, col, nc)                                                             \
    index_t nc = (index_t)(flat);                                                                                   \
    index_t col = split(nc, by_cols);                                                                               \
    index_t row = split(nc, by_rows)

// The next flat index's digits: col + 1, carried into row and nc.
template <typename index_t>
__device__ __forceinline__ void next_cell(index_t& row, index_t& col, index_t& nc, index_t rows, index_t cols)
{
    if (++col == cols) {
        col = 0;
        if (++row == rows) {
            row = 0;
            ++nc;
        }
    }
}

// Runs. A window kernel gives each thread VEC consecutive outputs (VEC = 16 bytes of real_t: 4 floats, 2 doubles),
// flat indices first .. first + VEC - 1 with first = VEC * run: it splits first into its digits once and steps them
// for the others (next_cell), and writes the run with one 16-byte store when it is whole and aligned (store_run). A
// warp then writes 512 contiguous bytes per store, and the divisions are shared by VEC outputs. The grid-stride loop
// walks the runs, runs_of(total) of them.
constexpr int VEC = 16 / sizeof(real_t);

__device__ __forceinline__ long long runs_of(long long total) { return (total + VEC - 1) / VEC; }

template <typename T>
struct alignas(sizeof(T) * VEC) run_of {
    T v[VEC];
};

// out[first + e] = values[e] for e < VEC with first + e < total.
template <typename T>
__device__ __forceinline__ void store_run(T* __restrict__ out, long long first, long long total, const T* values)
{
    T* at = out + first;
    if (first + VEC <= total && (unsigned long long)at % sizeof(run_of<T>) == 0) {
        run_of<T> run;
        for (int e = 0; e < VEC; ++e) run.v[e] = values[e];
        *reinterpret_cast<run_of<T>*>(at) = run;
        return;
    }
    for (int e = 0; e < VEC && first + e < total; ++e) at[e] = values[e];
}

// Along one axis of K-wide windows at stride S whose first starts at -pad, O of them: window o covers input cell
// y >= 0 at offset i = y + pad - o*S when 0 <= i < K. So the windows covering y are o = first..last with
// last = min((y + pad) / S, O - 1) and first = 0 if y + pad < K, else (y + pad - K) / S + 1 (none when first > last).
template <typename index_t>
__device__ __forceinline__ index_t last_covering(index_t y, index_t pad, index_t O, const divider<index_t>& by_S)
{
    const index_t o = by_S.div(y + pad);
    return o < O ? o : O - 1;
}

template <typename index_t>
__device__ __forceinline__ index_t first_covering(index_t y, index_t pad, index_t K, const divider<index_t>& by_S)
{
    return y + pad < K ? 0 : by_S.div(y + pad - K) + 1;
}

// The sizes every window kernel takes, in this order: images N x C x H x W, windows KH x KW at OH x OW positions,
// strides SH x SW, and the top and left pads (bottom and right only show in OH and OW). The entry points take them
// as long long (what the loader passes), the template bodies as index_t.
#define WINDOW_PARAMS_OF(T)                                                                                         \
    T N, T C, T H, T W, T KH, T KW, T OH, T OW, T SH, T SW, T top, T left
#define WINDOW_PARAMS WINDOW_PARAMS_OF(long long)
#define WINDOW_ARGS N, C, H, W, KH, KW, OH, OW, SH, SW, top, left

// The two entry points of window kernel `name`: name PARAMS runs name_body<int> ARGS, name_i64 the long long one.
#define index_variants(name, PARAMS, ARGS)                                                                          \
    extern "C" __global__ void name PARAMS { name##_body<int> ARGS; }                                               \
    extern "C" __global__ void name##_i64 PARAMS { name##_body<long long> ARGS; }

// Inside a window kernel body: the statement that follows runs for every real (unpadded) cell (y, xx) of window
// (oh, ow), at kernel offset (i, j), i ascending, then j. The loops start and stop at the image's edges.
#define for_each_real_cell(oh, ow, i, j, y, xx)                                                                     \
    for (index_t y##_0 = (oh) * SH - top, i = y##_0 < 0 ? -y##_0 : 0, y = y##_0 + i; i < KH && y < H; ++i, ++y)   \
        for (index_t xx##_0 = (ow) * SW - left, j = xx##_0 < 0 ? -xx##_0 : 0, xx = xx##_0 + j; j < KW && xx < W;  \
             ++j, ++xx)

// Inside a window kernel body with dividers by_SH and by_SW, the gather of an adjoint: the statement that follows
// runs for every window (oh, ow) that covers input cell (y, xx), at kernel offset (i, j), i ascending, then j (oh and
// ow descending): two divisions per axis, whatever the window size.
#define for_each_covering_window(y, xx, i, j, oh, ow)                                                               \
    for (index_t ow##_last = last_covering(xx, left, OW, by_SW), ow##_first = first_covering(xx, left, KW, by_SW),  \
         oh = last_covering(y, top, OH, by_SH), oh##_first = first_covering(y, top, KH, by_SH),                     \
         i = y + top - oh * SH; oh >= oh##_first; --oh, i += SH)                                                    \
        for (index_t ow = ow##_last, j = xx + left - ow * SW; ow >= ow##_first; --ow, j += SW)

// The gather of an adjoint, for window kernel bodies: out[n, c, y, xx] = the sum, over the windows (oh, ow) that
// cover input cell (y, xx) (i ascending, then j), of term(window, nc, i, j, oh, ow), where
// window = (nc*OH + oh)*OW + ow is the flat index of window (oh, ow) of plane nc = n*C + c. One thread per run of
// VEC cells, so no atomics.
template <typename index_t, typename Term>
__device__ __forceinline__ void gather(real_t* __restrict__ out, WINDOW_PARAMS_OF(index_t), Term term)
{
    const divider<index_t> by_W(W), by_H(H), by_SW(SW), by_SH(SH);
    const long long total = (long long)N * C * H * W;
    for_each_index(run, runs_of(total)) {
        const long long first = run * VEC;
        nchw_cell(first, by_H, by_W, y, xx, nc);
        real_t sums[VEC] = {};
        for (int e = 0; e < VEC && first + e < total; ++e) {
            real_t sum = 0;
            for_each_covering_window(y, xx, i, j, oh, ow)
                sum += term((nc * OH + oh) * OW + ow, nc, i, j, oh, ow);
            sums[e] = sum;
            next_cell(y, xx, nc, H, W);
        }
        store_run(out, first, total, sums);
    }
}
