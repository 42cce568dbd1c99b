//! Run-time SIMD dispatch and a vectorised `exp` for `f32`.
//!
//! Stable Rust only: on `x86_64` the AVX2 + FMA kernels are `#[target_feature(enable =
//! "avx2,fma")]` functions chosen at run time with `is_x86_feature_detected!`; every other
//! machine (and x86 without AVX2/FMA) runs the portable scalar code, which implements the same
//! algorithm. No `target-cpu=native` is needed or used.
//!
//! # `exp` algorithm and error bound
//!
//! `exp(x)` clamps `x` to `[-104, 89]` (NaN passes through the clamp), splits
//! `x = k ln 2 + r` with `k = round(x log2 e)` (the 1.5 * 2^23 rounding trick) and a two-part
//! `ln 2` (Cody-Waite), evaluates `e^r` on `|r| <= 0.3466` with the Cephes degree-7 polynomial
//! (`1 + r + r^2 P5(r)`) in FMA/Horner form, and scales by `2^k` through two exact
//! multiplications by `2^(k >> 1)` and `2^(k - (k >> 1))` built by integer adds into the exponent
//! bits, so that gradual underflow (denormal results) is rounded once and `k = 128` overflows
//! to `+inf` naturally.
//!
//! Bound (checked by `tests/simd_math.rs` against `f64::exp` over a sweep of the whole `f32`
//! range, every float of `[-104, -87]` and `[80, 89]` included): the result is within
//! **2 ulp** of the exact value for normal results (measured maximum 0.99 ulp), and within
//! 1 unit of the denormal spacing `2^-149` for denormal results (measured maximum 0.75). Special values: `exp(-inf) = 0`, `exp(x) = 0` for
//! `x < -103.97`, `exp(+inf) = +inf` and `exp(x) = +inf` for `x > 88.7228`,
//! `exp(NaN) = NaN`, `exp(0) = 1` exactly.

/// Which kernel family runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// Portable scalar code (any target).
    Scalar,
    /// AVX2 + FMA (x86_64 only, detected at run time).
    Avx2Fma,
}

impl SimdLevel {
    /// The best level this machine supports.
    pub fn detect() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return SimdLevel::Avx2Fma;
            }
        }
        SimdLevel::Scalar
    }

    /// Whether this machine can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            SimdLevel::Avx2Fma => SimdLevel::detect() == SimdLevel::Avx2Fma,
        }
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2Fma => "avx2+fma",
        }
    }
}

pub(crate) const EXP_LO: f32 = -104.0;
pub(crate) const EXP_HI: f32 = 89.0;
pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
pub(crate) const LN2_HI: f32 = 0.693_359_4; // 0.693359375, 8 significant bits
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
pub(crate) const P0: f32 = 1.987_569_1e-4;
pub(crate) const P1: f32 = 1.398_199_9e-3;
pub(crate) const P2: f32 = 8.333_452e-3;
pub(crate) const P3: f32 = 4.166_579_6e-2;
pub(crate) const P4: f32 = 0.166_666_66;
pub(crate) const P5: f32 = 0.5;

/// `ln 2` rounded to `f32` (the one-step reduction of [`exp_nonpos_f32`]).
pub(crate) const LN2_F32: f32 = std::f32::consts::LN_2;
// Degree-5 polynomial `1 + Q1 r + ... + Q5 r^5` for `exp(r)` on `|r| <= ln 2 / 2`, fitted for
// the smallest maximum relative error (9.2e-8 with exact coefficients) with `p(0) = 1` kept.
pub(crate) const Q1: f32 = 0.999_999_7;
pub(crate) const Q2: f32 = 0.499_991_48;
pub(crate) const Q3: f32 = 0.166_676_39;
pub(crate) const Q4: f32 = 0.041_898_16;
pub(crate) const Q5: f32 = 0.008_290_272;
/// Below this argument [`exp_nonpos_f32`] returns 0.
pub const EXP_NONPOS_FLUSH: f32 = -87.0;

