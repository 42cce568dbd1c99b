// Cross-entropy forward + backward (formulas CE-1 .. CE-9), with the LLM options CE-10 .. CE-15:
// logit softcap (every logit read goes through sl_ce_cap, the gradient is multiplied by
// 1 - tanh^2 in phase D), z-loss (s lse^2 in the loss, 2 s lse p_j in the gradient's p term),
// row weights (the loss and the gradient factor; ce_prepare weights the mean's denominator),
// a given denominator (ce_prepare's stats), per-row log-sum-exp, argmax hit and z-loss outputs
// (rank 0 with the row's loss).
//
// v2: a row is split over a cluster of K blocks (K = 1, 2, 4 or 8; clusters need sm_90), each
// block keeping its slice of `slice` classes in shared memory, so the logits are read once
// from global memory and the gradient written once. Per block: phase A loads the slice (16-byte
// vectors when aligned) and takes its max; phase B sums exp(x - max) from shared memory; the
// K (max, sum) pairs are combined in rank order through distributed shared memory (every block
// gets the same m and ln S); phase D writes the gradient and a partial of the loss; rank 0
// adds the K partials in rank order. Rows too long for K = 8 blocks of the largest shared
// memory are re-read from global memory in phases B and D (K = 1, no `SL_CE_SMEM_ROW`).
// The geometry comes from `geometry::ce_plan` on the Rust side.

#define SL_LLMAX 0x7fffffffffffffffLL

// Threads of ce_prepare / ce_reduce_rows blocks (`geometry::CE_ROWS_THREADS`); each block
// takes `chunk` consecutive rows (`geometry::ce_rows_grid`).
#define SL_CE_ROWS_THREADS 256

// Mean denominator and target check over many blocks (one thread of one block per row would
// leave the GPU waiting on a few KiB of loads in flight). Block b: rows [b chunk, (b+1) chunk),
// its sum of target-class weights of kept rows into part_w[b] and its first out-of-range row
// into part_bad[b]; the last block to finish combines them in block order:
// stats[0] = denominator (the weight sum, or rows for probability targets), stats[1] =
// 1 / stats[0]; err[0] = first row whose class target is out of range and not the ignore
// index, or -1; err[1] = that target.
// `src/params.rs` CePrepareParams.
struct CePrepareParams {
    const long long* targets;
    long long rows;
    long long chunk;
    long long classes;
    const float* weights;
    long long ignore_index;
    double* stats;
    long long* err;
    double* part_w;
    long long* part_bad;
    unsigned int* counter;
    const double* row_w;
    double denom;
    int has_ignore;
    int _pad;
};

extern "C" __global__ void ce_prepare(const CePrepareParams p) {
    const long long* targets = p.targets;
    const long long rows = p.rows;
    const long long chunk = p.chunk;
    const long long classes = p.classes;
    const float* weights = p.weights;
    const long long ignore_index = p.ignore_index;
    const int has_ignore = p.has_ignore;
    double* stats = p.stats;
    long long* err = p.err;
    double* part_w = p.part_w;
    long long* part_bad = p.part_bad;
    unsigned int* counter = p.counter;
    __shared__ double scratch[SL_CE_ROWS_THREADS / 32];
    __shared__ long long sbad[SL_CE_ROWS_THREADS];
    __shared__ int last;
    double acc = 0.0;
    long long bad = SL_LLMAX;
    const long long lo = (long long)blockIdx.x * chunk;
    const long long hi = lo + chunk < rows ? lo + chunk : rows;
    if (targets != nullptr) {
        for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) {
            long long y = targets[i];
            if (has_ignore && y == ignore_index) continue;
            if (y < 0 || y >= classes) {
                if (i < bad) bad = i;
                continue;
            }
            const double wy = weights != nullptr ? (double)weights[y] : 1.0;
            acc += p.row_w != nullptr ? p.row_w[i] * wy : wy;
        }
    } else if (p.row_w != nullptr) {
        for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) acc += p.row_w[i];
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
        part_w[blockIdx.x] = total;
        part_bad[blockIdx.x] = sbad[0];
    }
    if (!sl_last_block(counter, &last)) return;
    if (threadIdx.x == 0) {
        const volatile double* pw = part_w;
        const volatile long long* pb = part_bad;
        double t = 0.0;
        long long b = SL_LLMAX;
        for (unsigned int k = 0; k < gridDim.x; ++k) {
            t += pw[k];
            if (pb[k] < b) b = pb[k];
        }
        if (targets == nullptr && p.row_w == nullptr) t = (double)rows;
        if (p.denom != 0.0) t = p.denom; // CE-13: a given denominator
        stats[0] = t;
        stats[1] = 1.0 / t;
        err[0] = b == SL_LLMAX ? -1 : b;
        err[1] = b == SL_LLMAX ? 0 : targets[b];
    }
}

