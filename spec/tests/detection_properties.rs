//! proptest properties of the f64 reference of the dense-detector losses (`DFL-*`, `QUAL-*`,
//! `OBB-*`): gradients against central finite differences, invariances, minima, degenerate and
//! non-finite inputs (`TOL-4`), and the validation errors.

use proptest::prelude::*;
use smoothloss_core::{
    DistributionFocal, Input, Loss, LossError, Losses, ProbIou, QualityFocal, Reduction,
    ReferenceBackend, Upstream, Varifocal, VarifocalWeight,
};
use smoothloss_spec::{covers, kit};

/// Central finite differences of `f` at `x`.
fn finite_diff(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xs = x.to_vec();
    (0..x.len())
        .map(|k| {
            let h = 1e-6 * x[k].abs().max(1.0);
            xs[k] = x[k] + h;
            let up = f(&xs);
            xs[k] = x[k] - h;
            let down = f(&xs);
            xs[k] = x[k];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// `|got_k - want_k| <= tol * max(1, max |want|)` (bounds per test: central differences with
/// step 1e-6 are good to about 1e-7 here).
fn assert_close(got: &[f64], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0_f64, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            kit::close(g, w, tol * scale, 0.0),
            "element {i}: got {g}, want {w}"
        );
    }
    Ok(())
}

fn sum(l: Loss) -> f64 {
    l.value()
}

fn dfl(
    cfg: &DistributionFocal,
    z: &[f64],
    rows: usize,
    bins: usize,
    t: &[f64],
    g: Option<&mut [f64]>,
) -> f64 {
    let i = Input::matrix(z, rows, bins).with_optional_grad(g);
    sum(ReferenceBackend.distribution_focal(cfg, i, t).unwrap())
}

fn obb_loss(cfg: &ProbIou, p: &[f64], t: &[f64], g: Option<&mut [f64]>) -> f64 {
    sum(ReferenceBackend
        .probiou_loss(cfg, Input::new(p).with_optional_grad(g), t)
        .unwrap())
}

fn probiou(a: [f64; 5], b: [f64; 5]) -> f64 {
    let mut out = [0.0];
    ReferenceBackend
        .batch_probiou(1e-7, &a, &b, &mut out)
        .unwrap();
    out[0]
}

fn obb() -> impl Strategy<Value = [f64; 5]> {
    (
        -30.0..30.0f64,
        -30.0..30.0f64,
        0.5..20.0f64,
        0.5..20.0f64,
        -4.0..4.0f64,
    )
        .prop_map(|(x, y, w, h, r)| [x, y, w, h, r])
}

/// A prediction near `t` (so that ProbIoU is away from the clamps).
fn near(t: [f64; 5]) -> impl Strategy<Value = [f64; 5]> {
    (
        -3.0..3.0f64,
        -3.0..3.0f64,
        -0.4..0.4f64,
        -0.4..0.4f64,
        -0.5..0.5f64,
    )
        .prop_map(move |(dx, dy, sw, sh, dr)| {
            [
                t[0] + dx,
                t[1] + dy,
                t[2] * (1.0 + sw),
                t[3] * (1.0 + sh),
                t[4] + dr,
            ]
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// DFL-2, DFL-3: the gradient of both conventions matches finite differences; a row's
    /// gradient sums to 0 and the loss is invariant under adding a constant to a row.
    #[test]
    fn dfl_gradient_matches_finite_differences(
        boxes in 1usize..4, bins in 2usize..18, seed in 0u64..1000, mm in any::<bool>(),
    ) {
        covers!("DFL-2", "DFL-3");
        let rows = 4 * boxes;
        let mut rng = smoothloss_spec::random::Rng::new(seed);
        let z = rng.vec(rows * bins, -6.0, 6.0);
        let hi = bins as f64 - 1.0;
        let t: Vec<f64> = (0..rows).map(|_| if mm { rng.range(0.0, hi * 0.999) } else { rng.range(-1.0, hi + 1.0) }).collect();
        let cfg = if mm { DistributionFocal::mmdetection() } else { DistributionFocal::ultralytics() };
        let mut g = vec![0.0; z.len()];
        let v = dfl(&cfg, &z, rows, bins, &t, Some(&mut g));
        let fd = finite_diff(&z, |zz| dfl(&cfg, zz, rows, bins, &t, None));
        assert_close(&g, &fd, 1e-6)?;
        for row in g.chunks(bins) {
            prop_assert!(row.iter().sum::<f64>().abs() < 1e-12);
        }
        let shifted: Vec<f64> = z.iter().enumerate().map(|(k, v)| v + (k / bins) as f64 * 3.5).collect();
        prop_assert!((dfl(&cfg, &shifted, rows, bins, &t, None) - v).abs() <= 1e-12 * v.abs().max(1.0));
    }

    /// QUAL-1 .. QUAL-3: the varifocal gradient (weight not detached) matches finite
    /// differences for every weight.
    #[test]
    fn varifocal_gradient_matches_finite_differences(
        n in 1usize..30, seed in 0u64..1000, gamma in prop_oneof![Just(2.0), Just(1.0), 1.1..3.0f64],
        w in 0usize..3,
    ) {
        covers!("QUAL-1", "QUAL-2", "QUAL-3");
        let weight = [VarifocalWeight::Ultralytics, VarifocalWeight::MmdetIouWeighted, VarifocalWeight::Mmdet][w];
        let mut rng = smoothloss_spec::random::Rng::new(seed);
        let x = rng.vec(n, -8.0, 8.0);
        let labels: Vec<f64> = (0..n).map(|_| f64::from(u8::from(rng.unit() < 0.4))).collect();
        let scores: Vec<f64> = labels.iter().map(|l| l * rng.range(0.05, 1.0)).collect();
        let cfg = Varifocal { weight, gamma, ..Varifocal::ultralytics() };
        let f = |xx: &[f64], g: Option<&mut [f64]>| {
            let i = Input::new(xx).with_optional_grad(g);
            let r = if weight == VarifocalWeight::Ultralytics {
                ReferenceBackend.varifocal(&cfg, i, (&scores, &labels))
            } else {
                ReferenceBackend.varifocal(&cfg, i, &scores)
            };
            r.unwrap().value()
        };
        let mut g = vec![0.0; n];
        f(&x, Some(&mut g));
        assert_close(&g, &finite_diff(&x, |xx| f(xx, None)), 1e-6)?;
    }

    /// QUAL-5, QUAL-6, QUAL-7: the quality focal gradient matches finite differences.
    #[test]
    fn quality_focal_gradient_matches_finite_differences(
        rows in 1usize..6, classes in 1usize..7, seed in 0u64..1000, beta in prop_oneof![Just(2.0), 1.0..3.0f64],
    ) {
        covers!("QUAL-5", "QUAL-6", "QUAL-7");
        let mut rng = smoothloss_spec::random::Rng::new(seed);
        let x = rng.vec(rows * classes, -6.0, 6.0);
        let labels: Vec<i64> = (0..rows).map(|_| rng.below(classes + 1) as i64).collect();
        let scores = rng.vec(rows, 0.0, 1.0);
        let cfg = QualityFocal::new().with_beta(beta);
        let f = |xx: &[f64], g: Option<&mut [f64]>| {
            let i = Input::matrix(xx, rows, classes).with_optional_grad(g);
            ReferenceBackend.quality_focal(&cfg, i, &labels, &scores).unwrap().value()
        };
        let mut g = vec![0.0; x.len()];
        f(&x, Some(&mut g));
        assert_close(&g, &finite_diff(&x, |xx| f(xx, None)), 1e-6)?;
    }

    /// OBB-1 .. OBB-3, OBB-5: the ProbIoU loss gradient (exact determinant form, floor or not)
    /// matches finite differences of the loss.
    #[test]
    fn probiou_gradient_matches_finite_differences(
        t in obb(), seed in 0u64..1000, floor in prop_oneof![Just(0.0), 0.01..2.0f64],
    ) {
        covers!("OBB-1", "OBB-2", "OBB-3", "OBB-5");
        let mut rng = smoothloss_spec::random::Rng::new(seed);
        let p = [t[0] + rng.range(-3.0, 3.0), t[1] + rng.range(-3.0, 3.0), t[2] * rng.range(0.6, 1.4), t[3] * rng.range(0.6, 1.4), t[4] + rng.range(-0.5, 0.5)];
        let cfg = ProbIou::new().with_floor(floor).with_reduction(Reduction::Sum);
        let mut g = [0.0; 5];
        obb_loss(&cfg, &p, &t, Some(&mut g));
        assert_close(&g, &finite_diff(&p, |pp| obb_loss(&cfg, pp, &t, None)), 1e-6)?;
    }

    /// OBB-7: ProbIoU is invariant under a common translation, a common rotation about the
    /// origin, `angle + pi` of either box, and symmetric in its arguments.
    #[test]
    fn probiou_invariances(t in obb(), p in obb().prop_flat_map(near), dx in -50.0..50.0f64, dy in -50.0..50.0f64, phi in -3.2..3.2f64) {
        covers!("OBB-7");
        let base = probiou(p, t);
        let tol = 1e-9 * base.abs().max(1e-3);
        let mv = |b: [f64; 5]| [b[0] + dx, b[1] + dy, b[2], b[3], b[4]];
        prop_assert!((probiou(mv(p), mv(t)) - base).abs() <= tol);
        let (s, c) = phi.sin_cos();
        let rot = |b: [f64; 5]| [c * b[0] - s * b[1], s * b[0] + c * b[1], b[2], b[3], b[4] + phi];
        prop_assert!((probiou(rot(p), rot(t)) - base).abs() <= 1e-8 * base.abs().max(1e-3));
        let flip = |b: [f64; 5]| [b[0], b[1], b[2], b[3], b[4] + std::f64::consts::PI];
        prop_assert!((probiou(flip(p), t) - base).abs() <= tol);
        prop_assert!((probiou(t, p) - base).abs() <= tol);
        // The pairwise matrix of a set against itself is symmetric.
        let set = [p, t, mv(p)].concat();
        let mut m = [0.0; 9];
        ReferenceBackend.batch_probiou(1e-7, &set, &set, &mut m).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                prop_assert!((m[3 * i + j] - m[3 * j + i]).abs() <= 1e-12);
            }
        }
    }

    /// OBB-7: identical boxes give the largest ProbIoU, the loss's minimum, with zero gradient.
    #[test]
    fn identical_boxes_give_the_minimum(t in obb(), p in obb().prop_flat_map(near)) {
        covers!("OBB-7");
        let cfg = ProbIou::new().with_reduction(Reduction::Sum);
        let mut g = [0.0; 5];
        let same = obb_loss(&cfg, &t, &t, Some(&mut g));
        let eps = 1e-7_f64;
        prop_assert!((same - (1.0 - (-eps).exp() + eps).sqrt()).abs() < 1e-12);
        prop_assert!(g.iter().all(|v| *v == 0.0), "{g:?}");
        prop_assert!(obb_loss(&cfg, &p, &t, None) >= same);
    }
}

/// OBB-4: the CIoU option subtracts the detached aspect term: its gradient is that of
/// `1 - ProbIoU + alpha v` with alpha held at its value, checked by finite differences of
/// that function.
#[test]
fn probiou_ciou_gradient_holds_alpha_fixed() {
    covers!("OBB-4");
    let t = [10.0, 12.0, 8.0, 3.0, 0.4];
    let p = [11.0, 11.5, 6.0, 4.0, 0.7];
    let plain = ProbIou::new().with_reduction(Reduction::Sum);
    let ciou = plain.with_ciou(true);
    let iou = |pp: &[f64]| 1.0 - obb_loss(&plain, pp, &t, None);
    let k = 4.0 / (std::f64::consts::PI * std::f64::consts::PI);
    let v = |pp: &[f64]| k * ((t[2] / t[3]).atan() - (pp[2] / pp[3]).atan()).powi(2);
    let alpha = v(&p) / (v(&p) - iou(&p) + 1.0 + 1e-7);
    let want = 1.0 - iou(&p) + alpha * v(&p);
    let mut g = [0.0; 5];
    let got = obb_loss(&ciou, &p, &t, Some(&mut g));
    assert!((got - want).abs() < 1e-12, "{got} {want}");
    let fd = finite_diff(&p, |pp| 1.0 - iou(pp) + alpha * v(pp));
    for k in 0..5 {
        assert!((g[k] - fd[k]).abs() < 1e-7, "{k}: {} vs {}", g[k], fd[k]);
    }
}

/// TOL-4: non-finite inputs of the dense-detector losses.
#[test]
fn non_finite_and_degenerate_inputs_follow_tol_4() {
    covers!("TOL-4");
    // DFL: a NaN or inf logit makes that row's gradient and its item's loss NaN.
    let (rows, bins) = (8, 4);
    let mut z: Vec<f64> = (0..rows * bins).map(|k| (k % 5) as f64 * 0.5).collect();
    z[1] = f64::INFINITY;
    let t = vec![1.5; rows];
    let mut g = vec![0.0; z.len()];
    let l = ReferenceBackend
        .distribution_focal(
            &DistributionFocal::ultralytics(),
            Input::matrix(&z, rows, bins).with_grad(&mut g),
            &t,
        )
        .unwrap();
    let v = l.per_item().unwrap();
    assert!(v[0].is_nan() && v[1].is_finite());
    assert!(g[..bins].iter().all(|x| x.is_nan()) && g[bins..].iter().all(|x| x.is_finite()));
    // Varifocal: a non-finite logit gives NaN for that element only.
    let x = [f64::NEG_INFINITY, 0.5, f64::NAN];
    let s = [0.0, 0.3, 0.0];
    let mut g = [0.0; 3];
    let l = ReferenceBackend
        .varifocal(
            &Varifocal::mmdetection().with_reduction(Reduction::None),
            Input::new(&x).with_grad(&mut g),
            &s[..],
        )
        .unwrap();
    let v = l.per_item().unwrap();
    assert!(
        v[0].is_nan() && v[1].is_finite() && v[2].is_nan() && g[1].is_finite() && g[0].is_nan()
    );
    // ProbIoU: NaN in either box gives NaN; a zero width (either box) stays finite, gradient too.
    let p = [1.0, 2.0, 0.0, 3.0, 0.2, 1.0, 2.0, 3.0, 3.0, f64::NAN];
    let tb = [1.5, 2.0, 2.0, 3.0, 0.1, 1.0, 2.0, 3.0, 3.0, 0.0];
    let mut g = [0.0; 10];
    let l = ReferenceBackend
        .probiou_loss(
            &ProbIou::new().with_reduction(Reduction::None),
            Input::new(&p).with_grad(&mut g),
            &tb,
        )
        .unwrap();
    let v = l.per_item().unwrap();
    assert!(v[0].is_finite() && v[1].is_nan(), "{v:?}");
    assert!(
        g[..5].iter().all(|x| x.is_finite()) && g[5..].iter().all(|x| x.is_nan()),
        "{g:?}"
    );
}

/// The validation of each configuration: typed errors, never a panic.
#[test]
fn bad_calls_are_typed_errors() {
    covers!("DFL-1", "DFL-4", "QUAL-4", "OBB-6");
    let z = [0.0; 8];
    let b = ReferenceBackend;
    // DFL: ultralytics needs rows in fours; one bin is too few; mmdetection targets in range.
    let e = b.distribution_focal(
        &DistributionFocal::ultralytics(),
        Input::matrix(&z, 2, 4),
        &[1.0, 2.0],
    );
    assert!(
        matches!(
            e,
            Err(LossError::ShapeMismatch {
                what: "targets",
                ..
            })
        ),
        "{e:?}"
    );
    let e = b.distribution_focal(
        &DistributionFocal::mmdetection(),
        Input::matrix(&z, 8, 1),
        &[0.0; 8],
    );
    assert!(matches!(e, Err(LossError::EmptyInput { .. })), "{e:?}");
    let e = b.distribution_focal(
        &DistributionFocal::mmdetection(),
        Input::matrix(&z, 2, 4),
        &[0.5, 3.0],
    );
    assert!(
        matches!(
            e,
            Err(LossError::InvalidParameter {
                name: "targets",
                ..
            })
        ),
        "{e:?}"
    );
    let e = b.distribution_focal(
        &DistributionFocal::ultralytics(),
        Input::matrix(&z, 4, 2),
        &[0.5, f64::NAN, 0.0, 0.0],
    );
    assert!(
        matches!(
            e,
            Err(LossError::InvalidParameter {
                name: "targets",
                ..
            })
        ),
        "{e:?}"
    );
    let e = b.distribution_focal(&DistributionFocal::ultralytics(), &z[..], &[0.0; 3]);
    assert!(
        matches!(e, Err(LossError::ShapeMismatch { what: "logits", .. })),
        "{e:?}"
    );
    // Varifocal: labels only with ultralytics' weight; scores in [0, 1]; avg_factor with mean.
    let s = [0.5; 8];
    assert!(matches!(
        b.varifocal(&Varifocal::ultralytics(), &z[..], &s[..]),
        Err(LossError::ShapeMismatch { what: "labels", .. })
    ));
    assert!(matches!(
        b.varifocal(&Varifocal::mmdetection(), &z[..], (&s[..], &s[..])),
        Err(LossError::ShapeMismatch { what: "labels", .. })
    ));
    let bad = [1.5; 8];
    assert!(matches!(
        b.varifocal(&Varifocal::mmdetection(), &z[..], &bad[..]),
        Err(LossError::InvalidParameter { name: "scores", .. })
    ));
    let cfg = Varifocal {
        avg_factor: Some(2.0),
        reduction: Reduction::Sum,
        ..Varifocal::mmdetection()
    };
    assert!(matches!(
        b.varifocal(&cfg, &z[..], &s[..]),
        Err(LossError::InvalidParameter {
            name: "avg_factor",
            ..
        })
    ));
    let cfg = Varifocal::mmdetection().with_alpha_gamma(0.75, -1.0);
    assert!(matches!(
        b.varifocal(&cfg, &z[..], &s[..]),
        Err(LossError::InvalidParameter { name: "gamma", .. })
    ));
    // QFL: labels in [0, C].
    let e = b.quality_focal(
        &QualityFocal::new(),
        Input::matrix(&z, 2, 4),
        &[0, 5],
        &[0.5, 0.5],
    );
    assert!(
        matches!(
            e,
            Err(LossError::TargetOutOfRange {
                row: 1,
                target: 5,
                classes: 4
            })
        ),
        "{e:?}"
    );
    let e = b.quality_focal(
        &QualityFocal::new(),
        Input::matrix(&z, 2, 4),
        &[0, 4],
        &[0.5],
    );
    assert!(
        matches!(e, Err(LossError::ShapeMismatch { what: "scores", .. })),
        "{e:?}"
    );
    // ProbIoU: whole boxes, eps > 0, f32 eps normal, pairwise output size.
    let e = b.probiou_loss(&ProbIou::new(), &z[..7], &z[..7]);
    assert!(
        matches!(e, Err(LossError::ShapeMismatch { what: "pred", .. })),
        "{e:?}"
    );
    let e = b.probiou_loss(&ProbIou::new().with_eps(0.0), &[0.0; 5], &[0.0; 5]);
    assert!(
        matches!(e, Err(LossError::InvalidParameter { name: "eps", .. })),
        "{e:?}"
    );
    let e = b.probiou_loss(&ProbIou::new().with_eps(1e-45), &[1.0f32; 5], &[1.0f32; 5]);
    assert!(
        matches!(e, Err(LossError::InvalidParameter { name: "eps", .. })),
        "{e:?}"
    );
    let mut out = [0.0; 3];
    let e = b.batch_probiou(1e-7, &[1.0; 10], &[1.0; 5], &mut out);
    assert!(
        matches!(
            e,
            Err(LossError::ShapeMismatch {
                what: "probiou",
                ..
            })
        ),
        "{e:?}"
    );
    // A per-item upstream needs reduction none (README's rule, here for DFL).
    let up = [1.0];
    let e = b.distribution_focal(
        &DistributionFocal::mmdetection(),
        Input::matrix(&z, 2, 4).with_upstream(Upstream::PerElement(&up)),
        &[0.5, 1.0],
    );
    assert!(
        matches!(
            e,
            Err(LossError::InvalidParameter {
                name: "upstream",
                ..
            })
        ),
        "{e:?}"
    );
}
