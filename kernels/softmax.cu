// Softmax cross-entropy against integer labels, loss and gradient in one pass over the logits.
//
// Compiled once per dtype with -Dreal_t=float or -Dreal_t=double. One thread per row n of the logits z (N, K),
// grid-stride loop over the rows, 64-bit indices; each thread loops over the K classes of its row (K is small: 10
// digits, ~100 characters). With the row maximum M subtracted so that exp never overflows:
//
//   s = sum_j exp(z_nj - M),  log p_nj = z_nj - M - log s,
//   loss_rows[n] = -sum_j t_nj log p_nj = -log p_n,y,   dz_nj = (exp(log p_nj) - t_nj) / m,
//
// t_nj = [j == y_n] (y = labels), m = N the batch. The mean of loss_rows is the loss. The sum over every class, not
// just the label's, keeps the NumPy path's NaN where a logit is infinite or NaN; a label outside [0, K) matches no
// class (its row adds 0 to the loss and softmax(z_n) / m to the gradient), as a one-hot row of zeros does.
#include "common.cuh"

extern "C" __global__ void softmax_cross_entropy(const real_t* __restrict__ z, const long long* __restrict__ labels,
                                                 real_t* __restrict__ loss_rows, real_t* __restrict__ dz,
                                                 long long N, long long K, real_t m)
{
    for_each_index(n, N) {
        const real_t* row = z + n * K;
        real_t* drow = dz + n * K;
        const long long y = labels[n];
        real_t top = row[0];
        for (long long j = 1; j < K; ++j)
            top = (row[j] > top || row[j] != row[j]) ? row[j] : top;   // NaN wins, as in numpy's max
        real_t s = 0;
        for (long long j = 0; j < K; ++j)
            s += exp_(row[j] - top);
        const real_t log_s = log_(s);
        real_t loss = 0;
        for (long long j = 0; j < K; ++j) {
            const real_t logp = (row[j] - top) - log_s;
            const real_t t = j == y ? 1 : 0;
            loss -= t * logp;                   // 0 * (-inf or NaN) is NaN, as on the NumPy path
            drow[j] = (exp_(logp) - t) / m;
        }
        loss_rows[n] = loss;
    }
}
