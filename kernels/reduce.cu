// Sums for a training step: the gradients of biases (sums over the batch, and over the pixels of a convolution's
// channel; with an activation's backward fused in front), a loss's mean, and the global norm of gradient clipping.
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. Each sum uses the whole GPU and is deterministic:
// a block of threads sums one piece of it, each thread its own elements in order, then the block adds its threads'
// sums as a tree in shared memory (a fixed order); a second launch adds the pieces' sums the same way
// (kernels/reduce.py decides when one launch suffices). No atomics: for a given shape and block size the order of
// every addition is fixed, so every run gives the same bits. The blocks walk their pieces in a block-stride loop, so
// the grid size changes which block sums a piece, never how.
//
// sum_rows:   x (R, C) summed down its columns, R rows at most P at a time: out[q, c] = sum_{qP <= r < qP+P} x[r, c].
//             A block is 8 row lanes (ROW_LANES) times blockDim.x / 8 neighbouring columns, so a warp reads
//             consecutive columns of one row (coalesced); lane k takes rows qP + k, qP + k + 8, ...
// sum_columns: the same sums for short parts (a few dozen rows), one thread per (q, c) adding its rows in order: no
//             shared memory, and a warp still reads consecutive columns.
// sum_planes: x (outer, C, inner) summed per channel c over its outer * inner elements m = o * inner + i, L at a
//             time: out[c, q] = sum_{qL <= m < qL+L} x[o, c, i]; thread t takes m = qL + t, qL + t + blockDim.x, ...
//             (consecutive threads read consecutive addresses within a plane), PLANE_LOADS of them loaded before
//             any is added, so that the loads wait on memory together (the additions keep their order).
// accumulate: out[...] += the sum instead of out[...] = it.
// *_activation: the element summed is dv = dy * phi'(y) (the shared header's activation_slope, from the output y),
//             and each is also written to dv: an activation's backward and the bias gradient of the layer below it
//             in one pass.
// scaled_sum: one block: out[0] = scale * sum_i x[i] / divisor (the mean: scale 1, divisor n; the squared error: 1/2).
//
// Gradient clipping by the global norm (optim.clip_grad_norm) sums in double, as the NumPy path does, whatever real_t
// is; its double arrays reach the kernels viewed as int64 (the loader wants one real type per launch). The gradients
// come as one table of arrays (the shared header), so the whole clip is three launches for any number of them:
// sum_squares_table: partial[q] = sum of g^2 over elements qL .. qL + L - 1 of the arrays laid end to end
// norm_scale:        one block: norms[0] = sqrt(sum_q partial[q]), norms[1] = min(1, max_norm / (norms[0] + 1e-6))
// scale_table:       g = g * (real_t)norms[1] for every element of every array
#include "common.cuh"

#define MAX_BLOCK 1024      // the largest block CUDA launches: the size of the shared arrays
#define ROW_LANES 8         // row lanes of a sum_rows block (blockDim.x is a multiple of it)
#define PLANE_LOADS 8       // loads a sum_planes thread issues before adding them: a plane's elements are far apart

// part[k * stride + lane] for k = 0 .. count - 1 added into part[lane] as a tree in a fixed order: at each level,
// entry k < width - half takes entry k + half (half = ceil(width / 2)). Every thread of the block calls it (it holds
// barriers), after writing its entry and a barrier; thread (k, lane) owns entry k of column lane.
template <typename T>
__device__ __forceinline__ void tree_sum(T* part, unsigned int k, unsigned int lane, unsigned int count,
                                         unsigned int stride)
{
    for (unsigned int width = count; width > 1;) {
        const unsigned int half = (width + 1) / 2;
        if (k + half < width) part[k * stride + lane] += part[(k + half) * stride + lane];
        __syncthreads();
        width = half;
    }
}

// The element a sum reads: x[idx] as it is, or an activation's backward dv = dy * phi'(y), written to dv as well.
struct plain_element {
    const real_t* __restrict__ x;
    __device__ real_t operator()(long long idx) const { return x[idx]; }
};