// Sum (or mean) of the n per-row losses over many blocks: block b adds rows
// [b chunk, (b+1) chunk) in a fixed tree order into part[b]; the last block to finish adds the
// partials in block order and writes sum / divisor (sum / denom[0] when denom is non-null).
// `src/params.rs` CeReduceRowsParams.
struct CeReduceRowsParams {
    const double* values;
    long long n;
    long long chunk;
    double divisor;
    const double* denom;
    double* out;
    double* part;
    unsigned int* counter;
};

extern "C" __global__ void ce_reduce_rows(const CeReduceRowsParams p) {
    const double* values = p.values;
    const long long n = p.n;
    const long long chunk = p.chunk;
    const double divisor = p.divisor;
    const double* denom = p.denom;
    double* out = p.out;
    double* part = p.part;
    unsigned int* counter = p.counter;
    __shared__ double scratch[SL_CE_ROWS_THREADS / 32];
    __shared__ int last;
    const long long lo = (long long)blockIdx.x * chunk;
    const long long hi = lo + chunk < n ? lo + chunk : n;
    double acc = 0.0;
    for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) acc += values[i];
    const double total = sl_block_sum(acc, scratch);
    if (threadIdx.x == 0) part[blockIdx.x] = total;
    if (!sl_last_block(counter, &last)) return;
    if (threadIdx.x == 0) {
        const volatile double* pp = part;
        double t = 0.0;
        for (unsigned int k = 0; k < gridDim.x; ++k) t += pp[k];
        out[0] = t / (denom != nullptr ? denom[0] : divisor);
    }
}

// Adds block statistics (m2, n2, s2) into (m, n0, s1), where a block's S = n0 + s1 relative
// to its max: n0 counts the logits equal to the max (exp(0) = 1), s1 sums exp(x - max) over the
// others. After the combine, n0 counts the row's max and its ties and s1 holds the rest (the
// sums of blocks whose max is smaller, times exp(m_block - m)), so a tiny s1 is not rounded away
// against 1 (a confident row, whose loss is ln(1 + s1)). In f64 (thread 0, K - 1 steps).
__device__ __forceinline__ void sl_ms_combine(float& m, double& n0, double& s1, float m2,
                                              double n2, double s2) {
    const float mm = fmaxf(m, m2);
    if (mm == -SL_INF) {
        m = mm;
        n0 = 0.0;
        s1 = 0.0;
        return;
    }
    if (m != mm) {
        s1 = (m == -SL_INF) ? 0.0 : (n0 + s1) * exp((double)m - (double)mm);
        n0 = 0.0;
    }
    if (m2 != mm) {
        s2 = (m2 == -SL_INF) ? 0.0 : (n2 + s2) * exp((double)m2 - (double)mm);
        n2 = 0.0;
    }
    m = mm;
    n0 += n2;
    s1 += s2;
}

// Dynamic shared memory = this header, then the block's slice of the row (raw logits' bits).
#define SL_CE_HEADER_BYTES 1024
// Most threads of a cross-entropy block (`__launch_bounds__`, `geometry::CE_MAX_THREADS`).
#define SL_CE_MAX_THREADS 512
// `flags` bits: the slice is kept in shared memory; 16-byte vector accesses (the slice starts
// on a 16-byte boundary and holds a whole number of vectors, in z, g and probs).
#define SL_CE_SMEM_ROW 1
#define SL_CE_VEC16 2
// One warp per row, blockDim.x / 32 rows per block (`geometry::CE_WARP_ROWS`; short rows, one
// block per row otherwise); only the default entry points without clusters take it.
#define SL_CE_WARP_ROWS 4

