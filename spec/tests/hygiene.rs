//! Numerical hygiene of issue 14 at the spec level: `TOL-2`'s absolute term scaled by the
//! upstream gradient and the weights, and the reference's side of the `TOL-4` rules (the focal
//! limit at infinite logits, the `f32` domain refused on `f32` data only, non-finite
//! per-element upstream gradients refused).

use smoothloss_core::{
    CeTargets, CrossEntropy, Input, LossError, Losses, Reduction, ReferenceBackend, SigmoidFocal,
    SmoothL1, Upstream,
};
use smoothloss_spec::cases::{LossCall, Targets};
use smoothloss_spec::conformance::AbsScale;
use smoothloss_spec::{Tolerance, covers};

/// The call: one class, probability target `[1.0]`, class weight 2.64.
fn one_class_call() -> (CrossEntropy, LossCall) {
    let cfg = CrossEntropy::new().with_class_weights(vec![2.64]);
    let call = LossCall::CrossEntropy {
        cfg: cfg.clone(),
        logits: vec![0.3],
        rows: 1,
        classes: 1,
        targets: Targets::Probs(vec![1.0]),
    };
    (cfg, call)
}

#[test]
fn tol2_absolute_term_scales_with_upstream_and_weight() {
    covers!("TOL-2");
    let (cfg, call) = one_class_call();
    let up = Upstream::Scalar(0.818);
    // The reference's gradient cancels to exactly 0 (p = 1: u (p w q - w q) = 0).
    let mut g = [1.0f64];
    ReferenceBackend
        .cross_entropy(
            &cfg,
            Input::matrix(&[0.3], 1, 1)
                .with_grad(&mut g)
                .with_upstream(up),
            CeTargets::Probs(&[1.0]),
        )
        .unwrap();
    assert_eq!(g, [0.0]);
    let got = [1.5e-7]; // what an f32 backend returns (one rounding of u w = 2.16)
    let tol = Tolerance::F32;
    // Before: the plain absolute term (1e-7) refuses this correct result.
    assert!(tol.check(&got, &g).is_err());
    // After: scaled by |u| w = 2.16.
    let sc = AbsScale::of(&call, up);
    assert!((sc.grad(0) - 0.818 * 2.64).abs() < 1e-12);
    assert_eq!(sc.loss(0), 2.64);
    assert!(tol.check_scaled(&got, &g, |k| sc.grad(k)).is_ok());
    // A genuinely wrong gradient still fails, and so does the bound just past it.
    assert!(tol.check_scaled(&[1e-6], &g, |k| sc.grad(k)).is_err());
    assert!(tol.check_scaled(&[2.2e-7], &g, |k| sc.grad(k)).is_err());
    // The scale never tightens: below 1 the plain absolute term applies.
    assert!(tol.check_scaled(&[0.9e-7], &[0.0], |_| 0.01).is_ok());
    assert!(tol.check_scaled(&[1.1e-7], &[0.0], |_| 0.01).is_err());
}

#[test]
fn tol2_per_element_upstream_scales_each_item() {
    covers!("TOL-2");
    let call = LossCall::SmoothL1 {
        cfg: SmoothL1 {
            beta: 1.0,
            reduction: Reduction::None,
        },
        pred: vec![0.0; 3],
        target: vec![0.0; 3],
    };
    let u = [0.5, 10.0, -3.0];
    let sc = AbsScale::of(&call, Upstream::PerElement(&u));
    assert_eq!([sc.grad(0), sc.grad(1), sc.grad(2)], [0.5, 10.0, 3.0]);
    let tol = Tolerance::F32;
    let want = [0.0; 3];
    assert!(
        tol.check_scaled(&[0.0, 9e-7, 2.9e-7], &want, |k| sc.grad(k))
            .is_ok()
    );
    assert!(
        tol.check_scaled(&[2e-7, 0.0, 0.0], &want, |k| sc.grad(k))
            .is_err()
    );
}

