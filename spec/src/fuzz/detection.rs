//! The fuzz campaign's generators of the dense-detector losses (`DFL-*`, `QUAL-*`, `OBB-*`):
//! boundary sizes, non-finite logits and coordinates, parameters inside and outside their
//! domains, targets out of range, lengths wrong by one. Regions kept to: logits within `±40`
//! (saturated sigmoids and softmax rows included; NaN and infinities allowed), oriented boxes
//! of sizes below 100 (zero and negative sizes included; NaN and infinities allowed).

use super::generators::{NAN, maybe_wrong_len, param, reduction, size, value, values, wrong};
use crate::cases::{DetectionCall, LossCall};
use proptest::prelude::*;
use smoothloss_core::{
    DflConvention, DistributionFocal, ProbIou, QualityFocal, Varifocal, VarifocalWeight,
};

fn dfl() -> BoxedStrategy<LossCall> {
    (size(9), 1..18usize, any::<bool>(), reduction(), wrong())
        .prop_flat_map(|(boxes, bins, mm, red, w)| {
            let rows = 4 * boxes;
            let hi = bins as f64 - 1.0;
            let target = if mm {
                prop_oneof![12 => 0.0..hi.max(1e-9), 1 => Just(hi), 1 => Just(-0.5), 1 => Just(NAN)]
                    .boxed()
            } else {
                value(-2.0, hi + 2.0, true)
            };
            (
                values(rows * bins, -40.0, 40.0),
                prop::collection::vec(target, rows),
            )
                .prop_map(move |(logits, targets)| {
                    LossCall::Detection(DetectionCall::Dfl {
                        cfg: DistributionFocal {
                            convention: if mm {
                                DflConvention::Mmdetection
                            } else {
                                DflConvention::Ultralytics
                            },
                            reduction: red,
                        },
                        logits,
                        rows,
                        bins,
                        targets: maybe_wrong_len(targets, w),
                    })
                })
        })
        .boxed()
}

fn varifocal() -> BoxedStrategy<LossCall> {
    (size(130), 0..3usize, reduction(), wrong(), 0..6u8)
        .prop_flat_map(|(n, wk, red, w, avg)| {
            let weight = [
                VarifocalWeight::Ultralytics,
                VarifocalWeight::MmdetIouWeighted,
                VarifocalWeight::Mmdet,
            ][wk];
            let score =
                prop_oneof![6 => Just(0.0), 6 => 0.0..=1.0f64, 1 => Just(1.0), 1 => Just(1.5)];
            (
                values(n, -40.0, 40.0),
                prop::collection::vec(score, n),
                prop::collection::vec(0..2u8, n),
                param(0.0, 1.0, &[-1.0, NAN]),
                param(0.0, 4.0, &[-1.0, NAN]),
            )
                .prop_map(move |(logits, scores, labels, alpha, gamma)| {
                    let ultra = weight == VarifocalWeight::Ultralytics;
                    let labels: Vec<f64> = labels.iter().map(|&l| f64::from(l)).collect();
                    // Ultralytics' scores go with its labels (a score only where the label is 1).
                    let scores = if ultra {
                        scores.iter().zip(&labels).map(|(s, l)| s * l).collect()
                    } else {
                        scores
                    };
                    LossCall::Detection(DetectionCall::Varifocal {
                        cfg: Varifocal {
                            alpha,
                            gamma,
                            weight,
                            reduction: red,
                            avg_factor: match avg {
                                0 => Some(2.5),
                                1 => Some(0.0),
                                _ => None,
                            },
                        },
                        logits,
                        scores: maybe_wrong_len(scores, w),
                        labels: ultra.then_some(labels),
                    })
                })
        })
        .boxed()
}

fn qfl() -> BoxedStrategy<LossCall> {
    (size(17), 1..9usize, reduction(), wrong())
        .prop_flat_map(|(rows, classes, red, w)| {
            let label = prop_oneof![12 => 0..=classes as i64, 1 => Just(classes as i64 + 1), 1 => Just(-1i64)];
            (
                values(rows * classes, -40.0, 40.0),
                prop::collection::vec(label, rows),
                prop::collection::vec(prop_oneof![8 => 0.0..=1.0f64, 1 => Just(0.0), 1 => Just(1.0)], rows),
                param(1.0, 4.0, &[0.0, -1.0, NAN]),
            )
                .prop_map(move |(logits, labels, scores, beta)| {
                    LossCall::Detection(DetectionCall::Qfl {
                        cfg: QualityFocal { beta, reduction: red, avg_factor: None },
                        logits,
                        rows,
                        classes,
                        labels,
                        scores: maybe_wrong_len(scores, w),
                    })
                })
        })
        .boxed()
}

fn obb() -> BoxedStrategy<Vec<f64>> {
    (
        value(-200.0, 200.0, true),
        value(-200.0, 200.0, true),
        value(0.0, 100.0, true),
        prop_oneof![8 => 0.5..100.0f64, 1 => Just(0.0), 1 => Just(-3.0)],
        value(-7.0, 7.0, true),
    )
        .prop_map(|(x, y, w, h, r)| vec![x, y, w, h, r])
        .boxed()
}

fn probiou() -> BoxedStrategy<LossCall> {
    (size(65), any::<bool>(), reduction(), wrong(), any::<bool>())
        .prop_flat_map(|(n, ciou, red, w, pairwise)| {
            (
                prop::collection::vec(obb(), n),
                prop::collection::vec(
                    (
                        -4.0..4.0f64,
                        -4.0..4.0f64,
                        0.5..1.5f64,
                        0.5..1.5f64,
                        -0.5..0.5f64,
                    ),
                    n,
                ),
                param(1e-9, 1e-3, &[0.0, NAN]),
                param(0.0, 2.0, &[-1.0]),
                size(5),
            )
                .prop_map(move |(t, d, eps, floor, m)| {
                    // Predictions near their targets, so that many pairs are away from the clamps.
                    let pred: Vec<f64> = t
                        .iter()
                        .zip(&d)
                        .flat_map(|(b, d)| {
                            [b[0] + d.0, b[1] + d.1, b[2] * d.2, b[3] * d.3, b[4] + d.4]
                        })
                        .collect();
                    let target: Vec<f64> = t.concat();
                    if pairwise {
                        let m = m.min(n);
                        LossCall::Detection(DetectionCall::BatchProbIou {
                            eps,
                            boxes1: pred,
                            boxes2: target[..5 * m].to_vec(),
                        })
                    } else {
                        LossCall::Detection(DetectionCall::ProbIou {
                            cfg: ProbIou {
                                eps,
                                floor,
                                ciou,
                                reduction: red,
                            },
                            pred,
                            target: maybe_wrong_len(target, w),
                        })
                    }
                })
        })
        .boxed()
}

/// Any dense-detector call.
pub(super) fn detection() -> BoxedStrategy<LossCall> {
    prop_oneof![2 => dfl(), 2 => varifocal(), 1 => qfl(), 2 => probiou()].boxed()
}