struct sl_ce_shared {
    double red[32];   // sl_block_sum scratch
    float fred[32];   // sl_block_reduce_f scratch
    float m_b;        // this block: max of its slice
    float s_b;        // this block: sum of exp(x - m_b) over the x != m_b
    float n_b;        // this block: how many x == m_b (exact in f32)
    int bad_b;        // this block: a NaN or +inf logit
    float xy;         // rank 0: the target logit (read before any block writes)
    double swq_b;     // this block: sum of w_j q'_j (probability targets)
    double sxm_b;     // this block: its part of the loss sum
    float m_all;      // the row's max
    float ln_s_f;     // ln S in f32
    float pm1_max;    // p - 1 = -s' / S of the row's max when it is single (else NaN)
    double ln_s;      // ln S
    double swq_all;   // the row's sum of w_j q'_j
    int bad_all;      // a NaN or +inf anywhere in the row
};
static_assert(sizeof(sl_ce_shared) <= SL_CE_HEADER_BYTES, "header too small");

// exp(x) for x <= 0 in the softmax: 2^(x log2 e) with the hardware approximation (relative
// error about 2^-22 near 0, plus |x| 2^-24 from rounding the product; flushes below 2^-126).
__device__ __forceinline__ float sl_ce_exp(float x) {
    const float t = x * 1.4426950408889634f;
#ifdef SL_HOST_EMULATION
    return exp2f(t);
#else
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(t));
    return r;
#endif
}

// CE-10: the softcap of one logit, cap tanh(x / cap) (x itself when cap = 0). Every read of a
// logit goes through it, so every phase sees the same capped value.
template <bool OPT>
__device__ __forceinline__ float sl_ce_cap(float x, float cap, float inv_cap) {
    if constexpr (OPT) return cap == 0.0f ? x : cap * tanhf(x * inv_cap);
    else return x;
}

// Calls f(j, x) for every element j of [0, n) of this thread (strided over the block), x the
// logit read from `src` (global memory or the shared slice); 16-byte vectors when `vec`.
template <typename T, typename F>
__device__ __forceinline__ void ce_for_each(const T* src, int n, bool vec, F f) {
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    if (vec) {
        constexpr int VW = sl_vec_width<T>();
        const sl_vec16* v = reinterpret_cast<const sl_vec16*>(src);
        for (int u = tid; u < n / VW; u += nt) {
            const sl_vec16 a = v[u];
#pragma unroll
            for (int k = 0; k < VW; ++k) f(u * VW + k, sl_vec_get(a, k, src));
        }
    } else {
        for (int j = tid; j < n; j += nt) f(j, sl_load(src, j));
    }
}

