// ---- cross_entropy_fast.cu (appended to cross_entropy.cu: `kernels::CROSS_ENTROPY`)
// v3 (issue 16): the row kernel of the default entry points (no CE-10 .. CE-15 option; those
// keep `ce_row<T, K, true>` of cross_entropy.cu), redesigned to the instruction budget that
// `tests/gpu/budget.rs` checks on the SASS (NOTES.md "cross_entropy.cu v3"):
// - what a row needs besides its slice (target, target logit, upstream, mean scale, target
//   weight) is loaded at entry, so those loads overlap phase A;
// - phase A keeps a NaN-propagating max (`max.NaN`): one instruction per element for the max
//   and the NaN / +inf flag;
// - phase B also sums the loss partial (sum w_j (x_j - m_b), or sum w_j q'_j (x_j - m_b))
//   against the block's own max m_b (f32 partials per 16-byte vector, then f64), shifted to
//   the row's max in phase C, so every block's loss partial is exchanged at the FIRST cluster
//   barrier; after the gradient stores there is no release barrier (no MEMBAR.ALL.GPU): the
//   exit barrier is split, `arrive.relaxed` once the remote reads are done, `wait` at exit;
// - phase C: lanes 0 .. K-1 of warp 0 read the K ranks' statistics at once (one remote round
//   trip, not K dependent ones) and each rescales its own rank to the row's max; thread 0 then
//   adds them in rank order (deterministic);
// - phase D is specialised per mode at compile time (class targets without class weights in
//   the smoothing term: g_j = A p_j + B with p_j = 2^((x_j - m) log2 e - ln S log2 e); class
//   weights; probabilities), one exponential per element, bf16 / f16 packed by
//   `cvt.rn.{bf16,f16}x2.f32`; the target class's entry (p_y - 1, or -s'/S for a confident
//   row) is rewritten after the loop by the thread that stored it, so the loop has no
//   per-element compare; a non-finite scale (TOL-4) takes a scalar f64 loop of its own.

// What a row needs besides its logits in phases B and D (uniform over the row).
#define SL_CE_PLAIN 0    // class targets, no smoothing (eps = 0): no loss partial to sum
#define SL_CE_SMOOTH 1   // class targets, smoothing, no class weights: sum (x_j - m_b)
#define SL_CE_WEIGHTED 2 // class targets, smoothing, class weights: sum w_j (x_j - m_b), sum w_j
#define SL_CE_PROBS 3    // probability targets: sum w_j q'_j (x_j - m_b), sum w_j q'_j

// max(a, b), NaN when either is NaN (`max.NaN.f32`, sm_80 and newer): one instruction gives
// the slice's max and its NaN / +inf flag (the max is then NaN or +inf).
__device__ __forceinline__ float sl_fmax_nan(float a, float b) {
#ifdef SL_HOST_EMULATION
    return (a != a || b != b) ? SL_NAN : fmaxf(a, b);
#else
    float r;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
#endif
}
// A compile-time flag as a value (generic lambdas' `decltype(flag)::value`; no <type_traits>).
template <bool V> struct sl_bool {
    static constexpr bool value = V;
};

struct sl_op_max_nan {
    static __device__ __forceinline__ float apply(float a, float b) { return sl_fmax_nan(a, b); }
};

// 2^t with the hardware approximation (as sl_ce_exp, without the multiplication by log2 e).
__device__ __forceinline__ float sl_ex2(float t) {
#ifdef SL_HOST_EMULATION
    return exp2f(t);
#else
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(t));
    return r;
#endif
}

// Two f32 values as one word of the 16-bit type (`lo` in the low half), round to nearest even:
// `cvt.rn.bf16x2.f32` / `cvt.rn.f16x2.f32` (sm_80 and newer), one instruction per pair.
__device__ __forceinline__ unsigned sl_pack2(float lo, float hi, const sl_bf16*) {
#ifdef SL_HOST_EMULATION
    return (unsigned)sl_f32_to_bf16_bits(lo) | ((unsigned)sl_f32_to_bf16_bits(hi) << 16);
#else
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
}
__device__ __forceinline__ unsigned sl_pack2(float lo, float hi, const sl_f16*) {
#ifdef SL_HOST_EMULATION
    return (unsigned)sl_f32_to_f16_bits(lo) | ((unsigned)sl_f32_to_f16_bits(hi) << 16);
#else
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
}
// A 16-byte vector of gradient values (VW of them) in the element type.
__device__ __forceinline__ sl_vec16 sl_vec_pack(const float* g, const float*) {
    sl_vec16 o;
#pragma unroll
    for (int k = 0; k < 4; ++k) o.w[k] = (unsigned)__float_as_int(g[k]);
    return o;
}
template <typename T> __device__ __forceinline__ sl_vec16 sl_vec_pack(const float* g, const T* t) {
    sl_vec16 o;
#pragma unroll
    for (int k = 0; k < 4; ++k) o.w[k] = sl_pack2(g[2 * k], g[2 * k + 1], t);
    return o;
}

