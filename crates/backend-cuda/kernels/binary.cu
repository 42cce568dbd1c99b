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

// exp(-|x|) once per element: sigmoid(x), softplus(x) and softplus(-x) all derive from it
// (v2; v1 took three exponentials and two log1p per BCE element, the same values).
struct SlSig {
    double lp; // log1p(exp(-|x|))
    double p;  // sigmoid(x)
};
__device__ __forceinline__ SlSig sl_sig(double x) {
    const double e = exp(-fabs(x));
    SlSig r;
    r.lp = log1p(e);
    r.p = x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    return r;
}

// A term whose coefficient is 0 is 0 even when its softplus is infinite (no 0 * inf).
__device__ __forceinline__ double sl_term(double coef, double sp) {
    return coef == 0.0 ? 0.0 : coef * sp;
}

// loss = pw y softplus(-x) + (1 - y) softplus(x); dloss/dx = sigmoid(x) (pw y + 1 - y) - pw y;
// softplus(x) = max(x, 0) + log1p(exp(-|x|)) (fmax ignores NaN like Rust's f64::max).
__device__ __forceinline__ void bce_element(double x, const SlSig& s, double y, double pw,
                                            double* l, double* d) {
    *l = sl_term(pw * y, fmax(-x, 0.0) + s.lp) + sl_term(1.0 - y, fmax(x, 0.0) + s.lp);
    *d = s.p * (pw * y + 1.0 - y) - pw * y;
}

__device__ __forceinline__ void focal_element(double x, double y, double alpha, double gamma,
                                              double* l, double* d) {
    const SlSig s = sl_sig(x);
    const double p = s.p;
    double ce, dce;
    bce_element(x, s, y, 1.0, &ce, &dce);
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
// an output (`__restrict__`); the logits may be the gradient (in place: each thread reads its
// vector or element before it writes it), so they are not. v2 (issue 16, finding 6): 4
// elements per 16-byte load / store when logits, targets and grad are 16-byte aligned, the
// rest one at a time; loops not unrolled.
#define SL_ELEM_THREADS 256

// The element-wise driver of both binary losses: `elem(i % plen, x, y, &l, &d)` for every
// element i, in vectors of 4 where aligned; losses, upstream, gradient and the block's partial
// as above. `i % plen` (BCE's pos_weight index) is kept incrementally: two 64-bit remainders
// per thread, none per element.
template <typename P, typename F>
__device__ __forceinline__ void bin_run(const P& p, long long plen, F elem) {
    const float* logits = p.logits;
    const float* __restrict__ targets = p.targets;
    const long long n = p.n;
    const double up_scalar = p.up_scalar;
    const double* __restrict__ up = p.up;
    const double scale = p.scale;
    double* __restrict__ losses = p.losses;
    float* grad = p.grad;
    unsigned long long* check = p.check;
    __shared__ double scratch[32];
    double acc = 0.0;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long nv = sl_aligned16(logits, targets, grad) ? n / 4 : 0;
    const long long vstep = (4 * stride) % plen;
    long long kv = (4 * first) % plen;
#pragma unroll 1
    for (long long v = first; v < nv; v += stride) {
        long long kk = kv;
        kv += vstep;
        if (kv >= plen) kv -= plen;
        const sl_vec16 xv = reinterpret_cast<const sl_vec16*>(logits)[v];
        const sl_vec16 yv = reinterpret_cast<const sl_vec16*>(targets)[v];
        sl_vec16 out;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const long long i = 4 * v + k;
            const double y = (double)sl_vec_get(yv, k, logits);
            sl_flag_target(check, i, y);
            double l, d;
            elem(kk, (double)sl_vec_get(xv, k, logits), y, &l, &d);
            if (++kk == plen) kk = 0;
            acc += l;
            if (losses != nullptr) losses[i] = l;
            const double u = up != nullptr ? up[i] : up_scalar;
            sl_vec_set(out, k, (float)(u * scale * d), logits);
        }
        if (grad != nullptr) reinterpret_cast<sl_vec16*>(grad)[v] = out;
    }
    const long long step = stride % plen;
    long long kk = (4 * nv + first) % plen;
#pragma unroll 1
    for (long long i = 4 * nv + first; i < n; i += stride) {
        const double y = (double)targets[i];
        sl_flag_target(check, i, y);
        double l, d;
        elem(kk, (double)logits[i], y, &l, &d);
        kk += step;
        if (kk >= plen) kk -= plen;
        acc += l;
        if (losses != nullptr) losses[i] = l;
        if (grad != nullptr) {
            const double u = up != nullptr ? up[i] : up_scalar;
            grad[i] = (float)(u * scale * d);
        }
    }
    const double total = sl_block_sum(acc, scratch);
    if (p.partials != nullptr && threadIdx.x == 0) p.partials[blockIdx.x] = total;
}

extern "C" __global__ void __launch_bounds__(SL_ELEM_THREADS, 4) bin_bce_with_logits(const BceParams p) {
    const double* __restrict__ pos_weight = p.pos_weight;
    bin_run(p, p.p_len > 0 ? p.p_len : 1, [&](long long k, double x, double y, double* l,
                                              double* d) {
        const double pw = pos_weight != nullptr ? pos_weight[k] : 1.0;
        bce_element(x, sl_sig(x), y, pw, l, d);
    });
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
    const double alpha = p.alpha;
    const double gamma = p.gamma;
    bin_run(p, 1, [&](long long, double x, double y, double* l, double* d) {
        focal_element(x, y, alpha, gamma, l, d);
    });
}