// OPT: the entry points of calls with the options of CE-10 .. CE-15 (`*opt*` names); without
// it every option's code is compiled out (`if constexpr`), so the default entry points compile
// as without the options (and keep their 64-register budget without spills).
template <typename T, int K, bool OPT>
__device__ __forceinline__ void ce_row(T* z, T* g, int in_place, const long long* targets, const T* probs,
                       long long classes, long long slice, const float* weights, double wsum,
                       long long ignore_index, int has_ignore, double eps, const double* stats,
                       double up_scalar, const double* up, double* row_loss, int flags,
                       const double* row_w, double softcap, double z_loss, float* lse_out,
                       unsigned char* hit_out, double* row_z) {
    SL_DYNAMIC_SHARED(sl_vec16, dyn);
    sl_ce_shared* sh = reinterpret_cast<sl_ce_shared*>(dyn);
    T* srow = reinterpret_cast<T*>(reinterpret_cast<unsigned char*>(dyn) + SL_CE_HEADER_BYTES);
    const bool in_smem = (flags & SL_CE_SMEM_ROW) != 0;
    const bool vec = (flags & SL_CE_VEC16) != 0;
    const long long row = blockIdx.x / K;
    unsigned rank = 0;
#if SL_HAS_CLUSTERS
    if constexpr (K > 1) {
        // A launch that did not form the compiled clusters would combine the wrong blocks.
        if (sl_cluster_nctarank() != (unsigned)K) __trap();
        rank = sl_cluster_rank();
    }
#endif
    const long long lo = (long long)rank * slice < classes ? (long long)rank * slice : classes;
    // This block's classes (in-slice indices are 32-bit: 64-bit trip counts would call a
    // 64-bit division routine; the host rejects rows over 2^31 - 1 classes).
    const int n = (int)(lo + slice < classes ? slice : classes - lo);
    const long long base = row * classes + lo;
    const int tid = threadIdx.x;
    T* gout = in_place ? z : g;
    const T* zs = z + base;
    const double c_d = (double)classes;
    const double eps_c = eps / c_d; // the smoothing mass per class, eps / C
    const float capf = (float)softcap;
    const float inv_cap = softcap != 0.0 ? (float)(1.0 / softcap) : 0.0f;

    long long y = -1;
    if (targets != nullptr) {
        y = targets[row];
        const bool ignored = has_ignore && y == ignore_index;
        const bool invalid = !ignored && (y < 0 || y >= classes);
        if (ignored || invalid) {
            // CE-5: ignored rows have loss 0 and gradient exactly 0. Out-of-range rows are
            // reported by ce_prepare; they get NaN loss and zero gradient here. Uniform over
            // the cluster (same row), so no block waits at a cluster barrier for another.
            if (gout != nullptr)
                for (int j = tid; j < n; j += (int)blockDim.x) sl_store(gout, base + j, 0.0f);
            if (tid == 0 && rank == 0) {
                row_loss[row] = ignored ? 0.0 : SL_DNAN;
                if constexpr (OPT) {
                    if (lse_out != nullptr) lse_out[row] = 0.0f;
                    if (hit_out != nullptr) hit_out[row] = 0;
                    if (row_z != nullptr) row_z[row] = 0.0;
                }
            }
            return;
        }
        // Read before any block of the cluster writes (in place: before the first barrier).
        if (tid == 0 && rank == 0) sh->xy = sl_ce_cap<OPT>(sl_load(z, row * classes + y), capf, inv_cap);
    }

    // Phase A: load the slice (into shared memory), its max, and whether it holds NaN / +inf.
    float mx = -SL_INF;
    int bad = 0;
    if (in_smem && vec) {
        constexpr int VW = sl_vec_width<T>();
        const sl_vec16* src = reinterpret_cast<const sl_vec16*>(zs);
        sl_vec16* dst = reinterpret_cast<sl_vec16*>(srow);
        const int nv = n / VW;
        const int nt = blockDim.x;
        int u = tid;
        // Four independent 16-byte loads in flight per thread.
        for (; u + 3 * nt < nv; u += 4 * nt) {
            sl_vec16 a[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) a[q] = src[u + q * nt];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                dst[u + q * nt] = a[q];
#pragma unroll
                for (int k = 0; k < VW; ++k) {
                    const float x = sl_ce_cap<OPT>(sl_vec_get(a[q], k, zs), capf, inv_cap);
                    bad |= (x != x) | (x == SL_INF);
                    mx = fmaxf(mx, x);
                }
            }
        }
        for (; u < nv; u += nt) {
            const sl_vec16 a = src[u];
            dst[u] = a;
#pragma unroll
            for (int k = 0; k < VW; ++k) {
                const float x = sl_ce_cap<OPT>(sl_vec_get(a, k, zs), capf, inv_cap);
                bad |= (x != x) | (x == SL_INF);
                mx = fmaxf(mx, x);
            }
        }
    } else {
        for (int j = tid; j < n; j += (int)blockDim.x) {
            if (in_smem) srow[j] = zs[j];
            const float x = sl_ce_cap<OPT>(sl_load(zs, j), capf, inv_cap);
            bad |= (x != x) | (x == SL_INF);
            mx = fmaxf(mx, x);
        }
    }
    const float m_b = sl_block_reduce_f<sl_op_max>(mx, sh->fred);
    bad = (int)sl_block_reduce_f<sl_op_max>((float)bad, sh->fred);

    // Phase B: S = n0 + s' of the slice (from shared memory): n0 counts the x == m_b (whose
    // exponential is exactly 1), s' sums exp(x - m_b) over the others; and sum_j w_j q'_j.
    // (Phases B and D are written once and instantiated per address space, so that reads of
    // the shared slice compile to shared-memory loads rather than generic ones.)
    float s = 0.0f;
    float n0 = 0.0f;
    if (m_b != -SL_INF && !bad) {
        auto sum_exp = [&](int, float xr) {
            const float x = sl_ce_cap<OPT>(xr, capf, inv_cap);
            if (x == m_b) n0 += 1.0f;
            else s += sl_ce_exp(x - m_b);
        };
        if (in_smem) ce_for_each(srow, n, vec, sum_exp);
        else ce_for_each(zs, n, vec, sum_exp);
    }
    double swq = 0.0;
    if (probs != nullptr) {
        for (int j = tid; j < n; j += (int)blockDim.x) {
            const double wj = weights != nullptr ? (double)weights[lo + j] : 1.0;
            swq += wj * ((1.0 - eps) * (double)sl_load(probs, base + j) + eps_c);
        }
        swq = sl_block_sum(swq, sh->red);
    }
    s = sl_block_reduce_f<sl_op_sum>(s, sh->fred);
    n0 = sl_block_reduce_f<sl_op_sum>(n0, sh->fred);
    if (tid == 0) {
        sh->m_b = m_b;
        sh->s_b = s;
        sh->n_b = n0;
        sh->bad_b = bad;
        sh->swq_b = swq;
    }

    // Phase C: the row's (m, S), NaN flag and sum w q' from the K blocks, in rank order.
