// Smooth L1 and Huber (REG-1 .. REG-5), element-wise, one thread per element (grid-stride),
// math in double. losses (n, nullable): per-element loss (reduction none); partials
// (gridDim.x, nullable): per-block sums in a fixed order for sl_reduce_final; grad (n,
// nullable): up_i * scale * dloss/dpred. Requires blockDim.x a multiple of 32, <= 1024.

__device__ __forceinline__ double sl_sign(double d) {
    if (d > 0.0) return 1.0;
    if (d < 0.0) return -1.0;
    return d * 0.0; // 0 stays 0, NaN stays NaN
}

// kind 0: smooth L1 with beta = param; kind 1: Huber with delta = param.
__device__ __forceinline__ void reg_element(int kind, double param, double d, double* l, double* g) {
    const double z = fabs(d);
    if (kind == 0) {
        if (z < param) {
            *l = 0.5 * d * d / param;
            *g = d / param;
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

// `target` and `up` are never written and never alias an output (`__restrict__`); `pred` may
// be the gradient (in place), so it is not.
__device__ void reg_run(int kind, const float* pred, const float* __restrict__ target, long long n,
                        double param, double up_scalar, const double* __restrict__ up, double scale,
                        double* losses, double* partials, float* grad) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const double d = (double)pred[i] - (double)target[i];
        double l, g;
        reg_element(kind, param, d, &l, &g);
        acc += l;
        if (losses != nullptr) losses[i] = l;
        if (grad != nullptr) {
            const double u = up != nullptr ? up[i] : up_scalar;
            grad[i] = (float)(u * scale * g);
        }
    }
    const double total = sl_block_sum(acc, scratch);
    if (partials != nullptr && threadIdx.x == 0) partials[blockIdx.x] = total;
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

// `__launch_bounds__(256, 4)`: the launch's 256 threads (`geometry::ELEM_THREADS`), at most 64
// registers.
extern "C" __global__ void __launch_bounds__(256, 4) reg_smooth_l1(const RegParams p) {
    reg_run(0, p.pred, p.target, p.n, p.param, p.up_scalar, p.up, p.scale, p.losses, p.partials,
            p.grad);
}

extern "C" __global__ void __launch_bounds__(256, 4) reg_huber(const RegParams p) {
    reg_run(1, p.pred, p.target, p.n, p.param, p.up_scalar, p.up, p.scale, p.losses, p.partials,
            p.grad);
}
