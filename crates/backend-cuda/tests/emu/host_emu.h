// A small CPU emulation of the CUDA features the smoothloss kernels use, so that their logic
// (indexing, block reductions, formulas) can be tested on a machine without a GPU.
//
// Each CUDA thread of a block is a std::thread; blocks run one after another. __syncthreads is
// a std::barrier over the block, warp shuffles go through a per-warp buffer between two
// per-warp barriers, __shared__ variables are function statics (shared by the threads of the
// running block). It is slow and only meant for small launches. Not a model of timing,
// memory coalescing or the GPU's floating-point contraction.
#pragma once
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <math.h>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define SL_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

struct sl_emu_dim3 {
    unsigned x, y, z;
};
inline thread_local sl_emu_dim3 threadIdx{0, 0, 0};
inline thread_local sl_emu_dim3 blockIdx{0, 0, 0};
inline sl_emu_dim3 blockDim{1, 1, 1};
inline sl_emu_dim3 gridDim{1, 1, 1};

inline std::barrier<>* sl_emu_block_barrier = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>> sl_emu_warp_barriers;
inline std::vector<unsigned char> sl_emu_smem;

#define SL_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(sl_emu_smem.data())

inline void __syncthreads() { sl_emu_block_barrier->arrive_and_wait(); }

inline int __syncthreads_or(int p) {
    static int acc = 0;
    __syncthreads();
    if (p) acc = 1; // benign: every writer stores the same value
    __syncthreads();
    int r = acc;
    __syncthreads();
    if (threadIdx.x == 0) acc = 0;
    __syncthreads();
    return r;
}

template <typename T>
inline T __shfl_down_sync(unsigned, T v, int off) {
    static T buf[1024];
    const unsigned lane = threadIdx.x & 31u;
    auto& bar = *sl_emu_warp_barriers[threadIdx.x >> 5];
    buf[threadIdx.x] = v;
    bar.arrive_and_wait();
    T r = (lane + (unsigned)off < 32u) ? buf[threadIdx.x + off] : v;
    bar.arrive_and_wait();
    return r;
}

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline double __longlong_as_double(long long i) {
    double d;
    std::memcpy(&d, &i, 8);
    return d;
}
inline float sl_emu_f16_to_f32(unsigned short h) {
    _Float16 x;
    std::memcpy(&x, &h, 2);
    return (float)x;
}
inline unsigned short sl_emu_f32_to_f16(float v) {
    _Float16 x = (_Float16)v;
    unsigned short h;
    std::memcpy(&h, &x, 2);
    return h;
}

// Runs `kernel` over `grid` blocks of `block` threads with `smem` bytes of dynamic shared
// memory. `block` must be a multiple of 32 (as every smoothloss kernel requires).
inline void sl_emu_launch(unsigned grid, unsigned block, unsigned smem,
                          const std::function<void()>& kernel) {
    // One launch at a time per library: the emulation's state is global.
    static std::mutex launch_mutex;
    std::lock_guard<std::mutex> lock(launch_mutex);
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    sl_emu_smem.assign(smem + 16, 0);
    std::barrier<> block_bar((std::ptrdiff_t)block);
    sl_emu_block_barrier = &block_bar;
    sl_emu_warp_barriers.clear();
    for (unsigned w = 0; w < block / 32; ++w)
        sl_emu_warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
    for (unsigned b = 0; b < grid; ++b) {
        std::vector<std::thread> ts;
        ts.reserve(block);
        for (unsigned t = 0; t < block; ++t) {
            ts.emplace_back([&kernel, b, t] {
                threadIdx = {t, 0, 0};
                blockIdx = {b, 0, 0};
                kernel();
            });
        }
        for (auto& th : ts) th.join();
    }
    sl_emu_block_barrier = nullptr;
}
