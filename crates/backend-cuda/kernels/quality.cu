// Varifocal (QUAL-1 .. QUAL-4) and quality focal (QUAL-5 .. QUAL-7) losses, math in double
// mirroring crates/core/src/reference/quality.rs: the varifocal loss one thread per element,
// the quality focal loss one thread per row (grid-stride). losses / partials / grad as in
// regression.cu (grad may be the logits: in place, each thread reads an element before it
// writes it). Requires blockDim.x a multiple of 32, <= 1024.

// exp(-|x|) once per element: sigmoid(x) and both softplus terms of BCE derive from it (v2;
// v1 took four exponentials and two log1p per element, the same values).
struct QSig {
    double lp; // log1p(exp(-|x|))
    double p;  // sigmoid(x)
};
__device__ __forceinline__ QSig q_sig(double x) {
    const double e = exp(-fabs(x));
    QSig r;
    r.lp = log1p(e);
    r.p = x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    return r;
}

__device__ __forceinline__ double q_term(double coef, double sp) {
    return coef == 0.0 ? 0.0 : coef * sp;
}

// BCE(x, y) and its derivative (BIN-1, BIN-2 with pw = 1); softplus(+-x) = max(+-x, 0) + lp.
__device__ __forceinline__ void q_bce(double x, const QSig& s, double y, double* l, double* d) {
    *l = q_term(y, fmax(-x, 0.0) + s.lp) + q_term(1.0 - y, fmax(x, 0.0) + s.lp);
    *d = s.p - y;
}

// A value outside [0, 1] (NaN included): flagged in `check` (2 words, nullable) by the bitwise
// NOT of its index (an atomic max, so the smallest index wins in any thread order).
__device__ __forceinline__ void q_flag_unit(unsigned long long* check, long long i, double v) {
    if (check != nullptr && !(v >= 0.0 && v <= 1.0)) atomicMax(check, ~(unsigned long long)i);
}

// b^e and d(b^e)/db, the derivative 0 where e = 0 or b = 0.
__device__ __forceinline__ void q_pow(double b, double e, double* v, double* d) {
    *v = pow(b, e);
    *d = (e == 0.0 || b == 0.0) ? 0.0 : e * pow(b, e - 1.0);
}

__device__ __forceinline__ double q_sign(double v) {
    return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : 0.0);
}

// `src/params.rs` VarifocalParams. weight: VarifocalWeight::code (0 ultralytics with labels,
// 1 mmdetection iou_weighted, 2 mmdetection).
struct VarifocalParams {
    const float* logits;
    const float* scores;
    const float* labels;
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
    int weight;
    int _pad;
};

// `src/params.rs` TargetValueParams: the flagged target's value into check[1].
struct TargetValueParams {
    const float* values;
    const long long* labels;
    unsigned long long* check;
};

extern "C" __global__ void qual_target_check(const TargetValueParams p) {
    unsigned long long* check = p.check;
    if (blockIdx.x == 0 && threadIdx.x == 0 && check[0] != 0ull) {
        const unsigned long long i = ~check[0];
        check[1] = p.values != nullptr
                       ? (unsigned long long)__double_as_longlong((double)p.values[i])
                       : (unsigned long long)p.labels[i];
    }
}

