// A small CPU emulation of the CUDA features the smoothloss kernels use, so that their logic
// (indexing, block reductions, formulas) can be tested on a machine without a GPU.
//
// Clusters of blocks run one after another; the CUDA threads of one cluster (every thread of
// each of its blocks) run as cooperative user-space fibers (ucontext) on the OS thread that
// called the launch. A fiber runs until it waits on a barrier that not every participant has
// reached (or until it returns), then hands over to the next fiber that can run, round-robin.
// Earlier versions started one std::thread per CUDA thread, and thread creation and futex
// traffic took most of the tests' time; fibers switch without the kernel's scheduler, and a
// single OS thread per launch also keeps the kernels' atomics and plain shared-memory accesses
// trivially ordered. Every barrier (__syncthreads, the per-warp barrier of __syncwarp and the
// shuffles, the cluster barrier and its split arrive / wait) is a cooperative one, and when no
// fiber can run while some have not returned (a barrier some threads never reach: a kernel
// bug, which hung std::barrier), the launch aborts with a message rather than hang.
//
// Warp shuffles go through a per-block buffer between two per-warp barriers, dynamic shared
// memory is per block, a distributed-shared-memory load reads the same offset in another
// block's dynamic shared memory. `__shared__` variables are function statics, shared by every
// block of a cluster: kernels launched with clusters of more than one block keep all their
// shared state in dynamic shared memory. It is slow and only meant for small launches. Not a
// model of timing, memory coalescing or the GPU's floating-point contraction.
#pragma once
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <math.h>
#include <memory>
#include <mutex>
#include <sys/mman.h>
#include <ucontext.h>
#include <vector>

#define SL_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

struct sl_emu_dim3 {
    unsigned x, y, z;
};
// The running fiber's indices and block / cluster: thread_local, as launches of different
// libraries run at the same time on different OS threads, each with its own scheduler (and
// g++ makes inline variables unique symbols, which the dynamic loader merges across the
// libraries). The scheduler installs the fiber's values at every switch (sl_emu_install).
// The launch's shape is per library (internal linkage), set under sl_emu_launch_mutex.
inline thread_local sl_emu_dim3 threadIdx{0, 0, 0};
inline thread_local sl_emu_dim3 blockIdx{0, 0, 0};
static sl_emu_dim3 blockDim{1, 1, 1};
static sl_emu_dim3 gridDim{1, 1, 1};

// A barrier of `expected` fibers. arrive() counts this fiber in the current phase and returns
// the phase's generation; wait(g) yields to the other fibers until generation g has completed.
struct sl_emu_barrier {
    unsigned expected;
    unsigned arrived = 0;
    unsigned long long gen = 0;
    explicit sl_emu_barrier(unsigned n) : expected(n) {}
    unsigned long long arrive() {
        const unsigned long long g = gen;
        if (++arrived == expected) {
            arrived = 0;
            ++gen;
        }
        return g;
    }
    inline void wait(unsigned long long g);
    void arrive_and_wait() { wait(arrive()); }
};

// The state of one running block, and of the cluster it belongs to.
struct sl_emu_block_state {
    sl_emu_barrier bar;
    std::vector<sl_emu_barrier> warp_bars;
    std::vector<unsigned char> smem;
    alignas(16) unsigned char shfl[1024 * 8];
    int or_acc = 0;
    sl_emu_block_state(unsigned threads, unsigned smem_bytes)
        : bar(threads), warp_bars(threads / 32, sl_emu_barrier(32)), smem(smem_bytes + 16, 0) {}
};
struct sl_emu_cluster_state {
    sl_emu_barrier bar;
    std::vector<sl_emu_block_state*> blocks;
    explicit sl_emu_cluster_state(unsigned threads) : bar(threads) {}
};

// One CUDA thread: its saved context (its stack is one of sl_emu_stacks'), what it is waiting
// for, and the per-thread state the scheduler installs when it switches to it.
struct sl_emu_fiber {
    ucontext_t ctx;
    sl_emu_dim3 tid, bid;
    sl_emu_block_state* blk;
    sl_emu_cluster_state* cl;
    const sl_emu_barrier* waits_on; // runnable again once waits_on->gen != wait_gen
    unsigned long long wait_gen;
    unsigned long long cluster_token; // the split cluster barrier: generation of the arrival
    bool has_token;
    bool done;
};
// The fibers of the cluster running on this OS thread.
struct sl_emu_sched {
    ucontext_t main; // the launching code, resumed when every fiber has returned
    sl_emu_fiber* fibers;
    unsigned n, cur, unfinished;
    unsigned cluster;
    const std::function<void()>* kernel;
};
inline thread_local sl_emu_sched* sl_emu_run = nullptr;
inline thread_local sl_emu_fiber* sl_emu_self = nullptr;
inline thread_local sl_emu_block_state* sl_emu_blk = nullptr;
inline thread_local sl_emu_cluster_state* sl_emu_cl = nullptr;

