// Shared helpers, prepended by the Rust side (after the generated prelude) to every kernel file
// before NVRTC compiles it.
// No system headers: NVRTC has no <math.h> macros, so constants are spelled out here and the
// 16-bit float conversions are done by hand (no <cuda_fp16.h> / <cuda_bf16.h> dependency).

#define SL_INF __int_as_float(0x7f800000)
#define SL_DINF __longlong_as_double(0x7ff0000000000000LL)
#define SL_NAN __int_as_float(0x7fffffff)
#define SL_DNAN __longlong_as_double(0x7fffffffffffffffLL)
#define SL_REDUCE_THREADS 1024

// Dynamic shared memory; tests/emu/host_emu.h (a CPU emulation used to test the kernels'
// logic without a GPU) defines its own version before this file.
#ifndef SL_DYNAMIC_SHARED
#define SL_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// 16-bit storage types: raw bits.
struct sl_bf16 { unsigned short x; };
struct sl_f16 { unsigned short x; };

// 16-bit float bits <-> f32. bf16: shift, round to nearest even; f16: the `cvt` instructions.
__device__ __forceinline__ float sl_bf16_bits_to_f32(unsigned int b) {
    return __int_as_float((int)(b << 16));
}
__device__ __forceinline__ unsigned short sl_f32_to_bf16_bits(float v) {
    unsigned int u = (unsigned int)__float_as_int(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x0040u); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u); // round to nearest, ties to even
    return (unsigned short)(u >> 16);
}
__device__ __forceinline__ float sl_f16_bits_to_f32(unsigned short h) {
    float f;
#ifdef SL_HOST_EMULATION
    f = sl_emu_f16_to_f32(h);
#else
    asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h));
#endif
    return f;
}
__device__ __forceinline__ unsigned short sl_f32_to_f16_bits(float v) {
    unsigned short h;
#ifdef SL_HOST_EMULATION
    h = sl_emu_f32_to_f16(v);
#else
    asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(v));
#endif
    return h;
}

__device__ __forceinline__ float sl_load(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float sl_load(const sl_bf16* p, long long i) {
    return sl_bf16_bits_to_f32(p[i].x);
}
__device__ __forceinline__ float sl_load(const sl_f16* p, long long i) {
    return sl_f16_bits_to_f32(p[i].x);
}

__device__ __forceinline__ void sl_store(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void sl_store(sl_bf16* p, long long i, float v) {
    p[i].x = sl_f32_to_bf16_bits(v);
}
__device__ __forceinline__ void sl_store(sl_f16* p, long long i, float v) {
    p[i].x = sl_f32_to_f16_bits(v);
}

// 16 bytes moved by one vector load or store (4 f32 or 8 16-bit values, element k of the 16-bit
// types in the low half of word k / 2: little-endian on the GPU and on x86-64).
struct alignas(16) sl_vec16 {
    unsigned int w[4];
};
// Whether every given address is 16-byte aligned (null counts as aligned): the element-wise
// kernels then move 4 f32 per 16-byte access.
__device__ __forceinline__ bool sl_aligned16(const void* a, const void* b, const void* c) {
    return (((unsigned long long)a | (unsigned long long)b | (unsigned long long)c) & 15ull) == 0;
}
template <typename T> __device__ constexpr int sl_vec_width() { return 16 / (int)sizeof(T); }
__device__ __forceinline__ float sl_vec_get(const sl_vec16& v, int k, const float*) {
    return __int_as_float((int)v.w[k]);
}
__device__ __forceinline__ float sl_vec_get(const sl_vec16& v, int k, const sl_bf16*) {
    const unsigned int w = v.w[k >> 1];
    return sl_bf16_bits_to_f32((k & 1) ? (w >> 16) : (w & 0xffffu));
}
__device__ __forceinline__ float sl_vec_get(const sl_vec16& v, int k, const sl_f16*) {
    const unsigned int w = v.w[k >> 1];
    return sl_f16_bits_to_f32((unsigned short)((k & 1) ? (w >> 16) : (w & 0xffffu)));
}
__device__ __forceinline__ void sl_vec_set(sl_vec16& v, int k, float x, const float*) {
    v.w[k] = (unsigned int)__float_as_int(x);
}
__device__ __forceinline__ void sl_vec_set16(sl_vec16& v, int k, unsigned short b) {
    const int s = (k & 1) ? 16 : 0;
    v.w[k >> 1] = (v.w[k >> 1] & ~(0xffffu << s)) | ((unsigned int)b << s);
}
__device__ __forceinline__ void sl_vec_set(sl_vec16& v, int k, float x, const sl_bf16*) {
    sl_vec_set16(v, k, sl_f32_to_bf16_bits(x));
}
__device__ __forceinline__ void sl_vec_set(sl_vec16& v, int k, float x, const sl_f16*) {
    sl_vec_set16(v, k, sl_f32_to_f16_bits(x));
}

// Deterministic block sum of doubles (fixed tree order); every thread gets the result.
// `scratch` must hold blockDim.x / 32 doubles; blockDim.x must be a multiple of 32.
__device__ double sl_block_sum(double v, double* scratch) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    __syncthreads(); // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int nwarps = blockDim.x >> 5;
    double t = 0.0;
    if (warp == 0) {
        t = lane < nwarps ? scratch[lane] : 0.0;
        for (int off = 16; off > 0; off >>= 1) t += __shfl_down_sync(0xffffffffu, t, off);
        if (lane == 0) scratch[0] = t;
    }
    __syncthreads();
    return scratch[0];
}

// Deterministic block reduction of floats with `Op::apply(a, b)` (max or sum): a fixed
// warp-shuffle tree, then lane 0 of warp 0 folds the warp results in warp order. Every thread
// gets the result. `scratch` must hold blockDim.x / 32 floats.
struct sl_op_max {
    static __device__ __forceinline__ float apply(float a, float b) { return fmaxf(a, b); }
};
struct sl_op_sum {
    static __device__ __forceinline__ float apply(float a, float b) { return a + b; }
};
template <typename Op> __device__ float sl_block_reduce_f(float v, float* scratch) {
    for (int off = 16; off > 0; off >>= 1) v = Op::apply(v, __shfl_down_sync(0xffffffffu, v, off));
    __syncthreads(); // scratch may still be read by a previous call
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = scratch[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); ++w) t = Op::apply(t, scratch[w]);
        scratch[0] = t;
    }
    __syncthreads();
    return scratch[0];
}

