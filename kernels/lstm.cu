// One fused LSTM time step (lecture eqs. 45-48), forward and backward, gate blocks in the order i, f, g, o.
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. One thread per (n, h) element of the state,
// grid-stride loop, 64-bit indices. a (N, 4H) holds one step's pre-activations x_t W_x + h_{t-1} W_h + b:
// a[n, k*H + h] for gate k = 0 (i), 1 (f), 2 (g, the candidate C~), 3 (o).
//
// forward:  i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o); c_t = f c_{t-1} + i g; h_t = o tanh(c_t).
// backward: the gates are recomputed from a, not stored. With dc = dc_t + dh_t o (1 - tanh^2 c_t):
//           da_i = dc g i (1-i), da_f = dc c_{t-1} f (1-f), da_g = dc i (1-g^2), da_o = dh_t tanh(c_t) o (1-o),
//           dc_{t-1} = dc f.
//
// In place: c_out may be c_prev, da may be a, dc_prev may be dc (the layer writes da_t over a_t and carries dc in
// one buffer). Each thread reads the entries of its own (n, h) before it writes the same entries, and no other
// thread touches them, so those pointers carry no __restrict__.
#include "common.cuh"

// The logistic function without overflow: exp of a non-positive number only, as in the NumPy path.
__device__ __forceinline__ real_t sigmoid_(real_t v)
{
    const real_t z = exp_(v >= 0 ? -v : v);
    return v >= 0 ? 1 / (1 + z) : z / (1 + z);
}

extern "C" __global__ void lstm_step_forward(const real_t* __restrict__ a, const real_t* c_prev,
                                             real_t* __restrict__ h_out, real_t* c_out,
                                             long long N, long long H)
{
    for_each_index(idx, N * H) {
        const long long n = idx / H, h = idx % H;
        const real_t* row = a + n * 4 * H + h;
        const real_t i = sigmoid_(row[0]);
        const real_t f = sigmoid_(row[H]);
        const real_t g = tanh_(row[2 * H]);
        const real_t o = sigmoid_(row[3 * H]);
        const real_t c = f * c_prev[idx] + i * g;
        c_out[idx] = c;
        h_out[idx] = o * tanh_(c);
    }
}

extern "C" __global__ void lstm_step_backward(const real_t* __restrict__ dh, const real_t* dc, const real_t* a,
                                              const real_t* __restrict__ c_prev, const real_t* __restrict__ c,
                                              real_t* da, real_t* dc_prev, long long N, long long H)
{
    for_each_index(idx, N * H) {
        const long long n = idx / H, h = idx % H;
        const real_t* row = a + n * 4 * H + h;
        real_t* drow = da + n * 4 * H + h;
        const real_t i = sigmoid_(row[0]);
        const real_t f = sigmoid_(row[H]);
        const real_t g = tanh_(row[2 * H]);
        const real_t o = sigmoid_(row[3 * H]);
        const real_t tc = tanh_(c[idx]);
        const real_t dct = dc[idx] + dh[idx] * o * (1 - tc * tc);
        drow[0] = dct * g * i * (1 - i);
        drow[H] = dct * c_prev[idx] * f * (1 - f);
        drow[2 * H] = dct * i * (1 - g * g);
        drow[3 * H] = dh[idx] * tc * o * (1 - o);
        dc_prev[idx] = dct * f;
    }
}