inline void sl_emu_install(sl_emu_fiber& f) {
    sl_emu_self = &f;
    threadIdx = f.tid;
    blockIdx = f.bid;
    sl_emu_blk = f.blk;
    sl_emu_cl = f.cl;
}

// The scheduler, run by the fiber that gives up the OS thread (blocked on a barrier or
// returned): switches to the first fiber after it, round-robin, that can run, and returns
// when this fiber is switched to again (at once if it is the only one that can run). A fiber
// can run when it has not returned and is not waiting on a barrier whose phase is still open.
// Only a running fiber moves a barrier on, so when none can run, none ever will: every fiber
// has returned (back to the launch), or the launch is deadlocked.
inline void sl_emu_schedule() {
    sl_emu_sched& s = *sl_emu_run;
    sl_emu_fiber* self = &s.fibers[s.cur];
    unsigned i = s.cur;
    for (unsigned k = 0; k < s.n; ++k) {
        if (++i == s.n) i = 0;
        sl_emu_fiber& f = s.fibers[i];
        if (f.done || (f.waits_on != nullptr && f.waits_on->gen == f.wait_gen)) continue;
        if (&f == self) return;
        s.cur = i;
        sl_emu_install(f);
        swapcontext(&self->ctx, &f.ctx);
        return;
    }
    if (s.unfinished == 0) {
        swapcontext(&self->ctx, &s.main); // never resumed
    }
    unsigned blocked = 0;
    const sl_emu_fiber* first = nullptr;
    for (unsigned j = 0; j < s.n; ++j) {
        if (s.fibers[j].done) continue;
        ++blocked;
        if (first == nullptr) first = &s.fibers[j];
    }
    std::fprintf(stderr,
                 "host_emu: deadlock in cluster %u: %u of %u threads wait on barriers that the "
                 "others (returned or waiting elsewhere) never reach; first: block %u thread %u\n",
                 s.cluster, blocked, s.n, first->bid.x, first->tid.x);
    std::abort();
}

inline void sl_emu_barrier::wait(unsigned long long g) {
    while (gen == g) {
        sl_emu_self->waits_on = this;
        sl_emu_self->wait_gen = g;
        sl_emu_schedule();
    }
    sl_emu_self->waits_on = nullptr;
}

// A fiber's first frame (makecontext takes no pointer argument: the scheduler installed the
// fiber before switching to it).
inline void sl_emu_fiber_main() {
    (*sl_emu_run->kernel)();
    sl_emu_self->done = true;
    --sl_emu_run->unfinished;
    sl_emu_schedule(); // switches away for good
    std::abort();
}