#if SL_HAS_CLUSTERS
    if constexpr (K > 1) sl_cluster_sync();
#endif
    if (tid == 0) {
        float mm = sh->m_b;
        double ss = (double)sh->s_b;
        double nn = (double)sh->n_b;
        int bb = sh->bad_b;
        double sw = sh->swq_b;
#if SL_HAS_CLUSTERS
        if constexpr (K > 1) {
            mm = sl_dsmem_load(&sh->m_b, 0);
            ss = (double)sl_dsmem_load(&sh->s_b, 0);
            nn = (double)sl_dsmem_load(&sh->n_b, 0);
            bb = sl_dsmem_load(&sh->bad_b, 0);
            sw = sl_dsmem_load(&sh->swq_b, 0);
            for (unsigned r = 1; r < (unsigned)K; ++r) {
                sl_ms_combine(mm, nn, ss, sl_dsmem_load(&sh->m_b, r),
                              (double)sl_dsmem_load(&sh->n_b, r),
                              (double)sl_dsmem_load(&sh->s_b, r));
                bb |= sl_dsmem_load(&sh->bad_b, r);
                sw += sl_dsmem_load(&sh->swq_b, r);
            }
        }
#endif
        sh->m_all = mm;
        // ln S = ln(n0 + s'): log1p for the usual single maximum, exact in a tiny s'.
        sh->ln_s = nn == 1.0 ? log1p(ss) : log(nn + ss);
        sh->pm1_max = nn == 1.0 ? (float)(-ss / (1.0 + ss)) : SL_NAN;
        sh->ln_s_f = (float)sh->ln_s;
        sh->bad_all = bb;
        sh->swq_all = sw;
    }
    __syncthreads();
    const float m_all = sh->m_all;
    const float ln_s_f = sh->ln_s_f;
    const float pm1_max = sh->pm1_max;
    const double ln_s = sh->ln_s;
    const int bad_all = sh->bad_all;
    const double swq_all = sh->swq_all;
    double wy = 1.0;
    if (targets != nullptr && weights != nullptr) wy = (double)weights[y];

    // Phase D: log p_j = (x_j - m) - ln S, as the reference (so a huge m does not absorb
    // ln S); the loss sums w_j (x_j - m) (class targets, only with smoothing) or
    // w_j q'_j (x_j - m) (probability targets); the gradient (CE-8 / CE-9) times upstream and
    // the mean scale, written in the logits' type.
    // CE-12: the row weight joins the gradient factor; CE-11: the z-loss adds 2 s lse p_j.
    const double u0 = (up != nullptr ? up[row] : up_scalar) * (stats != nullptr ? stats[1] : 1.0);
    const double rw = OPT && row_w != nullptr ? row_w[row] : 1.0;
    const double u = OPT ? u0 * rw : u0;
    const double lse = !OPT ? 0.0 : (bad_all || m_all == -SL_INF) ? SL_DNAN : (double)m_all + ln_s;
    const float za = OPT ? (float)(2.0 * z_loss * lse) : 0.0f;
    const float f = (float)u;
    const float a_hard = (float)((1.0 - eps) * wy);
    const float a_soft = (float)(eps_c);
    const float w_all = (float)wsum;
    const float swq_f = (float)swq_all;
    const long long yl = y - lo; // the target's index in this slice (may be outside it)
    const bool need_sxm = probs != nullptr || eps != 0.0;
    // A non-finite u (a `mean` over rows of weight 0 only, or an infinite upstream): every
    // entry is u * g_j, +-inf or NaN depending on whether g_j is 0, so g_j is taken in f64 as
    // the reference's (an f32 p_j underflows where the f64 one does not; TOL-4).
    const bool slow = !(u - u == 0.0);
    double sxm = 0.0;
    auto grad_at = [&](int j, float x) -> float {
        // CE-10: the capped logit and d z' / d z = 1 - tanh^2 (1 without a softcap).
        float dc = 1.0f;
        if constexpr (OPT) {
            if (capf != 0.0f) {
                const float t = tanhf(x * inv_cap);
                x = capf * t;
                dc = fmaf(-t, t, 1.0f);
            }
        }
        const float wj = weights != nullptr ? weights[lo + j] : 1.0f;
        const double xm = (double)x - (double)m_all;
        float gj;
        if (slow) {
            const double pd = exp(xm - ln_s);
            const double qd =
                probs != nullptr ? (1.0 - eps) * (double)sl_load(probs, base + j) + eps_c : 0.0;
            if (probs != nullptr && xm != 0.0) sxm += (double)wj * qd * xm;
            if (probs == nullptr && need_sxm && xm != 0.0) sxm += (double)wj * xm;
            double gd = probs != nullptr ? pd * swq_all - (double)wj * qd
                                         : (1.0 - eps) * wy * (pd - (j == yl ? 1.0 : 0.0)) +
                                               eps_c * (wsum * pd - (double)wj);
            if constexpr (OPT) {
                if (z_loss != 0.0) gd += 2.0 * z_loss * lse * pd;
                return bad_all ? SL_NAN : (float)(u * gd * (double)dc);
            }
            return bad_all ? SL_NAN : (float)(u * gd);
        }
        const float p = sl_ce_exp((x - m_all) - ln_s_f);
        if (probs != nullptr) {
            const double qd = (1.0 - eps) * (double)sl_load(probs, base + j) + eps_c;
            // x = m adds nothing, also for an infinite target probability (TOL-4: inf * 0
            // would make the loss NaN where the reference gives +inf).
            if (xm != 0.0) sxm += (double)wj * qd * xm;
            gj = p * swq_f - wj * (float)qd;
        } else {
            if (need_sxm && xm != 0.0) sxm += (double)wj * xm;
            // The target's p - 1: -s' / S when it is the row's single max (relatively
            // accurate for a confident row), else p - 1.
            const float ph = j == yl ? (x == m_all && pm1_max == pm1_max ? pm1_max : p - 1.0f) : p;
            gj = a_hard * ph + a_soft * (w_all * p - wj);
        }
        if constexpr (OPT) {
            if (z_loss != 0.0) gj += za * p;
            return bad_all ? SL_NAN : f * gj * dc;
        }
        return bad_all ? SL_NAN : f * gj;
    };
    auto phase_d = [&](const T* xs) {
        if (gout != nullptr) {
            T* gs = gout + base;
            if (vec) {
                constexpr int VW = sl_vec_width<T>();
                const sl_vec16* src = reinterpret_cast<const sl_vec16*>(xs);
                sl_vec16* dst = reinterpret_cast<sl_vec16*>(gs);
                for (int v = tid; v < n / VW; v += (int)blockDim.x) {
                    const sl_vec16 a = src[v];
                    sl_vec16 o;
#pragma unroll
                    for (int k = 0; k < VW; ++k)
                        sl_vec_set(o, k, grad_at(v * VW + k, sl_vec_get(a, k, xs)), xs);
                    dst[v] = o;
                }
            } else {
                for (int j = tid; j < n; j += (int)blockDim.x)
                    sl_store(gs, j, grad_at(j, sl_load(xs, j)));
            }
        } else if (need_sxm) {
            ce_for_each(xs, n, vec, [&](int j, float xr) {
                const float x = sl_ce_cap<OPT>(xr, capf, inv_cap);
                const double wj = weights != nullptr ? (double)weights[lo + j] : 1.0;
                const double xm = (double)x - (double)m_all;
                if (xm != 0.0)
                    sxm += probs != nullptr
                               ? wj * ((1.0 - eps) * (double)sl_load(probs, base + j) + eps_c) * xm
                               : wj * xm;
            });
        }
    };
    if (in_smem) phase_d(srow);
    else phase_d(zs);
    if (need_sxm) sxm = sl_block_sum(sxm, sh->red);
    if (tid == 0) sh->sxm_b = sxm;

    // Phase E: rank 0 adds the K loss partials in rank order and writes the row's loss.
