//! The vectorised `exp` against `f64::exp` over the whole `f32` range, with the bounds stated
//! in `smoothloss_cpu::simd`'s documentation:
//!
//! - `exp_f32` / `exp_slice_with`: at most 2 ulp for normal results, at most 1 unit of the
//!   denormal spacing `2^-149` for denormal results; 0 below -103.97, +inf above 88.7228,
//!   NaN for NaN, exactly 1 at 0;
//! - `exp_nonpos_f32` / `exp_nonpos_slice_with` (arguments `<= 0`): relative error at most
//!   4e-7 on `[-87, 0]` and at most 2.5 ulp on `[-10, 0]`, exactly 1 at 0, exactly 0 below -87
//!   and for `-inf`, NaN for NaN.
//!
//! The scalar and AVX2 + FMA versions must agree bit for bit (same algorithm, fused
//! multiply-adds in both).

use smoothloss_cpu::simd::{
    EXP_NONPOS_FLUSH, SimdLevel, exp_f32, exp_nonpos_f32, exp_nonpos_slice_with, exp_slice_with,
};

const DENORM: f64 = 1.401_298_464_324_817e-45; // 2^-149

/// Error of `got` against the exact `want` in ulp of the f32 result format at `want` (the
/// denormal spacing below the normal range). `None` when `got` is not acceptable as a special
/// value.
fn ulp_error(got: f32, want: f64) -> f64 {
    if want.is_nan() {
        return if got.is_nan() { 0.0 } else { f64::INFINITY };
    }
    if got.is_nan() {
        return f64::INFINITY;
    }
    let maxf = f64::from(f32::MAX);
    if got.is_infinite() {
        // Acceptable only where the exact value is at or above the largest finite float's
        // rounding boundary, within the stated 2 ulp.
        let ulp_max = 2f64.powi(104);
        return if want >= maxf - ulp_max {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let g = f64::from(got);
    if want > maxf {
        return (want - g) / 2f64.powi(104);
    }
    let w32 = want as f32;
    let ulp = if w32 == 0.0 || w32.abs() < f32::MIN_POSITIVE {
        DENORM
    } else {
        let b = w32.to_bits();
        f64::from(f32::from_bits(b + 1)) - f64::from(w32)
    };
    (g - want).abs() / ulp
}

/// All f32 bit patterns with a stride, plus every float of some intervals.
fn inputs() -> Vec<f32> {
    let mut v: Vec<f32> = (0u32..=u32::MAX / 613)
        .map(|k| f32::from_bits(k * 613))
        .collect();
    let dense = |lo: f32, hi: f32, v: &mut Vec<f32>| {
        let mut x = lo;
        while x <= hi {
            v.push(x);
            x = if x < 0.0 {
                f32::from_bits(x.to_bits() - 1)
            } else {
                f32::from_bits(x.to_bits() + 1)
            };
        }
    };
    // Every float in the underflow range (denormal results and the flush to 0) ...
    dense(-104.5, -86.5, &mut v);
    // ... and in the overflow range.
    dense(85.0, 89.5, &mut v);
    v.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        88.722_83,
        88.722_84,
        -103.972_08,
        -103.972_09,
        -87.336_55,
        1e30,
        -1e30,
    ]);
    v
}

#[test]
fn exp_within_two_ulp_over_the_whole_range() {
    let xs = inputs();
    assert!(xs.len() > 9_000_000, "{} inputs", xs.len());
    let mut worst_normal = (0.0f64, 0.0f32);
    let mut worst_denormal = (0.0f64, 0.0f32);
    let mut scalar = vec![0.0f32; xs.len()];
    exp_slice_with(SimdLevel::Scalar, &xs, &mut scalar);
    for (&x, &got) in xs.iter().zip(&scalar) {
        assert_eq!(
            got.to_bits(),
            exp_f32(x).to_bits(),
            "slice vs scalar at {x:e}"
        );
        let want = f64::from(x).exp();
        let e = ulp_error(got, want);
        let denormal_result = want < f64::from(f32::MIN_POSITIVE);
        let slot = if denormal_result {
            &mut worst_denormal
        } else {
            &mut worst_normal
        };
        if e > slot.0 || e.is_nan() {
            *slot = (e, x);
        }
    }
    println!("exp: worst normal {worst_normal:?}, worst denormal {worst_denormal:?}");
    assert!(worst_normal.0 <= 2.0, "normal results: {worst_normal:?}");
    assert!(
        worst_denormal.0 <= 1.0,
        "denormal results: {worst_denormal:?}"
    );
    if SimdLevel::Avx2Fma.is_available() {
        let mut vec = vec![0.0f32; xs.len()];
        exp_slice_with(SimdLevel::Avx2Fma, &xs, &mut vec);
        for ((&x, &a), &b) in xs.iter().zip(&scalar).zip(&vec) {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "scalar {a:e} vs avx2 {b:e} at {x:e}"
            );
        }
    }
}