// Block reductions of the row kernel (every thread gets the result): one warp (a block of one
// warp, or a warp of the warp-per-row layout: `warp`) uses butterfly shuffles only, no barrier
// and no shared memory (a + b = b + a, so every lane ends with the same bits); larger blocks
// the fixed tree of common.cuh.
template <typename Op>
__device__ __forceinline__ float ce_reduce_f(float v, float* scratch, bool warp) {
    if (warp || blockDim.x == 32) {
        for (int off = 16; off > 0; off >>= 1)
            v = Op::apply(v, __shfl_xor_sync(0xffffffffu, v, off));
        return v;
    }
    return sl_block_reduce_f<Op>(v, scratch);
}
__device__ __forceinline__ double ce_reduce_d(double v, double* scratch, bool warp) {
    if (warp || blockDim.x == 32) {
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        return v;
    }
    return sl_block_sum(v, scratch);
}

#define SL_CE_MAX_CLUSTER 8

struct sl_ce_fast_shared {
    double red[32]; // sl_block_sum scratch
    float fred[32]; // sl_block_reduce_f scratch
    // This block's statistics, read by every rank of the cluster in phase C.
    float m_b;    // max of the slice (-inf when empty or holding NaN / +inf)
    float s_b;    // sum of exp(x - m_b) over the x != m_b
    float n_b;    // how many x == m_b
    int bad_b;    // a NaN or +inf logit
    double l_b;   // loss partial against m_b (see SL_CE_SMOOTH ..)
    double w_b;   // the weights of that partial: sum w_j or sum w_j q'_j
    // Per rank, gathered by lanes 0 .. K-1 and rescaled to the row's max.
    float pm[SL_CE_MAX_CLUSTER];
    int pb[SL_CE_MAX_CLUSTER];
    double ps[SL_CE_MAX_CLUSTER], pn[SL_CE_MAX_CLUSTER], pl[SL_CE_MAX_CLUSTER],
        pw[SL_CE_MAX_CLUSTER];
    // Loaded at entry by thread 0.
    int off;   // the slice's vector offset (`ce_span`), and whether it moves in vectors:
    int vec;   // reloaded in phase D, so they hold no register across phases B and C
    float xy;  // the target logit
    double u;  // upstream x mean scale
    double wy; // the target class's weight
    // The row's results (phase C).
    float m_all;
    float c2;      // ln S log2 e in f32
    float pm1_max; // p - 1 = -s'/S of the row's max when single (else NaN)
    int bad_all;
    double ln_s;
    double wq_all; // the row's sum w_j q'_j (probability targets)
    float r_b;     // exp(m_b - m) / S: p_j of a kept e_j (SL_CE_KEEP_E)
};
// The last 16 bytes of the header are left free: a slice whose start is not 16-byte aligned
// begins its aligned array there (`ce_span`).
static_assert(sizeof(sl_ce_fast_shared) <= SL_CE_HEADER_BYTES - 16, "header too small");

// A block's slice as 16-byte vectors with scalar edges: element j of the slice is element
// j + off of a 16-byte aligned array; vectors [u0, u1) lie wholly in the slice, the h head
// elements [0, h) and the tail [t0, n) are accessed one by one. A VEC16 plan has off = 0 and no
// edges; a scalar plan has no vectors (u0 = u1 = h = t0 = 0: every element is an edge).
struct ce_span {
    int off, u0, u1, h, t0, n;
};
__device__ __forceinline__ int ce_edges(const ce_span& sp) { return sp.h + (sp.n - sp.t0); }
__device__ __forceinline__ int ce_edge_at(const ce_span& sp, int e) {
    return e < sp.h ? e : sp.t0 + (e - sp.h);
}
template <typename T> __device__ __forceinline__ ce_span ce_span_of(int n, int off, bool vec) {
    constexpr int VW = sl_vec_width<T>();
    if (!vec) return ce_span{0, 0, 0, 0, 0, n};
    const int u0 = off != 0 ? 1 : 0;
    const int u1 = (off + n) / VW;
    return ce_span{off, u0, u1, u0 * VW - off, u1 * VW - off, n};
}