// Thread-block clusters (sm_90): rank in the cluster, a barrier over every thread of the
// cluster (release / acquire: shared-memory writes before it are visible to the other blocks
// after it), and loads from the shared memory of another block of the cluster (`p` is an
// address in this block's shared memory; the same offset is read in block `rank`).
// tests/emu/host_emu.h defines its own versions.
#ifndef SL_HOST_EMULATION
#if __CUDA_ARCH__ >= 900
#define SL_HAS_CLUSTERS 1
__device__ __forceinline__ unsigned sl_cluster_rank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
__device__ __forceinline__ void sl_cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::
                     : "memory");
}
// The cluster barrier split in two: `arrive.relaxed` (no release: no MEMBAR draining this
// block's global stores) once a block has done its last remote read, `wait` before it exits.
__device__ __forceinline__ void sl_cluster_arrive_relaxed() {
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
}
__device__ __forceinline__ void sl_cluster_wait() {
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
}
// Blocks in this cluster as launched (a launch that did not form the compiled clusters traps).
__device__ __forceinline__ unsigned sl_cluster_nctarank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(r));
    return r;
}
__device__ __forceinline__ unsigned sl_dsmem_addr(const void* p, unsigned rank) {
    unsigned long long g = (unsigned long long)p;
    unsigned long long s;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(s) : "l"(g));
    unsigned r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"((unsigned)s), "r"(rank));
    return r;
}
__device__ __forceinline__ float sl_dsmem_load(const float* p, unsigned rank) {
    float v;
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(sl_dsmem_addr(p, rank)) : "memory");
    return v;
}
__device__ __forceinline__ double sl_dsmem_load(const double* p, unsigned rank) {
    double v;
    asm volatile("ld.shared::cluster.f64 %0, [%1];" : "=d"(v) : "r"(sl_dsmem_addr(p, rank)) : "memory");
    return v;
}
__device__ __forceinline__ int sl_dsmem_load(const int* p, unsigned rank) {
    int v;
    asm volatile("ld.shared::cluster.s32 %0, [%1];" : "=r"(v) : "r"(sl_dsmem_addr(p, rank)) : "memory");
    return v;
}
#endif
#else
#define SL_HAS_CLUSTERS 1
#endif

// True (in every thread) in the block of the grid that finishes last; every other block's
// writes made by its thread 0 before this call are then visible to it (the threadfence
// reduction of the CUDA samples). `counter` is a device word that starts at 0; the last block
// sets it back to 0. Results stay deterministic when the last block combines the per-block
// values in index order, whichever block that is.
__device__ __forceinline__ bool sl_last_block(unsigned int* counter, int* flag) {
    if (threadIdx.x == 0) {
        __threadfence();
        const unsigned int done = atomicAdd(counter, 1u);
        *flag = done == gridDim.x - 1;
    }
    __syncthreads();
    const bool last = *flag != 0;
    if (last) {
        __threadfence();
        if (threadIdx.x == 0) *counter = 0;
    }
    return last;
}

// Kernel parameters: every entry point takes one struct by value (in the kernel parameter
// space: no registers until a field is used), defined with the same name, fields and order
// in `src/params.rs`; static_asserts generated from Rust's layout (`params::layout_asserts`,
// appended after each file) check that both sides agree on sizes and offsets. Pointers are device addresses, nullptr for absent.

// Final pass of every reduction: one block of SL_REDUCE_THREADS threads sums `n` partials in a
// fixed order and writes `sum / divisor` to out[0]. When `denom` is non-null the divisor is
// denom[0] instead (cross-entropy's mean denominator, computed on the device).
struct ReduceFinalParams {
    const double* partials;
    long long n;
    double divisor;
    const double* denom;
    double* out;
};

extern "C" __global__ void sl_reduce_final(const ReduceFinalParams p) {
    __shared__ double scratch[SL_REDUCE_THREADS / 32];
    double acc = 0.0;
    for (long long i = threadIdx.x; i < p.n; i += blockDim.x) acc += p.partials[i];
    double total = sl_block_sum(acc, scratch);
    if (threadIdx.x == 0) {
        double d = p.denom != nullptr ? p.denom[0] : p.divisor;
        p.out[0] = total / d;
    }
}