#if SL_HAS_CLUSTERS
    if constexpr (K > 1) sl_cluster_sync();
#endif
    if (tid == 0 && rank == 0) {
        double sx = sh->sxm_b;
#if SL_HAS_CLUSTERS
        if constexpr (K > 1)
            for (unsigned r = 1; r < (unsigned)K; ++r) sx += sl_dsmem_load(&sh->sxm_b, r);
#endif
        double loss;
        if (probs != nullptr) {
            loss = -(sx - ln_s * swq_all); // CE-6
        } else {
            const double nll = -wy * (((double)sh->xy - (double)m_all) - ln_s); // CE-2 / CE-4
            // CE-3; without smoothing the term is absent (no 0 * inf for a -inf logit).
            loss = eps == 0.0 ? nll : (1.0 - eps) * nll + eps_c * (-(sx - ln_s * wsum));
        }
        // CE-11 / CE-12 / CE-14 / CE-15: z-loss, row weight, the per-row outputs.
        if constexpr (OPT) {
            double zl = 0.0;
            if (z_loss != 0.0) {
                zl = z_loss * lse * lse;
                loss += zl;
            }
            if (row_w != nullptr) {
                loss *= rw;
                zl *= rw;
            }
            if (lse_out != nullptr) lse_out[row] = (float)lse;
            if (hit_out != nullptr)
                hit_out[row] = targets != nullptr && !bad_all && m_all != -SL_INF && sh->xy == m_all;
            if (row_z != nullptr) row_z[row] = zl;
        }
        row_loss[row] = bad_all ? SL_DNAN : loss;
    }
    // No block may exit while rank 0 still reads its shared memory.
