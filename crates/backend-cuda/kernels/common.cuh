// Shared helpers, prepended by the Rust side to every kernel file before NVRTC compiles it.
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

__device__ __forceinline__ float sl_load(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float sl_load(const sl_bf16* p, long long i) {
    return __int_as_float(((unsigned int)p[i].x) << 16);
}
__device__ __forceinline__ float sl_load(const sl_f16* p, long long i) {
    unsigned short h = p[i].x;
    float f;
#ifdef SL_HOST_EMULATION
    f = sl_emu_f16_to_f32(h);
#else
    asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h));
#endif
    return f;
}

__device__ __forceinline__ void sl_store(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void sl_store(sl_bf16* p, long long i, float v) {
    unsigned int u = (unsigned int)__float_as_int(v);
    unsigned short r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r = (unsigned short)((u >> 16) | 0x0040u); // quiet NaN
    } else {
        // Round to nearest, ties to even.
        u += 0x7fffu + ((u >> 16) & 1u);
        r = (unsigned short)(u >> 16);
    }
    p[i].x = r;
}
__device__ __forceinline__ void sl_store(sl_f16* p, long long i, float v) {
    unsigned short h;
#ifdef SL_HOST_EMULATION
    h = sl_emu_f32_to_f16(v);
#else
    asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(v));
#endif
    p[i].x = h;
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

// Final pass of every reduction: one block of SL_REDUCE_THREADS threads sums `n` partials in a
// fixed order and writes `sum / divisor` to out[0]. When `denom` is non-null the divisor is
// denom[0] instead (cross-entropy's mean denominator, computed on the device).
extern "C" __global__ void sl_reduce_final(const double* partials, long long n, double divisor,
                                           const double* denom, double* out) {
    __shared__ double scratch[SL_REDUCE_THREADS / 32];
    double acc = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) acc += partials[i];
    double total = sl_block_sum(acc, scratch);
    if (threadIdx.x == 0) {
        double d = denom != nullptr ? denom[0] : divisor;
        out[0] = total / d;
    }
}
