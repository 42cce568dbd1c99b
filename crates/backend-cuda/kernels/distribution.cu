// Distribution focal loss (DFL-1 .. DFL-4) over logits [rows, bins], one thread per item (a
// box of 4 rows for ultralytics, a row for mmdetection; grid-stride), math in double mirroring
// crates/core/src/reference/distribution.rs. losses (items, nullable): per-item loss
// (reduction none); partials (gridDim.x, nullable): per-block sums in a fixed order for
// sl_reduce_final; grad (rows * bins, nullable, may be the logits: in place, each thread
// reads a row before it writes it): up_i * scale / rows_per_item * dloss/dz. Requires
// blockDim.x a multiple of 32, <= 1024.
//
// v2 (issue 16 finding 6, issue 13): `__restrict__` on what is never written, one reciprocal
// of the row's sum instead of a division per bin, `__launch_bounds__(256, 2)`; device-buffer
// targets are checked here (`check`, nullable): an invalid target (NaN; mmdetection: outside
// [0, bins - 1)) flags its row (an atomic max of ~row, so the smallest row wins in any thread
// order), gives that row a NaN loss and gradient and is never used as an index, and
// dfl_target_check copies its value.

// `src/params.rs` DflParams. convention: 0 ultralytics (4 rows per item, clamped targets),
// 1 mmdetection (1 row per item).
struct DflParams {
    const float* logits;
    const float* targets;
    long long items;
    long long bins;
    double up_scalar;
    const double* up;
    double scale;
    double* losses;
    double* partials;
    float* grad;
    unsigned long long* check;
    int convention;
    int _pad;
};

// `src/params.rs` TargetValueParams: the flagged target's value into check[1].
struct TargetValueParams {
    const float* values;
    const long long* labels;
    unsigned long long* check;
};

extern "C" __global__ void dfl_target_check(const TargetValueParams p) {
    unsigned long long* check = p.check;
    if (blockIdx.x == 0 && threadIdx.x == 0 && check[0] != 0ull) {
        const unsigned long long i = ~check[0];
        check[1] = p.values != nullptr
                       ? (unsigned long long)__double_as_longlong((double)p.values[i])
                       : (unsigned long long)p.labels[i];
    }
}

// One row: its loss, and its gradient times f into g (when non-null); DFL-1 .. DFL-3. `t` is a
// valid target (checked by the caller).
__device__ double dfl_row(const float* z, long long bins, double t, int convention, double f,
                          float* g) {
    long long l;
    double wl, wr;
    if (convention == 0) {
        const double hi = (double)bins - 1.0 - 0.01;
        t = t < 0.0 ? 0.0 : (t > hi ? hi : t);
        l = (long long)t;
        wl = (double)(l + 1) - t;
        wr = 1.0 - wl;
    } else {
        l = (long long)t;
        wl = (double)(l + 1) - t;
        wr = t - (double)l;
    }
    double m = -SL_DINF;
    bool finite = true;
    for (long long j = 0; j < bins; ++j) {
        const double v = (double)z[j];
        finite = finite && isfinite(v);
        m = fmax(m, v);
    }
    if (!finite) {
        if (g != nullptr)
            for (long long j = 0; j < bins; ++j) g[j] = SL_NAN;
        return SL_DNAN;
    }
    double s = 0.0;
    for (long long j = 0; j < bins; ++j) s += exp((double)z[j] - m);
    const double ls = log(s);
    const double loss = wl * (ls + (m - (double)z[l])) + wr * (ls + (m - (double)z[l + 1]));
    if (g != nullptr) {
        // p_j = exp(z_j - m) / s as exp(z_j - m) * (1 / s): one rounding from the reference.
        const double inv_s = 1.0 / s;
        const double wsum = wl + wr;
        for (long long j = 0; j < bins; ++j) {
            double d = wsum * (exp((double)z[j] - m) * inv_s);
            if (j == l) d -= wl;
            if (j == l + 1) d -= wr;
            g[j] = (float)(f * d);
        }
    }
    return loss;
}

// Whether a target is invalid (`DistributionFocal::check_targets`).
__device__ __forceinline__ bool dfl_bad_target(double t, long long bins, int convention) {
    return convention == 0 ? t != t : !(t >= 0.0 && t < (double)bins - 1.0);
}

extern "C" __global__ void __launch_bounds__(256, 2) dfl_fwd_bwd(const DflParams p) {
    __shared__ double scratch[32];
    const float* logits = p.logits;
    const float* __restrict__ targets = p.targets;
    const double* __restrict__ up = p.up;
    const long long bins = p.bins;
    const long long per = p.convention == 0 ? 4 : 1;
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.items;
         i += (long long)gridDim.x * blockDim.x) {
        const double u = up != nullptr ? up[i] : p.up_scalar;
        const double f = u * p.scale / (double)per;
        double sum = 0.0;
        for (long long k = 0; k < per; ++k) {
            const long long r = i * per + k;
            float* g = p.grad != nullptr ? p.grad + r * bins : nullptr;
            const double t = (double)targets[r];
            if (dfl_bad_target(t, bins, p.convention)) {
                if (p.check != nullptr) atomicMax(p.check, ~(unsigned long long)r);
                if (g != nullptr)
                    for (long long j = 0; j < bins; ++j) g[j] = SL_NAN;
                sum = SL_DNAN;
                continue;
            }
            sum += dfl_row(logits + r * bins, bins, t, p.convention, f, g);
        }
        const double item = sum / (double)per;
        acc += item;
        if (p.losses != nullptr) p.losses[i] = item;
    }
    const double total = sl_block_sum(acc, scratch);
    if (p.partials != nullptr && threadIdx.x == 0) p.partials[blockIdx.x] = total;
}
