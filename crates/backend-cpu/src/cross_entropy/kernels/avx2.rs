use super::super::plan::{ChunkStats, Kind, KindMarker, SUB, mref, with_kind};
use super::super::softcap::{CapK, cap8};
use super::pass2_avx2::P2;
use super::wq_of;
use crate::math::avx2::{exp8_nonpos, exp8x2_nonpos};
use crate::math::exp_nonpos_f32;
use crate::simd::avx2::{hmax, hsum_f64};
use std::arch::x86_64::*;

/// # Safety
/// As `kernels::pass1`, with AVX2 + FMA available, and AVX-512 F and VL when `evex`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pass1_dispatch(
    evex: bool,
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
    // Pass 1 alone (no pass-2 job, ordinary stores), monomorphised per kind and store.
    let p1 = (src, dst, n, w, q, qa, qb);
    // SAFETY: (all arms) forwarded contract of `kernels::pass1`; the EVEX build only with
    // `evex` (the caller's contract).
    unsafe {
        if evex {
            with_kind!(kind, |K| if store {
                alone_evex::<K, true>(p1)
            } else {
                alone_evex::<K, false>(p1)
            })
        } else {
            with_kind!(kind, |K| if store {
                alone::<K, true>(p1)
            } else {
                alone::<K, false>(p1)
            })
        }
    }
}

/// Defines pass 1 without a pass-2 job and without streaming stores (`$name`, on `$pass1`
/// built with `$features`).
macro_rules! alone_fn {
    ($name:ident, $pass1:ident, $features:literal) => {
        /// [`pass1`] without a pass-2 job and without streaming stores.
        ///
        /// # Safety
        /// As `kernels::pass1`, with the target features of this build available.
        #[target_feature(enable = $features)]
        unsafe fn $name<K: KindMarker, const STORE: bool>(p1: P1Args<'_>) -> ChunkStats {
            let (src, dst, n, w, q, qa, qb) = p1;
            // SAFETY: forwarded contract; without `JOB` the job is not touched.
            unsafe {
                $pass1::<K, STORE, false, false, false>(
                    src,
                    dst,
                    n,
                    w,
                    q,
                    qa,
                    qb,
                    &mut P2::none(),
                    &CapK::none(),
                )
            }
        }
    };
}

alone_fn!(alone, pass1, "avx2,fma");
alone_fn!(alone_evex, pass1_evex, "avx2,fma,avx512f,avx512vl");

/// # Safety
/// As `kernels::pass1_fused`, with AVX2 + FMA available, and AVX-512 F and VL when `evex`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn fused_dispatch(
    evex: bool,
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
    let p1 = (src, dst, n, w, q, qa, qb);
    let p2 = (e2, out2, a, b, bq, q2);
    // SAFETY: (all arms) forwarded contract of `kernels::pass1_fused`; the EVEX build only
    // with `evex` (the caller's contract).
    unsafe {
        if evex {
            with_kind!(kind, |K| if nt {
                fused_evex::<K, true>(p1, p2)
            } else {
                fused_evex::<K, false>(p1, p2)
            })
        } else {
            with_kind!(kind, |K| if nt {
                fused::<K, true>(p1, p2)
            } else {
                fused::<K, false>(p1, p2)
            })
        }
    }
}

/// Pass-1 arguments `(src, dst, n, w, q, qa, qb)` of [`fused`].
pub(super) type P1Args<'a> = (*const f32, *mut f32, usize, &'a [f32], &'a [f32], f32, f32);
/// Pass-2 arguments `(e, out, a, b, bq, q)` of [`fused`].
type P2Args<'a> = (*const f32, *mut f32, f32, f32, f32, &'a [f32]);

