//! The shared conformance suite against the CPU backend (`TOL-2`), and `TOL-3`: bit-identical
//! results for any number of threads.

use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, Reduction, SigmoidFocal, SmoothL1,
};
use smoothloss_cpu::CpuBackend;
use smoothloss_spec::cases::{LossCall, Targets};
use smoothloss_spec::conformance::Tolerances;
use smoothloss_spec::kit;
use smoothloss_spec::random::{Rng, box_pairs, random_calls};
use smoothloss_spec::run_call;

smoothloss_spec::conformance_tests!(CpuBackend::new(), f32, Tolerances::F32);

/// Calls large enough to be split into many blocks and rows.
fn large_calls() -> Vec<(String, LossCall)> {
    let mut rng = Rng::new(7);
    let mut v = Vec::new();
    for &(n, c) in &[(300, 1000), (3, 70_001), (2000, 7)] {
        v.push((
            format!("ce-{n}x{c}"),
            LossCall::CrossEntropy {
                cfg: CrossEntropy::new()
                    .with_label_smoothing(0.1)
                    .with_class_weights(rng.vec(c, 0.5, 2.0)),
                logits: rng.vec(n * c, -10.0, 10.0),
                rows: n,
                classes: c,
                targets: Targets::Classes(
                    (0..n)
                        .map(|i| {
                            if i % 5 == 4 {
                                -100
                            } else {
                                rng.below(c) as i64
                            }
                        })
                        .collect(),
                ),
            },
        ));
    }
    // The LLM options (CE-10 .. CE-13): rows spread over several tasks, and long rows.
    for &(n, c) in &[(2500, 1000), (3, 70_001)] {
        v.push((
            format!("ce-llm-{n}x{c}"),
            LossCall::CrossEntropy {
                cfg: CrossEntropy::new()
                    .with_label_smoothing(0.1)
                    .with_softcap(15.0)
                    .with_z_loss(1e-3)
                    .with_row_weights(rng.vec(n, 0.0, 2.0))
                    .with_denominator(0.7 * n as f64),
                logits: rng.vec(n * c, -20.0, 20.0),
                rows: n,
                classes: c,
                targets: Targets::Classes(
                    (0..n)
                        .map(|i| {
                            if i % 7 == 3 {
                                -100
                            } else {
                                rng.below(c) as i64
                            }
                        })
                        .collect(),
                ),
            },
        ));
    }
    for kind in [BoxLossKind::Giou, BoxLossKind::Ciou, BoxLossKind::Eiou] {
        let (pred, target) = box_pairs(&mut rng, 100_003, BoxFormat::Cxcywh);
        v.push((
            format!("box-{}", kind.as_str()),
            LossCall::BoxLoss {
                cfg: BoxLoss::new(kind, BoxFormat::Cxcywh),
                pred,
                target,
            },
        ));
    }
    let x = rng.vec(200_001, -8.0, 8.0);
    let y: Vec<f64> = (0..x.len()).map(|i| (i % 2) as f64).collect();
    v.push((
        "smooth-l1".into(),
        LossCall::SmoothL1 {
            cfg: SmoothL1::default(),
            pred: x.clone(),
            target: y.clone(),
        },
    ));
    v.push((
        "bce".into(),
        LossCall::Bce {
            cfg: BceWithLogits {
                pos_weight: None,
                reduction: Reduction::Sum,
            },
            logits: x.clone(),
            targets: y.clone(),
        },
    ));
    v.push((
        "focal".into(),
        LossCall::Focal {
            cfg: SigmoidFocal {
                reduction: Reduction::Mean,
                ..SigmoidFocal::default()
            },
            logits: x,
            targets: y,
        },
    ));
    v
}

/// TOL-3: the same input gives bit-identical loss and gradient with 1, 2 and 3 threads.
#[test]
fn results_are_bit_identical_for_any_thread_count() {
    let backends = [
        CpuBackend::with_threads(1),
        CpuBackend::with_threads(2),
        CpuBackend::with_threads(3),
    ];
    let mut calls = random_calls(99);
    calls.extend(large_calls());
    for (id, call) in &calls {
        let outs: Vec<_> = backends
            .iter()
            .map(|b| run_call::<f32, _>(b, call).unwrap_or_else(|e| panic!("{id}: {e}")))
            .collect();
        for o in &outs[1..] {
            if let Err(e) = kit::same_bits_f64(&o.loss, &outs[0].loss) {
                panic!("{id}: loss differs across thread counts: {e}");
            }
            match (&o.grad, &outs[0].grad) {
                (Some(a), Some(b)) => {
                    if let Err(e) = kit::same_bits_f64(a, b) {
                        panic!("{id}: gradient differs across thread counts: {e}");
                    }
                }
                (None, None) => {}
                _ => panic!("{id}: gradient present for one thread count only"),
            }
        }
    }
}
