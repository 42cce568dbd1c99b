//! The reductions of the box and element-wise losses (`BOX-10`, `REG-5`, `BIN-5`), on the
//! reference with random inputs: `sum` is the sum of the `none` values and `mean` that sum
//! divided by the number of items, and the gradients scale the same way (`1` for `sum`, `1/N`
//! for `mean`, with an upstream gradient of 1).
//!
//! Both sides are the reference, so the only difference is summation order: the bound here is
//! a few ulps (`1e-12` relative to the largest term), not a `TOL-*` figure, which compare an
//! implementation with expected values.

use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, Huber, Reduction, ReferenceBackend,
    SigmoidFocal, SmoothL1,
};
use smoothloss_spec::kit::{self, Rng};
use smoothloss_spec::random::box_pairs;
use smoothloss_spec::{LossCall, Output, covers, run_call};

const ULPS: f64 = 1e-12;

fn reduced(call: &LossCall, r: Reduction) -> LossCall {
    let mut c = call.clone();
    match &mut c {
        LossCall::BoxLoss { cfg, .. } => cfg.reduction = r,
        LossCall::SmoothL1 { cfg, .. } => cfg.reduction = r,
        LossCall::Huber { cfg, .. } => cfg.reduction = r,
        LossCall::Bce { cfg, .. } => cfg.reduction = r,
        LossCall::Focal { cfg, .. } => cfg.reduction = r,
        other => panic!("not a box or element-wise loss: {other:?}"),
    }
    c
}

fn run(call: &LossCall) -> Output {
    run_call::<f64, _>(&ReferenceBackend, call).unwrap()
}

/// Checks the `none` / `sum` / `mean` relations for `call`; returns the number of items.
fn check_reductions(name: &str, call: &LossCall) -> usize {
    let none = run(&reduced(call, Reduction::None));
    let sum = run(&reduced(call, Reduction::Sum));
    let mean = run(&reduced(call, Reduction::Mean));
    let n = none.loss.len();
    assert!(n > 1, "{name}");
    assert_eq!((sum.loss.len(), mean.loss.len()), (1, 1), "{name}");
    let total: f64 = none.loss.iter().sum();
    let scale = none.loss.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let bound = ULPS * scale * n as f64;
    assert!(
        kit::close(sum.loss[0], total, bound, 0.0),
        "{name}: sum {} vs {total}",
        sum.loss[0]
    );
    assert!(
        kit::close(mean.loss[0], total / n as f64, bound / n as f64, 0.0),
        "{name}: mean {} vs {}",
        mean.loss[0],
        total / n as f64
    );
    let (gn, gs, gm) = (none.grad.unwrap(), sum.grad.unwrap(), mean.grad.unwrap());
    for k in 0..gn.len() {
        let tol = ULPS * gn[k].abs();
        assert!(kit::close(gs[k], gn[k], tol, 0.0), "{name}: sum grad {k}");
        assert!(
            kit::close(gm[k], gn[k] / n as f64, tol / n as f64, 0.0),
            "{name}: mean grad {k}"
        );
    }
    n
}

#[test]
fn box_reductions() {
    covers!("BOX-10");
    let mut rng = Rng::new(11);
    for kind in BoxLossKind::ALL {
        for format in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh] {
            let (pred, target) = box_pairs(&mut rng, 9, format);
            let mut cfg = BoxLoss::new(kind, format)
                .with_options(smoothloss_spec::random::box_options(kind, 0));
            if rng.unit() < 0.5 {
                cfg = cfg.with_threshold_weight(0.3, 0.5);
            }
            let call = LossCall::BoxLoss { cfg, pred, target };
            assert_eq!(check_reductions(kind.as_str(), &call), 9);
        }
    }
}

#[test]
fn elementwise_reductions() {
    covers!("REG-5", "BIN-5");
    let mut rng = Rng::new(12);
    let n = 13;
    let pred = rng.vec(n, -3.0, 3.0);
    let target = rng.vec(n, -3.0, 3.0);
    let logits = rng.vec(n, -8.0, 8.0);
    let y = rng.vec(n, 0.0, 1.0);
    let mean = Reduction::Mean;
    let calls = [
        LossCall::SmoothL1 {
            cfg: SmoothL1 {
                beta: 0.7,
                reduction: mean,
            },
            pred: pred.clone(),
            target: target.clone(),
        },
        LossCall::Huber {
            cfg: Huber {
                delta: 1.3,
                reduction: mean,
            },
            pred,
            target,
        },
        LossCall::Bce {
            cfg: BceWithLogits {
                pos_weight: Some(vec![2.5]),
                reduction: mean,
            },
            logits: logits.clone(),
            targets: y.clone(),
        },
        LossCall::Focal {
            cfg: SigmoidFocal {
                alpha: 0.25,
                gamma: 2.0,
                reduction: mean,
            },
            logits,
            targets: y,
        },
    ];
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(check_reductions(&format!("call {i}"), call), n);
    }
}
