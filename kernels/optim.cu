// Fused optimizer updates: one pass over a parameter does weight decay, the moment updates and the step.
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. One thread per element i of the parameter,
// grid-stride loop, 64-bit indices. What changes from step to step (the learning rate, Adam's step count t and its
// bias corrections) is read from small device arrays the optimizer owns, never passed by value, so a step captured
// in a CUDA graph follows a schedule that changes lr between replays, and t counts on the device. The arithmetic is
// that of the NumPy path in gpudl/functional/optim.py, operation for operation:
//
// sgd_step:          g = grad + wd w (when wd != 0);                      w -= lr g
// sgd_momentum_step: g = grad + wd w (when wd != 0);  v = mu v + g;       w -= lr v
// adam_scalars:      t += 1;  scalars = (lr / c1, c2),  c1 = 1 - b1^t, c2 = 1 - b2^t  (one thread, once per step,
//                    in double as the NumPy path computes them; each beta arrives as real_t hi + lo, which in float
//                    keeps the double's digits that a single float would round away)
// adam_step:         g = grad + wd w (when wd != 0);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//                    w -= (lr / c1) m / (sqrt(v / c2) + eps)
// The SGD kernels also count the step: given bump = 1, thread 0 adds one to count[0] (no other thread reads it).
//
// The *_table twins update every parameter of a model in one launch: a table of arrays (the shared header) whose
// lists are the parameters w, their gradients, and the buffers (velocity; Adam's m, v), element by element as above.
#include "common.cuh"

__device__ __forceinline__ real_t decayed(real_t grad, real_t w, real_t weight_decay)
{
    return weight_decay != 0 ? grad + weight_decay * w : grad;
}

__device__ __forceinline__ void count_once(long long* count, long long bump)
{
    if (bump && blockIdx.x == 0 && threadIdx.x == 0) count[0] += 1;
}

extern "C" __global__ void sgd_step(real_t* __restrict__ w, const real_t* __restrict__ grad, long long n,
                                    const real_t* __restrict__ lr, real_t weight_decay, long long* count,
                                    long long bump)
{
    const real_t rate = lr[0];
    for_each_index(i, n) {
        const real_t g = decayed(grad[i], w[i], weight_decay);
        w[i] = w[i] - rate * g;
    }
    count_once(count, bump);
}

extern "C" __global__ void sgd_momentum_step(real_t* __restrict__ w, const real_t* __restrict__ grad,
                                             real_t* __restrict__ velocity, long long n,
                                             const real_t* __restrict__ lr, real_t momentum, real_t weight_decay,
                                             long long* count, long long bump)
{
    const real_t rate = lr[0];
    for_each_index(i, n) {
        const real_t g = decayed(grad[i], w[i], weight_decay);
        const real_t v = velocity[i] * momentum + g;
        velocity[i] = v;
        w[i] = w[i] - rate * v;
    }
    count_once(count, bump);
}

extern "C" __global__ void adam_scalars(const real_t* __restrict__ lr, long long* __restrict__ count,
                                        real_t* __restrict__ scalars, real_t beta1_hi, real_t beta1_lo,
                                        real_t beta2_hi, real_t beta2_lo)
{
    for_each_index(i, 1) {
        const long long t = count[0] + 1;
        count[0] = t;
        const double beta1 = (double)beta1_hi + (double)beta1_lo, beta2 = (double)beta2_hi + (double)beta2_lo;
        scalars[0] = (real_t)((double)lr[0] / (1.0 - pow(beta1, (double)t)));
        scalars[1] = (real_t)(1.0 - pow(beta2, (double)t));
    }
}

extern "C" __global__ void adam_step(real_t* __restrict__ w, const real_t* __restrict__ grad,
                                     real_t* __restrict__ m, real_t* __restrict__ v, long long n,
                                     const real_t* __restrict__ scalars, real_t beta1, real_t one_minus_beta1,
                                     real_t beta2, real_t one_minus_beta2, real_t eps, real_t weight_decay)
{
    const real_t step_size = scalars[0], correction2 = scalars[1];
    for_each_index(i, n) {
        const real_t g = decayed(grad[i], w[i], weight_decay);
        const real_t mi = m[i] * beta1 + one_minus_beta1 * g;
        const real_t vi = v[i] * beta2 + one_minus_beta2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] - step_size * mi / (sqrt_(vi / correction2) + eps);
    }
}

extern "C" __global__ void sgd_table(const long long* __restrict__ table, long long n, const real_t* __restrict__ lr,
                                     real_t weight_decay, long long* count, long long bump)
{
    const real_t rate = lr[0];
    for_each_table_element(table, n, k, i) {
        real_t* w = table_array<real_t>(table, n, 0, k);
        const real_t g = decayed(table_array<const real_t>(table, n, 1, k)[i], w[i], weight_decay);
        w[i] = w[i] - rate * g;
    }
    count_once(count, bump);
}

extern "C" __global__ void sgd_momentum_table(const long long* __restrict__ table, long long n,
                                              const real_t* __restrict__ lr, real_t momentum, real_t weight_decay,
                                              long long* count, long long bump)
{
    const real_t rate = lr[0];
    for_each_table_element(table, n, k, i) {
        real_t* w = table_array<real_t>(table, n, 0, k);
        real_t* velocity = table_array<real_t>(table, n, 2, k);
        const real_t g = decayed(table_array<const real_t>(table, n, 1, k)[i], w[i], weight_decay);
        const real_t v = velocity[i] * momentum + g;
        velocity[i] = v;
        w[i] = w[i] - rate * v;
    }
    count_once(count, bump);
}

extern "C" __global__ void adam_table(const long long* __restrict__ table, long long n,
                                      const real_t* __restrict__ scalars, real_t beta1, real_t one_minus_beta1,
                                      real_t beta2, real_t one_minus_beta2, real_t eps, real_t weight_decay)
{
    const real_t step_size = scalars[0], correction2 = scalars[1];
    for_each_table_element(table, n, k, i) {
        real_t* w = table_array<real_t>(table, n, 0, k);
        real_t* m = table_array<real_t>(table, n, 2, k);
        real_t* v = table_array<real_t>(table, n, 3, k);
        const real_t g = decayed(table_array<const real_t>(table, n, 1, k)[i], w[i], weight_decay);
        const real_t mi = m[i] * beta1 + one_minus_beta1 * g;
        const real_t vi = v[i] * beta2 + one_minus_beta2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] - step_size * mi / (sqrt_(vi / correction2) + eps);
    }
}
