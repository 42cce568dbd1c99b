// Box losses on aligned pairs (BOX-1 .. BOX-12) and pairwise IoU (BOX-13).
//
// v1: one thread per pair (grid-stride), math in double with a 4-way forward-mode dual number
// that mirrors crates/core/src/reference/dual.rs operation by operation (min/max ties split
// the gradient in half, safe_div, atan_ratio), so the gradient is the analytic gradient of the
// same formula as the reference. Per-block loss partials (fixed order) feed sl_reduce_final.
// Requires: blockDim.x a multiple of 32 and <= 1024.

#define SL_PI 3.14159265358979323846

struct D4 {
    double v;
    double d[4];
};

__device__ __forceinline__ D4 d4c(double v) {
    D4 r;
    r.v = v;
    for (int k = 0; k < 4; ++k) r.d[k] = 0.0;
    return r;
}
__device__ __forceinline__ D4 d4var(double v, int k) {
    D4 r = d4c(v);
    r.d[k] = 1.0;
    return r;
}
__device__ __forceinline__ D4 operator+(D4 a, D4 b) {
    D4 r;
    r.v = a.v + b.v;
    for (int k = 0; k < 4; ++k) r.d[k] = a.d[k] + b.d[k];
    return r;
}
__device__ __forceinline__ D4 operator-(D4 a, D4 b) {
    D4 r;
    r.v = a.v - b.v;
    for (int k = 0; k < 4; ++k) r.d[k] = a.d[k] - b.d[k];
    return r;
}
__device__ __forceinline__ D4 operator*(D4 a, D4 b) {
    D4 r;
    r.v = a.v * b.v;
    for (int k = 0; k < 4; ++k) r.d[k] = a.d[k] * b.v + a.v * b.d[k];
    return r;
}
__device__ __forceinline__ D4 operator/(D4 a, D4 b) {
    D4 r;
    const double q = a.v / b.v;
    r.v = q;
    for (int k = 0; k < 4; ++k) r.d[k] = (a.d[k] - q * b.d[k]) / b.v;
    return r;
}
__device__ __forceinline__ D4 half_sum(D4 a, D4 b) {
    D4 r;
    r.v = a.v;
    for (int k = 0; k < 4; ++k) r.d[k] = 0.5 * (a.d[k] + b.d[k]);
    return r;
}
__device__ __forceinline__ D4 d4max(D4 a, D4 b) {
    if (a.v > b.v) return a;
    if (b.v > a.v) return b;
    return half_sum(a, b);
}
__device__ __forceinline__ D4 d4min(D4 a, D4 b) {
    if (a.v < b.v) return a;
    if (b.v < a.v) return b;
    return half_sum(a, b);
}
__device__ __forceinline__ D4 safe_div(D4 a, D4 b) {
    if (b.v == 0.0) return d4c(0.0);
    return a / b;
}
__device__ __forceinline__ double atan_ratio_value(double w, double h) {
    if (h != 0.0) return atan(w / h);
    if (w == 0.0) return 0.0;
    return (w > 0.0 ? 1.0 : (w < 0.0 ? -1.0 : w)) * (SL_PI / 2.0);
}
__device__ __forceinline__ D4 atan_ratio(D4 w, D4 h) {
    const double r2 = w.v * w.v + h.v * h.v;
    const double v = atan_ratio_value(w.v, h.v);
    if (r2 == 0.0) return d4c(v);
    D4 r;
    r.v = v;
    for (int k = 0; k < 4; ++k) r.d[k] = (h.v * w.d[k] - w.v * h.d[k]) / r2;
    return r;
}

// BOX-1: box in `format` (SL_BOX_FORMAT_*, generated from BoxFormat::code) to corners.
__device__ __forceinline__ void to_xyxy(int format, const D4 b[4], D4 out[4]) {
    const D4 half = d4c(0.5);
    if (format == SL_BOX_FORMAT_XYWH) {
        out[0] = b[0];
        out[1] = b[1];
        out[2] = b[0] + b[2];
        out[3] = b[1] + b[3];
    } else if (format == SL_BOX_FORMAT_CXCYWH) {
        out[0] = b[0] - half * b[2];
        out[1] = b[1] - half * b[3];
        out[2] = b[0] + half * b[2];
        out[3] = b[1] + half * b[3];
    } else {
        for (int k = 0; k < 4; ++k) out[k] = b[k];
    }
}

