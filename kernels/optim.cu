// Fused optimizer updates: one pass over a parameter does weight decay, the moment updates and the step.
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. One thread per element i of the parameter,
// grid-stride loop, 64-bit indices. Every scalar (lr, momentum, the bias corrections) arrives as a real_t computed
// on the host, so nothing is read back from the device. The arithmetic is that of the NumPy path in
// gpudl/functional/optim.py, operation for operation:
//
// sgd_step:          g = grad + wd w (when wd != 0);                      w -= lr g
// sgd_momentum_step: g = grad + wd w (when wd != 0);  v = mu v + g;       w -= lr v
// adam_step:         g = grad + wd w (when wd != 0);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//                    w -= (lr / c1) m / (sqrt(v / c2) + eps),  c1 = 1 - b1^t, c2 = 1 - b2^t (passed as lr/c1 and c2)
#include "common.cuh"

__device__ __forceinline__ real_t decayed(real_t grad, real_t w, real_t weight_decay)
{
    return weight_decay != 0 ? grad + weight_decay * w : grad;
}

extern "C" __global__ void sgd_step(real_t* __restrict__ w, const real_t* __restrict__ grad, long long n,
                                    real_t lr, real_t weight_decay)
{
    for_each_index(i, n) {
        const real_t g = decayed(grad[i], w[i], weight_decay);
        w[i] = w[i] - lr * g;
    }
}

extern "C" __global__ void sgd_momentum_step(real_t* __restrict__ w, const real_t* __restrict__ grad,
                                             real_t* __restrict__ velocity, long long n, real_t lr,
                                             real_t momentum, real_t weight_decay)
{
    for_each_index(i, n) {
        const real_t g = decayed(grad[i], w[i], weight_decay);
        const real_t v = velocity[i] * momentum + g;
        velocity[i] = v;
        w[i] = w[i] - lr * v;
    }
}

extern "C" __global__ void adam_step(real_t* __restrict__ w, const real_t* __restrict__ grad,
                                     real_t* __restrict__ m, real_t* __restrict__ v, long long n,
                                     real_t step_size, real_t beta1, real_t one_minus_beta1, real_t beta2,
                                     real_t one_minus_beta2, real_t correction2, real_t eps, real_t weight_decay)
{
    for_each_index(i, n) {
        const real_t g = decayed(grad[i], w[i], weight_decay);
        const real_t mi = m[i] * beta1 + one_minus_beta1 * g;
        const real_t vi = v[i] * beta2 + one_minus_beta2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] - step_size * mi / (sqrt_(vi / correction2) + eps);
    }
}
