//! The logit softcap of one row (`CE-10`) in `f32`: `z' = cap tanh(z / cap)` and its derivative
//! `1 - tanh^2`, from one `exp` per logit (the crate's `exp`, AVX2 or portable, the same bits):
//! with `e = exp(-2 |z| / cap)`, `tanh(|z| / cap) = (1 - e) / (1 + e)` and
//! `1 - tanh^2 = 4 e / (1 + e)^2` (no cancellation where `tanh` nears 1). Absolute error of
//! `z'` about `2^-22 cap` (the `exp`'s relative error and the rounding of `1 - e`), a few
//! `f32` ulps of `cap`; `+-inf` give `+-cap` and derivative 0; NaN stays NaN.

use crate::SimdLevel;
use crate::math::exp_nonpos_f32;

/// `(z', dz'/dz)` of one logit, `k = 2 / cap`.
#[inline(always)]
fn cap_one(z: f32, capf: f32, k: f32) -> (f32, f32) {
    let e = exp_nonpos_f32(-(z.abs() * k));
    let ope = 1.0 + e;
    let t = (1.0 - e) / ope;
    ((capf * t).copysign(z), 4.0 * e / (ope * ope))
}

/// Writes the capped row into `capped` and the derivatives into `dcap` (both `z.len()` long).
pub(super) fn softcap_row(
    level: SimdLevel,
    z: &[f32],
    cap: f64,
    capped: &mut [f32],
    dcap: &mut [f32],
) {
    let (capf, k) = (cap as f32, (2.0 / cap) as f32);
    let n = z.len();
    let (capped, dcap) = (&mut capped[..n], &mut dcap[..n]);
    #[cfg(target_arch = "x86_64")]
    if level == SimdLevel::Avx2Fma {
        // SAFETY: `level` is only `Avx2Fma` when AVX2 and FMA were detected on this CPU.
        unsafe { avx2(z, capf, k, capped, dcap) };
        return;
    }
    let _ = level;
    for ((o, d), &x) in capped.iter_mut().zip(dcap.iter_mut()).zip(z) {
        (*o, *d) = cap_one(x, capf, k);
    }
}

/// [`softcap_row`] with AVX2 + FMA: eight logits at a time, the same formula lane by lane
/// (the vector `exp` gives the scalar's bits), the tail through the scalar formula.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(z: &[f32], capf: f32, k: f32, capped: &mut [f32], dcap: &mut [f32]) {
    use crate::math::avx2::exp8_nonpos;
    use crate::simd::avx2::{load, store};
    use std::arch::x86_64::*;
    let n = z.len();
    let nv = n & !7;
    let sign = _mm256_set1_ps(-0.0);
    let (one, four) = (_mm256_set1_ps(1.0), _mm256_set1_ps(4.0));
    let (vk, vcap) = (_mm256_set1_ps(k), _mm256_set1_ps(capf));
    let mut j = 0;
    while j < nv {
        let x = load(z, j);
        // -(|x| k): the sign bit set (NaN stays NaN).
        let a = _mm256_or_ps(_mm256_mul_ps(_mm256_andnot_ps(sign, x), vk), sign);
        let e = exp8_nonpos(a);
        let ope = _mm256_add_ps(one, e);
        let t = _mm256_div_ps(_mm256_sub_ps(one, e), ope);
        let c = _mm256_or_ps(_mm256_mul_ps(vcap, t), _mm256_and_ps(sign, x));
        store(capped, j, c);
        store(
            dcap,
            j,
            _mm256_div_ps(_mm256_mul_ps(four, e), _mm256_mul_ps(ope, ope)),
        );
        j += 8;
    }
    for i in nv..n {
        (capped[i], dcap[i]) = cap_one(z[i], capf, k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scalar and AVX2 give the same bits (every tail length), and both stay within
    /// `4 * 2^-24 cap` of `f64`'s `cap tanh(z / cap)` (derivative within `2^-21` absolute);
    /// `+-inf` give `+-cap`, derivative 0; NaN stays NaN.
    #[test]
    fn softcap_matches_f64_tanh_and_the_vector_path_bit_for_bit() {
        let mut z: Vec<f32> = (0..4001).map(|k| (k as f32 - 2000.0) * 0.037).collect();
        z.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -0.0,
            1e-30,
            300.0,
            -1e30,
        ]);
        for cap in [1.0, 5.0, 30.0] {
            let n = z.len();
            let (mut c1, mut d1) = (vec![0.0; n], vec![0.0; n]);
            softcap_row(SimdLevel::Scalar, &z, cap, &mut c1, &mut d1);
            for (k, &x) in z.iter().enumerate() {
                let t = (f64::from(x) / cap).tanh();
                if x.is_nan() {
                    assert!(c1[k].is_nan() && d1[k].is_nan());
                    continue;
                }
                assert!(
                    (f64::from(c1[k]) - cap * t).abs() <= 4.0 * cap / 16_777_216.0,
                    "{x}: {} vs {}",
                    c1[k],
                    cap * t
                );
                assert!(
                    (f64::from(d1[k]) - (1.0 - t * t)).abs() <= 1.0 / 2_097_152.0,
                    "{x}"
                );
            }
            assert_eq!((c1[4001], d1[4001]), (cap as f32, 0.0));
            assert_eq!((c1[4002], d1[4002]), (-cap as f32, 0.0));
            if SimdLevel::Avx2Fma.is_available() {
                for len in [n, n - 1, n - 3, 7, 9] {
                    let (mut c2, mut d2) = (vec![0.0; len], vec![0.0; len]);
                    softcap_row(SimdLevel::Avx2Fma, &z[..len], cap, &mut c2, &mut d2);
                    for k in 0..len {
                        assert_eq!(c2[k].to_bits(), c1[k].to_bits(), "{cap} {k}");
                        assert_eq!(d2[k].to_bits(), d1[k].to_bits(), "{cap} {k}");
                    }
                }
            }
        }
    }
}
