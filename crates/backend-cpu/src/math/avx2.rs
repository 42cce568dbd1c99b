//! AVX2 + FMA twins of [`super::exp_nonpos_f32`]: the same contract and the same bits lane by
//! lane.

use super::{EXP_NONPOS_FLUSH, LN2_F32, LOG2E, Q1, Q2, Q3, Q4, Q5, ROUND_MAGIC};
use std::arch::x86_64::*;

/// Vector [`super::exp_nonpos_f32`] (same results lane by lane).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp8_nonpos(x: __m256) -> __m256 {
    let magic = _mm256_set1_ps(ROUND_MAGIC);
    let j = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), magic);
    let kf = _mm256_sub_ps(j, magic);
    let r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_F32), x);
    let mut p = _mm256_set1_ps(Q5);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(Q4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(Q3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(Q2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(Q1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
    // bits(j) = bits(magic) + k and bits(magic) << 23 == 0, so this is k << 23.
    let k = _mm256_slli_epi32::<23>(_mm256_castps_si256(j));
    let e = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), k));
    // x < -87 (and -inf) -> 0; NaN compares false and stays NaN.
    let flush = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXP_NONPOS_FLUSH));
    _mm256_andnot_ps(flush, e)
}

/// [`exp8_nonpos`] of two vectors, the two evaluations interleaved step by step (same
/// results lane by lane). One vector's chain of ~8 dependent FMAs is long enough that the
/// out-of-order window holds only a few iterations of a one-vector loop; two independent
/// chains side by side keep both FMA pipes busy.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp8x2_nonpos(x0: __m256, x1: __m256) -> (__m256, __m256) {
    let magic = _mm256_set1_ps(ROUND_MAGIC);
    let log2e = _mm256_set1_ps(LOG2E);
    let j0 = _mm256_fmadd_ps(x0, log2e, magic);
    let j1 = _mm256_fmadd_ps(x1, log2e, magic);
    let k0 = _mm256_sub_ps(j0, magic);
    let k1 = _mm256_sub_ps(j1, magic);
    let ln2 = _mm256_set1_ps(LN2_F32);
    let r0 = _mm256_fnmadd_ps(k0, ln2, x0);
    let r1 = _mm256_fnmadd_ps(k1, ln2, x1);
    let q5 = _mm256_set1_ps(Q5);
    let (mut p0, mut p1) = (q5, q5);
    for c in [Q4, Q3, Q2, Q1, 1.0] {
        let cv = _mm256_set1_ps(c);
        p0 = _mm256_fmadd_ps(p0, r0, cv);
        p1 = _mm256_fmadd_ps(p1, r1, cv);
    }
    let e0 = _mm256_add_epi32(
        _mm256_castps_si256(p0),
        _mm256_slli_epi32::<23>(_mm256_castps_si256(j0)),
    );
    let e1 = _mm256_add_epi32(
        _mm256_castps_si256(p1),
        _mm256_slli_epi32::<23>(_mm256_castps_si256(j1)),
    );
    let flush = _mm256_set1_ps(EXP_NONPOS_FLUSH);
    let f0 = _mm256_cmp_ps::<_CMP_LT_OQ>(x0, flush);
    let f1 = _mm256_cmp_ps::<_CMP_LT_OQ>(x1, flush);
    (
        _mm256_andnot_ps(f0, _mm256_castsi256_ps(e0)),
        _mm256_andnot_ps(f1, _mm256_castsi256_ps(e1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimdLevel;
    use crate::math::exp_nonpos_f32;

    /// The interleaved two-vector `exp` gives the same bits as the one-vector kernel, over
    /// `[-100, 0]` in steps of ~1e-3, `-inf` and NaN.
    #[test]
    fn exp8x2_nonpos_matches_exp8_nonpos_bitwise() {
        assert!(
            SimdLevel::Avx2Fma.is_available(),
            "this test needs AVX2 + FMA (the CI and development machines have it)"
        );
        let mut xs: Vec<f32> = (0..100_000).map(|i| -(i as f32) * 1.000_1e-3).collect();
        xs.extend([
            f32::NEG_INFINITY,
            f32::NAN,
            -0.0,
            -87.0,
            -87.000_01,
            -86.999_99,
        ]);
        while !xs.len().is_multiple_of(16) {
            xs.push(-1.0);
        }
        for v in xs.chunks_exact(16) {
            // SAFETY: AVX2 + FMA are available (asserted above); each load reads 8 of the 16
            // floats of `v`.
            let (a, b, e0, e1) = unsafe {
                let x0 = _mm256_loadu_ps(v.as_ptr());
                let x1 = _mm256_loadu_ps(v.as_ptr().add(8));
                let (a, b) = exp8x2_nonpos(x0, x1);
                (a, b, exp8_nonpos(x0), exp8_nonpos(x1))
            };
            let bits = |m: __m256| {
                let mut o = [0f32; 8];
                // SAFETY: `o` holds 8 writable floats; AVX is available.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), m) };
                o.map(f32::to_bits)
            };
            assert_eq!(bits(a), bits(e0), "inputs {:?}", &v[..8]);
            assert_eq!(bits(b), bits(e1), "inputs {:?}", &v[8..]);
        }
    }

    /// The vector `exp` gives the scalar's bits over every 29th `f32` of `[-87, 0]` (about 39
    /// million values) and the flush region, through every length of partial tail.
    #[test]
    fn exp8_nonpos_matches_scalar_bitwise() {
        assert!(
            SimdLevel::Avx2Fma.is_available(),
            "this test needs AVX2 + FMA (the CI and development machines have it)"
        );
        let lo = (-87.0f32).to_bits();
        let hi = (-0.0f32).to_bits();
        let mut xs: Vec<f32> = (hi..=lo).step_by(29).map(f32::from_bits).collect();
        xs.extend([
            0.0,
            -0.0,
            -87.0,
            -87.000_01,
            -100.0,
            -1e30,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN,
        ]);
        while !xs.len().is_multiple_of(8) {
            xs.push(-3.0);
        }
        for v in xs.chunks_exact(8) {
            // SAFETY: AVX2 + FMA are available (asserted above); the load reads the 8 floats
            // of `v` and the store writes the 8 floats of `o`.
            let got = unsafe {
                let mut o = [0f32; 8];
                _mm256_storeu_ps(o.as_mut_ptr(), exp8_nonpos(_mm256_loadu_ps(v.as_ptr())));
                o
            };
            for (&x, &g) in v.iter().zip(&got) {
                let want = exp_nonpos_f32(x);
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "scalar {want:e} vs avx2 {g:e} at {x:e}"
                );
            }
        }
    }
}