// Phase B over the slice `xs` (shared or global memory): n0, s' against m_b, and the mode's
// loss partial and its weight. `wl` = weights + lo (or null), `pq` = probs + base.
// KEEP (f32 slices in shared memory only): each x_j is overwritten in place by its
// e_j = exp(x_j - m_b), so phase D needs no second exponential (p_j = e_j exp(m_b - m) / S).
template <int MODE, bool KEEP, typename T>
__device__ __forceinline__ void ce_fast_sums(T* xs, const ce_span& sp, float m_b,
                                             const float* wl, const T* pq, double eps,
                                             double eps_c, float& s, float& n0, double& l,
                                             double& w, int tid, int nt) {
    static_assert(!KEEP || sizeof(T) == 4, "e_j is kept in place in f32 slices only");
    auto one = [&](int j, float x, float& vl) -> float {
        const float d = x - m_b;
        const float e = sl_ce_exp(d);
        if (d == 0.0f) n0 += 1.0f;
        else s += e;
        if constexpr (MODE == SL_CE_SMOOTH) vl += d;
        if constexpr (MODE == SL_CE_WEIGHTED) {
            const double wj = (double)wl[j];
            l += wj * (double)d;
            w += wj;
        }
        if constexpr (MODE == SL_CE_PROBS) {
            const double wj = wl != nullptr ? (double)wl[j] : 1.0;
            const double q = wj * ((1.0 - eps) * (double)sl_load(pq, j) + eps_c);
            w += q;
            // x = m_b adds nothing, also for an infinite target probability (TOL-4).
            if (d != 0.0f) l += q * (double)d;
        }
        return e;
    };
    constexpr int VW = sl_vec_width<T>();
    sl_vec16* v = reinterpret_cast<sl_vec16*>(xs);
    for (int u = sp.u0 + tid; u < sp.u1; u += nt) {
        sl_vec16 a = v[u];
        float vl = 0.0f;
#pragma unroll
        for (int k = 0; k < VW; ++k) {
            const float e = one(u * VW + k - sp.off, sl_vec_get(a, k, xs), vl);
            if constexpr (KEEP) a.w[k] = (unsigned)__float_as_int(e);
        }
        if constexpr (KEEP) v[u] = a;
        if constexpr (MODE == SL_CE_SMOOTH) l += (double)vl;
    }
    const int ne = ce_edges(sp);
#pragma unroll 1
    for (int ei = tid; ei < ne; ei += nt) {
        const int j = ce_edge_at(sp, ei);
        float vl = 0.0f;
        const float e = one(j, sl_load(xs, j + sp.off), vl);
        if constexpr (KEEP) xs[j + sp.off] = e;
        if constexpr (MODE == SL_CE_SMOOTH) l += (double)vl;
    }
}

// Phase D over the slice `xs` into `gs` (both aligned as `sp` says): the gradient of every
// class as if it were not the target (the target's entry is rewritten afterwards).
// AB modes: g = A p + B; SL_CE_WEIGHTED: g = A p - F w_j; SL_CE_PROBS: g = f (p wq - w_j q'_j).
// FROM_E: `xs` holds e_j = exp(x_j - m_b) (phase B's KEEP), and the caller has folded the
// block's exp(m_b - m) / S into A (AB, weighted) or B (probabilities): p_j = e_j, no MUFU.
template <int MODE, bool FROM_E, typename T>
__device__ __forceinline__ void ce_fast_grad(const T* xs, T* gs, const ce_span& sp, float m,
                                             float c2, float A, float B, const float* wl,
                                             const T* pq, double eps, double eps_c, int tid,
                                             int nt) {
    auto gv = [&](int j, float x) -> float {
        const float p = FROM_E ? x : sl_ex2(fmaf(x - m, 1.4426950408889634f, -c2));
        if constexpr (MODE == SL_CE_WEIGHTED) return fmaf(A, p, -B * wl[j]);
        else if constexpr (MODE == SL_CE_PROBS) {
            const float wj = wl != nullptr ? wl[j] : 1.0f;
            const float q = (float)((1.0 - eps) * (double)sl_load(pq, j) + eps_c);
            return A * fmaf(p, B, -wj * q);
        } else return fmaf(A, p, B);
    };
    constexpr int VW = sl_vec_width<T>();
    const sl_vec16* src = reinterpret_cast<const sl_vec16*>(xs);
    sl_vec16* dst = reinterpret_cast<sl_vec16*>(gs);
    for (int v = sp.u0 + tid; v < sp.u1; v += nt) {
        const sl_vec16 a = src[v];
        float g[VW];
#pragma unroll
        for (int k = 0; k < VW; ++k) g[k] = gv(v * VW + k - sp.off, sl_vec_get(a, k, xs));
        dst[v] = sl_vec_pack(g, xs);
    }
    const int ne = ce_edges(sp);
#pragma unroll 1
    for (int e = tid; e < ne; e += nt) {
        const int j = ce_edge_at(sp, e);
        sl_store(gs, j + sp.off, gv(j, sl_load(xs, j + sp.off)));
    }
}

// A non-finite scale u (a `mean` over rows of weight 0 only): every entry is u g_j, +-inf or
// NaN depending on whether g_j is 0, so g_j is taken in f64 as the reference's (TOL-4).
template <typename T>
__device__ __forceinline__ void ce_fast_grad_slow(const T* xs, T* gs, int n, int off, long long yl, const float* wl,
                                  const T* pq, double m, double ln_s, double wq, double u,
                                  double wy, double wsum, double eps, double eps_c, int bad,
                                  int tid, int nt) {
#pragma unroll 1
    for (int j = tid; j < n; j += nt) {
        const double xm = (double)sl_load(xs, j + off) - m;
        const double wj = wl != nullptr ? (double)wl[j] : 1.0;
        const double pd = exp(xm - ln_s);
        double gd;
        if (pq != nullptr) gd = pd * wq - wj * ((1.0 - eps) * (double)sl_load(pq, j) + eps_c);
        else
            gd = (1.0 - eps) * wy * (pd - (j == yl ? 1.0 : 0.0)) + eps_c * (wsum * pd - wj);
        sl_store(gs, j + off, bad ? SL_NAN : (float)(u * gd));
    }
}

