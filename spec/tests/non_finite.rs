//! TOL-4: the documented behaviour of non-finite inputs, on the reference (backends are held to
//! the same results by the conformance suite's comparison, where NaN must match NaN).

use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, Huber, Reduction, SmoothL1,
};
use smoothloss_core::{Input, Loss, Losses, ReferenceBackend};
use smoothloss_spec::{covers, kit};

const INF: f64 = f64::INFINITY;

fn ce_none(ls: f64, z: &[f64], c: usize, t: &[i64]) -> (Vec<f64>, Vec<f64>) {
    let cfg = CrossEntropy::new()
        .with_label_smoothing(ls)
        .with_reduction(Reduction::None);
    let mut g = vec![0.0; z.len()];
    let l = ReferenceBackend
        .cross_entropy(&cfg, Input::matrix(z, t.len(), c).with_grad(&mut g), t)
        .map(Loss::into_values)
        .unwrap();
    (l, g)
}

/// CE-1: NaN or +inf in a row makes that row NaN and leaves the other rows alone.
#[test]
fn ce_nan_and_pos_inf_rows_are_nan() {
    covers!("CE-1", "TOL-4");
    let z = [1.0, f64::NAN, 0.0, 1.0, 2.0, 3.0, INF, 0.0, 0.0];
    let (l, g) = ce_none(0.1, &z, 3, &[0, 1, 2]);
    assert!(l[0].is_nan() && l[2].is_nan());
    assert!(l[1].is_finite());
    assert!(g[0..3].iter().all(|v| v.is_nan()));
    assert!(g[3..6].iter().all(|v| v.is_finite()));
}

/// CE-1 / CE-3: -inf logits are masked classes: finite loss without smoothing, +inf loss with
/// smoothing (the smoothed target puts mass on them), finite gradient either way.
#[test]
fn ce_neg_inf_logits_are_masked() {
    covers!("CE-3", "TOL-4");
    let z = [-INF, 2.0, -INF, -INF];
    let (l, g) = ce_none(0.0, &z, 4, &[1]);
    assert_eq!(l[0], 0.0);
    assert_eq!(g, vec![0.0; 4]);
    let (l, g) = ce_none(0.1, &z, 4, &[1]);
    assert_eq!(l[0], INF);
    // d/dz = p - q with p = onehot(1) and q = 0.9 onehot(1) + 0.025.
    let want = [-0.025, 0.075, -0.025, -0.025];
    for (a, b) in g.iter().zip(want) {
        assert!(kit::close(*a, b, 1e-15, 0.0), "{g:?}");
    }
    // Huge finite logits stay finite.
    let (l, g) = ce_none(0.1, &[1e30, -1e30, 0.0], 3, &[0]);
    assert!(
        l[0].is_finite() && g.iter().all(|v| v.is_finite()),
        "{l:?} {g:?}"
    );
}

/// BOX-12: a non-finite coordinate makes that pair's loss and gradient NaN.
#[test]
fn box_non_finite_pair_is_nan() {
    covers!("BOX-12", "TOL-4");
    for kind in BoxLossKind::ALL {
        let cfg = BoxLoss::new(kind, BoxFormat::Xyxy)
            .with_options(smoothloss_spec::random::box_options(kind, 0))
            .with_reduction(Reduction::None);
        let p = [0.0, 0.0, INF, 1.0, 0.0, 0.0, 1.0, 1.0];
        let t = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, f64::NAN];
        let mut g = [0.0; 8];
        let l = ReferenceBackend
            .box_loss(&cfg, Input::new(&p).with_grad(&mut g), &t)
            .map(Loss::into_values)
            .unwrap();
        assert!(l[0].is_nan() && l[1].is_nan(), "{kind:?}");
        assert!(g.iter().all(|v| v.is_nan()));
        // Under mean the NaN reaches the reduced loss.
        let cfg = cfg.with_reduction(Reduction::Mean);
        let l = ReferenceBackend
            .box_loss(&cfg, &p[..4], &t[..4])
            .map(Loss::into_values)
            .unwrap();
        assert!(l[0].is_nan());
    }
}

/// TOL-4: element-wise losses propagate NaN through the formula; infinities give the formula's
/// value (BCE with a +-inf logit is finite or +inf, never NaN, for targets 0 and 1).
#[test]
fn elementwise_non_finite_follow_the_formula() {
    covers!(
        "REG-1", "REG-2", "REG-3", "REG-4", "BIN-1", "BIN-2", "TOL-4"
    );
    let none = Reduction::None;
    let mut g = [0.0; 3];
    let l = ReferenceBackend
        .smooth_l1(
            &SmoothL1 {
                beta: 1.0,
                reduction: none,
            },
            Input::new(&[f64::NAN, INF, 0.0]).with_grad(&mut g),
            &[0.0, 0.0, 0.0],
        )
        .map(Loss::into_values)
        .unwrap();
    assert!(l[0].is_nan() && g[0].is_nan());
    assert_eq!((l[1], g[1]), (INF, 1.0));
    let l = ReferenceBackend
        .huber(
            &Huber {
                delta: 1.0,
                reduction: none,
            },
            Input::new(&[f64::NAN, -INF, 0.0]).with_grad(&mut g),
            &[0.0; 3],
        )
        .map(Loss::into_values)
        .unwrap();
    assert!(l[0].is_nan());
    assert_eq!((l[1], g[1]), (INF, -1.0));
    let l = ReferenceBackend
        .bce_with_logits(
            &BceWithLogits {
                pos_weight: None,
                reduction: none,
            },
            Input::new(&[INF, -INF, f64::NAN]).with_grad(&mut g),
            &[1.0, 0.0, 1.0],
        )
        .map(Loss::into_values)
        .unwrap();
    assert_eq!(&l[..2], &[0.0, 0.0]);
    assert_eq!(&g[..2], &[0.0, 0.0]);
    assert!(l[2].is_nan() && g[2].is_nan());
}
