// BCE with logits and sigmoid focal loss (BIN-1 .. BIN-5), element-wise, one thread per
// element (grid-stride), math in double mirroring crates/core/src/reference/binary.rs.
// losses / partials / grad as in regression.cu. Requires blockDim.x a multiple of 32, <= 1024.
//
// Targets outside [0, 1] (NaN included) are an error (BIN validation): `check` (nullable, two
// zeroed words) gets in check[0] the bitwise NOT of the smallest such index (an atomic max of
// ~i, so the order of the threads does not matter; 0 = none), and bin_target_check then copies
// that target's value (as f64 bits) into check[1].

__device__ __forceinline__ void sl_flag_target(unsigned long long* check, long long i, double y) {
    if (check != nullptr && !(y >= 0.0 && y <= 1.0)) atomicMax(check, ~(unsigned long long)i);
}

// `src/params.rs` BinTargetCheckParams: the loss kernel's targets and check words.
struct BinTargetCheckParams {
    const float* targets;
    unsigned long long* check;
};

// One thread: the value of the flagged target, if any.
extern "C" __global__ void bin_target_check(const BinTargetCheckParams p) {
    unsigned long long* check = p.check;
    if (blockIdx.x == 0 && threadIdx.x == 0 && check[0] != 0ull)
        check[1] = (unsigned long long)__double_as_longlong((double)p.targets[~check[0]]);
}

__device__ __forceinline__ double sl_sigmoid(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
    const double e = exp(x);
    return e / (1.0 + e);
}

// max(x, 0) + log1p(exp(-|x|)); fmax ignores NaN like Rust's f64::max.
__device__ __forceinline__ double sl_softplus(double x) {
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

// A term whose coefficient is 0 is 0 even when its softplus is infinite (no 0 * inf).
__device__ __forceinline__ double sl_term(double coef, double sp) {
    return coef == 0.0 ? 0.0 : coef * sp;
}

// loss = pw y softplus(-x) + (1 - y) softplus(x); dloss/dx = sigmoid(x) (pw y + 1 - y) - pw y.
__device__ __forceinline__ void bce_element(double x, double y, double pw, double* l, double* d) {
    *l = sl_term(pw * y, sl_softplus(-x)) + sl_term(1.0 - y, sl_softplus(x));
    *d = sl_sigmoid(x) * (pw * y + 1.0 - y) - pw * y;
}

__device__ __forceinline__ void focal_element(double x, double y, double alpha, double gamma,
                                              double* l, double* d) {
    const double p = sl_sigmoid(x);
    double ce, dce;
    bce_element(x, y, 1.0, &ce, &dce);
    const double pt = p * y + (1.0 - p) * (1.0 - y);
    const double one_m = 1.0 - pt;
    const double modulator = pow(one_m, gamma);
    const double dmod = (gamma == 0.0 || one_m == 0.0)
                            ? 0.0
                            : gamma * pow(one_m, gamma - 1.0) * (-(2.0 * y - 1.0) * p * (1.0 - p));
    double loss = ce * modulator;
    // A zero dmod contributes 0 even for an infinite ce (x = +inf, y = 0): the limit (BIN-4).
    double dd = dce * modulator + (dmod == 0.0 ? 0.0 : ce * dmod);
    if (alpha >= 0.0) {
        const double at = alpha * y + (1.0 - alpha) * (1.0 - y);
        loss *= at;
        dd *= at;
    }
    *l = loss;
    *d = dd;
}

// `src/params.rs` BceParams. pos_weight (p_len entries, nullable): element i uses
// pos_weight[i % p_len].
struct BceParams {
    const float* logits;
    const float* targets;
    long long n;
    const double* pos_weight;
    long long p_len;
    double up_scalar;
    const double* up;
    double scale;
    double* losses;
    double* partials;
    float* grad;
    unsigned long long* check;
};

// `__launch_bounds__(SL_ELEM_THREADS, 4)`: the launch's 256 threads (`geometry::ELEM_THREADS`),
// at most 64 registers. Targets, upstream and pos_weight are never written and never alias
// an output (`__restrict__`); the logits may be the gradient (in place), so they are not.
#define SL_ELEM_THREADS 256
extern "C" __global__ void __launch_bounds__(SL_ELEM_THREADS, 4) bin_bce_with_logits(const BceParams p) {
    const float* logits = p.logits;
    const float* __restrict__ targets = p.targets;
    const long long n = p.n;
    const double* __restrict__ pos_weight = p.pos_weight;
    const long long p_len = p.p_len;
    const double up_scalar = p.up_scalar;
    const double* __restrict__ up = p.up;
    const double scale = p.scale;
    double* losses = p.losses;
    double* partials = p.partials;
    float* grad = p.grad;
    unsigned long long* check = p.check;
    __shared__ double scratch[32];
    double acc = 0.0;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    // i % p_len kept incrementally (one 64-bit division per thread, not per element).
    const long long plen = p_len > 0 ? p_len : 1;
    const long long step = stride % plen;
    long long k = first % plen;
    for (long long i = first; i < n; i += stride) {
        const double pw = pos_weight != nullptr ? pos_weight[k] : 1.0;
        k += step;
        if (k >= plen) k -= plen;
        double l, d;
        const double y = (double)targets[i];
        sl_flag_target(check, i, y);
        bce_element((double)logits[i], y, pw, &l, &d);
        acc += l;
        if (losses != nullptr) losses[i] = l;
        if (grad != nullptr) {
            const double u = up != nullptr ? up[i] : up_scalar;
            grad[i] = (float)(u * scale * d);
        }
    }
    const double total = sl_block_sum(acc, scratch);
    if (partials != nullptr && threadIdx.x == 0) partials[blockIdx.x] = total;
}

// `src/params.rs` FocalParams. alpha < 0: no alpha weighting.
struct FocalParams {
    const float* logits;
    const float* targets;
    long long n;
    double alpha;
    double gamma;
    double up_scalar;
    const double* up;
    double scale;
    double* losses;
    double* partials;
    float* grad;
    unsigned long long* check;
};

extern "C" __global__ void __launch_bounds__(SL_ELEM_THREADS, 4) bin_sigmoid_focal(const FocalParams p) {
    const float* logits = p.logits;
    const float* __restrict__ targets = p.targets;
    const long long n = p.n;
    const double alpha = p.alpha;
    const double gamma = p.gamma;
    const double up_scalar = p.up_scalar;
    const double* up = p.up;
    const double scale = p.scale;
    double* losses = p.losses;
    double* partials = p.partials;
    float* grad = p.grad;
    unsigned long long* check = p.check;
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        double l, d;
        const double y = (double)targets[i];
        sl_flag_target(check, i, y);
        focal_element((double)logits[i], y, alpha, gamma, &l, &d);
        acc += l;
        if (losses != nullptr) losses[i] = l;
        if (grad != nullptr) {
            const double u = up != nullptr ? up[i] : up_scalar;
            grad[i] = (float)(u * scale * d);
        }
    }
    const double total = sl_block_sum(acc, scratch);
    if (partials != nullptr && threadIdx.x == 0) partials[blockIdx.x] = total;
}