// Orders the row's shared-memory state between the threads of a row: the block, or the warp.
template <bool WARP> __device__ __forceinline__ void ce_sync() {
    if constexpr (WARP) __syncwarp();
    else __syncthreads();
}

template <typename T, int K, bool WARP>
__device__ __forceinline__ void ce_row_fast(T* z, T* g, int in_place, const long long* targets,
                                            const T* probs, long long classes, long long slice,
                                            const float* weights, double wsum,
                                            long long ignore_index, int has_ignore, double eps,
                                            const double* stats, double up_scalar,
                                            const double* up, double* row_loss, int flags,
                                            int last_rows) {
    SL_DYNAMIC_SHARED(sl_vec16, dyn);
    static_assert(!WARP || K == 1, "the warp-per-row layout has one warp per row");
    unsigned char* region = reinterpret_cast<unsigned char*>(dyn);
    long long row = blockIdx.x / K;
    // WARP (SL_CE_WARP_ROWS, short rows): warp w of the block runs row blockIdx.x * rows per
    // block + w alone, in its own region of header + slice (the layout of a one-block row), so
    // its lanes never wait for another warp: no __syncthreads, reductions by shuffles only.
    if constexpr (WARP) {
        const int w = (int)(threadIdx.x >> 5);
        if (blockIdx.x == gridDim.x - 1 && w >= last_rows) return; // past the last row
        row = (long long)blockIdx.x * (long long)(blockDim.x >> 5) + w;
        region += (unsigned long long)w *
                  (SL_CE_HEADER_BYTES + ((unsigned long long)slice * sizeof(T) + 15) / 16 * 16);
    }
    sl_ce_fast_shared* sh = reinterpret_cast<sl_ce_fast_shared*>(region);
    T* srow = reinterpret_cast<T*>(region + SL_CE_HEADER_BYTES);
    const bool in_smem = (flags & SL_CE_SMEM_ROW) != 0;
    unsigned rank = 0;
#if SL_HAS_CLUSTERS
    if constexpr (K > 1) {
        // A launch that did not form the compiled clusters would combine the wrong blocks.
        if (sl_cluster_nctarank() != (unsigned)K) __trap();
        rank = sl_cluster_rank();
    }
#endif
    const long long lo = (long long)rank * slice < classes ? (long long)rank * slice : classes;
    // In-slice indices are 32-bit (the host rejects rows over 2^31 - 1 classes).
    const int n = (int)(lo + slice < classes ? slice : classes - lo);
    const long long base = row * classes + lo;
    const int tid = WARP ? (int)(threadIdx.x & 31) : (int)threadIdx.x;
    const int nt = WARP ? 32 : (int)blockDim.x;
    // Phase B keeps e_j in place of x_j (f32 slices in shared memory): one exponential per
    // element over the phases, phase D scales e_j by the block's exp(m_b - m) / S.
    constexpr bool SL_CE_KEEP_E = sizeof(T) == 4;
    T* gout = in_place ? z : g;
    const T* zs = z + base;
    const double eps_c = eps / (double)classes; // the smoothing mass per class, eps / C
    // 16-byte vectors: a VEC16 plan's aligned slices; otherwise (a row length that is not a
    // whole number of vectors, as 50257 classes) whenever the logits, the gradient and the
    // probabilities share their alignment modulo 16: vectors in the middle, scalar edges
    // (`ce_span`). The shared slice then starts `off` elements into a 16-byte aligned array
    // that begins 16 bytes before it (in the header's spare bytes) when off > 0.
    constexpr int VW = sl_vec_width<T>();
    bool vec = (flags & SL_CE_VEC16) != 0;
    int off = 0;
    if (!vec && n >= 2 * VW) {
        const unsigned long long a = (unsigned long long)zs;
        const bool same = a % sizeof(T) == 0 &&
                          (gout == nullptr || ((unsigned long long)(gout + base) - a) % 16 == 0) &&
                          (probs == nullptr || ((unsigned long long)(probs + base) - a) % 16 == 0);
        if (same) {
            vec = true;
            off = (int)((a % 16) / sizeof(T));
        }
    }
    const ce_span sp = ce_span_of<T>(n, off, vec);
    T* sal = srow - (off != 0 ? VW : 0); // element j of the shared slice at sal[j + off]
    const T* zal = zs - off;             // and of the global one at zal[j + off]

    long long y = -1;
    if (targets != nullptr) {
        y = targets[row];
        const bool ignored = has_ignore && y == ignore_index;
        const bool invalid = !ignored && (y < 0 || y >= classes);
        if (ignored || invalid) {
            // CE-5: loss 0 (NaN for an out-of-range target, reported by ce_prepare) and a zero
            // gradient. Uniform over the cluster (same row): no block waits at a barrier.
            if (gout != nullptr)
                for (int j = tid; j < n; j += nt) sl_store(gout, base + j, 0.0f);
            if (tid == 0 && rank == 0) row_loss[row] = ignored ? 0.0 : SL_DNAN;
            return;
        }
    }
    // The row's scalars, loaded at entry (their latency overlaps phase A; in place they are
    // read before any block of the cluster writes, which is after the first cluster barrier).
    if (tid == 0) {
        sh->off = off;
        sh->vec = vec;
        sh->u = (up != nullptr ? up[row] : up_scalar) * (stats != nullptr ? stats[1] : 1.0);
        sh->xy = targets != nullptr ? sl_load(z, row * classes + y) : 0.0f;
        sh->wy = targets != nullptr && weights != nullptr ? (double)weights[y] : 1.0;
    }

    // Phase A: load the slice (into shared memory) and its NaN-propagating max.
    float mx = -SL_INF;
    if (in_smem && vec) {
        const sl_vec16* src = reinterpret_cast<const sl_vec16*>(zal);
        sl_vec16* dst = reinterpret_cast<sl_vec16*>(sal);
        const int nv = sp.u1;
        int u = sp.u0 + tid;
        // Four independent 16-byte loads in flight per thread.
        for (; u + 3 * nt < nv; u += 4 * nt) {
            sl_vec16 a[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) a[q] = src[u + q * nt];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                dst[u + q * nt] = a[q];
#pragma unroll
                for (int k = 0; k < VW; ++k) mx = sl_fmax_nan(mx, sl_vec_get(a[q], k, zs));
            }
        }
        for (; u < nv; u += nt) {
            const sl_vec16 a = src[u];
            dst[u] = a;
#pragma unroll
            for (int k = 0; k < VW; ++k) mx = sl_fmax_nan(mx, sl_vec_get(a, k, zs));
        }
        const int ne = ce_edges(sp);
    #pragma unroll 1
    for (int e = tid; e < ne; e += nt) {
            const int j = ce_edge_at(sp, e);
            sal[j + off] = zs[j];
            mx = sl_fmax_nan(mx, sl_load(zs, j));
        }
    } else {
        for (int j = tid; j < n; j += nt) {
            if (in_smem) srow[j] = zs[j];
            mx = sl_fmax_nan(mx, sl_load(zs, j));
        }
    }
    float m_b = ce_reduce_f<sl_op_max_nan>(mx, sh->fred, WARP);
    const int bad = !(m_b < SL_INF); // NaN or +inf
    if (bad) m_b = -SL_INF;

    // Phase B: S = n0 + s' of the slice (n0 counts the x == m_b, whose exponential is exactly
    // 1) and the loss partial of the mode, against m_b. A slice of -inf only (or an empty one)
    // has S = 0 and its partial is taken against 0 (every term w_j x_j = -inf, or NaN for a
    // zero weight, as the reference's w_j (x_j - m)).
    const int mode = probs != nullptr ? SL_CE_PROBS
                     : eps == 0.0     ? SL_CE_PLAIN
                     : weights != nullptr ? SL_CE_WEIGHTED
                                          : SL_CE_SMOOTH;
    float s = 0.0f;
    float n0 = 0.0f;
    double l = 0.0;
    double w = 0.0;
    if (!bad) {
        const float mb = m_b == -SL_INF ? 0.0f : m_b;
        const float* wl = weights != nullptr ? weights + lo : nullptr;
        const T* pq = probs != nullptr ? probs + base : nullptr;
        // An f32 slice in shared memory keeps e_j = exp(x_j - m_b) in place (KEEP); 16-bit
        // slices are kept raw (their f32 e_j would double the shared memory of the plan).
        auto sums = [&](T* xs, auto keep) {
            constexpr bool K_ = decltype(keep)::value;
            if (mode == SL_CE_PLAIN)
                ce_fast_sums<SL_CE_PLAIN, K_>(xs, sp, mb, wl, pq, eps, eps_c, s, n0, l, w, tid, nt);
            else if (mode == SL_CE_SMOOTH)
                ce_fast_sums<SL_CE_SMOOTH, K_>(xs, sp, mb, wl, pq, eps, eps_c, s, n0, l, w, tid, nt);
            else if (mode == SL_CE_WEIGHTED)
                ce_fast_sums<SL_CE_WEIGHTED, K_>(xs, sp, mb, wl, pq, eps, eps_c, s, n0, l, w, tid, nt);
            else ce_fast_sums<SL_CE_PROBS, K_>(xs, sp, mb, wl, pq, eps, eps_c, s, n0, l, w, tid, nt);
        };
        if (in_smem) sums(sal, sl_bool<SL_CE_KEEP_E>{});
        else sums(const_cast<T*>(zal), sl_bool<false>{}); // read only (no KEEP)
        if (m_b == -SL_INF) {
            s = 0.0f;
            n0 = 0.0f;
        }
    }
    s = ce_reduce_f<sl_op_sum>(s, sh->fred, WARP);
    n0 = ce_reduce_f<sl_op_sum>(n0, sh->fred, WARP);
    if (mode != SL_CE_PLAIN) l = ce_reduce_d(l, sh->red, WARP);
    if (mode == SL_CE_WEIGHTED || mode == SL_CE_PROBS) w = ce_reduce_d(w, sh->red, WARP);
    if (mode == SL_CE_SMOOTH) w = (double)n;
    if (tid == 0) {
        sh->m_b = m_b;
        sh->s_b = s;
        sh->n_b = n0;
        sh->bad_b = bad;
        sh->l_b = l;
        sh->w_b = w;
    }

    // Phase C: the row's (m, S), NaN flag, loss partial and sum w q' from the K blocks.
