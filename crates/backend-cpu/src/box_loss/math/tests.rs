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