struct activation_element {
    const real_t* __restrict__ dy;
    const real_t* __restrict__ y;
    real_t* __restrict__ dv;
    long long act;
    real_t alpha;
    __device__ real_t operator()(long long idx) const
    {
        const real_t v = dy[idx] * activation_slope(act, y[idx], alpha);
        dv[idx] = v;
        return v;
    }
};

template <typename Element>
__device__ __forceinline__ void sum_rows_body(real_t* __restrict__ out, Element element, long long R, long long C,
                                              long long P, long long accumulate)
{
    __shared__ real_t part[MAX_BLOCK];
    const unsigned int columns = blockDim.x / ROW_LANES;
    const unsigned int lane = threadIdx.x % columns, k = threadIdx.x / columns;
    const long long tiles = (C + columns - 1) / columns, parts = (R + P - 1) / P;
    for (long long item = blockIdx.x; item < tiles * parts; item += gridDim.x) {
        const long long q = item / tiles, c = (item % tiles) * columns + lane;
        const long long end = (q + 1) * P < R ? (q + 1) * P : R;
        real_t s = 0;
        if (c < C)
            for (long long r = q * P + k; r < end; r += ROW_LANES) s += element(r * C + c);
        part[threadIdx.x] = s;
        __syncthreads();
        tree_sum(part, k, lane, ROW_LANES, columns);
        if (k == 0 && c < C) out[q * C + c] = accumulate ? out[q * C + c] + part[lane] : part[lane];
        __syncthreads();                                  // part is read before the next piece overwrites it
    }
}

template <typename Element>
__device__ __forceinline__ void sum_planes_body(real_t* __restrict__ out, Element element, long long outer,
                                                long long C, long long inner, long long L, long long accumulate)
{
    __shared__ real_t part[MAX_BLOCK];
    const long long count = outer * inner, parts = (count + L - 1) / L, B = blockDim.x;
    // Stepping m by B moves (o, i) by (B / inner, B % inner), plus a carry: the flat index of x moves by jump, or
    // by jump + (C - 1) * inner when i passes the end of a row.
    const long long step_o = B / inner, step_i = B % inner, jump = step_o * C * inner + step_i;
    const long long carry = (C - 1) * inner;
    for (long long item = blockIdx.x; item < C * parts; item += gridDim.x) {
        const long long c = item / parts, q = item % parts;
        const long long end = (q + 1) * L < count ? (q + 1) * L : count;
        long long m = q * L + threadIdx.x, o = m / inner, i = m - o * inner, idx = (o * C + c) * inner + i;
        const auto next = [&]() {
            idx += jump;
            i += step_i;
            if (i >= inner) {
                i -= inner;
                idx += carry;
            }
        };
        real_t s = 0;
        for (; m + (PLANE_LOADS - 1) * B < end; m += PLANE_LOADS * B) {     // loads first, then the additions
            real_t v[PLANE_LOADS];
            for (int u = 0; u < PLANE_LOADS; ++u, next()) v[u] = element(idx);
            for (int u = 0; u < PLANE_LOADS; ++u) s += v[u];
        }
        for (; m < end; m += B, next()) s += element(idx);
        part[threadIdx.x] = s;
        __syncthreads();
        tree_sum(part, threadIdx.x, 0u, blockDim.x, 1u);
        if (threadIdx.x == 0) out[item] = accumulate ? out[item] + part[0] : part[0];
        __syncthreads();
    }
}

template <typename Element>
__device__ __forceinline__ void sum_columns_body(real_t* __restrict__ out, Element element, long long R, long long C,
                                                 long long P, long long accumulate)
{
    const long long parts = (R + P - 1) / P;
    for_each_index(qc, parts * C) {
        const long long q = qc / C, c = qc - q * C;
        const long long end = (q + 1) * P < R ? (q + 1) * P : R;
        real_t s = 0;
        for (long long r = q * P; r < end; ++r) s += element(r * C + c);
        out[qc] = accumulate ? out[qc] + s : s;
    }
}

extern "C" __global__ void sum_rows(real_t* __restrict__ out, const real_t* __restrict__ x, long long R, long long C,
                                   long long P, long long accumulate)
{
    sum_rows_body(out, plain_element{x}, R, C, P, accumulate);
}

