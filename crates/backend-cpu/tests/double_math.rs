//! The branchless `f64` functions of the vectorised ProbIoU (`smoothloss_cpu::math::
//! {sincos_f64, exp_nonpos_f64, ln_f64}`) against libm, with the bounds their documentation
//! states: `sin`/`cos` absolute `<= 1e-15` for `|x| <= 1e5`, `exp` relative `<= 1e-15` on
//! `[-700, 0]`, `ln` absolute `<= 1e-15 max(1, |ln x|)` for normal `x > 0`.

use smoothloss_cpu::math::{exp_nonpos_f64, ln_f64, sincos_f64};
use smoothloss_spec::random::Rng;

/// Points of `[lo, hi]`: a uniform sweep, random points, and the given edges.
fn points(rng: &mut Rng, lo: f64, hi: f64, edges: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = (0..=200_000)
        .map(|i| lo + (hi - lo) * f64::from(i) / 200_000.0)
        .collect();
    v.extend((0..200_000).map(|_| rng.range(lo, hi)));
    v.extend_from_slice(edges);
    v
}

#[test]
fn sincos_within_its_bound() {
    let mut rng = Rng::new(1);
    let pi = std::f64::consts::PI;
    let mut xs = points(
        &mut rng,
        -1e5,
        1e5,
        &[0.0, -0.0, 1e5, -1e5, pi, -pi, pi / 4.0],
    );
    // Near zero and near the quadrant boundaries, where the reduction matters.
    xs.extend(points(&mut rng, -8.0, 8.0, &[]));
    xs.extend((1..2000).map(|k| f64::from(k) * std::f64::consts::FRAC_PI_2));
    xs.extend(
        (0..300)
            .map(|k| 1e-300 * 10f64.powi(k))
            .filter(|x| *x <= 1e5),
    );
    let mut worst = 0.0f64;
    for x in xs {
        let (s, c) = sincos_f64(x);
        let (ws, wc) = x.sin_cos();
        let e = (s - ws).abs().max((c - wc).abs());
        assert!(e <= 1e-15, "sincos({x}) = ({s}, {c}) vs ({ws}, {wc})");
        worst = worst.max(e);
    }
    assert!(worst > 0.0, "the comparison saw no rounding at all");
}

#[test]
fn exp_nonpos_within_its_bound() {
    let mut rng = Rng::new(2);
    let mut xs = points(&mut rng, -700.0, 0.0, &[0.0, -0.0, -700.0, -1e-300, -0.5]);
    xs.extend(points(&mut rng, -1.0, 0.0, &[]));
    for x in xs {
        let (got, want) = (exp_nonpos_f64(x), x.exp());
        assert!(
            (got - want).abs() <= 1e-15 * want,
            "exp({x}) = {got} vs {want}"
        );
    }
    assert_eq!(exp_nonpos_f64(0.0), 1.0);
    assert!(exp_nonpos_f64(f64::NAN).is_nan());
}

#[test]
fn ln_within_its_bound() {
    let mut rng = Rng::new(3);
    let mut xs: Vec<f64> = (0..400_000)
        .map(|_| 10f64.powf(rng.range(-307.0, 307.0)))
        .collect();
    xs.extend(points(
        &mut rng,
        0.5,
        2.0,
        &[1.0, f64::MIN_POSITIVE, f64::MAX],
    ));
    xs.extend(points(&mut rng, 1e-7, 1e-6, &[std::f64::consts::SQRT_2]));
    for x in xs {
        let (got, want) = (ln_f64(x), x.ln());
        assert!(
            (got - want).abs() <= 1e-15 * want.abs().max(1.0),
            "ln({x}) = {got} vs {want}"
        );
    }
    assert_eq!(ln_f64(1.0), 0.0);
}
