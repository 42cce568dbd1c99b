// Box losses on aligned pairs (BOX-1 .. BOX-12, BOX-14 .. BOX-23) and pairwise IoU (BOX-13).
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
// a / b with one f64 reciprocal instead of five divisions (v2, issue 16 finding 6): the value
// is a.v / b.v correctly rounded (Markstein: with y = RN(1 / b) and q = RN(a y), q + RN(a - b q) y
// rounds to RN(a / b); fma keeps the residual exact), the derivatives (a' - q b') y differ from
// the reference's (a' - q b') / b by one f64 rounding. Operands where the theorem's conditions
// may fail (|b| outside [2^-1000, 2^1000], a result that is not a normal number away from the
// range's ends, non-finite values) take the plain division.
__device__ __forceinline__ double sl_div(double a, double b, double y) {
    double q = a * y;
    q = fma(fma(-b, q, a), y, q);
    const bool safe = fabs(b) > 0x1p-1000 && fabs(b) < 0x1p1000 &&
                      (a == 0.0 || (fabs(q) > 0x1p-960 && fabs(q) < 0x1p960));
    return safe ? q : a / b;
}
__device__ __forceinline__ D4 operator/(D4 a, D4 b) {
    D4 r;
    const double y = 1.0 / b.v;
    const double q = sl_div(a.v, b.v, y);
    r.v = q;
    for (int k = 0; k < 4; ++k) r.d[k] = (a.d[k] - q * b.d[k]) * y;
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
// a / b where b > 0, else 0 (the reference's pos_div: SIoU / Shape-IoU shape ratios).
__device__ __forceinline__ D4 pos_div(D4 a, D4 b) {
    if (!(b.v > 0.0)) return d4c(0.0);
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

__device__ __forceinline__ D4 operator-(D4 a) {
    D4 r;
    r.v = -a.v;
    for (int k = 0; k < 4; ++k) r.d[k] = -a.d[k];
    return r;
}
// f(x) from its value f and derivative df at x (the chain rule; reference `Scalar::chain`).
__device__ __forceinline__ D4 chain(D4 x, double f, double df) {
    D4 r;
    r.v = f;
    for (int k = 0; k < 4; ++k) r.d[k] = x.d[k] * df;
    return r;
}
__device__ __forceinline__ D4 detach(D4 x) { return d4c(x.v); }
__device__ __forceinline__ D4 d4sqrt(D4 x) {
    const double r = sqrt(x.v);
    return chain(x, r, r > 0.0 ? 0.5 / r : 0.0);
}
__device__ __forceinline__ D4 d4exp(D4 x) {
    const double e = exp(x.v);
    return chain(x, e, e);
}
__device__ __forceinline__ D4 d4abs(D4 x) {
    const double s = x.v > 0.0 ? 1.0 : (x.v < 0.0 ? -1.0 : 0.0);
    return chain(x, fabs(x.v), s);
}
__device__ __forceinline__ D4 d4asin(D4 x) {
    const double q = 1.0 - x.v * x.v;
    return chain(x, asin(x.v), q > 0.0 ? 1.0 / sqrt(q) : 0.0);
}
__device__ __forceinline__ D4 d4cos(D4 x) { return chain(x, cos(x.v), -sin(x.v)); }
__device__ __forceinline__ D4 pow4(D4 x) {
    const D4 x2 = x * x;
    return x2 * x2;
}
// sign(x) |x|^a, derivative a |x|^(a-1), 0 at 0 (reference `dual::spow`).
__device__ __forceinline__ D4 spow(D4 x, double a) {
    if (x.v == 0.0) return chain(x, 0.0, 0.0);
    const double m = pow(fabs(x.v), a);
    const double sg = x.v > 0.0 ? 1.0 : -1.0;
    return chain(x, sg * m, a * m / fabs(x.v));
}
// PyTorch's clamp: the gradient passes where lo <= x <= hi.
__device__ __forceinline__ D4 clampd(D4 x, double lo, double hi) {
    if (x.v < lo) return d4c(lo);
    if (x.v > hi) return d4c(hi);
    return x;
}

// Modifier bits of BoxLossParams::mods (`src/box_loss.rs`).
#define SL_BOX_MOD_INNER 1
#define SL_BOX_MOD_FOCALER 2
#define SL_BOX_MOD_ALPHA 4
#define SL_BOX_MOD_FOCAL 8

// The options of one call (BOX-14 .. BOX-23), from BoxLossParams.
struct BoxOpts {
    double eps;
    double smooth_point;
    double img_diag2;
    double shape_scale;
    double inner_ratio;
    double focaler_d;
    double focaler_u;
    double alpha_power;
    double focal_gamma;
    int kind;
    int ciou_mmdet;
    int siou_paper_gamma;
    int mods;
};

__device__ __forceinline__ D4 pw(const BoxOpts& o, D4 x) {
    return (o.mods & SL_BOX_MOD_ALPHA) ? spow(x, o.alpha_power) : x;
}

// BOX-2, BOX-3: inter / (union + eps) with torchvision's mask; union out.
__device__ __forceinline__ D4 iou_of(const D4 p[4], const D4 g[4], D4 e, D4* uni_out) {
    const D4 xk1 = d4max(p[0], g[0]);
    const D4 yk1 = d4max(p[1], g[1]);
    const D4 xk2 = d4min(p[2], g[2]);
    const D4 yk2 = d4min(p[3], g[3]);
    D4 inter = d4c(0.0);
    if (yk2.v > yk1.v && xk2.v > xk1.v) inter = (xk2 - xk1) * (yk2 - yk1);
    const D4 uni = (p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter;
    *uni_out = uni;
    return safe_div(inter, uni + e);
}

// BOX-15: mmdetection's eiou_loss (Extended-IoU).
__device__ D4 extended_iou(const D4 p[4], const D4 g[4], D4 e, double sp) {
    const D4 ex1 = d4min(p[0], g[0]);
    const D4 ey1 = d4min(p[1], g[1]);
    const D4 ix1 = d4max(p[0], g[0]);
    const D4 iy1 = d4max(p[1], g[1]);
    const D4 ix2 = d4min(p[2], g[2]);
    const D4 iy2 = d4min(p[3], g[3]);
    const D4 xmin = d4min(ix1, ix2);
    const D4 ymin = d4min(iy1, iy2);
    const D4 xmax = d4max(ix1, ix2);
    const D4 ymax = d4max(iy1, iy2);
    const D4 inter = (ix2 - ex1) * (iy2 - ey1) + (xmin - ex1) * (ymin - ey1) -
                     (ix1 - ex1) * (ymax - ey1) - (xmax - ex1) * (iy1 - ey1);
    const D4 uni = (p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter + e;
    const D4 l = d4c(1.0) - safe_div(inter, uni);
    if (l.v < sp) return d4c(0.5 / sp) * l * l;
    return l - d4c(0.5 * sp);
}

// BOX-16: mmdetection's siou_loss.
__device__ D4 siou(const D4 p[4], const D4 g[4], D4 iou, D4 e, int paper_gamma) {
    const D4 one = d4c(1.0);
    const D4 two = d4c(2.0);
    const D4 half = d4c(0.5);
    const double eps = e.v;
    const D4 cw = clampd(d4max(p[2], g[2]) - d4min(p[0], g[0]), eps, SL_DINF);
    const D4 ch = clampd(d4max(p[3], g[3]) - d4min(p[1], g[1]), eps, SL_DINF);
    const D4 w1 = p[2] - p[0], h1 = p[3] - p[1] + e;
    const D4 w2 = g[2] - g[0], h2 = g[3] - g[1] + e;
    const D4 s_cw = (g[0] + g[2] - p[0] - p[2]) * half + e;
    const D4 s_ch = (g[1] + g[3] - p[1] - p[3]) * half + e;
    const D4 sigma = d4sqrt(s_cw * s_cw + s_ch * s_ch);
    const D4 sin1 = safe_div(d4abs(s_cw), sigma);
    const D4 sin2 = safe_div(d4abs(s_ch), sigma);
    const D4 sin_alpha = sin1.v > 0.70710678118654752440 ? sin2 : sin1;
    const D4 angle = d4cos(two * d4asin(sin_alpha) - d4c(SL_PI / 2.0));
    const D4 rx = s_cw / cw;
    const D4 ry = s_ch / ch;
    const D4 gamma = paper_gamma ? angle - two : two - angle;
    const D4 distance = two - d4exp(gamma * rx * rx) - d4exp(gamma * ry * ry);
    const D4 om_w = pos_div(d4abs(w1 - w2), d4max(w1, w2));
    const D4 om_h = pos_div(d4abs(h1 - h2), d4max(h1, h2));
    const D4 shape = pow4(one - d4exp(-om_w)) + pow4(one - d4exp(-om_h));
    return one - clampd(iou - half * (distance + shape), -1.0, 1.0);
}

// BOX-2 .. BOX-8, BOX-14 .. BOX-23 for one pair of corner boxes: mirrors the reference's
// `pair_loss_cfg`; kind: SL_BOX_KIND_* (generated from BoxLossKind::code).
__device__ D4 pair_loss_xyxy(const BoxOpts& o, const D4 p[4], const D4 g[4], double* iou_out) {
    const int kind = o.kind;
    const double eps_v = o.eps;
    const D4 e = d4c(eps_v);
    const D4 one = d4c(1.0);
    const D4 half = d4c(0.5);
    const D4 x1 = p[0], y1 = p[1], x2 = p[2], y2 = p[3];
    const D4 x1g = g[0], y1g = g[1], x2g = g[2], y2g = g[3];
    D4 uni;
    const D4 iou = iou_of(p, g, e, &uni);
    *iou_out = iou.v;
    const D4 cw = d4max(x2, x2g) - d4min(x1, x1g);
    const D4 ch = d4max(y2, y2g) - d4min(y1, y1g);
    const D4 dx = half * (x1 + x2) - half * (x1g + x2g);
    const D4 dy = half * (y1 + y2) - half * (y1g + y2g);
    const D4 rho2 = dx * dx + dy * dy;
    const D4 diag2 = cw * cw + ch * ch + e;
    const D4 w = x2 - x1, h = y2 - y1, wg = x2g - x1g, hg = y2g - y1g;
    D4 loss;
    if (kind == SL_BOX_KIND_IOU) {
        loss = one - pw(o, iou);
    } else if (kind == SL_BOX_KIND_GIOU) {
        const D4 area_c = cw * ch;
        const D4 q = safe_div(area_c - uni, area_c + e);
        loss = (o.mods & SL_BOX_MOD_ALPHA) ? one - pw(o, iou) + pw(o, q) : one - (iou - q);
    } else if (kind == SL_BOX_KIND_DIOU) {
        loss = one - pw(o, iou) + pw(o, safe_div(rho2, diag2));
    } else if (kind == SL_BOX_KIND_CIOU && !o.ciou_mmdet) {
        const D4 dv = atan_ratio(wg, hg) - atan_ratio(w, h);
        const D4 v = d4c(4.0 / (SL_PI * SL_PI)) * dv * dv;
        const double alpha_den = 1.0 - iou.v + v.v + eps_v;
        const double alpha = alpha_den == 0.0 ? 0.0 : v.v / alpha_den;
        loss = one - pw(o, iou) + pw(o, safe_div(rho2, diag2)) + pw(o, d4c(alpha) * v);
    } else if (kind == SL_BOX_KIND_CIOU) {
        // BOX-14: mmdetection's convention.
        const D4 dv = atan_ratio(wg, hg + e) - atan_ratio(w, h + e);
        const D4 v = d4c(4.0 / (SL_PI * SL_PI)) * dv * dv;
        const double den = 1.0 - iou.v + v.v;
        const double alpha = (iou.v > 0.5 && den != 0.0) ? v.v / den : 0.0;
        const D4 ciou = pw(o, iou) - (pw(o, safe_div(rho2, diag2)) + pw(o, d4c(alpha) * v));
        loss = one - clampd(ciou, -1.0, 1.0);
    } else if (kind == SL_BOX_KIND_EIOU) {
        const D4 dw = w - wg;
        const D4 dh = h - hg;
        loss = one - iou + safe_div(rho2, diag2) + safe_div(dw * dw, cw * cw + e) +
               safe_div(dh * dh, ch * ch + e);
    } else if (kind == SL_BOX_KIND_EXTENDED_IOU) {
        loss = extended_iou(p, g, e, o.smooth_point);
    } else if (kind == SL_BOX_KIND_SIOU) {
        loss = siou(p, g, iou, e, o.siou_paper_gamma);
    } else if (kind == SL_BOX_KIND_WIOU) {
        // BOX-17: the enclosing size detached.
        const D4 r = d4exp(safe_div(rho2, detach(cw * cw + ch * ch)));
        loss = r * (one - iou);
    } else if (kind == SL_BOX_KIND_MPDIOU) {
        // BOX-18.
        const D4 diag = d4c(o.img_diag2);
        const D4 a = x1 - x1g, b = y1 - y1g, c = x2 - x2g, d = y2 - y2g;
        loss = one - iou + (a * a + b * b) / diag + (c * c + d * d) / diag;
    } else {
        // SL_BOX_KIND_SHAPE_IOU (BOX-19): the target's shape weights are constants.
        const double sc = o.shape_scale;
        const double pwg = pow(fabs(wg.v), sc), phg = pow(fabs(hg.v), sc);
        const double den = pwg + phg;
        const D4 ww = den > 0.0 ? d4c(2.0 * pwg / den) : one;
        const D4 hh = den > 0.0 ? d4c(2.0 * phg / den) : one;
        const D4 distance = safe_div(hh * dx * dx + ww * dy * dy, diag2);
        const D4 om_w = hh * pos_div(d4abs(w - wg), d4max(w, wg));
        const D4 om_h = ww * pos_div(d4abs(h - hg), d4max(h, hg));
        const D4 shape = pow4(one - d4exp(-om_w)) + pow4(one - d4exp(-om_h));
        loss = one - iou + distance + half * shape;
    }
    // BOX-20, BOX-21: L + IoU - F(IoU').
    if (o.mods & (SL_BOX_MOD_INNER | SL_BOX_MOD_FOCALER)) {
        D4 term = iou;
        if (o.mods & SL_BOX_MOD_INNER) {
            const double r = o.inner_ratio;
            D4 ps[4], gs[4];
            for (int t = 0; t < 2; ++t) {
                const D4* b = t == 0 ? p : g;
                D4* out = t == 0 ? ps : gs;
                const D4 cx = half * (b[0] + b[2]), cy = half * (b[1] + b[3]);
                const D4 hw = d4c(0.5 * r) * (b[2] - b[0]), hh = d4c(0.5 * r) * (b[3] - b[1]);
                out[0] = cx - hw;
                out[1] = cy - hh;
                out[2] = cx + hw;
                out[3] = cy + hh;
            }
            D4 u2;
            term = iou_of(ps, gs, e, &u2);
        }
        if (o.mods & SL_BOX_MOD_FOCALER) {
            const double d = o.focaler_d, u = o.focaler_u;
            term = clampd((term - d4c(d)) * d4c(1.0 / (u - d)), 0.0, 1.0);
        }
        loss = loss + iou - term;
    }
    // BOX-23: the detached IoU^gamma.
    if (o.mods & SL_BOX_MOD_FOCAL) loss = d4c(pow(fmax(iou.v, 0.0), o.focal_gamma)) * loss;
    return loss;
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
    double smooth_point;
    double img_diag2;
    double shape_scale;
    double inner_ratio;
    double focaler_d;
    double focaler_u;
    double alpha_power;
    double focal_gamma;
    int kind;
    int format;
    int has_tw;
    int ciou_mmdet;
    int siou_paper_gamma;
    int mods;
};

// `__launch_bounds__(256, 2)` (v2): the launch's 256 threads, at most 128 registers, so two
// blocks (16 warps) per SM instead of one (v1 took 196). Target and upstream are never
// written and alias no output (`__restrict__`); pred may be the gradient (in place: a pair's
// thread reads its 4 values before it writes them). 16-byte loads and stores of the boxes when
// pred, target and grad are 16-byte aligned (always for whole device allocations).
extern "C" __global__ void __launch_bounds__(256, 1) box_loss_fwd_bwd(const BoxLossParams p) {
    const float* pred = p.pred;
    const float* __restrict__ target = p.target;
    const long long n = p.n;
    const int kind = p.kind;
    const int format = p.format;
    const double eps = p.eps;
    const int has_tw = p.has_tw;
    const double tw_alpha = p.tw_alpha;
    const double tw_threshold = p.tw_threshold;
    const double up_scalar = p.up_scalar;
    const double* __restrict__ up = p.up;
    const double scale = p.scale;
    double* __restrict__ losses = p.losses;
    double* partials = p.partials;
    float* grad = p.grad;
    const bool vec = sl_aligned16(pred, target, grad);
    BoxOpts o;
    o.eps = eps;
    o.smooth_point = p.smooth_point;
    o.img_diag2 = p.img_diag2;
    o.shape_scale = p.shape_scale;
    o.inner_ratio = p.inner_ratio;
    o.focaler_d = p.focaler_d;
    o.focaler_u = p.focaler_u;
    o.alpha_power = p.alpha_power;
    o.focal_gamma = p.focal_gamma;
    o.kind = kind;
    o.ciou_mmdet = p.ciou_mmdet;
    o.siou_paper_gamma = p.siou_paper_gamma;
    o.mods = p.mods;
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        double pv[4], tv[4];
        bool finite = true;
        if (vec) {
            const sl_vec16 pb = reinterpret_cast<const sl_vec16*>(pred)[i];
            const sl_vec16 tb = reinterpret_cast<const sl_vec16*>(target)[i];
            for (int k = 0; k < 4; ++k) {
                pv[k] = (double)sl_vec_get(pb, k, pred);
                tv[k] = (double)sl_vec_get(tb, k, pred);
            }
        } else {
            for (int k = 0; k < 4; ++k) {
                pv[k] = (double)pred[4 * i + k];
                tv[k] = (double)target[4 * i + k];
            }
        }
        for (int k = 0; k < 4; ++k)
            if (!isfinite(pv[k]) || !isfinite(tv[k])) finite = false;
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
            const D4 r = pair_loss_xyxy(o, pc, gc, &iou);
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
            if (vec) {
                sl_vec16 g;
                for (int k = 0; k < 4; ++k) sl_vec_set(g, k, (float)(u * (w * d[k])), pred);
                reinterpret_cast<sl_vec16*>(grad)[i] = g;
            } else {
                for (int k = 0; k < 4; ++k) grad[4 * i + k] = (float)(u * (w * d[k]));
            }
        }
    }
    const double total = sl_block_sum(acc, scratch);
    if (partials != nullptr && threadIdx.x == 0) partials[blockIdx.x] = total;
}

__device__ __forceinline__ void plain_xyxy(int format, const float* b, bool vec, double o[4]) {
    double b0, b1, b2, b3;
    if (vec) {
        const sl_vec16 v = *reinterpret_cast<const sl_vec16*>(b);
        b0 = sl_vec_get(v, 0, b), b1 = sl_vec_get(v, 1, b), b2 = sl_vec_get(v, 2, b);
        b3 = sl_vec_get(v, 3, b);
    } else {
        b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
    }
    if (format == SL_BOX_FORMAT_XYWH) {
        o[0] = b0; o[1] = b1; o[2] = b0 + b2; o[3] = b1 + b3;
    } else if (format == SL_BOX_FORMAT_CXCYWH) {
        o[0] = b0 - 0.5 * b2; o[1] = b1 - 0.5 * b3; o[2] = b0 + 0.5 * b2; o[3] = b1 + 0.5 * b3;
    } else {
        o[0] = b0; o[1] = b1; o[2] = b2; o[3] = b3;
    }
}

// Pairwise IoU [n, m] row-major, as torchvision.ops.box_iou (BOX-13). One thread per output,
// grid-stride (`src/params.rs` BoxIouParams). fmin/fmax ignore a NaN operand, like Rust's
// f64::min/max in the reference. v2 (issue 16, finding 6): the output's (i, j) kept
// incrementally (two 64-bit divisions per thread, none per output: v1 divided by m for every
// output), 16-byte box loads when both box arrays are aligned, launch bounds.
struct BoxIouParams {
    const float* b1;
    const float* b2;
    long long n;
    long long m;
    float* out;
    int format;
    int _pad;
};

extern "C" __global__ void __launch_bounds__(256, 4) box_iou_pairwise(const BoxIouParams p) {
    const float* __restrict__ b1 = p.b1;
    const float* __restrict__ b2 = p.b2;
    const long long n = p.n;
    const long long m = p.m;
    const int format = p.format;
    float* __restrict__ out = p.out;
    if (m <= 0) return;
    const bool vec = sl_aligned16(b1, b2, nullptr);
    const long long total = n * m;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    // idx = i m + j; each step adds stride = si m + sj.
    const long long si = stride / m, sj = stride - si * m;
    long long i = first / m, j = first - i * m;
#pragma unroll 1
    for (long long idx = first; idx < total; idx += stride) {
        double a[4], b[4];
        plain_xyxy(format, b1 + 4 * i, vec, a);
        plain_xyxy(format, b2 + 4 * j, vec, b);
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
        i += si;
        j += sj;
        if (j >= m) {
            j -= m;
            ++i;
        }
    }
}
