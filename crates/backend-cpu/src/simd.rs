//! Run-time SIMD dispatch: the kernel families ([`SimdLevel`]) and the AVX2 helpers shared by
//! the vector kernels.
//!
//! Stable Rust only: on `x86_64` the AVX2 + FMA kernels are `#[target_feature(enable =
//! "avx2,fma")]` functions chosen at run time from the backend's level
//! ([`crate::CpuBackend::simd_level`], by default [`SimdLevel::detect`]); every other machine
//! (and x86 without AVX2/FMA) runs the portable scalar code, which implements the same
//! algorithm. No `target-cpu=native` is needed or used.
//!
//! [`SimdLevel::Avx512`] adds a third build of the kernels written as plain loops over arrays
//! (the box losses): the same code compiled with AVX-512 F/VL/DQ/BW, sixteen lanes and 32
//! vector registers. It performs the same IEEE operations, so its results are bit-identical
//! to the other builds. The kernels written with AVX2 intrinsics (cross-entropy and the other
//! families) run their AVX2 build on it, except the cross-entropy's long-row pass 1 (alone,
//! with the previous row's pass 2 inside it, and capped for `CE-10`), which has a second build
//! of the same intrinsics with AVX-512 VL enabled (EVEX encoding, 32 registers: the same
//! operations, so the same bits; paired on a Zen 4, 4-13 % less time than the AVX2 build).

/// Which kernel family runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// Portable scalar code (any target).
    Scalar,
    /// AVX2 + FMA (x86_64 only, detected at run time).
    Avx2Fma,
    /// AVX-512 F, VL, DQ and BW with AVX2 + FMA (x86_64 only, detected at run time). Kernels
    /// without an AVX-512 build run their AVX2 one.
    Avx512,
}

impl SimdLevel {
    /// The best level this machine supports.
    pub fn detect() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512dq")
                    && std::is_x86_feature_detected!("avx512bw")
                {
                    return SimdLevel::Avx512;
                }
                return SimdLevel::Avx2Fma;
            }
        }
        SimdLevel::Scalar
    }

    /// Whether this machine can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            SimdLevel::Avx2Fma => SimdLevel::detect().avx2(),
            SimdLevel::Avx512 => SimdLevel::detect() == SimdLevel::Avx512,
        }
    }

    /// Whether `self` includes AVX2 + FMA (the AVX2 kernels may run on it).
    pub fn avx2(self) -> bool {
        matches!(self, SimdLevel::Avx2Fma | SimdLevel::Avx512)
    }

    /// Every level this machine can run, portable first.
    pub fn available() -> Vec<SimdLevel> {
        [SimdLevel::Scalar, SimdLevel::Avx2Fma, SimdLevel::Avx512]
            .into_iter()
            .filter(|l| l.is_available())
            .collect()
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2Fma => "avx2+fma",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

/// AVX2 helpers (x86_64 only).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

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
}