extern "C" __global__ void sum_rows_activation(real_t* __restrict__ out, const real_t* __restrict__ dy,
                                              const real_t* __restrict__ y, real_t* __restrict__ dv, long long R,
                                              long long C, long long P, long long accumulate, long long act,
                                              real_t alpha)
{
    sum_rows_body(out, activation_element{dy, y, dv, act, alpha}, R, C, P, accumulate);
}

extern "C" __global__ void sum_columns(real_t* __restrict__ out, const real_t* __restrict__ x, long long R,
                                      long long C, long long P, long long accumulate)
{
    sum_columns_body(out, plain_element{x}, R, C, P, accumulate);
}

extern "C" __global__ void sum_columns_activation(real_t* __restrict__ out, const real_t* __restrict__ dy,
                                                 const real_t* __restrict__ y, real_t* __restrict__ dv, long long R,
                                                 long long C, long long P, long long accumulate, long long act,
                                                 real_t alpha)
{
    sum_columns_body(out, activation_element{dy, y, dv, act, alpha}, R, C, P, accumulate);
}

extern "C" __global__ void sum_planes(real_t* __restrict__ out, const real_t* __restrict__ x, long long outer,
                                     long long C, long long inner, long long L, long long accumulate)
{
    sum_planes_body(out, plain_element{x}, outer, C, inner, L, accumulate);
}

extern "C" __global__ void sum_planes_activation(real_t* __restrict__ out, const real_t* __restrict__ dy,
                                                const real_t* __restrict__ y, real_t* __restrict__ dv,
                                                long long outer, long long C, long long inner, long long L,
                                                long long accumulate, long long act, real_t alpha)
{
    sum_planes_body(out, activation_element{dy, y, dv, act, alpha}, outer, C, inner, L, accumulate);
}

extern "C" __global__ void scaled_sum(real_t* __restrict__ out, const real_t* __restrict__ x, long long n,
                                     real_t scale, real_t divisor)
{
    __shared__ real_t part[MAX_BLOCK];
    real_t s = 0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    part[threadIdx.x] = s;
    __syncthreads();
    tree_sum(part, threadIdx.x, 0u, blockDim.x, 1u);
    if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = scale * part[0] / divisor;
}

extern "C" __global__ void sum_squares_table(double* __restrict__ partial, const long long* __restrict__ table,
                                            long long n, long long L)
{
    __shared__ double part[MAX_BLOCK];
    const long long total = table[n], parts = (total + L - 1) / L;
    for (long long q = blockIdx.x; q < parts; q += gridDim.x) {
        const long long end = (q + 1) * L < total ? (q + 1) * L : total;
        double s = 0;
        for (long long g = q * L + threadIdx.x, k = 0; g < end; g += blockDim.x) {
            k = table_advance(table, g, k);
            const double v = table_array<const real_t>(table, n, 0, k)[g - table[k]];
            s += v * v;
        }
        part[threadIdx.x] = s;
        __syncthreads();
        tree_sum(part, threadIdx.x, 0u, blockDim.x, 1u);
        if (threadIdx.x == 0) partial[q] = part[0];
        __syncthreads();
    }
}

extern "C" __global__ void norm_scale(double* __restrict__ norms, const double* __restrict__ partial, long long P,
                                     real_t max_norm_hi, real_t max_norm_lo)
{
    __shared__ double part[MAX_BLOCK];
    double s = 0;
    for (long long p = threadIdx.x; p < P; p += blockDim.x) s += partial[p];
    part[threadIdx.x] = s;
    __syncthreads();
    tree_sum(part, threadIdx.x, 0u, blockDim.x, 1u);
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        const double total = sqrt(part[0]), max_norm = (double)max_norm_hi + (double)max_norm_lo;
        const double scale = max_norm / (total + 1e-6);
        norms[0] = total;
        norms[1] = scale < 1 ? scale : 1;
    }
}

extern "C" __global__ void scale_table(const long long* __restrict__ table, long long n,
                                      const double* __restrict__ norms)
{
    const real_t scale = (real_t)norms[1];
    for_each_table_element(table, n, k, i) {
        real_t* g = table_array<real_t>(table, n, 0, k);
        g[i] = g[i] * scale;
    }
}
