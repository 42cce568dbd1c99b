//! The per-chunk kernels of the long-row path: dispatch and the portable scalar code; the
//! AVX2 + FMA code is in [`avx2`].

use super::plan::{ChunkStats, Kind, mref};
use super::softcap::Cap;
use crate::math::exp_nonpos_f32;
use crate::simd::SimdLevel;

/// Pass 1 over one chunk of `n` logits; see the module documentation.
///
/// # Safety
/// `src` is valid for `n` reads; when `store`, `dst` is valid for `n` writes and is either
/// equal to `src` or does not overlap it. `w` (weighted kinds) and `q` (probability kinds)
/// hold at least `n` values. `level` must be available on this CPU.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pass1(
    level: SimdLevel,
    kind: Kind,
    store: bool,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
) -> ChunkStats {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma | SimdLevel::Avx512 => {
            let evex = level == SimdLevel::Avx512;
            // SAFETY: forwarded contract; AVX2 + FMA availability is the caller's
            // precondition (`level` comes from detection), AVX-512 F and VL with
            // `SimdLevel::Avx512`.
            unsafe { avx2::pass1_dispatch(evex, kind, store, src, dst, n, w, q, qa, qb) }
        }
        // SAFETY: forwarded contract.
        _ => unsafe { scalar_pass1(kind, store, src, dst, n, w, q, qa, qb, None) },
    }
}

/// Pass 2 over one chunk: `out[j] = a e[j] - B_j` with `B_j = b` (plain), `b w_j`
/// (weighted), `bq q'_j` (probabilities), `bq w_j q'_j` (weighted probabilities),
/// `q'_j = qa q_j + qb`; `nt` asks for non-temporal stores.
///
/// # Safety
/// `e` is valid for `n` reads and `out` for `n` writes, equal or non-overlapping; `w`, `q`
/// as in [`pass1`]; `level` available.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pass2(
    level: SimdLevel,
    kind: Kind,
    e: *const f32,
    out: *mut f32,
    n: usize,
    nt: bool,
    a: f32,
    b: f32,
    bq: f32,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma | SimdLevel::Avx512 => {
            // SAFETY: forwarded contract; AVX2 + FMA available by precondition.
            unsafe { pass2_avx2::pass2_dispatch(kind, e, out, n, nt, a, b, bq, w, q, qa, qb) }
        }
        _ => {
            let _ = nt;
            // SAFETY: forwarded contract.
            unsafe { scalar_pass2(kind, e, out, n, a, b, bq, w, q, qa, qb) }
        }
    }
}

/// [`pass1`] storing into `dst`, with the logits capped as they are read (`CE-10`): `z' = cap
/// tanh(z / cap)` in place of `z`, `dz'/dz` written to `dcap`. The chunk's maximum is the capped
/// maximum of the raw logits and `z' - m` is clamped to at most 0 (the `f32` `tanh` is monotone
/// only up to its ulps, so a `z'` may exceed the capped maximum by a few ulps: it then counts as
/// a tie, `exp(0) = 1`, off by those ulps); the same on every level.
///
/// # Safety
/// As [`pass1`] with `store`; `dcap` is valid for `n` writes and disjoint from the others.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pass1_capped(
    level: SimdLevel,
    kind: Kind,
    src: *const f32,
    dst: *mut f32,
    dcap: *mut f32,
    n: usize,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
    cap: Cap,
) -> ChunkStats {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma | SimdLevel::Avx512 => {
            let evex = level == SimdLevel::Avx512;
            // SAFETY: forwarded contract; AVX2 + FMA available by precondition, AVX-512 F and VL
            // with `SimdLevel::Avx512`.
            unsafe {
                softcap_avx2::capped_dispatch(evex, kind, src, dst, dcap, n, w, q, qa, qb, cap)
            }
        }
        // SAFETY: forwarded contract.
        _ => unsafe { scalar_pass1(kind, true, src, dst, n, w, q, qa, qb, Some((cap, dcap))) },
    }
}

