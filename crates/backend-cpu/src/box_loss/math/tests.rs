//! Error bounds of the box kernels' own elementary functions, against `f64`.

use super::prim::expm1_f32;

/// `expm1_f32`: relative error at most 4e-7 over every 97th `f32` of `[-104, 88.7]` (both
/// signs, tiny arguments included), exact limits outside.
#[test]
fn expm1_relative_error_bound() {
    let mut worst = (0.0f64, 0.0f32);
    let mut check = |x: f32| {
        let want = f64::from(x).exp_m1();
        let got = f64::from(expm1_f32(x));
        let rel = ((got - want) / want).abs();
        if x != 0.0 && rel > worst.0 {
            worst = (rel, x);
        }
    };
    for sign in [1.0f32, -1.0] {
        let mut b = 1u32; // smallest positive subnormal upwards
        loop {
            let x = sign * f32::from_bits(b);
            if !(-104.0..=88.7).contains(&x) {
                break;
            }
            check(x);
            b += 97;
        }
    }
    println!(
        "expm1_f32: worst relative error {:e} at {:e}",
        worst.0, worst.1
    );
    assert!(worst.0 <= 4e-7, "worst {:e} at {:e}", worst.0, worst.1);
    assert_eq!(expm1_f32(0.0), 0.0);
    assert_eq!(expm1_f32(-1e-30), -1e-30);
    assert_eq!(expm1_f32(-200.0), -1.0);
    assert_eq!(expm1_f32(f32::NEG_INFINITY), -1.0);
    assert_eq!(expm1_f32(100.0), f32::INFINITY);
    assert!(expm1_f32(f32::NAN).is_nan());
}

/// `ln_iou` (alpha-IoU's `ln IoU` from `u = 1 - IoU`, one division for both of its forms) gives
/// the bits of the two forms it merges, `2 atanh(-u / (2 - u))` for `u < 1/4` and
/// `ln_f32(|1 - u|)` beyond, over every 61st `f32` of both signs and the special values, and is
/// within 4e-7 (relative) of `ln |1 - u|` in `f64` on `[1e-37, 1)` (below, `-u / 2` is subnormal).
#[test]
fn ln_iou_is_both_forms_bit_for_bit() {
    use super::modifiers::ln_iou;
    use crate::math::{ln_f32, sel};
    let two_forms = |u: f32| {
        let small = u < 0.25;
        let s = -u / (2.0 - u);
        let z = s * s;
        let p = (((z * (1.0 / 9.0) + 1.0 / 7.0) * z + 1.0 / 5.0) * z + 1.0 / 3.0) * z;
        sel(small, 2.0 * s + 2.0 * s * p, ln_f32((1.0 - u).abs()))
    };
    let mut worst = (0.0f64, 0.0f32);
    let mut check = |u: f32| {
        let got = ln_iou(u, (1.0 - u).abs(), u < 0.25);
        let want = two_forms(u);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "u = {u:e}: {got:e} vs {want:e}"
        );
        if (1e-37..1.0).contains(&u) {
            let exact = (-f64::from(u)).ln_1p();
            let rel = ((f64::from(got) - exact) / exact).abs();
            if u != 0.0 && rel > worst.0 {
                worst = (rel, u);
            }
        }
    };
    for b in (0..=u32::MAX).step_by(61) {
        check(f32::from_bits(b));
    }
    for u in [
        0.0,
        -0.0,
        0.25,
        1.0,
        2.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ] {
        check(u);
    }
    println!(
        "ln_iou: worst relative error {:e} at u = {:e}",
        worst.0, worst.1
    );
    assert!(worst.0 <= 4e-7, "worst {:e} at {:e}", worst.0, worst.1);
}
