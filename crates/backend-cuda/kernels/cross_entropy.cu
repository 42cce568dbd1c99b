// Cross-entropy forward + backward (formulas CE-1 .. CE-9), one block per row.
//
// v1: pass 1 reads the row once (into dynamic shared memory when `use_smem`), keeping an online
// max + sum of exponentials per thread; a deterministic block combine gives max m and ln S;
// pass 2 (from shared memory, or re-reading the row from global memory / L2 when it does not
// fit) writes the gradient and sums the weighted (x - m) terms of the loss.
// Requires: blockDim.x a multiple of 32 and <= 1024; gridDim.x == rows.

#define SL_LLMAX 0x7fffffffffffffffLL

// Mean denominator and target check, one block of SL_REDUCE_THREADS threads.
// stats[0] = denominator (sum of target-class weights of kept rows, or rows for probability
// targets), stats[1] = 1 / stats[0]. err[0] = first row whose class target is out of range and
// not the ignore index, or -1; err[1] = that target.
extern "C" __global__ void ce_prepare(const long long* targets, long long rows, long long classes,
                                      const float* weights, long long ignore_index, int has_ignore,
                                      double* stats, long long* err) {
    __shared__ double scratch[SL_REDUCE_THREADS / 32];
    __shared__ long long sbad[SL_REDUCE_THREADS];
    double acc = 0.0;
    long long bad = SL_LLMAX;
    if (targets != nullptr) {
        for (long long i = threadIdx.x; i < rows; i += blockDim.x) {
            long long y = targets[i];
            if (has_ignore && y == ignore_index) continue;
            if (y < 0 || y >= classes) {
                if (i < bad) bad = i;
                continue;
            }
            acc += weights != nullptr ? (double)weights[y] : 1.0;
        }
    } else if (threadIdx.x == 0) {
        acc = (double)rows;
    }
    double total = sl_block_sum(acc, scratch);
    sbad[threadIdx.x] = bad;
    __syncthreads();
    for (int off = blockDim.x / 2; off > 0; off >>= 1) {
        if (threadIdx.x < off) {
            long long o = sbad[threadIdx.x + off];
            if (o < sbad[threadIdx.x]) sbad[threadIdx.x] = o;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        stats[0] = total;
        stats[1] = 1.0 / total;
        long long b = sbad[0];
        err[0] = b == SL_LLMAX ? -1 : b;
        err[1] = b == SL_LLMAX ? 0 : targets[b];
    }
}

__device__ __forceinline__ void sl_ms_combine(float& m, float& s, float m2, float s2) {
    float mm = fmaxf(m, m2);
    if (mm == -SL_INF) {
        m = mm;
        s = 0.0f;
        return;
    }
    float a = (m == -SL_INF) ? 0.0f : s * expf(m - mm);
    float b = (m2 == -SL_INF) ? 0.0f : s2 * expf(m2 - mm);
    m = mm;
    s = a + b;
}

template <typename T>
__device__ void ce_row(T* z, T* g, int in_place, const long long* targets, const T* probs,
                       long long classes, const float* weights, double wsum,
                       long long ignore_index, int has_ignore, double eps, const double* stats,
                       double up_scalar, const double* up, double* row_loss, int use_smem) {
    SL_DYNAMIC_SHARED(float, srow);
    __shared__ double scratch[32];
    __shared__ float sm_m[32];
    __shared__ float sm_s[32];
    __shared__ float s_xy;
    const long long row = blockIdx.x;
    const long long base = row * classes;
    const int tid = threadIdx.x;
    T* gout = in_place ? z : g;
    const double c_d = (double)classes;

    long long y = -1;
    if (targets != nullptr) {
        y = targets[row];
        const bool ignored = has_ignore && y == ignore_index;
        const bool invalid = !ignored && (y < 0 || y >= classes);
        if (ignored || invalid) {
            // CE-5: ignored rows have loss 0 and gradient exactly 0. Out-of-range rows are
            // reported by ce_prepare; they get NaN loss and zero gradient here.
            if (gout != nullptr)
                for (long long j = tid; j < classes; j += blockDim.x) sl_store(gout, base + j, 0.0f);
            if (tid == 0) row_loss[row] = ignored ? 0.0 : SL_DNAN;
            return; // uniform over the block: y is the same for every thread
        }
        if (tid == 0) s_xy = sl_load(z, base + y);
    }

    // Pass 1: online max + sum of exp (and, for probability targets, sum_j w_j q'_j).
    float m = -SL_INF;
    float s = 0.0f;
    int bad = 0;
    double swq = 0.0; // sum_j w_j q'_j (probability targets)
    for (long long j = tid; j < classes; j += blockDim.x) {
        const float x = sl_load(z, base + j);
        if (use_smem) srow[j] = x;
        if (x != x || x == SL_INF) {
            bad = 1;
        } else if (x > m) {
            s = s * expf(m - x) + 1.0f;
            m = x;
        } else if (x != -SL_INF) {
            s += expf(x - m);
        }
        if (probs != nullptr) {
            const double wj = weights != nullptr ? (double)weights[j] : 1.0;
            swq += wj * ((1.0 - eps) * (double)sl_load(probs, base + j) + eps / c_d);
        }
    }
    // Block combine of (m, s), fixed order.
    for (int off = 16; off > 0; off >>= 1) {
        float m2 = __shfl_down_sync(0xffffffffu, m, off);
        float s2 = __shfl_down_sync(0xffffffffu, s, off);
        sl_ms_combine(m, s, m2, s2);
    }
    const int lane = tid & 31;
    const int warp = tid >> 5;
    if (lane == 0) {
        sm_m[warp] = m;
        sm_s[warp] = s;
    }
    __syncthreads();
    if (tid == 0) {
        float mm = sm_m[0];
        float ss = sm_s[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); ++w) sl_ms_combine(mm, ss, sm_m[w], sm_s[w]);
        sm_m[0] = mm;
        sm_s[0] = ss;
    }
    bad = __syncthreads_or(bad);
    const float m_all = sm_m[0];
    const double ln_s = log((double)sm_s[0]);
    const float ln_s_f = (float)ln_s;
    swq = sl_block_sum(swq, scratch);
    double wy = 1.0;
    if (targets != nullptr && weights != nullptr) wy = (double)weights[y];

    // Pass 2: log p_j = (x_j - m) - ln S, as the reference (so a huge m does not absorb
    // ln S); the loss sums sum_j w_j (x_j - m) (class targets) or sum_j w_j q'_j (x_j - m)
    // (probability targets); the gradient (CE-8 / CE-9) times upstream and the mean scale.
    const double u = (up != nullptr ? up[row] : up_scalar) * (stats != nullptr ? stats[1] : 1.0);
    const float f = (float)u;
    const float a_hard = (float)((1.0 - eps) * wy);
    const float a_soft = (float)(eps / c_d);
    const float w_all = (float)wsum;
    const float swq_f = (float)swq;
    double sxm = 0.0;
    for (long long j = tid; j < classes; j += blockDim.x) {
        const float x = use_smem ? srow[j] : sl_load(z, base + j);
        const float wj = weights != nullptr ? weights[j] : 1.0f;
        const double xm = (double)x - (double)m_all;
        float qs = 0.0f;
        if (probs != nullptr) {
            const double qd = (1.0 - eps) * (double)sl_load(probs, base + j) + eps / c_d;
            qs = (float)qd;
            sxm += (double)wj * qd * xm;
        } else {
            sxm += (double)wj * xm;
        }
        if (gout != nullptr) {
            const float p = expf((x - m_all) - ln_s_f);
            float gj;
            if (probs != nullptr) {
                gj = p * swq_f - wj * qs;
            } else {
                gj = a_hard * (p - (j == y ? 1.0f : 0.0f)) + a_soft * (w_all * p - wj);
            }
            if (bad) gj = SL_NAN;
            sl_store(gout, base + j, f * gj);
        }
    }
    sxm = sl_block_sum(sxm, scratch);
    if (tid == 0) {
        double loss;
        if (probs != nullptr) {
            loss = -(sxm - ln_s * swq); // CE-6
        } else {
            const double nll = -wy * (((double)s_xy - (double)m_all) - ln_s); // CE-2 / CE-4
            // CE-3; without smoothing the term is absent (no 0 * inf for a -inf logit).
            loss = eps == 0.0 ? nll : (1.0 - eps) * nll + eps / c_d * (-(sxm - ln_s * wsum));
        }
        row_loss[row] = bad ? SL_DNAN : loss;
    }
}

#define SL_CE_ENTRY(NAME, T)                                                                    \
    extern "C" __global__ void NAME(T* z, T* g, int in_place, const long long* targets,         \
                                    const T* probs, long long classes, const float* weights,    \
                                    double wsum, long long ignore_index, int has_ignore,        \
                                    double eps, const double* stats, double up_scalar,          \
                                    const double* up, double* row_loss, int use_smem) {         \
        ce_row<T>(z, g, in_place, targets, probs, classes, weights, wsum, ignore_index,         \
                  has_ignore, eps, stats, up_scalar, up, row_loss, use_smem);                   \
    }

SL_CE_ENTRY(ce_fwd_bwd_f32, float)
SL_CE_ENTRY(ce_fwd_bwd_bf16, sl_bf16)
SL_CE_ENTRY(ce_fwd_bwd_f16, sl_f16)
