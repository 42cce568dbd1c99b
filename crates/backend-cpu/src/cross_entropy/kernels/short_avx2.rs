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
    let n = x.len();
    let mut step = |v: __m256| {
        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        m = _mm256_max_ps(v, m);
    };
    // Full vectors without a per-vector bounds branch, then the masked tail (its missing
    // lanes as `-inf`): the same operations in the same order as one masked loop.
    let mut j = 0;
    while j + 8 <= n {
        // SAFETY: `j + 8 <= n`.
        step(unsafe { _mm256_loadu_ps(x.as_ptr().add(j)) });
        j += 8;
    }
    if j < n {
        // SAFETY: `j < n`.
        let v = unsafe { load(x, j) };
        step(_mm256_blendv_ps(ninf, v, _mm256_castsi256_ps(mask(n - j))));
    }
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
    let g = |v: __m256, wv: __m256| {
        if matches!(K::KIND, Kind::Plain) {
            _mm256_fmsub_ps(av, v, bv)
        } else {
            _mm256_fnmadd_ps(bv, wv, _mm256_mul_ps(av, v))
        }
    };
    let weighted = !matches!(K::KIND, Kind::Plain);
    let (ep, wp, op) = (er.as_ptr(), w.as_ptr(), o.as_mut_ptr());
    // Full vectors, then the masked tail (as `row_max`).
    let mut j = 0;
    while j + 8 <= n {
        // SAFETY: `j + 8 <= n`, and `er`, `w` (when used) and `o` hold `n` values (asserted
        // above).
        unsafe {
            let wv = if weighted {
                _mm256_loadu_ps(wp.add(j))
            } else {
                _mm256_setzero_ps()
            };
            _mm256_storeu_ps(op.add(j), g(_mm256_loadu_ps(ep.add(j)), wv));
        }
        j += 8;
    }
    if j < n {
        // SAFETY: `j < n`: masked loads and a masked store of the `n - j` in-bounds lanes.
        unsafe {
            let wv = if weighted {
                load(w, j)
            } else {
                _mm256_setzero_ps()
            };
            _mm256_maskstore_ps(op.add(j), mask(n - j), g(load(er, j), wv));
        }
    }
}

/// # Safety
/// AVX2 + FMA available.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe fn row_sum(x: &[f32]) -> f32 {
    let (n, p) = (x.len(), x.as_ptr());
    let mut s = _mm256_setzero_ps();
    let mut j = 0;
    // Full vectors without the per-vector bounds branch of `load`, then the masked tail:
    // the same additions in the same order.
    while j + 8 <= n {
        // SAFETY: `j + 8 <= n`.
        s = _mm256_add_ps(s, unsafe { _mm256_loadu_ps(p.add(j)) });
        j += 8;
    }
    if j < n {
        // SAFETY: `j < n`.
        s = _mm256_add_ps(s, unsafe { load(x, j) });
    }
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
    let mut j = 0;
    while j + 8 <= n {
        // SAFETY: `j + 8 <= n`; `x`, `d`, and `w`, `q` when used, hold `n` values (asserted
        // above).
        unsafe {
            let wv = if K::WEIGHTED {
                _mm256_loadu_ps(wp.add(j))
            } else {
                zero
            };
            let qv = if K::PROBS {
                _mm256_loadu_ps(qp.add(j))
            } else {
                zero
            };
            let dv = _mm256_sub_ps(_mm256_loadu_ps(xp.add(j)), mv);
            _mm256_storeu_ps(dp.add(j), dv);
            acc(dv, wv, qv, None);
        }
        j += 8;
    }
    if j < n {
        // SAFETY: `j < n`: masked loads and a masked store of the `n - j` in-bounds lanes.
        unsafe {
            let wv = if K::WEIGHTED { load(w, j) } else { zero };
            let qv = if K::PROBS { load(q, j) } else { zero };
            let dv = _mm256_sub_ps(load(x, j), mv);
            _mm256_maskstore_ps(dp.add(j), mask(n - j), dv);
            acc(dv, wv, qv, Some(_mm256_castsi256_ps(mask(n - j))));
        }
    }
    (hsum(z), if K::PROBS { hsum(c) } else { 0.0 })
}