// The fibers' stacks, mmap'd on first use and reused by every cluster and every launch of
// this library. 256 KiB each: the deepest the tests go is about 20 KiB (no kernel has large
// local arrays), so that leaves a wide margin, and only the pages touched are ever committed
// (a cluster of 8 blocks of 512 threads reserves 1 GiB of address space). Below each
// stack a PROT_NONE guard page turns an overflow into a fault instead of a silent write into
// the next stack. A stack is in use only between makecontext and the end of its cluster: the
// launch switches back to its caller once every fiber has returned, and no context is resumed
// after that, so the next cluster may overwrite them.
struct sl_emu_stacks {
    static constexpr std::size_t bytes = 256 * 1024, guard = 4096;
    std::vector<unsigned char*> maps;
    unsigned char* get(std::size_t i) {
        while (maps.size() <= i) {
            void* p = mmap(nullptr, guard + bytes, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
            if (p == MAP_FAILED || mprotect(p, guard, PROT_NONE) != 0) {
                std::perror("host_emu: fiber stack");
                std::abort();
            }
            maps.push_back(static_cast<unsigned char*>(p));
        }
        return maps[i] + guard;
    }
    ~sl_emu_stacks() {
        for (unsigned char* p : maps) munmap(p, guard + bytes);
    }
};

// Points f's context at the start of sl_emu_fiber_main on `stack`, returning to `link` if
// that ever returned. (A function of its own: g++ treats getcontext as returning twice, as
// setjmp, which would pessimise the launch loop; no context ever resumes inside it.)
[[gnu::noinline]] inline void sl_emu_fiber_start(sl_emu_fiber& f, unsigned char* stack,
                                                 ucontext_t* link) {
    if (getcontext(&f.ctx) != 0) std::abort();
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = sl_emu_stacks::bytes;
    f.ctx.uc_link = link;
    makecontext(&f.ctx, sl_emu_fiber_main, 0);
}

#define SL_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(sl_emu_blk->smem.data())

inline void __syncthreads() { sl_emu_blk->bar.arrive_and_wait(); }
// The warp's own barrier (the one shuffles use): orders shared memory between its 32 lanes.
inline void __syncwarp(unsigned = 0xffffffffu) {
    sl_emu_blk->warp_bars[threadIdx.x >> 5].arrive_and_wait();
}

inline int __syncthreads_or(int p) {
    int& acc = sl_emu_blk->or_acc;
    __syncthreads();
    if (p) acc = 1; // every writer stores the same value
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

// Put, wait for the warp, read lane `src` (its own value when `src` is past the warp), wait
// again (no lane overwrites its slot before every lane has read).
template <typename T> inline T sl_emu_shfl(T v, unsigned src, bool in_warp) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    sl_emu_barrier& bar = sl_emu_blk->warp_bars[threadIdx.x >> 5];
    sl_emu_shfl_put(v);
    bar.arrive_and_wait();
    T r = in_warp ? sl_emu_shfl_get<T>(src) : v;
    bar.arrive_and_wait();
    return r;
}
template <typename T> inline T __shfl_down_sync(unsigned, T v, int off) {
    const unsigned lane = threadIdx.x & 31u;
    return sl_emu_shfl(v, threadIdx.x + (unsigned)off, lane + (unsigned)off < 32u);
}
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int mask) {
    return sl_emu_shfl(v, threadIdx.x ^ (unsigned)mask, true);
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
// The split cluster barrier: arrive now, wait later (for the phase of this thread's arrival).
inline void sl_cluster_arrive_relaxed() {
    sl_emu_self->cluster_token = sl_emu_cl->bar.arrive();
    sl_emu_self->has_token = true;
}
inline void sl_cluster_wait() {
    if (!sl_emu_self->has_token) std::abort(); // a wait without an arrival
    sl_emu_self->has_token = false;
    sl_emu_cl->bar.wait(sl_emu_self->cluster_token);
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

// One launch at a time per library: the kernels' `__shared__` statics are per library, and so
// are gridDim, blockDim and the stacks. Internal linkage (each library is one translation
// unit): as function-local statics of an inline function they would be unique symbols, merged
// by the dynamic loader into one mutex for the whole process.
static std::mutex sl_emu_launch_mutex;
static sl_emu_stacks sl_emu_stack_pool;

// Runs `kernel` over `grid` blocks of `block` threads with `smem` bytes of dynamic shared
// memory, in clusters of `cluster` blocks (`grid` a multiple of it). `block` must be a multiple
// of 32 (as every smoothloss kernel requires). Each cluster's threads run as fibers on the
// calling OS thread (see the top of this file), in thread order within block order.
static inline void sl_emu_launch_cluster(unsigned grid, unsigned block, unsigned smem,
                                         unsigned cluster, const std::function<void()>& kernel) {
    std::lock_guard<std::mutex> lock(sl_emu_launch_mutex);
    if (cluster == 0 || grid % cluster != 0 || block % 32 != 0 || block > 1024) std::abort();
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    const unsigned n = block * cluster;
    // Fibers hold their ucontext_t (which points into itself): sized once, never moved.
    std::vector<sl_emu_fiber> fibers(n);
    sl_emu_sched s{};
    s.fibers = fibers.data();
    s.n = n;
    s.kernel = &kernel;
    sl_emu_run = &s;
    for (unsigned c = 0; c < grid / cluster; ++c) {
        std::vector<std::unique_ptr<sl_emu_block_state>> blocks;
        sl_emu_cluster_state cl(n);
        for (unsigned r = 0; r < cluster; ++r) {
            blocks.push_back(std::make_unique<sl_emu_block_state>(block, smem));
            cl.blocks.push_back(blocks.back().get());
        }
        for (unsigned i = 0; i < n; ++i) {
            sl_emu_fiber& f = fibers[i];
            f.tid = {i % block, 0, 0};
            f.bid = {c * cluster + i / block, 0, 0};
            f.blk = blocks[i / block].get();
            f.cl = &cl;
            f.waits_on = nullptr;
            f.has_token = f.done = false;
            sl_emu_fiber_start(f, sl_emu_stack_pool.get(i), &s.main);
        }
        s.cur = 0;
        s.unfinished = n;
        s.cluster = c;
        sl_emu_install(fibers[0]);
        if (swapcontext(&s.main, &fibers[0].ctx) != 0) std::abort();
    }
    sl_emu_run = nullptr;
    sl_emu_self = nullptr;
    sl_emu_blk = nullptr;
    sl_emu_cl = nullptr;
}

static inline void sl_emu_launch(unsigned grid, unsigned block, unsigned smem,
                                 const std::function<void()>& kernel) {
    sl_emu_launch_cluster(grid, block, smem, 1, kernel);
}
