// A small CPU emulation of the CUDA features the smoothloss kernels use, so that their logic
// (indexing, block reductions, formulas) can be tested on a machine without a GPU.
//
// Each CUDA thread of a block is a std::thread; clusters of blocks run one after another, the
// blocks of one cluster at the same time. __syncthreads is a std::barrier over the block, warp
// shuffles go through a per-block buffer between two per-warp barriers, dynamic shared memory
// is per block, the cluster barrier is a std::barrier over every thread of the cluster and a
// distributed-shared-memory load reads the same offset in another block's dynamic shared
// memory. `__shared__` variables are function statics, shared by every running block: kernels
// launched with clusters of more than one block keep all their shared state in dynamic shared
// memory. It is slow and only meant for small launches. Not a model of timing, memory
// coalescing or the GPU's floating-point contraction.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <math.h>
#include <memory>
#include <mutex>
#include <optional>
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

// The state of one running block, and of the cluster it belongs to.
struct sl_emu_block_state {
    std::barrier<> bar;
    std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
    std::vector<unsigned char> smem;
    alignas(16) unsigned char shfl[1024 * 8];
    int or_acc = 0;
    sl_emu_block_state(unsigned threads, unsigned smem_bytes)
        : bar((std::ptrdiff_t)threads), smem(smem_bytes + 16, 0) {
        for (unsigned w = 0; w < threads / 32; ++w)
            warp_bars.push_back(std::make_unique<std::barrier<>>(32));
    }
};
struct sl_emu_cluster_state {
    std::barrier<> bar;
    std::vector<sl_emu_block_state*> blocks;
    explicit sl_emu_cluster_state(unsigned threads) : bar((std::ptrdiff_t)threads) {}
};
inline thread_local sl_emu_block_state* sl_emu_blk = nullptr;
inline thread_local sl_emu_cluster_state* sl_emu_cl = nullptr;

#define SL_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(sl_emu_blk->smem.data())

inline void __syncthreads() { sl_emu_blk->bar.arrive_and_wait(); }
// The warp's own barrier (the one shuffles use): orders shared memory between its 32 lanes.
inline void __syncwarp(unsigned = 0xffffffffu) {
    sl_emu_blk->warp_bars[threadIdx.x >> 5]->arrive_and_wait();
}

inline int __syncthreads_or(int p) {
    int& acc = sl_emu_blk->or_acc;
    __syncthreads();
    if (p) acc = 1; // benign: every writer stores the same value
    __syncthreads();
    int r = acc;
    __syncthreads();
    if (threadIdx.x == 0) acc = 0;
    __syncthreads();
    return r;
}

// Each thread's shuffle slot is 8 bytes wide whatever the type, so two warps of a block that
// shuffle different types at the same time (the warp-per-row layout) never share bytes.
template <typename T> inline void sl_emu_shfl_put(T v) {
    std::memcpy(sl_emu_blk->shfl + 8 * threadIdx.x, &v, sizeof(T));
}
template <typename T> inline T sl_emu_shfl_get(unsigned t) {
    T r;
    std::memcpy(&r, sl_emu_blk->shfl + 8 * t, sizeof(T));
    return r;
}

template <typename T>
inline T __shfl_down_sync(unsigned, T v, int off) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    const unsigned lane = threadIdx.x & 31u;
    auto& bar = *sl_emu_blk->warp_bars[threadIdx.x >> 5];
    sl_emu_shfl_put(v);
    bar.arrive_and_wait();
    T r = (lane + (unsigned)off < 32u) ? sl_emu_shfl_get<T>(threadIdx.x + (unsigned)off) : v;
    bar.arrive_and_wait();
    return r;
}

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int mask) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    auto& bar = *sl_emu_blk->warp_bars[threadIdx.x >> 5];
    sl_emu_shfl_put(v);
    bar.arrive_and_wait();
    T r = sl_emu_shfl_get<T>(threadIdx.x ^ (unsigned)mask);
    bar.arrive_and_wait();
    return r;
}

inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    return std::atomic_ref<unsigned int>(*p).fetch_add(v);
}
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) {
    std::atomic_ref<unsigned long long> a(*p);
    unsigned long long old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}
inline long long __double_as_longlong(double d) {
    long long i;
    std::memcpy(&i, &d, 8);
    return i;
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

inline unsigned sl_cluster_rank() { return blockIdx.x % (unsigned)sl_emu_cl->blocks.size(); }
inline void sl_cluster_sync() { sl_emu_cl->bar.arrive_and_wait(); }
// The split cluster barrier: arrive now, wait later (the token of this thread's arrival).
inline thread_local std::optional<std::barrier<>::arrival_token> sl_emu_cluster_token;
inline void sl_cluster_arrive_relaxed() { sl_emu_cluster_token.emplace(sl_emu_cl->bar.arrive()); }
inline void sl_cluster_wait() {
    sl_emu_cl->bar.wait(std::move(*sl_emu_cluster_token));
    sl_emu_cluster_token.reset();
}
inline unsigned sl_cluster_nctarank() { return (unsigned)sl_emu_cl->blocks.size(); }
inline void __trap() { std::abort(); }
template <typename T>
inline T sl_dsmem_load(const T* p, unsigned rank) {
    const std::ptrdiff_t off = reinterpret_cast<const unsigned char*>(p) - sl_emu_blk->smem.data();
    if (off < 0 || (std::size_t)off + sizeof(T) > sl_emu_blk->smem.size()) std::abort();
    T v;
    std::memcpy(&v, sl_emu_cl->blocks.at(rank)->smem.data() + off, sizeof(T));
    return v;
}
#define __cluster_dims__(X, Y, Z)
#define __launch_bounds__(...)

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
// memory, in clusters of `cluster` blocks (`grid` a multiple of it). `block` must be a multiple
// of 32 (as every smoothloss kernel requires).
inline void sl_emu_launch_cluster(unsigned grid, unsigned block, unsigned smem, unsigned cluster,
                                  const std::function<void()>& kernel) {
    // One launch at a time per library: the emulation's grid state is global.
    static std::mutex launch_mutex;
    std::lock_guard<std::mutex> lock(launch_mutex);
    if (cluster == 0 || grid % cluster != 0 || block % 32 != 0 || block > 1024) std::abort();
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned c = 0; c < grid / cluster; ++c) {
        std::vector<std::unique_ptr<sl_emu_block_state>> blocks;
        sl_emu_cluster_state cl(block * cluster);
        for (unsigned r = 0; r < cluster; ++r) {
            blocks.push_back(std::make_unique<sl_emu_block_state>(block, smem));
            cl.blocks.push_back(blocks.back().get());
        }
        std::vector<std::thread> ts;
        ts.reserve((std::size_t)block * cluster);
        for (unsigned r = 0; r < cluster; ++r) {
            for (unsigned t = 0; t < block; ++t) {
                sl_emu_block_state* st = blocks[r].get();
                const unsigned b = c * cluster + r;
                ts.emplace_back([&kernel, &cl, st, b, t] {
                    threadIdx = {t, 0, 0};
                    blockIdx = {b, 0, 0};
                    sl_emu_blk = st;
                    sl_emu_cl = &cl;
                    kernel();
                });
            }
        }
        for (auto& th : ts) th.join();
    }
}

inline void sl_emu_launch(unsigned grid, unsigned block, unsigned smem,
                          const std::function<void()>& kernel) {
    sl_emu_launch_cluster(grid, block, smem, 1, kernel);
}