#[test]
fn exp_special_values() {
    for level in [SimdLevel::Scalar, SimdLevel::Avx2Fma] {
        let xs = [
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            0.0,
            -0.0,
            -103.98,
            -200.0,
            88.73,
            100.0,
            f32::MAX,
            f32::MIN,
            1.0,
            -1.0,
            88.72,
        ];
        let mut out = [0.0f32; 14];
        exp_slice_with(level, &xs, &mut out);
        assert_eq!(out[0], 0.0, "{level:?}");
        assert_eq!(out[1], f32::INFINITY);
        assert!(out[2].is_nan());
        assert_eq!(out[3], 1.0);
        assert_eq!(out[4], 1.0);
        assert_eq!(out[5], 0.0);
        assert_eq!(out[6], 0.0);
        assert_eq!(out[7], f32::INFINITY);
        assert_eq!(out[8], f32::INFINITY);
        assert_eq!(out[9], f32::INFINITY);
        assert_eq!(out[10], 0.0);
        assert!(ulp_error(out[11], 1f64.exp()) <= 1.0);
        assert!(ulp_error(out[12], (-1f64).exp()) <= 1.0);
        assert!(out[13].is_finite() && out[13] > 3.3e38);
        // A denormal result is really produced (no flush to zero) ...
        let mut d = [0.0f32];
        exp_slice_with(level, &[-95.0], &mut d);
        assert!(d[0] > 0.0 && d[0] < f32::MIN_POSITIVE, "{d:?}");
    }
}

#[test]
fn exp_nonpos_within_its_bound() {
    // Every 29th float pattern of [-87, 0] (about 39 million), plus the flush region.
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
    let mut scalar = vec![0.0f32; xs.len()];
    exp_nonpos_slice_with(SimdLevel::Scalar, &xs, &mut scalar);
    let mut worst = (0.0f64, 0.0f32);
    let mut worst_rel = (0.0f64, 0.0f32);
    for (&x, &got) in xs.iter().zip(&scalar) {
        assert_eq!(got.to_bits(), exp_nonpos_f32(x).to_bits());
        if x.is_nan() {
            assert!(got.is_nan());
            continue;
        }
        if x < EXP_NONPOS_FLUSH {
            assert_eq!(got, 0.0, "flush at {x:e}");
            continue;
        }
        let want = f64::from(x).exp();
        let rel = (f64::from(got) - want).abs() / want;
        if rel > worst_rel.0 || rel.is_nan() {
            worst_rel = (rel, x);
        }
        if x >= -10.0 {
            let e = ulp_error(got, want);
            if e > worst.0 || e.is_nan() {
                worst = (e, x);
            }
        }
    }
    println!("exp_nonpos: worst relative {worst_rel:?}, worst ulp on [-10, 0] {worst:?}");
    assert!(worst_rel.0 <= 4e-7, "{worst_rel:?}");
    assert!(worst.0 <= 2.5, "{worst:?}");
    assert_eq!(exp_nonpos_f32(0.0), 1.0);
    if SimdLevel::Avx2Fma.is_available() {
        let mut vec = vec![0.0f32; xs.len()];
        exp_nonpos_slice_with(SimdLevel::Avx2Fma, &xs, &mut vec);
        for ((&x, &a), &b) in xs.iter().zip(&scalar).zip(&vec) {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "scalar {a:e} vs avx2 {b:e} at {x:e}"
            );
        }
    }
}

#[test]
fn slices_of_any_length() {
    for n in 0..40 {
        let xs: Vec<f32> = (0..n).map(|i| -(i as f32) * 0.7).collect();
        for level in [SimdLevel::Scalar, SimdLevel::Avx2Fma] {
            let mut a = vec![-1.0f32; n];
            exp_slice_with(level, &xs, &mut a);
            let mut b = vec![-1.0f32; n];
            exp_nonpos_slice_with(level, &xs, &mut b);
            for i in 0..n {
                let want = f64::from(xs[i]).exp();
                assert!(ulp_error(a[i], want) <= 2.0, "n {n} i {i}");
                assert!(ulp_error(b[i], want) <= 2.5, "n {n} i {i}");
            }
        }
    }
}
