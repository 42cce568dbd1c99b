//! AVX2 + FMA versions of the short-row reductions: eight lanes by column index modulo 8, the
//! partial last vector through masked loads (and stores), lanes combined as the scalar tree.

use super::super::plan::{Kind, KindMarker};
use crate::simd::avx2::hmax;
use std::arch::x86_64::*;

/// The mask of the first `cnt` (0..=8) lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn mask(cnt: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(cnt as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// Lanes `j..j + 8` of `x` (masked lanes past `x.len()` read as 0).
///
/// # Safety
/// `j < x.len()`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load(x: &[f32], j: usize) -> __m256 {
    let n = x.len();
    // SAFETY: `j < n`: either eight in-bounds lanes or a masked load of the `n - j`
    // in-bounds lanes (masked lanes are not accessed).
    unsafe {
        if j + 8 <= n {
            _mm256_loadu_ps(x.as_ptr().add(j))
        } else {
            _mm256_maskload_ps(x.as_ptr().add(j), mask(n - j))
        }
    }
}

/// Calls `f(j, None)` for each whole vector `j..j + 8` of an `n`-long row, then `f(j,
/// Some(mask))` once for a partial last vector (the mask of its `n - j` in-bounds lanes): full
/// vectors without a per-vector bounds branch, the same operations in the same order as one
/// masked loop. `f` loads and stores through [`ld`] and [`st`].
#[inline(always)]
fn each_vector(n: usize, mut f: impl FnMut(usize, Option<__m256i>)) {
    let mut j = 0;
    while j + 8 <= n {
        f(j, None);
        j += 8;
    }
    if j < n {
        f(j, Some(mask_of(n - j)));
    }
}

/// [`mask`] for [`each_vector`] (outside a `target_feature` function: the caller inlines it).
#[inline(always)]
fn mask_of(cnt: usize) -> __m256i {
    // SAFETY: every caller of `each_vector` runs with AVX2 available (the module's contract).
    unsafe { mask(cnt) }
}

/// Eight lanes at `p` (`None`), or the lanes of `mk` with the others 0.
///
/// # Safety
/// AVX2 available; `p` readable for 8 lanes, or for the lanes of `mk`.
#[inline(always)]
unsafe fn ld(p: *const f32, mk: Option<__m256i>) -> __m256 {
    // SAFETY: the caller's contract.
    unsafe {
        match mk {
            None => _mm256_loadu_ps(p),
            Some(mk) => _mm256_maskload_ps(p, mk),
        }
    }
}

/// Stores eight lanes at `p` (`None`), or the lanes of `mk`.
///
/// # Safety
/// AVX2 available; `p` writable for 8 lanes, or for the lanes of `mk`.
#[inline(always)]
unsafe fn st(p: *mut f32, v: __m256, mk: Option<__m256i>) {
    // SAFETY: the caller's contract.
    unsafe {
        match mk {
            None => _mm256_storeu_ps(p, v),
            Some(mk) => _mm256_maskstore_ps(p, mk, v),
        }
    }
}

/// The fixed lane tree `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// # Safety
/// AVX2 + FMA available.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe fn row_max(x: &[f32]) -> (f32, bool) {
    let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
    let (mut m, mut nan) = (ninf, _mm256_setzero_ps());
    let p = x.as_ptr();
    each_vector(x.len(), |j, mk| {
        // SAFETY: `each_vector` passes `j + 8 <= n`, or the mask of the in-bounds lanes.
        let v = unsafe { ld(p.add(j), mk) };
        // The missing lanes of the tail as `-inf`.
        let v = mk.map_or(v, |mk| _mm256_blendv_ps(ninf, v, _mm256_castsi256_ps(mk)));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        m = _mm256_max_ps(v, m);
    });
    (hmax(m), _mm256_movemask_ps(nan) != 0)
}

/// # Safety
/// AVX2 + FMA available; `er` (and `w` when weighted) as long as `o`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe fn grad_row<K: KindMarker>(
    o: &mut [f32],
    er: &[f32],
    w: &[f32],
    a: f32,
    b: f32,
) {
    let n = o.len();
    assert_eq!(er.len(), n);
    if matches!(K::KIND, Kind::Weighted) {
        assert_eq!(w.len(), n);
    }
    let (av, bv) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
    let weighted = !matches!(K::KIND, Kind::Plain);
    let (ep, wp, op) = (er.as_ptr(), w.as_ptr(), o.as_mut_ptr());
    each_vector(n, |j, mk| {
        // SAFETY: `each_vector` passes `j + 8 <= n` or the in-bounds lanes' mask; `er`, `w`
        // (when used) and `o` hold `n` values (asserted above).
        unsafe {
            let v = ld(ep.add(j), mk);
            let g = if weighted {
                _mm256_fnmadd_ps(bv, ld(wp.add(j), mk), _mm256_mul_ps(av, v))
            } else {
                _mm256_fmsub_ps(av, v, bv)
            };
            st(op.add(j), g, mk);
        }
    });
}