/// `exp(x)` for `x <= 0` (the softmax kernel's arguments `z - max`), cheaper than [`exp_f32`]:
/// no clamps, a one-step reduction `r = x - k ln 2` with `ln 2` rounded to `f32`, a degree-5
/// polynomial in Horner form and `2^k` added into the exponent bits: seven fused multiply-adds
/// in all, the cost that bounds the cross-entropy kernel.
///
/// Bound (tested in `tests/simd_math.rs` over every 29th `f32` of `[-87, 0]`): relative error at
/// most **4e-7** for `-87 <= x <= 0` (measured 3.8e-7, about 4.7 ulp, near -87, where the
/// rounding of `ln 2` times `k = 125` dominates; at most **2.5 ulp** on `[-10, 0]`, measured
/// 2.1), exactly 1 at 0; `x < -87` (including `-inf`) gives exactly 0, an absolute error below
/// `1.7e-38` (`exp(-87)`); NaN gives NaN. Positive `x` is outside the contract. The
/// cross-entropy tolerance (`TOL-2`, relative 4e-6) leaves a factor of ten over this bound.
#[inline]
pub fn exp_nonpos_f32(x: f32) -> f32 {
    if x < EXP_NONPOS_FLUSH {
        return 0.0;
    }
    let j = x.mul_add(LOG2E, ROUND_MAGIC);
    let kf = j - ROUND_MAGIC;
    let r = kf.mul_add(-LN2_F32, x);
    let mut p = Q5;
    p = p.mul_add(r, Q4);
    p = p.mul_add(r, Q3);
    p = p.mul_add(r, Q2);
    p = p.mul_add(r, Q1);
    p = p.mul_add(r, 1.0);
    let k = j.to_bits() << 23;
    f32::from_bits(p.to_bits().wrapping_add(k))
}

/// `out[i] = exp(x[i])` for `x[i] <= 0` with [`exp_nonpos_f32`]'s contract, on a chosen level.
pub fn exp_nonpos_slice_with(level: SimdLevel, x: &[f32], out: &mut [f32]) {
    let n = x.len().min(out.len());
    let (x, out) = (&x[..n], &mut out[..n]);
    #[cfg(target_arch = "x86_64")]
    {
        if level == SimdLevel::Avx2Fma && level.is_available() {
            // SAFETY: AVX2 and FMA were detected on this CPU just above.
            unsafe { avx2::exp_nonpos_slice(x, out) };
            return;
        }
    }
    let _ = level;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = exp_nonpos_f32(v);
    }
}