#if SL_HAS_CLUSTERS
    if constexpr (K > 1) {
        sl_cluster_sync(); // publishes every block's statistics (before any gradient store)
        if (tid < K) {
            const unsigned r = (unsigned)tid;
            sh->pm[r] = sl_dsmem_load(&sh->m_b, r);
            sh->ps[r] = (double)sl_dsmem_load(&sh->s_b, r);
            sh->pn[r] = (double)sl_dsmem_load(&sh->n_b, r);
            sh->pb[r] = sl_dsmem_load(&sh->bad_b, r);
            sh->pl[r] = sl_dsmem_load(&sh->l_b, r);
            sh->pw[r] = sl_dsmem_load(&sh->w_b, r);
        }
        __syncthreads();
        // Every remote read of this block is done: the other blocks may exit after their
        // gradient stores without a release barrier (the wait is at the end).
        sl_cluster_arrive_relaxed();
        if (tid < K) { // each lane rescales its rank to the row's max
            float mm = sh->pm[0];
            for (int r = 1; r < K; ++r) mm = fmaxf(mm, sh->pm[r]);
            const int r = tid;
            const float mr = sh->pm[r];
            if (mm == -SL_INF) {
                sh->ps[r] = 0.0;
                sh->pn[r] = 0.0;
            } else if (mr != mm) {
                const double sc = (double)mr - (double)mm;
                sh->ps[r] = mr == -SL_INF ? 0.0 : (sh->pn[r] + sh->ps[r]) * exp(sc);
                sh->pn[r] = 0.0;
                if (mr != -SL_INF) sh->pl[r] += sc * sh->pw[r];
            }
        }
        __syncthreads();
    }
