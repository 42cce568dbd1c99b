//! The logit softcap (`CE-10`) inside the long-row kernels, AVX2 + FMA: pass 1 capping the
//! logits as it reads them (`avx2::pass1` with `CAP`), and pass 2 with the chain rule folded
//! in, so that a capped row is read once from memory and its gradient written once.

use super::super::plan::{ChunkStats, Kind, KindMarker, with_kind};
use super::super::softcap::{Cap, CapK};
use super::avx2::{P1Args, pass1, pass1_evex};
use super::pass2_avx2::P2;

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
/// `kernels::pass2` then the chain rule's product (a chain job run to its end: blocks of 16
/// elements with the gradient's lines prefetched one chunk ahead, as the default pass 2, then
/// 8, then a masked tail with the same operations).
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
    // SAFETY: forwarded contract (`e`, `dcap`, `w` / `q` readable and `out` writable for `n`).
    unsafe {
        let mut job = P2::new_chain::<K>(e, dcap, out, n, a, b, bq, w, q, qa, qb);
        job.finish_chain::<K>();
    }
}

/// # Safety
/// As `kernels::pass1_capped_fused`, with AVX2 + FMA available, and AVX-512 F and VL when
/// `evex`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn capped_fused_dispatch(
    evex: bool,
    kind: Kind,
    p1: P1Args<'_>,
    dcap: *mut f32,
    cap: Cap,
    p2: ChainArgs<'_>,
) -> ChunkStats {
    // SAFETY: (all arms) forwarded contract of `kernels::pass1_capped_fused`; the EVEX build
    // only with `evex` (AVX-512 F and VL available, the caller's contract).
    unsafe {
        if evex {
            with_kind!(kind, |K| capped_fused_evex::<K>(p1, dcap, cap, p2))
        } else {
            with_kind!(kind, |K| capped_fused::<K>(p1, dcap, cap, p2))
        }
    }
}

/// The chain job's arguments `(e, dcap, out, a, b, bq, q)` of [`capped_fused`]: the pending
/// row's chunk (the same `n` and class weights as pass 1's chunk, its own targets `q`).
pub(super) type ChainArgs<'a> = (*const f32, *const f32, *mut f32, f32, f32, f32, &'a [f32]);

/// Defines the capped pass 1 of one chunk interleaved with the chain job of the same chunk of
/// the previous row (`$pass1`, built with `$features`): the capped row's gradient stores
/// spread over the next row's `tanh` and `exp` work, as the default path's `fused`.
macro_rules! capped_fused_fn {
    ($name:ident, $pass1:ident, $features:literal) => {
        /// # Safety
        /// As `kernels::pass1_capped_fused`, with the target features of this build available.
        #[target_feature(enable = $features)]
        unsafe fn $name<K: KindMarker>(
            p1: P1Args<'_>,
            dcap: *mut f32,
            cap: Cap,
            p2: ChainArgs<'_>,
        ) -> ChunkStats {
            let (src, dst, n, w, q, qa, qb) = p1;
            let (e2, d2, out2, a, b, bq, q2) = p2;
            let ck = CapK::new(cap, dcap);
            // SAFETY: forwarded contract: pass 1 over `n` elements (`dcap` valid for `n`
            // writes, disjoint from the others), and a chain job over the same `n` elements of
            // `e2`, `d2` (reads) and `out2` (writes), disjoint from pass 1's buffers, with the
            // chunk's class weights `w` and the pending row's targets `q2`.
            unsafe {
                let mut job = P2::new_chain::<K>(e2, d2, out2, n, a, b, bq, w, q2, qa, qb);
                let st =
                    $pass1::<K, true, false, true, true>(src, dst, n, w, q, qa, qb, &mut job, &ck);
                job.finish_chain::<K>();
                st
            }
        }
    };
}

capped_fused_fn!(capped_fused, pass1, "avx2,fma");
capped_fused_fn!(capped_fused_evex, pass1_evex, "avx2,fma,avx512f,avx512vl");