#if SL_HAS_CLUSTERS
    if constexpr (K > 1) sl_cluster_sync();
#endif
}

// `src/params.rs` CeRowParams: the row kernels' parameters, the same struct for every dtype
// (z, g and probs point to elements of the entry point's T).
struct CeRowParams {
    void* z;
    void* g;
    const long long* targets;
    const void* probs;
    long long classes;
    long long slice;
    const float* weights;
    double wsum;
    long long ignore_index;
    double eps;
    const double* stats;
    double up_scalar;
    const double* up;
    double* row_loss;
    int in_place;
    int has_ignore;
    int flags;
    int last_rows; // rows in the grid's last block (SL_CE_WARP_ROWS), else 0
};

// `src/params.rs` CeRowOptParams: the options' entry points' parameters (CE-10 .. CE-15):
// CeRowParams's fields, then the options'. A struct of its own, so that the default entry
// points keep CeRowParams (a larger parameter struct made ptxas spill them at 64 registers).
struct CeRowOptParams {
    void* z;
    void* g;
    const long long* targets;
    const void* probs;
    long long classes;
    long long slice;
    const float* weights;
    double wsum;
    long long ignore_index;
    double eps;
    const double* stats;
    double up_scalar;
    const double* up;
    double* row_loss;
    const double* row_w;
    double softcap;
    double z_loss;
    float* lse_out;
    unsigned char* hit_out;
    double* row_z;
    int in_place;
    int has_ignore;
    int flags;
    int _pad;
};

#define SL_CE_BASE_ARGS(T)                                                                      \
    static_cast<T*>(p.z), static_cast<T*>(p.g), p.in_place, p.targets,                          \
        static_cast<const T*>(p.probs), p.classes, p.slice, p.weights, p.wsum, p.ignore_index,  \
        p.has_ignore, p.eps, p.stats, p.up_scalar, p.up, p.row_loss, p.flags
// The default entry points: the options' neutral values (compiled out by `OPT = false`).
#define SL_CE_ARGS(T) SL_CE_BASE_ARGS(T), nullptr, 0.0, 0.0, nullptr, nullptr, nullptr
#define SL_CE_OPT_ARGS(T)                                                                       \
    SL_CE_BASE_ARGS(T), p.row_w, p.softcap, p.z_loss, p.lse_out, p.hit_out, p.row_z