#endif
    if (tid == 0) {
        float m = m_b;
        double nn = (double)n0, ss = (double)s, sl = l, sq = w;
        int bb = bad;
        if constexpr (K > 1) {
            m = sh->pm[0];
            nn = sh->pn[0];
            ss = sh->ps[0];
            sl = sh->pl[0];
            sq = sh->pw[0];
            bb = sh->pb[0];
            for (int r = 1; r < K; ++r) { // rank order
                m = fmaxf(m, sh->pm[r]);
                nn += sh->pn[r];
                ss += sh->ps[r];
                sl += sh->pl[r];
                sq += sh->pw[r];
                bb |= sh->pb[r];
            }
        }
        // ln S = ln(n0 + s'): log1p for the usual single maximum, exact in a tiny s'.
        const double ln_s = nn == 1.0 ? log1p(ss) : log(nn + ss);
        sh->m_all = m;
        sh->ln_s = ln_s;
        sh->wq_all = sq;
        sh->bad_all = bb;
        sh->pm1_max = nn == 1.0 ? (float)(-ss / (1.0 + ss)) : SL_NAN;
        // exp(m_b - m) / S in f64: p_j = e_j r_b for the e_j kept in phase B (0 for a block of
        // -inf only, NaN for a row of -inf only, as exp((x - m) - ln S) is there).
        sh->r_b = (float)exp(((double)sh->m_b - (double)m) - ln_s);
        if (rank == 0) {
            double loss;
            if (probs != nullptr) {
                loss = -(sl - ln_s * sq); // CE-6
            } else {
                const double nll = -sh->wy * (((double)sh->xy - (double)m) - ln_s); // CE-2, CE-4
                // CE-3; without smoothing the term is absent (no 0 * inf for a -inf logit).
                loss = eps == 0.0 ? nll : (1.0 - eps) * nll + eps_c * (-(sl - ln_s * wsum));
            }
            row_loss[row] = bb ? SL_DNAN : loss;
        }
    }
    ce_sync<WARP>();
    const float m = sh->m_all;
    const double ln_s = sh->ln_s;
    const double sq = sh->wq_all;
    const int bb = sh->bad_all;

    // Phase D: the gradient (CE-8 / CE-9) times upstream and the mean scale.
    if (gout != nullptr) {
        T* gs = gout + base;
        const int off = sh->off;
        const ce_span sp = ce_span_of<T>(n, off, sh->vec != 0);
        T* sal = srow - (off != 0 ? VW : 0);
        const T* zal = zs - off;
        const double u = sh->u;
        const double wy = sh->wy;
        const long long yl = y - lo; // the target's index in this slice (may be outside it)
        const float* wl = weights != nullptr ? weights + lo : nullptr;
        const T* pq = probs != nullptr ? probs + base : nullptr;
        if (!(u - u == 0.0)) {
            // The slow path needs x_j: from global memory where shared memory holds e_j (in
            // place each thread reads its own elements before it overwrites them).
            if (in_smem && !SL_CE_KEEP_E)
                ce_fast_grad_slow(sal, gs - off, n, off, yl, wl, pq, m, ln_s, sq, u, wy, wsum, eps,
                                  eps_c, bb, tid, nt);
            else
                ce_fast_grad_slow(zal, gs - off, n, off, yl, wl, pq, m, ln_s, sq, u, wy, wsum, eps,
                                  eps_c, bb, tid, nt);
        } else {
            const float nan_or_0 = bb ? SL_NAN : 0.0f;
            const float c2 = (float)(ln_s * 1.4426950408889634);
            float A, B;
            if (mode == SL_CE_PROBS) {
                A = (float)u + nan_or_0; // g = f (p wq - w_j q'_j)
                B = (float)sq;
            } else if (mode == SL_CE_WEIGHTED) {
                A = (float)(u * ((1.0 - eps) * wy + eps_c * wsum)) + nan_or_0;
                B = (float)(u * eps_c) + nan_or_0;
            } else {
                A = (float)(u * ((1.0 - eps) * wy + eps_c * wsum)) + nan_or_0;
                B = (float)(-u * eps_c) + nan_or_0;
            }
            auto grad = [&](const T* xs, auto from_e, float A, float B) {
                constexpr bool E_ = decltype(from_e)::value;
                if (mode == SL_CE_PROBS)
                    ce_fast_grad<SL_CE_PROBS, E_>(xs, gs - off, sp, m, c2, A, B, wl, pq, eps, eps_c,
                                                  tid, nt);
                else if (mode == SL_CE_WEIGHTED)
                    ce_fast_grad<SL_CE_WEIGHTED, E_>(xs, gs - off, sp, m, c2, A, B, wl, pq, eps,
                                                     eps_c, tid, nt);
                else
                    ce_fast_grad<SL_CE_SMOOTH, E_>(xs, gs - off, sp, m, c2, A, B, wl, pq, eps, eps_c,
                                                   tid, nt);
            };
            if (in_smem && SL_CE_KEEP_E) {
                const float rb = sh->r_b; // p_j = e_j r_b, folded into A (or B)
                if (mode == SL_CE_PROBS) grad(sal, sl_bool<true>{}, A, B * rb);
                else grad(sal, sl_bool<true>{}, A * rb, B);
            } else if (in_smem) grad(sal, sl_bool<false>{}, A, B);
            else grad(zal, sl_bool<false>{}, A, B);
            // The target's entry, by the thread that stored it (program order): p_y - 1, or
            // -s'/S when the target is the row's single max (a confident row keeps it exact).
            if (targets != nullptr && yl >= 0 && yl < n) {
                const int yi = (int)yl;
                const int owner = yi >= sp.h && yi < sp.t0
                                      ? ((yi + off) / VW - sp.u0) % nt
                                      : (yi < sp.h ? yi : sp.h + (yi - sp.t0)) % nt;
                if (tid == owner) {
                    const float x = sh->xy;
                    const float pm1 = sh->pm1_max;
                    const float p = sl_ex2(fmaf(x - m, 1.4426950408889634f, -c2));
                    const float ph = x == m && pm1 == pm1 ? pm1 : p - 1.0f;
                    const float wj = wl != nullptr ? wl[yi] : 1.0f;
                    const float gy = (float)u * ((float)((1.0 - eps) * wy) * ph +
                                                 (float)eps_c * ((float)wsum * p - wj));
                    sl_store(gs, yi, bb ? SL_NAN : gy);
                }
            }
        }
    }
    // No block may exit while another still reads its shared memory (they all arrived after
    // their last remote read, in phase C).
