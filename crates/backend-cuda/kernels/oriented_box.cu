// ProbIoU of oriented boxes (cx, cy, w, h, angle) (OBB-1 .. OBB-6): the loss 1 - ProbIoU with
// its gradient with respect to pred, one thread per pair (grid-stride), and the pairwise
// matrix, one thread per output; math in double with the hand-derived gradient of
// crates/backend-cpu/src/oriented_box/math.rs (checked against the reference's dual numbers).
// losses / partials / grad as in regression.cu (grad may be pred: in place, each thread reads
// its pair before it writes its gradient). Requires blockDim.x a multiple of 32, <= 1024.

#define OBB_SQRT12 3.4641016151377546
#define OBB_PI 3.14159265358979323846
#define OBB_HALF_PI 1.57079632679489661923

// sqrt(w^2 / 12 + floor) and its derivative in w (0 at w = 0, floor = 0).
__device__ __forceinline__ void obb_sd(double w, double floor, double* v, double* d) {
    if (floor == 0.0) {
        *v = fabs(w) / OBB_SQRT12;
        *d = w > 0.0 ? 1.0 / OBB_SQRT12 : (w < 0.0 ? -1.0 / OBB_SQRT12 : 0.0);
    } else {
        const double r = sqrt(w * w / 12.0 + floor);
        *v = r;
        *d = w / (12.0 * r);
    }
}

// atan(w / h), sign(w) pi / 2 at h = 0 (0 at the origin), and its partials.
__device__ __forceinline__ void obb_atan_ratio(double w, double h, double* v, double* dw,
                                               double* dh) {
    if (h != 0.0) *v = atan(w / h);
    else if (w == 0.0) *v = 0.0;
    else *v = w > 0.0 ? OBB_HALF_PI : -OBB_HALF_PI;
    const double n = w * w + h * h;
    *dw = n > 0.0 ? h / n : 0.0;
    *dh = n > 0.0 ? -w / n : 0.0;
}

// (1 - ProbIoU) of box a against box b into *loss, ProbIoU into *iou, and with want_grad the
// gradient of *loss with respect to a into g[0..5).
__device__ void obb_pair(const double* a, const double* b, double eps, double floor, int ciou,
                         bool want_grad, double* loss, double* iou_out, double* g) {
    bool finite = true;
    for (int k = 0; k < 5; ++k)
        if (!isfinite(a[k]) || !isfinite(b[k])) finite = false;
    if (!finite) {
        *loss = SL_DNAN;
        *iou_out = SL_DNAN;
        if (want_grad)
            for (int k = 0; k < 5; ++k) g[k] = SL_DNAN;
        return;
    }
    const double A1 = a[2] * a[2] / 12.0 + floor, B1 = a[3] * a[3] / 12.0 + floor;
    const double A2 = b[2] * b[2] / 12.0 + floor, B2 = b[3] * b[3] / 12.0 + floor;
    const double co = cos(a[4]), si = sin(a[4]);
    // The reference's order of operations (OBB-1), product by product: where the determinant
    // cancels (two nearly singular boxes) its rounding decides the result.
    const double co2 = co * co, si2 = si * si, cs = co * si;
    const double c2o = cos(b[4]), s2i = sin(b[4]);
    const double c2o2 = c2o * c2o, s2i2 = s2i * s2i;
    const double a1 = A1 * co2 + B1 * si2, b1 = A1 * si2 + B1 * co2, c1 = (A1 - B1) * co * si;
    const double a2 = A2 * c2o2 + B2 * s2i2, b2 = A2 * s2i2 + B2 * c2o2;
    const double c2 = (A2 - B2) * c2o * s2i;
    const double sa = a1 + a2, sb = b1 + b2, sc = c1 + c2;
    const double dx = a[0] - b[0], dy = a[1] - b[1];
    const double det = sa * sb - sc * sc;
    const double den = det + eps;
    const double t1 = (sa * dy * dy + sb * dx * dx) / den * 0.25;
    const double t2 = -(sc * dx * dy) / den * 0.5;
    double sw1, dsw1, sh1, dsh1, sw2, dsw2, sh2, dsh2;
    obb_sd(a[2], floor, &sw1, &dsw1);
    obb_sd(a[3], floor, &sh1, &dsh1);
    obb_sd(b[2], floor, &sw2, &dsw2);
    obb_sd(b[3], floor, &sh2, &dsh2);
    const double q2 = sw2 * sh2;
    const double q = sw1 * sh1 * q2;
    const double qd = 4.0 * q + eps;
    const double R = det / qd + eps;
    const double t3 = 0.5 * log(R);
    const double raw = t1 + t2 + t3;
    // Not clamped, NaN included (its NaN gradient passes, as PyTorch's clamp and the reference).
    const bool active = !(raw < eps || raw > 100.0);
    const double bd = raw < eps ? eps : (raw > 100.0 ? 100.0 : raw);
    const double e = exp(-bd);
    const double hd = sqrt(1.0 - e + eps);
    const double iou = 1.0 - hd;
    *loss = hd;
    *iou_out = iou;
    double cw0 = 0.0, cw1 = 0.0;
    if (ciou) {
        const double k = 4.0 / (OBB_PI * OBB_PI);
        double at2, u0, u1, at1, da1w, da1h;
        obb_atan_ratio(b[2], b[3], &at2, &u0, &u1);
        obb_atan_ratio(a[2], a[3], &at1, &da1w, &da1h);
        const double diff = at2 - at1;
        const double v = k * diff * diff;
        const double alpha = v / (v - iou + (1.0 + eps));
        *iou_out = iou - alpha * v;
        *loss = 1.0 - *iou_out;
        const double c = -alpha * k * 2.0 * diff;
        cw0 = c * da1w;
        cw1 = c * da1h;
    }
    if (!want_grad) return;
    const double gbd = active ? e / (2.0 * hd) : 0.0;
    double dsa = gbd * 0.25 * dy * dy / den;
    double dsb = gbd * 0.25 * dx * dx / den;
    double dsc = -gbd * 0.5 * dx * dy / den;
    const double ddx = gbd * (0.5 * sb * dx - 0.5 * sc * dy) / den;
    const double ddy = gbd * (0.5 * sa * dy - 0.5 * sc * dx) / den;
    const double dden = -gbd * (t1 + t2) / den;
    const double dr = gbd * 0.5 / R;
    const double ddet = dden + dr / qd;
    const double dq = -dr * det * 4.0 / (qd * qd);
    dsa += ddet * sb;
    dsb += ddet * sa;
    dsc -= 2.0 * sc * ddet;
    const double dA = dsa * co2 + dsb * si2 + dsc * cs;
    const double dB = dsa * si2 + dsb * co2 - dsc * cs;
    g[0] = ddx;
    g[1] = ddy;
    g[2] = dA * a[2] / 6.0 + dq * q2 * sh1 * dsw1 + cw0;
    g[3] = dB * a[3] / 6.0 + dq * q2 * sw1 * dsh1 + cw1;
    g[4] = 2.0 * c1 * (dsb - dsa) + dsc * (A1 - B1) * (co2 - si2);
}

