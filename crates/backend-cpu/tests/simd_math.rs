//! The cross-entropy `exp` (`smoothloss_cpu::math::exp_nonpos_f32`, arguments `<= 0`) against
//! `f64::exp`, with the bound stated in its documentation: relative error at most 4e-7 on
//! `[-87, 0]` and at most 2.5 ulp on `[-10, 0]`, exactly 1 at 0, exactly 0 below -87 and for
//! `-inf`, NaN for NaN.
//!
//! That its AVX2 + FMA twins give the same bits is checked by the unit tests of
//! `src/math/avx2.rs`.

use smoothloss_cpu::math::{EXP_NONPOS_FLUSH, exp_nonpos_f32};

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
    let scalar: Vec<f32> = xs.iter().map(|&x| exp_nonpos_f32(x)).collect();
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
}
