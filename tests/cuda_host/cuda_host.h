// Host emulation of the CUDA launch model, just enough to run gpudl's grid-stride kernels on the CPU (tests only).
//
// g++ -x c++ -include cuda_host.h -Dreal_t=float -shared -fPIC kernel.cu: __global__ and __device__ vanish, the
// built-in index variables become globals of this library, and the test sets them before each call of a kernel,
// looping over every block and every thread of the launch (see host.py).
#include <math.h>

struct host_dim3 { unsigned int x, y, z; };

static host_dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline

extern "C" void host_set_launch(unsigned int grid, unsigned int block)
{
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
}

extern "C" void host_set_thread(unsigned int block, unsigned int thread)
{
    blockIdx = {block, 0, 0};
    threadIdx = {thread, 0, 0};
}
