// The small elementwise ops of a training step, so that every op of a step on the kernel path is one of our
// launches (and a whole step can be recorded and replayed): fill, copy, bias add with an activation, the activations
// forward and backward, the (0, 1) axis swap of a 3-D array, one-hot rows, and the rows of the mean squared error.
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. One thread per output element, grid-stride loop,
// 64-bit indices unless said otherwise. Each op does the arithmetic of the NumPy path of the same name in
// gpudl/functional, operation for operation (the activations: the shared header's activate and activation_slope):
//
// fill:              out[i] = value;  fill_table: the same over every array of a table (the shared header), one launch
// copy:              out[i] = src[i]
// bias_activation:   y[o, c, i] = phi(y[o, c, i] + b[c]) for y (outer, C, inner), phi one of the shared header's
//                    ACT_* (a dense layer's rows: inner = 1; a convolution's channels: inner = OH*OW); add_bias is
//                    phi = the identity. 32-bit index math below 2^31 elements (the `_i64` entry point past it).
// relu_forward:      y = max(v, 0) (NaN stays NaN);  relu_backward: dv = dy * (v > 0)
// sigmoid_forward:   z = exp(-|alpha v|), y = 1 / (1 + z) for v >= 0, z / (1 + z) below (no overflow)
// sigmoid_backward:  dv = dy * (alpha y (1 - y))
// tanh_forward:      y = tanh(v);  tanh_backward: dv = dy * (1 - y y)
// swap01:            out[b, a, c] = src[a, b, c] for src (A, B, C): batch-major <-> time-major sequences
// one_hot:           out[r, v] = (indices[r] == v), indices outside [0, V) give a row of zeros
// mse_rows:          d = pred - target;  dpred = d / m;  rows[n] = sum_j d_nj^2  (the loss is 1/2 sum(rows) / m)
#include "common.cuh"

extern "C" __global__ void fill(real_t* __restrict__ out, long long n, real_t value)
{
    for_each_index(i, n) out[i] = value;
}

extern "C" __global__ void copy(real_t* __restrict__ out, const real_t* __restrict__ src, long long n)
{
    for_each_index(i, n) out[i] = src[i];
}

extern "C" __global__ void fill_table(const long long* __restrict__ table, long long n, real_t value)
{
    for_each_table_element(table, n, k, i) table_array<real_t>(table, n, 0, k)[i] = value;
}

template <typename index_t>
__device__ __forceinline__ void bias_activation_body(real_t* __restrict__ y, const real_t* __restrict__ b,
                                                     index_t outer, index_t C, index_t inner, long long act,
                                                     real_t alpha)
{
    const divider<index_t> by_inner(inner), by_C(C);
    for_each_index(flat, (long long)outer * C * inner) {
        index_t oc = by_inner.div((index_t)flat);       // o * C + c
        const index_t c = split(oc, by_C);
        y[flat] = activate(act, y[flat] + b[c], alpha);
    }
}

extern "C" __global__ void bias_activation(real_t* __restrict__ y, const real_t* __restrict__ b, long long outer,
                                          long long C, long long inner, long long act, real_t alpha)
{
    bias_activation_body<int>(y, b, (int)outer, (int)C, (int)inner, act, alpha);
}

extern "C" __global__ void bias_activation_i64(real_t* __restrict__ y, const real_t* __restrict__ b,
                                              long long outer, long long C, long long inner, long long act,
                                              real_t alpha)
{
    bias_activation_body<long long>(y, b, outer, C, inner, act, alpha);
}

extern "C" __global__ void relu_forward(real_t* __restrict__ y, const real_t* __restrict__ v, long long n)
{
    for_each_index(i, n) y[i] = activate(ACT_RELU, v[i], 1);
}

extern "C" __global__ void relu_backward(real_t* __restrict__ dv, const real_t* __restrict__ v,
                                        const real_t* __restrict__ dy, long long n)
{
    for_each_index(i, n) dv[i] = dy[i] * activation_slope(ACT_RELU, v[i], 1);
}

extern "C" __global__ void sigmoid_forward(real_t* __restrict__ y, const real_t* __restrict__ v, long long n,
                                          real_t alpha)
{
    for_each_index(i, n) y[i] = activate(ACT_SIGMOID, v[i], alpha);
}

extern "C" __global__ void sigmoid_backward(real_t* __restrict__ dv, const real_t* __restrict__ y,
                                           const real_t* __restrict__ dy, long long n, real_t alpha)
{
    for_each_index(i, n) dv[i] = dy[i] * activation_slope(ACT_SIGMOID, y[i], alpha);
}

extern "C" __global__ void tanh_forward(real_t* __restrict__ y, const real_t* __restrict__ v, long long n)
{
    for_each_index(i, n) y[i] = activate(ACT_TANH, v[i], 1);
}

extern "C" __global__ void tanh_backward(real_t* __restrict__ dv, const real_t* __restrict__ y,
                                        const real_t* __restrict__ dy, long long n)
{
    for_each_index(i, n) dv[i] = dy[i] * activation_slope(ACT_TANH, y[i], 1);
}

extern "C" __global__ void swap01(real_t* __restrict__ out, const real_t* __restrict__ src, long long A,
                                 long long B, long long C)
{
    for_each_index(i, A * B * C) {
        const long long c = i % C, a = (i / C) % A, b = i / (C * A);     // i indexes out (B, A, C)
        out[i] = src[(a * B + b) * C + c];
    }
}

extern "C" __global__ void one_hot(real_t* __restrict__ out, const long long* __restrict__ indices, long long R,
                                  long long V)
{
    for_each_index(i, R * V) out[i] = indices[i / V] == i % V ? 1 : 0;
}

extern "C" __global__ void mse_rows(const real_t* __restrict__ pred, const real_t* __restrict__ target,
                                   real_t* __restrict__ rows, real_t* __restrict__ dpred, long long N, long long D,
                                   real_t m)
{
    for_each_index(n, N) {
        real_t s = 0;
        for (long long j = n * D; j < (n + 1) * D; ++j) {
            const real_t d = pred[j] - target[j];
            dpred[j] = d / m;
            s += d * d;
        }
        rows[n] = s;
    }
}