/// # Safety
/// AVX2 + FMA available.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe fn row_sum(x: &[f32]) -> f32 {
    let p = x.as_ptr();
    let mut s = _mm256_setzero_ps();
    each_vector(x.len(), |j, mk| {
        // SAFETY: `each_vector` passes `j + 8 <= n`, or the mask of the in-bounds lanes.
        s = _mm256_add_ps(s, unsafe { ld(p.add(j), mk) })
    });
    hsum(s)
}

/// `s'`: the sum of the entries below 1 in two vector accumulators (vectors alternating), as
/// the scalar `lanes_sum_below_one`.
///
/// # Safety
/// AVX2 + FMA available.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe fn row_sum_below_one(x: &[f32]) -> f32 {
    let one = _mm256_set1_ps(1.0);
    let (n, p) = (x.len(), x.as_ptr());
    let below = |v: __m256| _mm256_and_ps(v, _mm256_cmp_ps::<_CMP_LT_OQ>(v, one));
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut j = 0;
    // Pairs of full vectors (vector `k` into `a(k mod 2)`), then a last full vector and the
    // masked tail (masked lanes read as 0, which `below` keeps 0) into the accumulator of
    // their parity: the additions of the scalar version, in its order.
    while j + 16 <= n {
        // SAFETY: `j + 16 <= n`.
        unsafe {
            a0 = _mm256_add_ps(a0, below(_mm256_loadu_ps(p.add(j))));
            a1 = _mm256_add_ps(a1, below(_mm256_loadu_ps(p.add(j + 8))));
        }
        j += 16;
    }
    if j + 8 <= n {
        // SAFETY: `j + 8 <= n`.
        a0 = _mm256_add_ps(a0, below(unsafe { _mm256_loadu_ps(p.add(j)) }));
        j += 8;
        if j < n {
            // SAFETY: `j < n`.
            a1 = _mm256_add_ps(a1, below(unsafe { load(x, j) }));
        }
    } else if j < n {
        // SAFETY: `j < n`.
        a0 = _mm256_add_ps(a0, below(unsafe { load(x, j) }));
    }
    hsum(_mm256_add_ps(a0, a1))
}

/// # Safety
/// AVX2 + FMA available; `d.len() == x.len()`; `w` / `q` (as used by `K`) as long as `x`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe fn row_shift<K: KindMarker>(
    x: &[f32],
    d: &mut [f32],
    mr: f32,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
) -> (f32, f32) {
    let n = x.len();
    assert_eq!(d.len(), n);
    if K::WEIGHTED {
        assert_eq!(w.len(), n);
    }
    if K::PROBS {
        assert_eq!(q.len(), n);
    }
    let (mv, qav, qbv) = (_mm256_set1_ps(mr), _mm256_set1_ps(qa), _mm256_set1_ps(qb));
    let (mut z, mut c) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    // One vector's sums; `live` (the tail only) clears the lanes past the row, where `x = 0`
    // gave `d = -mr`. Full vectors skip the mask: the same results, as one masked loop.
    let mut acc = |dv: __m256, wv: __m256, qv: __m256, live: Option<__m256>| {
        let dv = live.map_or(dv, |l| _mm256_and_ps(dv, l));
        match K::KIND {
            Kind::Plain => z = _mm256_add_ps(z, dv),
            Kind::Weighted => z = _mm256_add_ps(z, _mm256_mul_ps(wv, dv)),
            _ => {
                let mut a = _mm256_fmadd_ps(qav, qv, qbv);
                if matches!(K::KIND, Kind::ProbsWeighted) {
                    a = _mm256_mul_ps(a, wv);
                }
                let a = live.map_or(a, |l| _mm256_and_ps(a, l));
                // `d = 0` terms are 0 even for a non-finite `a` (as the scalar code).
                let nz = _mm256_cmp_ps::<_CMP_NEQ_UQ>(dv, _mm256_setzero_ps());
                z = _mm256_add_ps(z, _mm256_and_ps(_mm256_mul_ps(a, dv), nz));
                c = _mm256_add_ps(c, a);
            }
        }
    };
    let zero = _mm256_setzero_ps();
    let (xp, wp, qp, dp) = (x.as_ptr(), w.as_ptr(), q.as_ptr(), d.as_mut_ptr());
    each_vector(n, |j, mk| {
        // SAFETY: `each_vector` passes `j + 8 <= n` or the in-bounds lanes' mask; `x`, `d`,
        // and `w`, `q` when used, hold `n` values (asserted above).
        unsafe {
            let wv = if K::WEIGHTED { ld(wp.add(j), mk) } else { zero };
            let qv = if K::PROBS { ld(qp.add(j), mk) } else { zero };
            let dv = _mm256_sub_ps(ld(xp.add(j), mk), mv);
            st(dp.add(j), dv, mk);
            acc(dv, wv, qv, mk.map(|mk| _mm256_castsi256_ps(mk)));
        }
    });
    (hsum(z), if K::PROBS { hsum(c) } else { 0.0 })
}
