//! The fused linear cross-entropy's reference (`LCE-*`): PyTorch's float64 composite cases,
//! finite differences of the loss in `h`, `W` and `b`, the global `mean` denominator, and the
//! planner's errors.

use smoothloss_core::{
    CeTargets, CrossEntropy, Linear, LinearCrossEntropy, LossError, Losses, Reduction,
    ReferenceBackend, Upstream,
};
use smoothloss_spec::cases::Targets;
use smoothloss_spec::cases::linear_ce::{LinearCeCall, run_linear_ce};
use smoothloss_spec::conformance::linear_ce::compare_linear;
use smoothloss_spec::conformance::{Outcome, Tolerances, linear_ce_cases};
use smoothloss_spec::covers;
use smoothloss_spec::random::Rng;
use smoothloss_spec::tolerance::Tolerance;

#[test]
fn reference_passes_every_linear_ce_torch_case() {
    covers!("LCE-1", "LCE-2", "LCE-3");
    let file = smoothloss_spec::linear_ce_cases();
    if smoothloss_spec::case_filter().is_none() {
        assert_eq!(file.cases.len(), 32, "the bundled file holds 32 cases");
    }
    let r = linear_ce_cases::<f64, _>(&ReferenceBackend, &Tolerances::F64);
    assert!(r.all_passed(), "{r}");
    assert_eq!(
        r.passed(),
        file.filtered(smoothloss_spec::case_filter().as_deref())
            .len()
    );
}

#[test]
fn a_wrong_gradient_fails_the_comparison() {
    // The comparison can fail: one case, its expected dW nudged by 1e-6 relative.
    let file = smoothloss_spec::linear_ce_cases();
    let (call, mut want) = file.cases[0].decode_linear_ce().unwrap();
    let got = run_linear_ce::<f64, _>(&ReferenceBackend, &call, Upstream::ONE, true).unwrap();
    assert_eq!(
        compare_linear(&got, &want, &Tolerance::REFERENCE, 1.0),
        Outcome::Passed
    );
    let dw = &mut want.grads.as_mut().unwrap()[1];
    dw[3] *= 1.0 + 1e-6;
    assert!(matches!(
        compare_linear(&got, &want, &Tolerance::REFERENCE, 1.0),
        Outcome::Failed(m) if m.contains("grad.weight")
    ));
}

fn random_call(
    rng: &mut Rng,
    n: usize,
    h: usize,
    v: usize,
    cfg: CrossEntropy,
    probs: bool,
) -> LinearCeCall {
    let targets = if probs {
        let mut q = rng.vec(n * v, 0.0, 1.0);
        for row in q.chunks_mut(v) {
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= s);
        }
        Targets::Probs(q)
    } else {
        Targets::Classes(
            (0..n)
                .map(|i| if i % 4 == 3 { -100 } else { (i * 7 % v) as i64 })
                .collect(),
        )
    };
    LinearCeCall {
        cfg: LinearCrossEntropy::new(cfg),
        hidden: rng.vec(n * h, -1.5, 1.5),
        weight: rng.vec(v * h, -1.0, 1.0),
        bias: Some(rng.vec(v, -0.5, 0.5)),
        hidden_dim: h,
        targets,
    }
}

fn loss_of(call: &LinearCeCall) -> f64 {
    run_linear_ce::<f64, _>(&ReferenceBackend, call, Upstream::ONE, false)
        .unwrap()
        .loss
        .iter()
        .sum()
}