/// [`pass2`] (ordinary stores) with the chain rule of `CE-10` folded in: `out[j] = (a e[j] -
/// B_j) dcap[j]`, the bits of [`pass2`] followed by one `f32` product.
///
/// # Safety
/// As [`pass2`]; `dcap` is valid for `n` reads.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pass2_chain(
    level: SimdLevel,
    kind: Kind,
    e: *const f32,
    dcap: *const f32,
    out: *mut f32,
    n: usize,
    a: f32,
    b: f32,
    bq: f32,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma | SimdLevel::Avx512 => {
            // SAFETY: forwarded contract; AVX2 + FMA available by precondition.
            unsafe { softcap_avx2::chain_dispatch(kind, e, dcap, out, n, a, b, bq, w, q, qa, qb) }
        }
        _ => {
            for j in 0..n {
                // SAFETY: `j < n`; `e`, `dcap` valid for `n` reads, `out` for `n` writes;
                // element `j` of `e` is read before `out[j]` is written.
                unsafe {
                    let v = *e.add(j);
                    let g = a.mul_add(v, -b_of(kind, j, b, bq, w, q, qa, qb));
                    *out.add(j) = g * *dcap.add(j);
                }
            }
        }
    }
}

/// [`pass1_capped`] of one chunk and [`pass2_chain`] (`e2`, `dcap2` to `out2`, with the same
/// `n` and `w`, targets `q2`) of the same chunk of the previous row, interleaved (`CE-10`'s
/// rows pipelined as the default path's [`pass1_fused`]); the results are those of the two
/// calls.
///
/// # Safety
/// As [`pass1_capped`] for `src`, `dst`, `dcap`, `w`, `q`, and as [`pass2_chain`] for `e2`,
/// `dcap2`, `out2`, `w`, `q2`; `e2`, `dcap2` and `out2` are disjoint from `src`, `dst` and
/// `dcap`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pass1_capped_fused(
    level: SimdLevel,
    kind: Kind,
    src: *const f32,
    dst: *mut f32,
    dcap: *mut f32,
    n: usize,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
    cap: Cap,
    e2: *const f32,
    dcap2: *const f32,
    out2: *mut f32,
    a: f32,
    b: f32,
    bq: f32,
    q2: &[f32],
) -> ChunkStats {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma | SimdLevel::Avx512 => {
            let evex = level == SimdLevel::Avx512;
            let p1 = (src, dst, n, w, q, qa, qb);
            let p2 = (e2, dcap2, out2, a, b, bq, q2);
            // SAFETY: forwarded contract; AVX2 + FMA available by precondition, AVX-512 F and VL
            // with `SimdLevel::Avx512`.
            unsafe { softcap_avx2::capped_fused_dispatch(evex, kind, p1, dcap, cap, p2) }
        }
        _ => {
            // SAFETY: forwarded contract.
            unsafe {
                let st = pass1_capped(level, kind, src, dst, dcap, n, w, q, qa, qb, cap);
                pass2_chain(level, kind, e2, dcap2, out2, n, a, b, bq, w, q2, qa, qb);
                st
            }
        }
    }
}

/// [`pass1`] (storing into `dst`) of one chunk and [`pass2`] (`e2` to `out2`, with the
/// same `n` and `w`, targets `q2`) of the same chunk of the previous row, interleaved; the
/// results are those of the two calls.
///
/// # Safety
/// As [`pass1`] with `store` for `src`, `dst`, `w`, `q`, and as [`pass2`] for `e2`,
/// `out2`, `w`, `q2`; `e2` and `out2` are disjoint from `src` and `dst`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pass1_fused(
    level: SimdLevel,
    kind: Kind,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
    e2: *const f32,
    out2: *mut f32,
    nt: bool,
    a: f32,
    b: f32,
    bq: f32,
    q2: &[f32],
) -> ChunkStats {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma | SimdLevel::Avx512 => {
            let evex = level == SimdLevel::Avx512;
            // SAFETY: forwarded contract; AVX2 + FMA available by precondition, AVX-512 F and VL
            // with `SimdLevel::Avx512`.
            unsafe {
                avx2::fused_dispatch(
                    evex, kind, src, dst, n, w, q, qa, qb, e2, out2, nt, a, b, bq, q2,
                )
            }
        }
        _ => {
            // SAFETY: forwarded contract.
            unsafe {
                let st = pass1(level, kind, true, src, dst, n, w, q, qa, qb);
                pass2(level, kind, e2, out2, n, nt, a, b, bq, w, q2, qa, qb);
                st
            }
        }
    }
}

/// Orders earlier non-temporal stores before later stores (called once per task that used
/// them, before the results are handed to another thread).
pub(super) fn store_fence(level: SimdLevel) {
    #[cfg(target_arch = "x86_64")]
    if level.avx2() {
        // SAFETY: `sfence` is SSE (part of the x86_64 baseline); no memory is accessed.
        unsafe { std::arch::x86_64::_mm_sfence() };
    }
    let _ = level;
}

