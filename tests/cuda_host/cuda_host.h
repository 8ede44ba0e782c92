// Host emulation of the CUDA launch model, just enough to run gpudl's kernels on the CPU (tests only).
//
// g++ -x c++ -include cuda_host.h -Dreal_t=float -shared -fPIC kernel.cu: __global__ and __device__ vanish, the
// built-in index variables become variables of this library, and the test sets them before each call of a kernel
// (see host.py). Two ways to run a launch:
//
// - in turn: for every block, for every thread, set blockIdx/threadIdx and call the kernel. Enough for kernels whose
//   threads share nothing (every grid-stride kernel).
// - together (a source that uses __shared__ or __syncthreads): the threads of one block run at once, one host thread
//   per CUDA thread, blocks one after another. threadIdx and blockIdx are per host thread; a __shared__ variable is a
//   function-local static, so all threads of the block see the same one (and, blocks running one after another, no
//   other block's); __syncthreads() is a barrier over the block's blockDim.x threads. A barrier reached in a launch
//   run in turn is a harness error: it aborts with a message instead of computing garbage.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <condition_variable>
#include <mutex>

struct host_dim3 { unsigned int x, y, z; };

static thread_local host_dim3 threadIdx, blockIdx;
static host_dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

namespace host_emulation {

struct block_barrier {
    std::mutex mutex;
    std::condition_variable turned;
    unsigned int expected = 0, waiting = 0;
    unsigned long long generation = 0;

    void wait()
    {
        std::unique_lock<std::mutex> lock(mutex);
        const unsigned long long mine = generation;
        if (++waiting == expected) {
            waiting = 0;
            ++generation;
            turned.notify_all();
            return;
        }
        turned.wait(lock, [&] { return generation != mine; });
    }
};

static block_barrier barrier;
static bool together = false;   // the threads of a block run at once (set per launch)

}  // namespace host_emulation

inline void __syncthreads()
{
    if (!host_emulation::together) {
        fprintf(stderr, "cuda_host: __syncthreads() in a launch whose threads run in turn; the source must be run "
                        "with its block's threads together (host.py decides that from the source)\n");
        abort();
    }
    host_emulation::barrier.wait();
}

extern "C" void host_set_launch(unsigned int grid, unsigned int block, int together)
{
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    host_emulation::together = together != 0;
    host_emulation::barrier.expected = block;
}

extern "C" void host_set_thread(unsigned int block, unsigned int thread)
{
    blockIdx = {block, 0, 0};
    threadIdx = {thread, 0, 0};
}