#if SL_HAS_CLUSTERS
    if constexpr (K > 1) sl_cluster_wait();
#endif
}

#define SL_CE_FAST_ARGS(T) SL_CE_BASE_ARGS(T), p.last_rows

// One entry point per dtype, and per cluster size on sm_90 and newer (`__cluster_dims__` is a
// compile-time attribute, so a plain launch of rows * K blocks forms the clusters).
// `__launch_bounds__(512, 2)`: two blocks of 512 threads per SM, so at most 64 registers.
#define SL_CE_ENTRY(NAME, T)                                                                    \
    extern "C" __global__ void __launch_bounds__(SL_CE_MAX_THREADS, 2) NAME(const CeRowParams p) { \
        ce_row_fast<T, 1, false>(SL_CE_FAST_ARGS(T));                                           \
    }
// The warp-per-row layout (SL_CE_WARP_ROWS plans): blocks of at most 8 warps, one row each.
// An entry point of its own: both layouts in one function spilled 72 bytes at 64 registers,
// and the warp layout alone 68 bytes at 64 (`__launch_bounds__(256, 4)`), so at least two
// blocks of 256 threads per SM (up to 128 registers; occupancy = what ptxas allocates).
#define SL_CE_WARP_MAX_THREADS 256
#define SL_CE_WARP_ENTRY(NAME, T)                                                               \
    extern "C" __global__ void __launch_bounds__(SL_CE_WARP_MAX_THREADS, 2)                     \
        NAME(const CeRowParams p) {                                                             \
        ce_row_fast<T, 1, true>(SL_CE_FAST_ARGS(T));                                            \
    }