/// `TOL-2`'s softcap term on the CI finding of 2026-12-01 (fuzz regression
/// `ce-softcap-cancelling-gradient`): the term from the written formula, by hand, and the
/// bound it gives: the CUDA emulation's 3.3e-6 passes, ten times the term does not.
#[test]
fn tol2_softcap_term_follows_the_formula() {
    covers!("TOL-2", "CE-10");
    // The kept fuzz regression itself (spec/src/fuzz/known.rs), not a copy of its numbers.
    let (_, fc) = smoothloss_spec::fuzz::regressions()
        .into_iter()
        .find(|(id, _)| *id == "ce-softcap-cancelling-gradient")
        .expect("the kept regression");
    let call = fc.call;
    let LossCall::CrossEntropy { cfg, logits: z, .. } = &call else {
        panic!("a cross-entropy call")
    };
    let (cfg, z) = (cfg.clone(), z.clone());
    let cap = cfg.softcap.expect("a softcap");
    let smoothloss_spec::fuzz::Up::Scalar(u) = fc.up else {
        panic!("a scalar upstream")
    };
    let sc = AbsScale::of(&call, Upstream::Scalar(u));
    // By hand: D = max |z'| = cap (the -inf logit), A = (1 - eps) w_y + eps W / C = 1.
    let zc: Vec<f64> = z.iter().map(|&v| cap * (v / cap).tanh()).collect();
    let m = zc[3];
    let s: f64 = zc.iter().map(|&v| (v - m).exp()).sum();
    let lse = m + s.ln();
    for (j, &zj) in zc.iter().enumerate() {
        let p = (zj - lse).exp();
        let dc = 1.0 - (zj / cap).powi(2);
        let want = u * 1.0 * dc * 2.0 * p * cap;
        assert!(
            (sc.grad_softcap(j) - want).abs() <= 1e-12 * want.max(1e-300),
            "entry {j}: {} vs {want}",
            sc.grad_softcap(j)
        );
    }
    // Loss: r (2 A) D.
    assert!((sc.loss_softcap(0) - 2.0 * cap).abs() < 1e-12);
    let mut g = [0.0f64; 7];
    ReferenceBackend
        .cross_entropy(
            &cfg,
            Input::matrix(&z, 1, 7)
                .with_grad(&mut g)
                .with_upstream(Upstream::Scalar(u)),
            CeTargets::Classes(&[6]),
        )
        .unwrap();
    let tol = Tolerance::F32;
    let term = tol.capped_logit * sc.grad_softcap(6);
    let off = |d: f64| {
        let mut got = g;
        got[6] += d;
        tol.check_scaled_plus(&got, &g, |k| sc.grad(k), |k| sc.grad_softcap(k))
    };
    // The plain bound refuses what the emulation gave; with the term it passes.
    assert!(
        tol.check_scaled(
            &{
                let mut got = g;
                got[6] += 3.3e-6;
                got
            },
            &g,
            |k| sc.grad(k)
        )
        .is_err()
    );
    assert!(off(3.3e-6).is_ok());
    assert!(off(10.0 * term).is_err());
    // f64 data have no such term.
    assert_eq!(Tolerance::REFERENCE.capped_logit, 0.0);
}

#[test]
fn reference_focal_at_infinite_logits_is_the_limit() {
    covers!("BIN-4", "TOL-4");
    let inf = f64::INFINITY;
    for gamma in [0.0, 0.042, 1.0, 2.0, 3.5] {
        let cfg = SigmoidFocal {
            alpha: 0.25,
            gamma,
            reduction: Reduction::None,
        };
        let mut g = [0.0f64; 4];
        let l = ReferenceBackend
            .sigmoid_focal(
                &cfg,
                Input::new(&[inf, -inf, inf, -inf]).with_grad(&mut g),
                &[0.0, 1.0, 1.0, 0.0],
            )
            .unwrap();
        assert_eq!(l.values(), &[inf, inf, 0.0, 0.0], "gamma {gamma}");
        assert_eq!(g, [0.75, -0.25, 0.0, 0.0], "gamma {gamma}");
    }
}

#[test]
fn the_f32_domain_is_refused_on_f32_data_only() {
    covers!("TOL-4", "REG-1");
    let cfg = SmoothL1 {
        beta: 1e-40,
        reduction: Reduction::Mean,
    };
    // f64 data: the reference computes it (the expected 0 at d = 0).
    let l = ReferenceBackend
        .smooth_l1(&cfg, &[0.0f64, 0.0], &[0.0, 0.0])
        .unwrap();
    assert_eq!(l.value(), 0.0);
    // f32 data: refused, naming the parameter and the f32 range.
    let e = ReferenceBackend
        .smooth_l1(&cfg, &[0.0f32, 0.0], &[0.0, 0.0])
        .unwrap_err();
    match e {
        LossError::InvalidParameter {
            name: "beta",
            value,
            reason,
        } => {
            assert_eq!(value, 1e-40);
            assert!(reason.contains("f32"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // An upstream of 1e39: f64 data gives the reference's 0 gradient at d = 0.
    let mut g = [1.0f64];
    ReferenceBackend
        .smooth_l1(
            &SmoothL1::default(),
            Input::new(&[0.0f64])
                .with_grad(&mut g)
                .with_upstream(Upstream::Scalar(1e39)),
            &[0.0],
        )
        .unwrap();
    assert_eq!(g, [0.0]);
    let e = ReferenceBackend
        .smooth_l1(
            &SmoothL1::default(),
            Input::new(&[0.0f32]).with_upstream(Upstream::Scalar(1e39)),
            &[0.0],
        )
        .unwrap_err();
    assert!(matches!(
        e,
        LossError::InvalidParameter {
            name: "upstream",
            ..
        }
    ));
}

#[test]
fn non_finite_per_element_upstream_is_refused_on_every_element_type() {
    covers!("TOL-4");
    let cfg = SmoothL1 {
        beta: 1.0,
        reduction: Reduction::None,
    };
    for u in [f64::INFINITY, f64::NAN] {
        let up = [1.0, u];
        let e = ReferenceBackend
            .smooth_l1(
                &cfg,
                Input::new(&[0.0f64, 1.0]).with_upstream(Upstream::PerElement(&up)),
                &[0.0, 0.0],
            )
            .unwrap_err();
        match e {
            LossError::InvalidParameter {
                name: "upstream",
                value,
                ..
            } => assert_eq!(value.to_bits(), u.to_bits()),
            other => panic!("{other:?}"),
        }
        let e = ReferenceBackend
            .smooth_l1(
                &cfg,
                Input::new(&[0.0f32, 1.0]).with_upstream(Upstream::PerElement(&up)),
                &[0.0, 0.0],
            )
            .unwrap_err();
        assert!(matches!(
            e,
            LossError::InvalidParameter {
                name: "upstream",
                ..
            }
        ));
    }
}