// `__launch_bounds__(256, 4)`: the launch's 256 threads, at most 64 registers. Scores, labels
// and upstream are never written and alias no output (`__restrict__`); the logits may be the
// gradient (in place).
extern "C" __global__ void __launch_bounds__(256, 4) qual_varifocal(const VarifocalParams p) {
    __shared__ double scratch[32];
    const float* __restrict__ scores = p.scores;
    const float* __restrict__ labels = p.labels;
    const double* __restrict__ up = p.up;
    unsigned long long* check = p.check;
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.n;
         i += (long long)gridDim.x * blockDim.x) {
        const double x = (double)p.logits[i];
        const double s = (double)scores[i];
        q_flag_unit(check, i, s);
        const double lab = labels != nullptr ? (double)labels[i] : 0.0;
        if (labels != nullptr) q_flag_unit(check != nullptr ? check + 2 : nullptr, i, lab);
        double l, d;
        if (!isfinite(x)) {
            l = SL_DNAN;
            d = SL_DNAN;
        } else {
            const QSig sg = q_sig(x);
            const double pr = sg.p;
            const double dp = pr * (1.0 - pr);
            double bce, dbce;
            q_bce(x, sg, s, &bce, &dbce);
            double w, dw;
            if (p.weight == 0) {
                double pg, dpg;
                q_pow(pr, p.gamma, &pg, &dpg);
                w = p.alpha * pg * (1.0 - lab) + s * lab;
                dw = p.alpha * dpg * dp * (1.0 - lab);
            } else if (s > 0.0) {
                w = p.weight == 1 ? s : 1.0;
                dw = 0.0;
            } else {
                const double diff = pr - s;
                double pg, dpg;
                q_pow(fabs(diff), p.gamma, &pg, &dpg);
                w = p.alpha * pg;
                dw = p.alpha * dpg * q_sign(diff) * dp;
            }
            l = bce * w;
            d = dbce * w + bce * dw;
        }
        acc += l;
        if (p.losses != nullptr) p.losses[i] = l;
        if (p.grad != nullptr) {
            const double u = up != nullptr ? up[i] : p.up_scalar;
            p.grad[i] = (float)(u * p.scale * d);
        }
    }
    const double total = sl_block_sum(acc, scratch);
    if (p.partials != nullptr && threadIdx.x == 0) p.partials[blockIdx.x] = total;
}

// `src/params.rs` QflParams. labels: one per row in [0, classes] (classes: background).
struct QflParams {
    const float* logits;
    const long long* labels;
    const float* scores;
    long long rows;
    long long classes;
    double beta;
    double up_scalar;
    const double* up;
    double scale;
    double* losses;
    double* partials;
    float* grad;
    unsigned long long* check;
};

extern "C" __global__ void __launch_bounds__(256, 4) qual_quality_focal(const QflParams p) {
    __shared__ double scratch[32];
    const long long* __restrict__ labels = p.labels;
    const float* __restrict__ scores = p.scores;
    const double* __restrict__ up = p.up;
    unsigned long long* check = p.check;
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.rows;
         i += (long long)gridDim.x * blockDim.x) {
        const double u = up != nullptr ? up[i] : p.up_scalar;
        const double f = u * p.scale;
        const long long label = labels[i];
        const double s = (double)scores[i];
        // Labels in [0, classes] (classes: the background); a label only compares with j.
        if (check != nullptr && !(label >= 0 && label <= p.classes))
            atomicMax(check, ~(unsigned long long)i);
        q_flag_unit(check != nullptr ? check + 2 : nullptr, i, s);
        double row = 0.0;
        for (long long j = 0; j < p.classes; ++j) {
            const long long k = i * p.classes + j;
            const double x = (double)p.logits[k];
            double l, d;
            if (!isfinite(x)) {
                l = SL_DNAN;
                d = SL_DNAN;
            } else {
                const QSig sg = q_sig(x);
                const double pr = sg.p;
                const double dp = pr * (1.0 - pr);
                double bce, dbce, m, dm;
                if (label == j) {
                    q_bce(x, sg, s, &bce, &dbce);
                    const double diff = s - pr;
                    q_pow(fabs(diff), p.beta, &m, &dm);
                    l = bce * m;
                    d = dbce * m + bce * dm * (-q_sign(diff)) * dp;
                } else {
                    q_bce(x, sg, 0.0, &bce, &dbce);
                    q_pow(pr, p.beta, &m, &dm);
                    l = bce * m;
                    d = dbce * m + bce * dm * dp;
                }
            }
            row += l;
            if (p.grad != nullptr) p.grad[k] = (float)(f * d);
        }
        acc += row;
        if (p.losses != nullptr) p.losses[i] = row;
    }
    const double total = sl_block_sum(acc, scratch);
    if (p.partials != nullptr && threadIdx.x == 0) p.partials[blockIdx.x] = total;
}