// BOX-2 .. BOX-8 for one pair of corner boxes; kind: SL_BOX_KIND_* (generated from
// BoxLossKind::code).
__device__ D4 pair_loss_xyxy(int kind, const D4 p[4], const D4 g[4], double eps_v, double* iou_out) {
    const D4 e = d4c(eps_v);
    const D4 zero = d4c(0.0);
    const D4 one = d4c(1.0);
    const D4 x1 = p[0], y1 = p[1], x2 = p[2], y2 = p[3];
    const D4 x1g = g[0], y1g = g[1], x2g = g[2], y2g = g[3];
    const D4 xk1 = d4max(x1, x1g);
    const D4 yk1 = d4max(y1, y1g);
    const D4 xk2 = d4min(x2, x2g);
    const D4 yk2 = d4min(y2, y2g);
    D4 inter = zero;
    if (yk2.v > yk1.v && xk2.v > xk1.v) inter = (xk2 - xk1) * (yk2 - yk1);
    const D4 uni = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter;
    const D4 iou = safe_div(inter, uni + e);
    *iou_out = iou.v;
    const D4 xc1 = d4min(x1, x1g);
    const D4 yc1 = d4min(y1, y1g);
    const D4 xc2 = d4max(x2, x2g);
    const D4 yc2 = d4max(y2, y2g);
    const D4 cw = xc2 - xc1;
    const D4 ch = yc2 - yc1;
    const D4 half = d4c(0.5);
    const D4 dx = half * (x1 + x2) - half * (x1g + x2g);
    const D4 dy = half * (y1 + y2) - half * (y1g + y2g);
    const D4 rho2 = dx * dx + dy * dy;
    const D4 diag2 = cw * cw + ch * ch + e;
    if (kind == SL_BOX_KIND_IOU) return one - iou;
    if (kind == SL_BOX_KIND_GIOU) {
        const D4 area_c = cw * ch;
        return one - (iou - safe_div(area_c - uni, area_c + e));
    }
    if (kind == SL_BOX_KIND_DIOU) return one - iou + safe_div(rho2, diag2);
    if (kind == SL_BOX_KIND_CIOU) {
        const D4 diou = one - iou + safe_div(rho2, diag2);
        const D4 dv = atan_ratio(x2g - x1g, y2g - y1g) - atan_ratio(x2 - x1, y2 - y1);
        const D4 v = d4c(4.0 / (SL_PI * SL_PI)) * dv * dv;
        const double alpha_den = 1.0 - iou.v + v.v + eps_v;
        const double alpha = alpha_den == 0.0 ? 0.0 : v.v / alpha_den;
        return diou + d4c(alpha) * v;
    }
    // SL_BOX_KIND_EIOU
    const D4 dw = (x2 - x1) - (x2g - x1g);
    const D4 dh = (y2 - y1) - (y2g - y1g);
    return one - iou + safe_div(rho2, diag2) + safe_div(dw * dw, cw * cw + e) +
           safe_div(dh * dh, ch * ch + e);
}

// Aligned pairs. losses (n, nullable): per-pair weighted loss (reduction none).
// partials (gridDim.x, nullable): per-block sums of the weighted losses.
// grad (4n, nullable): up_i * scale * w_i * dloss_i/dpred_i.
// `src/params.rs` BoxLossParams.
struct BoxLossParams {
    const float* pred;
    const float* target;
    long long n;
    double eps;
    double tw_alpha;
    double tw_threshold;
    double up_scalar;
    const double* up;
    double scale;
    double* losses;
    double* partials;
    float* grad;
    int kind;
    int format;
    int has_tw;
    int _pad;
};