#[test]
fn finite_differences_of_the_reference() {
    covers!("LCE-3");
    let mut rng = Rng::new(41);
    let cfgs = [
        CrossEntropy::new(),
        CrossEntropy::new()
            .with_label_smoothing(0.2)
            .with_class_weights(vec![0.5, 1.0, 2.0, 1.5, 0.25]),
        CrossEntropy::new().with_reduction(Reduction::Sum),
    ];
    for (k, cfg) in cfgs.into_iter().enumerate() {
        for probs in [false, true] {
            let call = random_call(&mut rng, 6, 3, 5, cfg.clone(), probs);
            let g = run_linear_ce::<f64, _>(&ReferenceBackend, &call, Upstream::ONE, true).unwrap();
            let [dh, dw, db] = g.grads.unwrap();
            let step = 1e-6;
            let fd = |f: &dyn Fn(&mut LinearCeCall, f64)| {
                let (mut p, mut m) = (call.clone(), call.clone());
                f(&mut p, step);
                f(&mut m, -step);
                (loss_of(&p) - loss_of(&m)) / (2.0 * step)
            };
            let check = |name: &str, got: &[f64], bump: &dyn Fn(&mut LinearCeCall, usize, f64)| {
                for (i, &g) in got.iter().enumerate() {
                    let want = fd(&|c, d| bump(c, i, d));
                    assert!(
                        (g - want).abs() <= 1e-7 + 1e-6 * want.abs(),
                        "cfg {k} {name}[{i}]: {g} vs {want}"
                    );
                }
            };
            check("dH", &dh, &|c, i, d| c.hidden[i] += d);
            check("dW", &dw, &|c, i, d| c.weight[i] += d);
            check("db", &db, &|c, i, d| {
                if let Some(b) = c.bias.as_mut() {
                    b[i] += d;
                }
            });
            assert_eq!((dh.len(), dw.len(), db.len()), (18, 15, 5));
        }
    }
}

#[test]
fn the_mean_is_the_weighted_mean_of_the_whole_batch() {
    covers!("LCE-2");
    // Rows 0..3 ignored: the weighted mean over the kept rows of the whole batch (the CPU
    // test `chunks_do_not_change_the_mean` checks the chunked path against it).
    let mut rng = Rng::new(5);
    let mut call = random_call(
        &mut rng,
        8,
        3,
        4,
        CrossEntropy::new().with_class_weights(vec![1.0, 2.0, 0.5, 1.0]),
        false,
    );
    call.targets = Targets::Classes(vec![-100, -100, -100, 1, 0, 2, 3, 1]);
    let whole = run_linear_ce::<f64, _>(&ReferenceBackend, &call, Upstream::ONE, false).unwrap();
    // The value: the composite's weighted mean, by hand from the per-row losses.
    let mut none = call.clone();
    none.cfg.ce.reduction = Reduction::None;
    let rows = run_linear_ce::<f64, _>(&ReferenceBackend, &none, Upstream::ONE, false)
        .unwrap()
        .loss;
    let d = 2.0 + 1.0 + 0.5 + 1.0 + 2.0;
    assert!((whole.loss[0] - rows.iter().sum::<f64>() / d).abs() < 1e-12);
}