/// Defines pass 1 of one chunk with pass 2 of the previous row's chunk (`$name`, on `$pass1`
/// built with `$features`).
macro_rules! fused_fn {
    ($name:ident, $pass1:ident, $features:literal) => {
        /// # Safety
        /// As `kernels::pass1_fused`, with the target features of this build available.
        #[target_feature(enable = $features)]
        unsafe fn $name<K: KindMarker, const NT: bool>(
            p1: P1Args<'_>,
            p2: P2Args<'_>,
        ) -> ChunkStats {
            let (src, dst, n, w, q, qa, qb) = p1;
            let (e2, out2, a, b, bq, q2) = p2;
            // SAFETY: forwarded contract (pass 2 over `n` elements of `e2` / `out2`, with the
            // chunk's weights `w` and the pending row's targets `q2`).
            let mut job = unsafe { P2::new::<K, NT>(e2, out2, n, a, b, bq, w, q2, qa, qb) };
            if NT {
                // Streaming stores: the previous row's chunk first, as one tight loop of whole
                // lines, then pass 1 (paired A/B: 5-6 % less time than spreading the streaming
                // stores over pass 1, which was slower than ordinary stores).
                job.finish::<K, NT>();
                // SAFETY: forwarded contract (pass 1, storing into `dst`; `job` untouched).
                unsafe {
                    $pass1::<K, true, NT, false, false>(
                        src,
                        dst,
                        n,
                        w,
                        q,
                        qa,
                        qb,
                        &mut job,
                        &CapK::none(),
                    )
                }
            } else {
                // SAFETY: forwarded contract (pass 1, storing into `dst`, advancing `job`, a
                // pass-2 job over the same `n` elements).
                let st = unsafe {
                    $pass1::<K, true, NT, true, false>(
                        src,
                        dst,
                        n,
                        w,
                        q,
                        qa,
                        qb,
                        &mut job,
                        &CapK::none(),
                    )
                };
                job.finish::<K, NT>();
                st
            }
        }
    };
}

fused_fn!(fused, pass1, "avx2,fma");
fused_fn!(fused_evex, pass1_evex, "avx2,fma,avx512f,avx512vl");

/// # Safety
/// `w` / `q` (as used by `K`) hold at least `j + 8` values.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn wq8<K: KindMarker>(
    j: usize,
    w: *const f32,
    q: *const f32,
    qa: __m256,
    qb: __m256,
) -> __m256 {
    // SAFETY: caller guarantees `j + 8` readable values in the used buffers.
    unsafe {
        match K::KIND {
            Kind::Plain => _mm256_set1_ps(1.0),
            Kind::Weighted => _mm256_loadu_ps(w.add(j)),
            Kind::Probs => _mm256_fmadd_ps(qa, _mm256_loadu_ps(q.add(j)), qb),
            _ => _mm256_mul_ps(
                _mm256_fmadd_ps(qa, _mm256_loadu_ps(q.add(j)), qb),
                _mm256_loadu_ps(w.add(j)),
            ),
        }
    }
}