extern "C" __global__ void box_loss_fwd_bwd(const BoxLossParams p) {
    const float* pred = p.pred;
    const float* target = p.target;
    const long long n = p.n;
    const int kind = p.kind;
    const int format = p.format;
    const double eps = p.eps;
    const int has_tw = p.has_tw;
    const double tw_alpha = p.tw_alpha;
    const double tw_threshold = p.tw_threshold;
    const double up_scalar = p.up_scalar;
    const double* up = p.up;
    const double scale = p.scale;
    double* losses = p.losses;
    double* partials = p.partials;
    float* grad = p.grad;
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        double pv[4], tv[4];
        bool finite = true;
        for (int k = 0; k < 4; ++k) {
            pv[k] = (double)pred[4 * i + k];
            tv[k] = (double)target[4 * i + k];
            if (!isfinite(pv[k]) || !isfinite(tv[k])) finite = false;
        }
        double l, iou;
        double d[4];
        if (!finite) {
            // BOX-12: non-finite coordinates give NaN loss and gradient.
            l = SL_DNAN;
            iou = SL_DNAN;
            for (int k = 0; k < 4; ++k) d[k] = SL_DNAN;
        } else {
            D4 pb[4], tb[4], pc[4], gc[4];
            for (int k = 0; k < 4; ++k) {
                pb[k] = d4var(pv[k], k);
                tb[k] = d4c(tv[k]);
            }
            to_xyxy(format, pb, pc);
            to_xyxy(format, tb, gc);
            const D4 r = pair_loss_xyxy(kind, pc, gc, eps, &iou);
            l = r.v;
            for (int k = 0; k < 4; ++k) d[k] = r.d[k];
        }
        // BOX-9: piecewise-constant threshold weight.
        const double w = (has_tw && iou < tw_threshold) ? 1.0 - tw_alpha : 1.0;
        const double wl = w * l;
        acc += wl;
        if (losses != nullptr) losses[i] = wl;
        if (grad != nullptr) {
            const double u = (up != nullptr ? up[i] : up_scalar) * scale;
            for (int k = 0; k < 4; ++k) grad[4 * i + k] = (float)(u * (w * d[k]));
        }
    }
    const double total = sl_block_sum(acc, scratch);
    if (partials != nullptr && threadIdx.x == 0) partials[blockIdx.x] = total;
}

__device__ __forceinline__ void plain_xyxy(int format, const float* b, double o[4]) {
    const double b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
    if (format == SL_BOX_FORMAT_XYWH) {
        o[0] = b0; o[1] = b1; o[2] = b0 + b2; o[3] = b1 + b3;
    } else if (format == SL_BOX_FORMAT_CXCYWH) {
        o[0] = b0 - 0.5 * b2; o[1] = b1 - 0.5 * b3; o[2] = b0 + 0.5 * b2; o[3] = b1 + 0.5 * b3;
    } else {
        o[0] = b0; o[1] = b1; o[2] = b2; o[3] = b3;
    }
}

// Pairwise IoU [n, m] row-major, as torchvision.ops.box_iou (BOX-13). One thread per output,
// grid-stride (`src/params.rs` BoxIouParams). fmin/fmax ignore a NaN operand, like Rust's f64::min/max in the reference.
struct BoxIouParams {
    const float* b1;
    const float* b2;
    long long n;
    long long m;
    float* out;
    int format;
    int _pad;
};

extern "C" __global__ void box_iou_pairwise(const BoxIouParams p) {
    const float* b1 = p.b1;
    const float* b2 = p.b2;
    const long long n = p.n;
    const long long m = p.m;
    const int format = p.format;
    float* out = p.out;
    const long long total = n * m;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long i = idx / m;
        const long long j = idx - i * m;
        double a[4], b[4];
        plain_xyxy(format, b1 + 4 * i, a);
        plain_xyxy(format, b2 + 4 * j, b);
        const double area_a = (a[2] - a[0]) * (a[3] - a[1]);
        const double area_b = (b[2] - b[0]) * (b[3] - b[1]);
        const double w = fmax(fmin(a[2], b[2]) - fmax(a[0], b[0]), 0.0);
        const double h = fmax(fmin(a[3], b[3]) - fmax(a[1], b[1]), 0.0);
        const double inter = w * h;
        const double uni = area_a + area_b - inter;
        double r;
        if (uni > 0.0) r = inter / uni;
        else if (uni != uni) r = SL_DNAN;
        else r = 0.0;
        out[idx] = (float)r;
    }
}
