// Sums for a training step: the gradients of biases (sums over the batch, and over the pixels of a convolution's
// channel), a loss's mean over rows, and the global norm of gradient clipping.
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. One thread per output element, grid-stride loop,
// 64-bit indices, each thread summing its own elements in order (no atomics: deterministic, and the host build runs
// it as it is). Big sums go in two launches (kernels/reduce.py): first over the inner axis, then over the outer one.
//
// sum_axes:   out[c] = (accumulate ? out[c] : 0) + sum_{o, i} x[o, c, i] for x (outer, C, inner)
// scaled_sum: out[0] = scale * sum_i x[i] / divisor (the mean: scale 1, divisor n; the squared error: scale 1/2)
//
// Gradient clipping by the global norm (optim.clip_grad_norm) sums in double, as the NumPy path does, whatever
// real_t is; its double arrays reach the kernels viewed as int64 (the loader wants one real type per launch):
// sum_squares: partial[p] = sum_{i = p, p + P, ...} x[i]^2 for p < P, one parameter's share of the norm
// norm_scale:  norms[0] = sqrt(sum_p partial[p]),  norms[1] = min(1, max_norm / (norms[0] + 1e-6))
// scale_by:    x[i] = x[i] * (real_t)norms[1]
#include "common.cuh"

extern "C" __global__ void sum_axes(real_t* __restrict__ out, const real_t* __restrict__ x, long long outer,
                                   long long C, long long inner, long long accumulate)
{
    for_each_index(c, C) {
        real_t s = 0;
        for (long long o = 0; o < outer; ++o)
            for (long long i = (o * C + c) * inner, end = i + inner; i < end; ++i)
                s += x[i];
        out[c] = accumulate ? out[c] + s : s;
    }
}

extern "C" __global__ void scaled_sum(real_t* __restrict__ out, const real_t* __restrict__ x, long long n,
                                     real_t scale, real_t divisor)
{
    for_each_index(k, 1) {
        real_t s = 0;
        for (long long i = 0; i < n; ++i) s += x[i];
        out[0] = scale * s / divisor;
    }
}

extern "C" __global__ void sum_squares(double* __restrict__ partial, const real_t* __restrict__ x, long long n,
                                      long long P)
{
    for_each_index(p, P) {
        double s = 0;
        for (long long i = p; i < n; i += P) {
            const double v = x[i];
            s += v * v;
        }
        partial[p] = s;
    }
}

extern "C" __global__ void norm_scale(double* __restrict__ norms, const double* __restrict__ partial, long long P,
                                     real_t max_norm_hi, real_t max_norm_lo)
{
    for_each_index(k, 1) {
        double s = 0;
        for (long long p = 0; p < P; ++p) s += partial[p];
        const double total = sqrt(s), max_norm = (double)max_norm_hi + (double)max_norm_lo;
        const double scale = max_norm / (total + 1e-6);
        norms[0] = total;
        norms[1] = scale < 1 ? scale : 1;
    }
}

extern "C" __global__ void scale_by(real_t* __restrict__ x, long long n, const double* __restrict__ norms)
{
    const real_t scale = (real_t)norms[1];
    for_each_index(i, n) x[i] = x[i] * scale;
}