/// `B_j` of pass 2 for one element (shared by the scalar code and the vector tails).
#[inline(always)]
fn b_of(kind: Kind, j: usize, b: f32, bq: f32, w: &[f32], q: &[f32], qa: f32, qb: f32) -> f32 {
    match kind {
        Kind::Plain => b,
        Kind::Weighted => b * w[j],
        Kind::Probs => bq * qa.mul_add(q[j], qb),
        Kind::ProbsWeighted => bq * (qa.mul_add(q[j], qb) * w[j]),
    }
}

/// `w_j q'_j` of pass 1 for one element (1 for the plain kind).
#[inline(always)]
fn wq_of(kind: Kind, j: usize, w: &[f32], q: &[f32], qa: f32, qb: f32) -> f32 {
    match kind {
        Kind::Plain => 1.0,
        Kind::Weighted => w[j],
        Kind::Probs => qa.mul_add(q[j], qb),
        Kind::ProbsWeighted => qa.mul_add(q[j], qb) * w[j],
    }
}

/// Portable pass 1 (`f64` accumulation); with `cap`, [`pass1_capped`]'s.
///
/// # Safety
/// As [`pass1`]; with `cap`, as [`pass1_capped`].
#[allow(clippy::too_many_arguments)]
unsafe fn scalar_pass1(
    kind: Kind,
    store: bool,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
    cap: Option<(Cap, *mut f32)>,
) -> ChunkStats {
    let mut m = f32::NEG_INFINITY;
    let mut nan = false;
    for j in 0..n {
        // SAFETY: `j < n` and `src` is valid for `n` reads.
        let v = unsafe { *src.add(j) };
        nan |= v.is_nan();
        if v > m {
            m = v;
        }
    }
    if nan {
        m = f32::NAN;
    }
    if let Some((cap, _)) = cap {
        m = cap.one(m).0;
    }
    let mr = mref(m);
    let (mut s, mut n0, mut z, mut wq) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for j in 0..n {
        // SAFETY: `j < n`; `src` valid for `n` reads.
        let v = unsafe { *src.add(j) };
        let d = match cap {
            None => v - mr,
            Some((cap, dcap)) => {
                let (c, dz) = cap.one(v);
                // SAFETY: `j < n`; `dcap` valid for `n` writes (contract).
                unsafe { *dcap.add(j) = dz };
                // Clamped to at most 0 as the vector code's `min` (NaN stays NaN).
                let d = c - mr;
                if d > 0.0 { 0.0 } else { d }
            }
        };
        let e = exp_nonpos_f32(d);
        if store {
            // SAFETY: `j < n`; `dst` valid for `n` writes, equal to or disjoint from `src`,
            // and element `j` of `src` was read above.
            unsafe { *dst.add(j) = e };
        }
        // The maximum and its ties (`d = +0`, `exp(0) = 1`) are counted apart (`n0`).
        let at_max = !d.is_sign_negative();
        s += if at_max { 0.0 } else { f64::from(e) };
        n0 += if at_max { 1.0 } else { 0.0 };
        let c = wq_of(kind, j, w, q, qa, qb);
        // `d = 0` adds nothing, also for a non-finite `c` (TOL-4).
        if d != 0.0 {
            z += f64::from(c) * f64::from(d);
        }
        wq += f64::from(c);
    }
    ChunkStats { m, s, n0, z, wq }
}

/// Portable pass 2.
///
/// # Safety
/// As [`pass2`].
#[allow(clippy::too_many_arguments)]
unsafe fn scalar_pass2(
    kind: Kind,
    e: *const f32,
    out: *mut f32,
    n: usize,
    a: f32,
    b: f32,
    bq: f32,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
) {
    for j in 0..n {
        // SAFETY: `j < n`; `e` valid for `n` reads, `out` for `n` writes; element `j` of
        // `e` is read before `out[j]` is written (they may be the same memory).
        unsafe {
            let v = *e.add(j);
            *out.add(j) = a.mul_add(v, -b_of(kind, j, b, bq, w, q, qa, qb));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub(super) mod lanes_avx2;
#[cfg(target_arch = "x86_64")]
mod pass2_avx2;
#[cfg(target_arch = "x86_64")]
pub(super) mod short_avx2;
#[cfg(target_arch = "x86_64")]
mod softcap_avx2;