#define SL_CE_CLUSTER_ENTRY(NAME, T, K)                                                         \
    extern "C" __global__ void __cluster_dims__(K, 1, 1)                                        \
        __launch_bounds__(SL_CE_MAX_THREADS, 2) NAME(const CeRowParams p) {                     \
        ce_row_fast<T, K, false>(SL_CE_FAST_ARGS(T));                                                  \
    }
// The options' entry points (CE-10 .. CE-15): one block of 512 threads per SM, so up to 128
// registers (the options' state does not fit the default entries' 64 without spills).
#define SL_CE_OPT_ENTRY(NAME, T)                                                                \
    extern "C" __global__ void __launch_bounds__(SL_CE_MAX_THREADS, 1) NAME(const CeRowOptParams p) { \
        ce_row<T, 1, true>(SL_CE_OPT_ARGS(T));                                                  \
    }
#define SL_CE_OPT_CLUSTER_ENTRY(NAME, T, K)                                                     \
    extern "C" __global__ void __cluster_dims__(K, 1, 1)                                        \
        __launch_bounds__(SL_CE_MAX_THREADS, 1) NAME(const CeRowOptParams p) {                  \
        ce_row<T, K, true>(SL_CE_OPT_ARGS(T));                                                  \
    }

SL_CE_ENTRY(ce_fwd_bwd_f32, float)
SL_CE_ENTRY(ce_fwd_bwd_bf16, sl_bf16)
SL_CE_ENTRY(ce_fwd_bwd_f16, sl_f16)
SL_CE_WARP_ENTRY(ce_fwd_bwd_f32w, float)
SL_CE_WARP_ENTRY(ce_fwd_bwd_bf16w, sl_bf16)
SL_CE_WARP_ENTRY(ce_fwd_bwd_f16w, sl_f16)
SL_CE_OPT_ENTRY(ce_fwd_bwd_f32opt, float)
SL_CE_OPT_ENTRY(ce_fwd_bwd_bf16opt, sl_bf16)
SL_CE_OPT_ENTRY(ce_fwd_bwd_f16opt, sl_f16)
#if SL_HAS_CLUSTERS
SL_CE_CLUSTER_ENTRY(ce_fwd_bwd_f32_c2, float, 2)
SL_CE_CLUSTER_ENTRY(ce_fwd_bwd_f32_c4, float, 4)
SL_CE_CLUSTER_ENTRY(ce_fwd_bwd_f32_c8, float, 8)
SL_CE_CLUSTER_ENTRY(ce_fwd_bwd_bf16_c2, sl_bf16, 2)
SL_CE_CLUSTER_ENTRY(ce_fwd_bwd_bf16_c4, sl_bf16, 4)
SL_CE_CLUSTER_ENTRY(ce_fwd_bwd_bf16_c8, sl_bf16, 8)
SL_CE_CLUSTER_ENTRY(ce_fwd_bwd_f16_c2, sl_f16, 2)
SL_CE_CLUSTER_ENTRY(ce_fwd_bwd_f16_c4, sl_f16, 4)
SL_CE_CLUSTER_ENTRY(ce_fwd_bwd_f16_c8, sl_f16, 8)
SL_CE_OPT_CLUSTER_ENTRY(ce_fwd_bwd_f32opt_c2, float, 2)
SL_CE_OPT_CLUSTER_ENTRY(ce_fwd_bwd_f32opt_c4, float, 4)
SL_CE_OPT_CLUSTER_ENTRY(ce_fwd_bwd_f32opt_c8, float, 8)
SL_CE_OPT_CLUSTER_ENTRY(ce_fwd_bwd_bf16opt_c2, sl_bf16, 2)
SL_CE_OPT_CLUSTER_ENTRY(ce_fwd_bwd_bf16opt_c4, sl_bf16, 4)
SL_CE_OPT_CLUSTER_ENTRY(ce_fwd_bwd_bf16opt_c8, sl_bf16, 8)
SL_CE_OPT_CLUSTER_ENTRY(ce_fwd_bwd_f16opt_c2, sl_f16, 2)
SL_CE_OPT_CLUSTER_ENTRY(ce_fwd_bwd_f16opt_c4, sl_f16, 4)
SL_CE_OPT_CLUSTER_ENTRY(ce_fwd_bwd_f16opt_c8, sl_f16, 8)
#endif