/// Defines pass 1 (`$name`) compiled with the target features `$features`: built twice, with
/// AVX2 + FMA ([`pass1`]) and with AVX-512 VL as well ([`pass1_evex`], every long-row pass 1
/// on `SimdLevel::Avx512`: the same intrinsics in EVEX encoding with 32 vector registers, so
/// the same operations and bits; the loop has more live vectors than the 16 `ymm` registers,
/// so the AVX2 build spills), each a function of its own, so that the AVX2 build's code is
/// what it is without the second one. Paired in one process on a Zen 4 (`ce_ab --levels 9`,
/// 2026-12-03), the default long rows took 0.87-0.97x the AVX2 build's time.
macro_rules! pass1_fn {
    ($name:ident, $features:literal) => {
        /// # Safety
        /// As `kernels::pass1`, with AVX2 + FMA available (and AVX-512 F and VL for
        /// [`pass1_evex`]). With `JOB`, `p2` is a pass-2 job over
        /// exactly `n` elements (`p2.n == n`, position 0) that pass 1 advances between its own
        /// vectors (with `CAP`, a chain job of `CE-10`, `P2::new_chain`, and not `NT`); without
        /// `JOB`, `p2` is not touched. With `CAP` (and `STORE`), the logits are
        /// capped as they are read (`CE-10`: `z' = cap tanh(z / cap)`, `dz'/dz` stored to
        /// `ck.dcap`, valid for `n` writes and disjoint from the other buffers); the chunk's maximum
        /// is the capped maximum of the raw logits (one `tanh`, taken on the max loop's result), and
        /// `z' - m` is clamped to at most 0 (the `f32` `tanh` is monotone only up to its few ulps).
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $name<
            K: KindMarker,
            const STORE: bool,
            const NT: bool,
            const JOB: bool,
            const CAP: bool,
        >(
            src: *const f32,
            dst: *mut f32,
            n: usize,
            w: &[f32],
            q: &[f32],
            qa: f32,
            qb: f32,
            p2: &mut P2,
            ck: &CapK,
        ) -> ChunkStats {
            // The confident re-sum below reads the logits again when not storing: raw ones.
            assert!(!CAP || STORE, "a capped pass 1 stores its exponentials");
            assert!(
                !(CAP && NT),
                "a capped pass 1 runs chain jobs, which do not stream"
            );
            if K::WEIGHTED {
                assert!(w.len() >= n);
            }
            if K::PROBS {
                assert!(q.len() >= n);
            }
            let (wp, qp) = (w.as_ptr(), q.as_ptr());
            // A local copy of the pass-2 job: its fields stay in registers (the caller's copy
            // could alias `dst` as far as the compiler knows, forcing a reload after each store).
            let mut job = *p2;
            if JOB && !NT {
                // `step_at` below relies on this (checked once per chunk, not per block).
                assert!(
                    job.n == n && job.pos == 0,
                    "pass-2 job must cover this chunk"
                );
            }
            // Max over the chunk (four accumulators).
            let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
            let (mut m0, mut m1, mut m2, mut m3) = (ninf, ninf, ninf, ninf);
            let mut i = 0;
            while i + 32 <= n {
                // SAFETY: `i + 32 <= n` and `src` is valid for `n` reads.
                unsafe {
                    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(src.add(i)));
                    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(src.add(i + 8)));
                    m2 = _mm256_max_ps(m2, _mm256_loadu_ps(src.add(i + 16)));
                    m3 = _mm256_max_ps(m3, _mm256_loadu_ps(src.add(i + 24)));
                }
                i += 32;
            }
            while i + 8 <= n {
                // SAFETY: `i + 8 <= n`.
                m0 = _mm256_max_ps(m0, unsafe { _mm256_loadu_ps(src.add(i)) });
                i += 8;
            }
            let mut m = hmax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
            while i < n {
                // SAFETY: `i < n`.
                let v = unsafe { *src.add(i) };
                if v > m || v.is_nan() {
                    m = v;
                }
                i += 1;
            }
            // CE-10: the capped maximum (`Cap::one`'s bits, as the vector code's); NaN stays NaN,
            // `-inf` becomes `-cap`.
            let m = if CAP { ck.cap.one(m).0 } else { m };
            let mr = mref(m);
            let mv = _mm256_set1_ps(mr);
            let qav = _mm256_set1_ps(qa);
            let qbv = _mm256_set1_ps(qb);
            let zero = _mm256_setzero_ps();
            let (mut s, mut z, mut wq) = (0.0f64, 0.0f64, 0.0f64);
            // The block whose `f32` lanes hold the maximum's `exp(0) = 1` (`start, end, its sum`):
            // the only block whose sum is at least 1 in a confident chunk, the only one re-summed.
            // `s_low`: the sums of the other blocks and the tail's terms below 1 (`s'` without the
            // maximum's block), kept apart so that a tiny `s'` is not a difference of sums near 1.
            let mut max_end = 0usize;
            let mut s_low = 0.0f64;
            let nv = n & !7;
            let mut i = 0;
            // Blocks of `SUB` columns accumulate in `f32` lanes (64 terms per lane), then in
            // `f64`: long single-chunk rows keep the accuracy of `CHUNK`-column chunks.
            while i < nv {
                let end = (i + SUB).min(nv);
                let (mut s0, mut z0, mut c0) = (zero, zero, zero);
                // Two vectors per iteration (16 columns), their `exp` chains interleaved, and
                // one pass-2 block of the previous row (`JOB`); a last single vector when `end`
                // is an odd multiple of 8.
                while i + 16 <= end {
                    // Bring the next chunk towards L1 while this one is computed, so the next
                    // max loop does not stall on memory (a prefetch never faults; the address
                    // is computed with wrapping arithmetic and may lie past the buffer).
                    _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(n + i) as *const i8);
                    if JOB {
                        if NT {
                            job.step::<K, NT>();
                        } else {
                            // SAFETY: `i + 16 <= end <= n == job.n` (`JOB` contract), and
                            // without `NT` the job's blocks start at 0 and advance by 16 with
                            // `i` (SUB is a multiple of 16), so `job.pos == i`; with `CAP` the
                            // job is a chain job (contract).
                            unsafe {
                                if CAP {
                                    job.step_at_chain::<K>(i)
                                } else {
                                    job.step_at::<K>(i)
                                }
                            };
                        }
                    }
                    // SAFETY: `i + 16 <= nv <= n`: `src` readable, `dst` (when STORE) writable
                    // there; each element is read before the same index is written.
                    unsafe {
                        let d0 = diff8::<CAP>(src, i, mv, ck);
                        let d1 = diff8::<CAP>(src, i + 8, mv, ck);
                        let (e0, e1) = exp8x2_nonpos(d0, d1);
                        if STORE {
                            _mm256_storeu_ps(dst.add(i), e0);
                            _mm256_storeu_ps(dst.add(i + 8), e1);
                        }
                        s0 = _mm256_add_ps(s0, _mm256_add_ps(e0, e1));
                        if matches!(K::KIND, Kind::Plain) {
                            z0 = _mm256_add_ps(z0, _mm256_add_ps(d0, d1));
                        } else {
                            let a0 = wq8::<K>(i, wp, qp, qav, qbv);
                            let a1 = wq8::<K>(i + 8, wp, qp, qav, qbv);
                            if K::PROBS {
                                // `d = 0` terms are 0 even for a non-finite `w q'` (TOL-4).
                                z0 = _mm256_add_ps(z0, nz_mul(a0, d0));
                                z0 = _mm256_add_ps(z0, nz_mul(a1, d1));
                                c0 = _mm256_add_ps(c0, _mm256_add_ps(a0, a1));
                            } else {
                                z0 = _mm256_fmadd_ps(a0, d0, z0);
                                z0 = _mm256_fmadd_ps(a1, d1, z0);
                            }
                        }
                    }
                    i += 16;
                }
                if i < end {
                    _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(n + i) as *const i8);
                    if JOB && NT {
                        job.step::<K, NT>();
                    }
                    // SAFETY: `i + 8 <= end <= nv <= n`, as above.
                    unsafe {
                        let d0 = diff8::<CAP>(src, i, mv, ck);
                        let e0 = exp8_nonpos(d0);
                        if STORE {
                            _mm256_storeu_ps(dst.add(i), e0);
                        }
                        s0 = _mm256_add_ps(s0, e0);
                        if matches!(K::KIND, Kind::Plain) {
                            z0 = _mm256_add_ps(z0, d0);
                        } else {
                            let a0 = wq8::<K>(i, wp, qp, qav, qbv);
                            if K::PROBS {
                                z0 = _mm256_add_ps(z0, nz_mul(a0, d0));
                                c0 = _mm256_add_ps(c0, a0);
                            } else {
                                z0 = _mm256_fmadd_ps(a0, d0, z0);
                            }
                        }
                    }
                    i += 8;
                }
                let bs = hsum_f64(s0);
                if bs >= 1.0 {
                    max_end = end;
                } else {
                    s_low += bs;
                }
                s += bs;
                z += hsum_f64(z0);
                wq += hsum_f64(c0);
            }
            let kind = K::KIND;
            while i < n {
                // SAFETY: `i < n`, as above.
                let v = unsafe { *src.add(i) };
                let d = if CAP {
                    let (c, dz) = ck.cap.one(v);
                    // SAFETY: `i < n`; `ck.dcap` valid for `n` writes (contract).
                    unsafe { *ck.dcap.add(i) = dz };
                    // As `diff8`'s clamp (NaN stays NaN).
                    let d = c - mr;
                    if d > 0.0 { 0.0 } else { d }
                } else {
                    v - mr
                };
                let e = exp_nonpos_f32(d);
                if STORE {
                    // SAFETY: `i < n`; element `i` was read just above.
                    unsafe { *dst.add(i) = e };
                }
                s += f64::from(e);
                if e < 1.0 {
                    s_low += f64::from(e);
                }
                let c = wq_of(kind, i, w, q, qa, qb);
                if d != 0.0 {
                    z += f64::from(c * d);
                }
                if K::PROBS {
                    wq += f64::from(c);
                }
                i += 1;
            }
            *p2 = job;
            // A confident chunk (`S < 1.5`: one maximum, `S = 1 + s'` with `s' < 1/2`): the `f32` lanes
            // of the block holding the maximum added the small terms to its 1 and kept only about
            // `2^-24 / s'` of them, so that block's `s'` is summed again, apart from the 1
            // (`below_one_sum`), from the stored exponentials (or recomputed ones without a gradient);
            // the other blocks' sums (each below 1/2) and the scalar tail's terms below 1 (`f64`) are
            // kept (`s_low`; a maximum in the tail: `s' = s_low`). Other chunks: `S` as summed,
            // `n0 = 0` (their `S` is at least 1.5, so its rounding is relative to `ln S` too). Counting
            // apart in the loop above instead (one blend and one add per vector) measured 15-20 %
            // slower; re-summing the whole chunk cost confident rows about 5 %.
            let (n0, s) = if s < 1.5 && m != f32::NEG_INFINITY {
                // Blocks start at multiples of `SUB`.
                let (b0, b1) = (max_end.saturating_sub(1) / SUB * SUB, max_end);
                if b1 > b0 {
                    // SAFETY: `b0 < b1 <= nv <= n`: with `STORE`, `dst` holds the chunk's `n`
                    // exponentials (written above); without, `src` holds its `n` logits.
                    let s1 = unsafe {
                        if STORE {
                            below_one_sum(dst.add(b0), b1 - b0, None)
                        } else {
                            below_one_sum(src.add(b0), b1 - b0, Some(mv))
                        }
                    };
                    (1.0, s_low + s1)
                } else {
                    (1.0, s_low)
                }
            } else {
                (0.0, s)
            };
            ChunkStats { m, s, n0, z, wq }
        }
    };
}

