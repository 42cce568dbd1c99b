//! The logit softcap (`CE-10`) inside the long-row kernels, AVX2 + FMA: pass 1 capping the
//! logits as it reads them (`avx2::pass1` with `CAP`), and pass 2 with the chain rule folded
//! in, so that a capped row is read once from memory and its gradient written once.

use super::super::plan::{ChunkStats, Kind, KindMarker, with_kind};
use super::super::softcap::{Cap, CapK};
use super::avx2::{P1Args, pass1, pass1_evex};
use super::pass2_avx2::{P2, grad_masked, grad8, part_mask};
use std::arch::x86_64::*;

/// # Safety
/// As `kernels::pass1_capped`, with AVX2 + FMA available, and AVX-512 F and VL when `evex`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn capped_dispatch(
    evex: bool,
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
    let p1 = (src, dst, n, w, q, qa, qb);
    // SAFETY: (all arms) forwarded contract of `kernels::pass1_capped`; `capped_evex` only
    // with `evex` (AVX-512 F and VL available, the caller's contract).
    unsafe {
        if evex {
            with_kind!(kind, |K| capped_evex::<K>(p1, dcap, cap))
        } else {
            with_kind!(kind, |K| capped::<K>(p1, dcap, cap))
        }
    }
}

/// [`capped`] compiled with AVX-512 VL: the same AVX2 operations (so the same bits), in EVEX
/// encoding with 32 vector registers. The `tanh` of two vectors and their `exp`s need more
/// than the 16 of AVX2 (the AVX2 build spills and rematerialises constants: 8.4 instructions
/// per logit under callgrind); paired in one process on a Zen 4 (2026-12-03), softcap /
/// default 1.69-1.75 with this build against 1.91-1.98 with the AVX2 one at 1024 x 32000.
///
/// # Safety
/// As `kernels::pass1_capped`, with AVX2, FMA, AVX-512 F and VL available.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn capped_evex<K: KindMarker>(p1: P1Args<'_>, dcap: *mut f32, cap: Cap) -> ChunkStats {
    let (src, dst, n, w, q, qa, qb) = p1;
    let ck = CapK::new(cap, dcap);
    // SAFETY: as `capped`.
    unsafe {
        pass1_evex::<K, true, false, false, true>(src, dst, n, w, q, qa, qb, &mut P2::none(), &ck)
    }
}

/// `avx2::pass1` with the logits capped as they are read, storing.
///
/// # Safety
/// As `kernels::pass1_capped`, with AVX2 + FMA available.
#[target_feature(enable = "avx2,fma")]
unsafe fn capped<K: KindMarker>(p1: P1Args<'_>, dcap: *mut f32, cap: Cap) -> ChunkStats {
    let (src, dst, n, w, q, qa, qb) = p1;
    let ck = CapK::new(cap, dcap);
    // SAFETY: forwarded contract (`dcap` valid for `n` writes, disjoint from the others);
    // without `JOB` the job is not touched.
    unsafe { pass1::<K, true, false, false, true>(src, dst, n, w, q, qa, qb, &mut P2::none(), &ck) }
}

/// # Safety
/// As `kernels::pass2_chain`, with AVX2 + FMA available.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn chain_dispatch(
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
    // SAFETY: (all arms) forwarded contract of `kernels::pass2_chain`.
    unsafe {
        with_kind!(kind, |K| chain::<K>(
            e, dcap, out, n, a, b, bq, w, q, qa, qb
        ))
    }
}

/// Pass 2 with the chain rule: `out[j] = (a e[j] - B_j) d[j]`, the two roundings of
/// `kernels::pass2` then the chain rule's product, in 16-element blocks (the gradient's lines
/// prefetched one chunk ahead, as the default pass 2), then 8, then a masked tail with the
/// same operations.
///
/// # Safety
/// As `kernels::pass2_chain`, with AVX2 + FMA available.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn chain<K: KindMarker>(
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
    if K::WEIGHTED {
        assert!(w.len() >= n);
    }
    if K::PROBS {
        assert!(q.len() >= n);
    }
    let (wp, qp) = (w.as_ptr(), q.as_ptr());
    let (av, bv, bqv, qav, qbv) = (
        _mm256_set1_ps(a),
        _mm256_set1_ps(b),
        _mm256_set1_ps(bq),
        _mm256_set1_ps(qa),
        _mm256_set1_ps(qb),
    );
    let mut i = 0;
    while i + 16 <= n {
        // A prefetch never faults; the address may lie past the buffer.
        _mm_prefetch::<_MM_HINT_T0>(out.wrapping_add(n + i) as *const i8);
        // SAFETY: `i + 16 <= n`: `e`, `dcap`, `w` / `q` (as used) readable and `out` writable
        // there (contract); each element is read before it is written (`e` may be `out`).
        unsafe {
            let g0 = grad8::<K>(e, wp, qp, i, av, bv, bqv, qav, qbv);
            let g1 = grad8::<K>(e, wp, qp, i + 8, av, bv, bqv, qav, qbv);
            let d0 = _mm256_loadu_ps(dcap.add(i));
            let d1 = _mm256_loadu_ps(dcap.add(i + 8));
            _mm256_storeu_ps(out.add(i), _mm256_mul_ps(g0, d0));
            _mm256_storeu_ps(out.add(i + 8), _mm256_mul_ps(g1, d1));
        }
        i += 16;
    }
    if i + 8 <= n {
        // SAFETY: `i + 8 <= n`, as above.
        unsafe {
            let g = grad8::<K>(e, wp, qp, i, av, bv, bqv, qav, qbv);
            _mm256_storeu_ps(out.add(i), _mm256_mul_ps(g, _mm256_loadu_ps(dcap.add(i))));
        }
        i += 8;
    }
    if i < n {
        let mask = part_mask(n - i);
        // SAFETY: the masked loads and store touch lanes `0..n - i` only, inside the
        // buffers (contract).
        unsafe {
            let g = grad_masked::<K>(e, wp, qp, i, mask, av, bv, bqv, qav, qbv);
            let d = _mm256_maskload_ps(dcap.add(i), mask);
            _mm256_maskstore_ps(out.add(i), mask, _mm256_mul_ps(g, d));
        }
    }
}