// `src/params.rs` ProbIouParams.
struct ProbIouParams {
    const float* pred;
    const float* target;
    long long n;
    double eps;
    double floor;
    double up_scalar;
    const double* up;
    double scale;
    double* losses;
    double* partials;
    float* grad;
    int ciou;
    int _pad;
};

// `__launch_bounds__(256, 2)` (v2, issue 16 finding 6): the launch's 256 threads, at most 128
// registers; target and upstream never written, aliasing no output (`__restrict__`; pred may
// be the gradient in place: a pair's thread reads its 5 values first).
extern "C" __global__ void __launch_bounds__(256, 2) obb_probiou_fwd_bwd(const ProbIouParams p) {
    __shared__ double scratch[32];
    const float* __restrict__ target = p.target;
    const double* __restrict__ up = p.up;
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.n;
         i += (long long)gridDim.x * blockDim.x) {
        double a[5], b[5], g[5], loss, iou;
        for (int k = 0; k < 5; ++k) {
            a[k] = (double)p.pred[5 * i + k];
            b[k] = (double)target[5 * i + k];
        }
        const bool want = p.grad != nullptr;
        obb_pair(a, b, p.eps, p.floor, p.ciou, want, &loss, &iou, g);
        acc += loss;
        if (p.losses != nullptr) p.losses[i] = loss;
        if (want) {
            const double f = (up != nullptr ? up[i] : p.up_scalar) * p.scale;
            for (int k = 0; k < 5; ++k) p.grad[5 * i + k] = (float)(f * g[k]);
        }
    }
    const double total = sl_block_sum(acc, scratch);
    if (p.partials != nullptr && threadIdx.x == 0) p.partials[blockIdx.x] = total;
}

// `src/params.rs` ProbIouPairwiseParams: out[i * m + j] = ProbIoU(b1_i, b2_j), floor 0.
struct ProbIouPairwiseParams {
    const float* b1;
    const float* b2;
    long long n;
    long long m;
    double eps;
    float* out;
};

// v2 (issue 16 finding 6): the output's (i, j) kept incrementally (two 64-bit divisions per
// thread, none per output), `__restrict__`, `__launch_bounds__(256, 4)` (at most 64 registers).
extern "C" __global__ void __launch_bounds__(256, 4) obb_probiou_pairwise(const ProbIouPairwiseParams p) {
    const float* __restrict__ b1 = p.b1;
    const float* __restrict__ b2 = p.b2;
    float* __restrict__ out = p.out;
    const long long m = p.m;
    if (m <= 0) return;
    const long long total = p.n * m;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    // idx = i m + j; each step adds stride = si m + sj.
    const long long si = stride / m, sj = stride - si * m;
    long long i = first / m, j = first - i * m;
    for (long long idx = first; idx < total; idx += stride) {
        double a[5], b[5], g[5], loss, iou;
        for (int k = 0; k < 5; ++k) {
            a[k] = (double)b1[5 * i + k];
            b[k] = (double)b2[5 * j + k];
        }
        obb_pair(a, b, p.eps, 0.0, 0, false, &loss, &iou, g);
        out[idx] = (float)iou;
        i += si;
        j += sj;
        if (j >= m) {
            j -= m;
            ++i;
        }
    }
}