pass1_fn!(pass1, "avx2,fma");
pass1_fn!(pass1_evex, "avx2,fma,avx512f,avx512vl");

/// `z - m` of the eight logits at `src + i`; with `CAP`, of their capped values (derivatives
/// stored to `ck.dcap + i`), clamped to at most `+0` (NaN stays NaN: `min` returns its second
/// operand then).
///
/// # Safety
/// `src` holds `i + 8` readable values; with `CAP`, `ck.dcap` `i + 8` writable ones.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn diff8<const CAP: bool>(src: *const f32, i: usize, mv: __m256, ck: &CapK) -> __m256 {
    // SAFETY: caller's contract.
    let v = unsafe { _mm256_loadu_ps(src.add(i)) };
    if !CAP {
        return _mm256_sub_ps(v, mv);
    }
    let (c, d) = cap8(v, &ck.v);
    // SAFETY: caller's contract.
    unsafe { _mm256_storeu_ps(ck.dcap.add(i), d) };
    _mm256_min_ps(_mm256_setzero_ps(), _mm256_sub_ps(c, mv))
}

/// `s'` of the block of a confident chunk that holds its maximum (`S < 1.5`, so exactly one
/// exponential equals 1: the maximum, `exp(+0)`): the sum of the `n` exponentials at `p` below 1 (or, with `Some(mv)`, of
/// `exp(x - mv)` for the `n` logits `x` at `p`), in four `f32` vector accumulators (each term
/// below 1/2, at most `n / 32 + 5` roundings per term) added in `f64`.
///
/// # Safety
/// `p` is valid for `n` reads; AVX2 + FMA available.
#[inline(never)]
#[target_feature(enable = "avx2,fma")]
unsafe fn below_one_sum(p: *const f32, n: usize, shift: Option<__m256>) -> f64 {
    let one = _mm256_set1_ps(1.0);
    let e_at = |i: usize| {
        // SAFETY: callers pass `i + 8 <= n`.
        let v = unsafe { _mm256_loadu_ps(p.add(i)) };
        let e = match shift {
            Some(mv) => exp8_nonpos(_mm256_sub_ps(v, mv)),
            None => v,
        };
        _mm256_and_ps(e, _mm256_cmp_ps::<_CMP_LT_OQ>(e, one))
    };
    let zero = _mm256_setzero_ps();
    let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
    let mut i = 0;
    while i + 32 <= n {
        a0 = _mm256_add_ps(a0, e_at(i));
        a1 = _mm256_add_ps(a1, e_at(i + 8));
        a2 = _mm256_add_ps(a2, e_at(i + 16));
        a3 = _mm256_add_ps(a3, e_at(i + 24));
        i += 32;
    }
    while i + 8 <= n {
        a0 = _mm256_add_ps(a0, e_at(i));
        i += 8;
    }
    let mut s = hsum_f64(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    while i < n {
        // SAFETY: `i < n`.
        let v = unsafe { *p.add(i) };
        let e = match shift {
            Some(mv) => exp_nonpos_f32(v - _mm256_cvtss_f32(mv)),
            None => v,
        };
        if e < 1.0 {
            s += f64::from(e);
        }
        i += 1;
    }
    s
}

/// `a d`, with 0 where `d = 0` (also for a non-finite `a`: an infinite target probability on
/// the maximum, TOL-4).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn nz_mul(a: __m256, d: __m256) -> __m256 {
    let nz = _mm256_cmp_ps::<_CMP_NEQ_UQ>(d, _mm256_setzero_ps());
    _mm256_and_ps(_mm256_mul_ps(a, d), nz)
}