/// Scalar `exp` with the same algorithm (and the same results) as the vector kernel.
///
/// See the module documentation for the error bound.
#[inline]
pub fn exp_f32(x: f32) -> f32 {
    // `f32::min`/`max` return the non-NaN operand, so keep NaN explicitly.
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(EXP_LO, EXP_HI);
    let j = x.mul_add(LOG2E, ROUND_MAGIC);
    let k = (j.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let kf = j - ROUND_MAGIC;
    let r = kf.mul_add(-LN2_HI, x);
    let r = kf.mul_add(-LN2_LO, r);
    let mut p = P0;
    p = p.mul_add(r, P1);
    p = p.mul_add(r, P2);
    p = p.mul_add(r, P3);
    p = p.mul_add(r, P4);
    p = p.mul_add(r, P5);
    let y = p.mul_add(r * r, r) + 1.0;
    let k1 = k >> 1;
    let k2 = k - k1;
    let s1 = f32::from_bits(((k1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((k2 + 127) as u32) << 23);
    (y * s1) * s2
}

/// `out[i] = exp(x[i])` on the best available level; `x` and `out` must have equal lengths
/// (extra elements of the longer one are left alone).
pub fn exp_slice(x: &[f32], out: &mut [f32]) {
    exp_slice_with(SimdLevel::detect(), x, out);
}

/// As [`exp_slice`] on a chosen level (falls back to scalar when `level` is not available).
pub fn exp_slice_with(level: SimdLevel, x: &[f32], out: &mut [f32]) {
    let n = x.len().min(out.len());
    let (x, out) = (&x[..n], &mut out[..n]);
    #[cfg(target_arch = "x86_64")]
    {
        if level == SimdLevel::Avx2Fma && level.is_available() {
            // SAFETY: AVX2 and FMA were detected on this CPU just above.
            unsafe { avx2::exp_slice(x, out) };
            return;
        }
    }
    let _ = level;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = exp_f32(v);
    }
}

/// AVX2 + FMA kernels (x86_64 only).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// Vector `exp` of eight lanes; see the module documentation.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp8(x: __m256) -> __m256 {
        // Operand order keeps NaN: min/max return the second operand when either is NaN.
        let x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), x);
        let x = _mm256_max_ps(_mm256_set1_ps(EXP_LO), x);
        let magic = _mm256_set1_ps(ROUND_MAGIC);
        let j = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), magic);
        let k = _mm256_sub_epi32(_mm256_castps_si256(j), _mm256_castps_si256(magic));
        let kf = _mm256_sub_ps(j, magic);
        let r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(P0);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
        let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
        let y = _mm256_add_ps(y, _mm256_set1_ps(1.0));
        let k1 = _mm256_srai_epi32::<1>(k);
        let k2 = _mm256_sub_epi32(k, k1);
        let bias = _mm256_set1_epi32(127);
        let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k1, bias)));
        let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k2, bias)));
        _mm256_mul_ps(_mm256_mul_ps(y, s1), s2)
    }

    /// Vector [`exp_nonpos_f32`] (same results lane by lane).
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

    /// `out = exp_nonpos(x)` for slices of equal length.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn exp_nonpos_slice(x: &[f32], out: &mut [f32]) {
        let n = x.len().min(out.len());
        let mut i = 0;
        while i + 8 <= n {
            store(out, i, exp8_nonpos(load(x, i)));
            i += 8;
        }
        while i < n {
            out[i] = exp_nonpos_f32(x[i]);
            i += 1;
        }
    }

    /// Loads eight floats from `s[i..i + 8]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn load(s: &[f32], i: usize) -> __m256 {
        let v = &s[i..i + 8];
        // SAFETY: `v` holds exactly eight readable floats (bounds-checked slice above).
        unsafe { _mm256_loadu_ps(v.as_ptr()) }
    }

    /// Stores eight floats into `s[i..i + 8]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn store(s: &mut [f32], i: usize, v: __m256) {
        let d = &mut s[i..i + 8];
        // SAFETY: `d` holds exactly eight writable floats (bounds-checked slice above).
        unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) }
    }

    /// Horizontal sum of eight lanes in `f64` (fixed order).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn hsum_f64(v: __m256) -> f64 {
        let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
        let s = _mm256_add_pd(lo, hi);
        let s2 = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd::<1>(s));
        let s1 = _mm_add_sd(s2, _mm_unpackhi_pd(s2, s2));
        _mm_cvtsd_f64(s1)
    }

    /// Horizontal maximum of eight lanes (NaN lanes may or may not survive; callers detect NaN
    /// through the sums).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
        _mm_cvtss_f32(m)
    }

    /// `out = exp(x)` for slices of equal length.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn exp_slice(x: &[f32], out: &mut [f32]) {
        let n = x.len().min(out.len());
        let mut i = 0;
        while i + 8 <= n {
            store(out, i, exp8(load(x, i)));
            i += 8;
        }
        while i < n {
            out[i] = exp_f32(x[i]);
            i += 1;
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::arch::x86_64::*;

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
                let (a, b) = avx2::exp8x2_nonpos(x0, x1);
                (a, b, avx2::exp8_nonpos(x0), avx2::exp8_nonpos(x1))
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
}
