// Smooth L1 and Huber (REG-1 .. REG-5), element-wise (grid-stride), math in double. losses (n,
// nullable): per-element loss (reduction none); partials (gridDim.x, nullable): per-block sums
// in a fixed order for sl_reduce_final; grad (n, nullable): up_i * scale * dloss/dpred.
// Requires blockDim.x a multiple of 32, <= 1024.
//
// v2 (issue 16, finding 6): when pred, target and grad are 16-byte aligned each thread moves 4
// elements per 16-byte load / store (32 B in flight per thread instead of 8), the rest one at a
// time; no division per element (the 1 / beta of smooth L1 once per thread: the reference's
// `d / beta` within one f64 rounding); the grid-stride loops are not unrolled (one vector per
// iteration keeps the registers low; the vectors are what keeps bytes in flight).

__device__ __forceinline__ double sl_sign(double d) {
    if (d > 0.0) return 1.0;
    if (d < 0.0) return -1.0;
    return d * 0.0; // 0 stays 0, NaN stays NaN
}

// KIND 0: smooth L1 with beta = param (inv = 1 / beta); KIND 1: Huber with delta = param.
template <int KIND>
__device__ __forceinline__ void reg_element(double param, double inv, double d, double* l,
                                            double* g) {
    const double z = fabs(d);
    if (KIND == 0) {
        if (z < param) {
            *l = 0.5 * d * d * inv;
            *g = d * inv;
        } else {
            *l = z - 0.5 * param;
            *g = sl_sign(d);
        }
    } else {
        if (z < param) {
            *l = 0.5 * d * d;
            *g = d;
        } else {
            *l = param * (z - 0.5 * param);
            *g = param * sl_sign(d);
        }
    }
}

// `src/params.rs` RegParams. param: smooth L1's beta or Huber's delta.
struct RegParams {
    const float* pred;
    const float* target;
    long long n;
    double param;
    double up_scalar;
    const double* up;
    double scale;
    double* losses;
    double* partials;
    float* grad;
};

// `target` and `up` are never written and never alias an output (`__restrict__`); `pred` may
// be the gradient (in place: each thread reads its vector or element before it writes it), so
// it is not.
template <int KIND>
__device__ __forceinline__ void reg_run(const RegParams& p) {
    const float* pred = p.pred;
    const float* __restrict__ target = p.target;
    const long long n = p.n;
    const double param = p.param;
    const double inv = 1.0 / param;
    const double up_scalar = p.up_scalar;
    const double* __restrict__ up = p.up;
    const double scale = p.scale;
    double* __restrict__ losses = p.losses;
    float* grad = p.grad;
    __shared__ double scratch[32];
    double acc = 0.0;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long nv = sl_aligned16(pred, target, grad) ? n / 4 : 0;
#pragma unroll 1
    for (long long v = first; v < nv; v += stride) {
        const sl_vec16 x = reinterpret_cast<const sl_vec16*>(pred)[v];
        const sl_vec16 t = reinterpret_cast<const sl_vec16*>(target)[v];
        sl_vec16 out;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const long long i = 4 * v + k;
            const double d = (double)sl_vec_get(x, k, pred) - (double)sl_vec_get(t, k, pred);
            double l, g;
            reg_element<KIND>(param, inv, d, &l, &g);
            acc += l;
            if (losses != nullptr) losses[i] = l;
            const double u = up != nullptr ? up[i] : up_scalar;
            sl_vec_set(out, k, (float)(u * scale * g), pred);
        }
        if (grad != nullptr) reinterpret_cast<sl_vec16*>(grad)[v] = out;
    }
#pragma unroll 1
    for (long long i = 4 * nv + first; i < n; i += stride) {
        const double d = (double)pred[i] - (double)target[i];
        double l, g;
        reg_element<KIND>(param, inv, d, &l, &g);
        acc += l;
        if (losses != nullptr) losses[i] = l;
        if (grad != nullptr) {
            const double u = up != nullptr ? up[i] : up_scalar;
            grad[i] = (float)(u * scale * g);
        }
    }
    const double total = sl_block_sum(acc, scratch);
    if (p.partials != nullptr && threadIdx.x == 0) p.partials[blockIdx.x] = total;
}

// `__launch_bounds__(256, 4)`: the launch's 256 threads (`geometry::ELEM_THREADS`), at most 64
// registers.
extern "C" __global__ void __launch_bounds__(256, 4) reg_smooth_l1(const RegParams p) {
    reg_run<0>(p);
}

extern "C" __global__ void __launch_bounds__(256, 4) reg_huber(const RegParams p) {
    reg_run<1>(p);
}
