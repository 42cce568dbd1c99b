// Varifocal (QUAL-1 .. QUAL-4) and quality focal (QUAL-5 .. QUAL-7) losses, math in double
// mirroring crates/core/src/reference/quality.rs: the varifocal loss one thread per element,
// the quality focal loss one thread per row (grid-stride). losses / partials / grad as in
// regression.cu (grad may be the logits: in place, each thread reads an element before it
// writes it). Requires blockDim.x a multiple of 32, <= 1024.

__device__ __forceinline__ double q_sigmoid(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
    const double e = exp(x);
    return e / (1.0 + e);
}

__device__ __forceinline__ double q_softplus(double x) {
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

__device__ __forceinline__ double q_term(double coef, double sp) {
    return coef == 0.0 ? 0.0 : coef * sp;
}

// BCE(x, y) and its derivative (BIN-1, BIN-2 with pw = 1).
__device__ __forceinline__ void q_bce(double x, double y, double* l, double* d) {
    *l = q_term(y, q_softplus(-x)) + q_term(1.0 - y, q_softplus(x));
    *d = q_sigmoid(x) - y;
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
    int weight;
    int _pad;
};

extern "C" __global__ void qual_varifocal(const VarifocalParams p) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.n;
         i += (long long)gridDim.x * blockDim.x) {
        const double x = (double)p.logits[i];
        const double s = (double)p.scores[i];
        double l, d;
        if (!isfinite(x)) {
            l = SL_DNAN;
            d = SL_DNAN;
        } else {
            const double pr = q_sigmoid(x);
            const double dp = pr * (1.0 - pr);
            double bce, dbce;
            q_bce(x, s, &bce, &dbce);
            double w, dw;
            if (p.weight == 0) {
                const double lab = p.labels != nullptr ? (double)p.labels[i] : 0.0;
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
            const double u = p.up != nullptr ? p.up[i] : p.up_scalar;
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
};

extern "C" __global__ void qual_quality_focal(const QflParams p) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.rows;
         i += (long long)gridDim.x * blockDim.x) {
        const double u = p.up != nullptr ? p.up[i] : p.up_scalar;
        const double f = u * p.scale;
        const long long label = p.labels[i];
        const double s = (double)p.scores[i];
        double row = 0.0;
        for (long long j = 0; j < p.classes; ++j) {
            const long long k = i * p.classes + j;
            const double x = (double)p.logits[k];
            double l, d;
            if (!isfinite(x)) {
                l = SL_DNAN;
                d = SL_DNAN;
            } else {
                const double pr = q_sigmoid(x);
                const double dp = pr * (1.0 - pr);
                double bce, dbce, m, dm;
                if (label == j) {
                    q_bce(x, s, &bce, &dbce);
                    const double diff = s - pr;
                    q_pow(fabs(diff), p.beta, &m, &dm);
                    l = bce * m;
                    d = dbce * m + bce * dm * (-q_sign(diff)) * dp;
                } else {
                    q_bce(x, 0.0, &bce, &dbce);
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