#[test]
fn bad_calls_are_refused_with_typed_errors() {
    let (h, w, b) = (vec![0.5f64; 6], vec![1.0f64; 8], vec![0.0f64; 4]);
    let lce = LinearCrossEntropy::new(CrossEntropy::new());
    let t = [0i64, 3, 1];
    let r = |inp: Linear<'_, f64>, t: &[i64]| ReferenceBackend.linear_cross_entropy(&lce, inp, t);
    assert!(r(Linear::new(&h, &w, 2), &t).is_ok()); // N = 3, H = 2, V = 4
    assert!(matches!(
        r(Linear::new(&h, &w, 0), &t),
        Err(LossError::EmptyInput { what: "hidden", .. })
    ));
    assert!(matches!(
        r(Linear::new(&h, &w, 4), &t),
        Err(LossError::ShapeMismatch { what: "hidden", .. })
    ));
    assert!(matches!(
        r(Linear::new(&h, &w[..7], 2), &t),
        Err(LossError::ShapeMismatch { what: "weight", .. })
    ));
    assert!(matches!(
        r(Linear::new(&h, &w[..0], 2), &t),
        Err(LossError::EmptyInput { what: "weight", .. })
    ));
    assert!(matches!(
        r(Linear::new(&h[..0], &w, 2), &t[..0]),
        Err(LossError::EmptyInput { what: "logits", .. })
    ));
    assert!(matches!(
        r(Linear::new(&h, &w, 2).with_bias(&b[..3]), &t),
        Err(LossError::ShapeMismatch { what: "bias", .. })
    ));
    assert!(matches!(
        r(Linear::new(&h, &w, 2), &t[..2]),
        Err(LossError::ShapeMismatch {
            what: "targets",
            ..
        })
    ));
    assert!(matches!(
        r(Linear::new(&h, &w, 2), &[0, 4, 1]),
        Err(LossError::TargetOutOfRange {
            row: 1,
            target: 4,
            classes: 4
        })
    ));
    let (mut dh, mut dw, mut db) = (vec![7.0; 6], vec![7.0; 8], vec![7.0; 4]);
    assert!(matches!(
        r(Linear::new(&h, &w, 2).with_grads(&mut dh[..5], &mut dw), &t),
        Err(LossError::ShapeMismatch {
            what: "hidden_grad",
            expected: 6,
            got: 5
        })
    ));
    assert!(matches!(
        r(
            Linear::new(&h, &w, 2).with_grads(&mut dh, &mut dw[..9 - 2]),
            &t
        ),
        Err(LossError::ShapeMismatch {
            what: "weight_grad",
            ..
        })
    ));
    assert!(matches!(
        r(
            Linear::new(&h, &w, 2)
                .with_grads(&mut dh, &mut dw)
                .with_bias_grad(&mut db),
            &t
        ),
        Err(LossError::ShapeMismatch {
            what: "bias",
            expected: 4,
            got: 0
        })
    ));
    assert!(matches!(
        r(
            Linear::new(&h, &w, 2)
                .with_bias(&b)
                .with_grads(&mut dh, &mut dw)
                .with_bias_grad(&mut db[..2]),
            &t
        ),
        Err(LossError::ShapeMismatch {
            what: "bias_grad",
            ..
        })
    ));
    assert!(matches!(
        r(
            Linear::new(&h, &w, 2).with_upstream(Upstream::PerElement(&[1.0; 3])),
            &t
        ),
        Err(LossError::InvalidParameter {
            name: "upstream",
            ..
        })
    ));
    let zero = LinearCrossEntropy::new(CrossEntropy::new()).with_chunk_rows(0);
    assert!(matches!(
        ReferenceBackend.linear_cross_entropy(&zero, Linear::new(&h, &w, 2), &t),
        Err(LossError::InvalidParameter {
            name: "chunk_rows",
            ..
        })
    ));
    let bad_w = LinearCrossEntropy::new(CrossEntropy::new().with_class_weights(vec![1.0; 3]));
    assert!(matches!(
        ReferenceBackend.linear_cross_entropy(&bad_w, Linear::new(&h, &w, 2), &t),
        Err(LossError::ShapeMismatch {
            what: "class_weights",
            expected: 4,
            got: 3
        })
    ));
    let probs = [0.25f64; 11];
    assert!(matches!(
        ReferenceBackend.linear_cross_entropy(
            &lce,
            Linear::new(&h, &w, 2),
            CeTargets::Probs(&probs)
        ),
        Err(LossError::ShapeMismatch {
            what: "target_probs",
            expected: 12,
            got: 11
        })
    ));
    // A bias gradient without the other two is refused, not left unwritten; given before
    // `with_grads` it is kept.
    assert!(matches!(
        r(
            Linear::new(&h, &w, 2).with_bias(&b).with_bias_grad(&mut db),
            &t
        ),
        Err(LossError::ShapeMismatch {
            what: "hidden_grad",
            expected: 6,
            got: 0
        })
    ));
    let (mut dh2, mut dw2, mut db2) = (vec![7.0; 6], vec![7.0; 8], vec![7.0; 4]);
    let ok = r(
        Linear::new(&h, &w, 2)
            .with_bias(&b)
            .with_bias_grad(&mut db2)
            .with_grads(&mut dh2, &mut dw2),
        &t,
    );
    assert!(
        ok.is_ok() && db2.iter().all(|&x| x != 7.0),
        "{ok:?} {db2:?}"
    );
    // Nothing was written by the refused calls.
    assert!(dh.iter().chain(&dw).chain(&db).all(|&x| x == 7.0));
}
