// What every kernel file shares: the element type, the math functions for it, and the gather rule of the adjoint
// kernels. The loader splices this file into each source in place of the line that includes it, so CuPy compiles one
// self-contained source (and its disk cache sees any change to this file); nvcc and the host build include it.
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

// Along one axis: does kernel offset i of some window cover input cell y? Window o starts at o*S - pad, so it covers
// y at offset i when y + pad - i == o*S with 0 <= o < O. Sets *o and returns true when it does.
__device__ __forceinline__ bool covering_window(long long y, long long pad, long long i, long long S, long long O,
                                                long long* o)
{
    const long long r = y + pad - i;
    if (r < 0 || r % S != 0 || r / S >= O) return false;
    *o = r / S;
    return true;
}
