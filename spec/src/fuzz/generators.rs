//! The campaign's generators: an adversarial [`FuzzCall`] of every entry point (boundary
//! sizes, non-finite values, parameters in and out of their domains, lengths wrong by one,
//! targets out of range, every upstream kind and gradient destination). The regions they keep
//! to are listed in the module docs of [`fuzz`](super).

use super::{CE_SPREAD, FOCAL_SPREAD, FuzzCall, Mode, Up, ce_options, detection};
use crate::cases::{LossCall, Targets};
use proptest::prelude::*;
use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, Huber, Reduction, SigmoidFocal,
    SmoothL1, ThresholdWeight,
};

pub(super) const NAN: f64 = f64::NAN;
pub(super) const INF: f64 = f64::INFINITY;

/// A size: a boundary (empty, one, around SIMD lanes and blocks) or any size up to `max`.
pub(super) fn size(max: usize) -> BoxedStrategy<usize> {
    const EDGES: [usize; 24] = [
        0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257,
    ];
    let edges: Vec<usize> = EDGES.iter().copied().filter(|&e| e <= max).collect();
    prop_oneof![3 => prop::sample::select(edges), 1 => 0..=max].boxed()
}

/// A value in `lo..hi`, or an edge value (zeros, one, tiny); non-finite values too when `nf`.
pub(super) fn value(lo: f64, hi: f64, nf: bool) -> BoxedStrategy<f64> {
    let finite = prop_oneof![
        12 => lo..hi,
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(lo),
        1 => -1e-30..1e-30f64,
    ];
    if nf {
        prop_oneof![
            12 => finite,
            1 => Just(NAN),
            1 => Just(INF),
            1 => Just(-INF),
        ]
        .boxed()
    } else {
        finite.boxed()
    }
}

/// `n` values; non-finite ones in one call out of five.
pub(super) fn values(n: usize, lo: f64, hi: f64) -> BoxedStrategy<Vec<f64>> {
    prop_oneof![
        4 => prop::collection::vec(value(lo, hi, false), n),
        1 => prop::collection::vec(value(lo, hi, true), n),
    ]
    .boxed()
}

/// A length wrong by one now and then (the front door must refuse it as the reference does).
pub(super) fn maybe_wrong_len(v: Vec<f64>, wrong: u8) -> Vec<f64> {
    let mut v = v;
    match wrong {
        0 if !v.is_empty() => {
            v.pop();
        }
        1 => v.push(0.5),
        _ => {}
    }
    v
}

/// `0` or `1` (one length wrong by one) one call in twenty, else no change.
pub(super) fn wrong() -> BoxedStrategy<u8> {
    prop_oneof![19 => Just(9u8), 1 => 0..2u8].boxed()
}

pub(super) fn reduction() -> BoxedStrategy<Reduction> {
    crate::strategies::reduction().boxed()
}

/// A parameter in its domain (edges included), or now and then outside it.
pub(super) fn param(lo: f64, hi: f64, bad: &'static [f64]) -> BoxedStrategy<f64> {
    prop_oneof![
        30 => lo..hi,
        3 => Just(lo),
        3 => Just(hi),
        1 => prop::sample::select(bad),
    ]
    .boxed()
}

fn cross_entropy() -> BoxedStrategy<LossCall> {
    (1..=9usize, size(1025), 1..4usize)
        .prop_flat_map(|(rows_pick, classes, spread)| {
            // One class included: every row is confident (p = 1) and the exact gradient
            // cancels to 0, which TOL-2's scaled absolute term allows for (issue 14 item 6).
            let rows = [0, 1, 2, 3, 5, 8, 9, 17, 33][rows_pick - 1].min(8192 / classes.max(1));
            let n = rows * classes;
            let spread = [0.5, 1.0, CE_SPREAD][spread - 1];
            let c = classes as i64;
            let target = prop_oneof![
                400 => 0..c.max(1),
                20 => Just(-100i64),
                1 => prop::sample::select(vec![c, -1, i64::MIN, i64::MAX]),
            ];
            let probs = prop::collection::vec(0.0..1.0f64, n).prop_map(move |mut v| {
                for row in v.chunks_mut(classes.max(1)) {
                    let s: f64 = row.iter().sum();
                    let k = row.len() as f64;
                    row.iter_mut()
                        .for_each(|x| *x = if s > 0.0 { *x / s } else { 1.0 / k });
                }
                v
            });
            let targets = prop_oneof![
                3 => prop::collection::vec(target, rows).prop_map(Targets::Classes),
                1 => probs.prop_map(Targets::Probs),
            ];
            let weights = prop_oneof![
                12 => Just(None),
                // No zero weights for now (finding `ce-zero-total-weight-mean`).
                6 => prop::collection::vec(0.05..3.0f64, classes).prop_map(Some),
                1 => prop::collection::vec(0.0..3.0f64, classes + 1).prop_map(Some),
                1 => Just(Some(vec![-1.0; classes])),
            ];
            let ignore = prop_oneof![
                Just(None),
                Just(Some(-100i64)),
                (0..c.max(1)).prop_map(Some)
            ];
            (
                values(n, -spread, spread),
                wrong(),
                targets,
                param(0.0, 1.0, &[1.5, -0.1, NAN, INF]),
                weights,
                ignore,
                reduction(),
                ce_options::llm_options(rows),
            )
                .prop_map(
                    move |(logits, w, targets, ls, class_weights, ignore, r, llm)| {
                        let (softcap, z_loss, row_weights, denominator) = llm;
                        LossCall::CrossEntropy {
                            cfg: CrossEntropy {
                                label_smoothing: ls,
                                ignore_index: ignore,
                                class_weights,
                                reduction: r,
                                softcap,
                                z_loss,
                                row_weights,
                                denominator,
                            },
                            logits: maybe_wrong_len(logits, w),
                            rows,
                            classes,
                            targets,
                        }
                    },
                )
        })
        .boxed()
}

/// `n` boxes in `format`: ordinary, degenerate (zero size), identical, disjoint boxes, large
/// coordinates, non-finite coordinates when `nf`. No inverted boxes (`x2 < x1`: finding
/// `giou-inverted-boxes`) and no tiny extents (finding `box-tiny-width`) for now.
fn boxes(n: usize, format: BoxFormat, nf: bool, degenerate: bool) -> BoxedStrategy<Vec<f64>> {
    let thin = if degenerate { 1 } else { 0 };
    let corner = prop_oneof![
        8 => (-100.0..100.0f64, -100.0..100.0f64, 0.0..50.0f64, 0.0..50.0f64),
        thin => (-1.0..1.0f64, -1.0..1.0f64, Just(0.0), 0.0..1.0f64),
        1 => (-1e4..1e4f64, -1e4..1e4f64, 0.0..50.0f64, 0.0..50.0f64),
    ]
    .prop_map(move |(x, y, w, h)| format.from_xyxy([x, y, x + w, y + h]));
    let one = if nf {
        prop_oneof![
            8 => corner.boxed(),
            1 => prop::collection::vec(box_coordinate(), 4)
                .prop_map(|v| [v[0], v[1], v[2], v[3]])
                .boxed(),
        ]
        .boxed()
    } else {
        corner.boxed()
    };
    prop::collection::vec(one, n)
        .prop_map(|v| v.into_iter().flatten().collect())
        .boxed()
}

/// A coordinate, non-finite ones included; no tiny magnitudes (finding `box-tiny-width`).
fn box_coordinate() -> BoxedStrategy<f64> {
    prop_oneof![
        12 => -10.0..10.0f64,
        1 => Just(0.0),
        1 => Just(NAN),
        1 => Just(INF),
        1 => Just(-INF),
    ]
    .boxed()
}

fn box_format() -> BoxedStrategy<BoxFormat> {
    crate::strategies::box_format().boxed()
}

fn box_loss() -> BoxedStrategy<LossCall> {
    (
        size(65),
        box_format(),
        any::<bool>(),
        crate::strategies::box_kind(),
    )
        .prop_flat_map(|(n, format, nf, kind)| {
            // Finding `giou-eps-dominated`: GIoU where the union is about eps (zero-size or
            // identical boxes) is off by more than TOL-2; no such pairs for GIoU for now.
            let degenerate = kind != BoxLossKind::Giou;
            let threshold = prop_oneof![
                2 => Just(None),
                1 => (0.0..1.0f64, 0.0..1.0f64)
                    .prop_map(|(alpha, threshold)| Some(ThresholdWeight { alpha, threshold })),
            ];
            (
                boxes(n, format, nf, degenerate),
                boxes(n, format, false, degenerate),
                Just(kind),
                param(1e-9, 1e-6, &[0.0, -1.0, NAN]),
                reduction(),
                threshold,
                wrong(),
                any::<bool>(),
            )
                .prop_map(
                    move |(pred, target, kind, eps, reduction, threshold_weight, w, same)| {
                        // The option variant from values already drawn (no extra draw, so the
                        // other targets' calls stay those of the campaign's seed).
                        let opt = (eps.to_bits() ^ pred.len() as u64) as usize % 6;
                        let same = same && degenerate;
                        let target = if same { pred.clone() } else { target };
                        LossCall::BoxLoss {
                            cfg: BoxLoss {
                                kind,
                                format,
                                eps,
                                reduction,
                                threshold_weight,
                                options: crate::random::box_options(kind, opt),
                            },
                            pred,
                            target: maybe_wrong_len(target, w),
                        }
                    },
                )
        })
        .boxed()
}

fn box_iou() -> BoxedStrategy<LossCall> {
    (size(33), size(33), box_format())
        .prop_flat_map(|(n, m, format)| {
            (
                // Non-finite coordinates on the first side (BOX-13 in every format).
                boxes(n, format, true, true),
                boxes(m, format, false, true),
                wrong(),
            )
                .prop_map(move |(boxes1, boxes2, w)| LossCall::BoxIou {
                    format,
                    boxes1: maybe_wrong_len(boxes1, w),
                    boxes2,
                })
        })
        .boxed()
}

fn elementwise() -> BoxedStrategy<LossCall> {
    (size(1025), 0..4usize, 0..3usize)
        .prop_flat_map(|(n, which, scale)| {
            let scale = [1.0, 10.0, 1e4][scale];
            let bin_targets = prop::collection::vec(
                prop_oneof![
                    400 => prop::sample::select(vec![0.0, 1.0]),
                    200 => 0.0..1.0f64,
                    1 => prop::sample::select(vec![-0.5, 1.5, NAN]),
                ],
                n,
            );
            let pos_weight = prop_oneof![
                2 => Just(None),
                1 => (0.0..5.0f64).prop_map(|w| Some(vec![w])),
                1 => prop::collection::vec(0.0..5.0f64, n).prop_map(Some),
            ];
            (
                values(n, -scale, scale),
                values(n, -scale, scale),
                bin_targets,
                pos_weight,
                param(0.0, 4.0, &[-1.0, NAN, INF]),
                param(-1.0, 1.0, &[NAN, 2.0]),
                reduction(),
                wrong(),
                values(n, -FOCAL_SPREAD, FOCAL_SPREAD),
            )
                .prop_map(move |(x, y, t, pos_weight, p, alpha, reduction, w, fx)| {
                    match which {
                        0 => LossCall::SmoothL1 {
                            cfg: SmoothL1 { beta: p, reduction },
                            pred: x,
                            target: maybe_wrong_len(y, w),
                        },
                        1 => LossCall::Huber {
                            cfg: Huber {
                                delta: p,
                                reduction,
                            },
                            pred: x,
                            target: maybe_wrong_len(y, w),
                        },
                        2 => LossCall::Bce {
                            cfg: BceWithLogits {
                                pos_weight,
                                reduction,
                            },
                            logits: x.iter().map(|v| v * 30.0 / scale).collect(),
                            targets: maybe_wrong_len(t, w),
                        },
                        _ => LossCall::Focal {
                            cfg: SigmoidFocal {
                                alpha,
                                gamma: p,
                                reduction,
                            },
                            // Saturated and infinite logits included (the limit, TOL-4).
                            logits: fx,
                            targets: maybe_wrong_len(t, w),
                        },
                    }
                })
        })
        .boxed()
}

/// The number of loss values `call` returns when it is valid (for a per-element upstream).
fn outputs(call: &LossCall) -> usize {
    let none = |r: Reduction, n: usize| if r == Reduction::None { n } else { 1 };
    match call {
        LossCall::CrossEntropy { cfg, rows, .. } => none(cfg.reduction, *rows),
        LossCall::BoxLoss { cfg, pred, .. } => none(cfg.reduction, pred.len() / 4),
        LossCall::BoxIou { .. } => 0,
        LossCall::SmoothL1 { cfg, pred, .. } => none(cfg.reduction, pred.len()),
        LossCall::Huber { cfg, pred, .. } => none(cfg.reduction, pred.len()),
        LossCall::Bce { cfg, logits, .. } => none(cfg.reduction, logits.len()),
        LossCall::Focal { cfg, logits, .. } => none(cfg.reduction, logits.len()),
        LossCall::Detection(d) => d.reduction().map_or(0, |r| none(r, d.items())),
    }
}

pub(super) fn call_reduction(call: &LossCall) -> Option<Reduction> {
    match call {
        LossCall::CrossEntropy { cfg, .. } => Some(cfg.reduction),
        LossCall::BoxLoss { cfg, .. } => Some(cfg.reduction),
        LossCall::BoxIou { .. } => None,
        LossCall::SmoothL1 { cfg, .. } => Some(cfg.reduction),
        LossCall::Huber { cfg, .. } => Some(cfg.reduction),
        LossCall::Bce { cfg, .. } => Some(cfg.reduction),
        LossCall::Focal { cfg, .. } => Some(cfg.reduction),
        LossCall::Detection(d) => d.reduction(),
    }
}

/// Any adversarial call of any entry point.
pub fn fuzz_call() -> BoxedStrategy<FuzzCall> {
    let call = prop_oneof![
        3 => cross_entropy(),
        2 => box_loss(),
        1 => box_iou(),
        3 => elementwise(),
        3 => detection::detection(),
    ];
    (call, 0..20u8, -3.0..3.0f64, 0..3u8)
        .prop_flat_map(|(call, up_kind, s, mode)| {
            let k = outputs(&call);
            // Per-element upstream gradients go with reduction `none` (one call in twenty
            // with a wrong count); elsewhere the front door refuses them, as it should.
            let per_item = call_reduction(&call) == Some(Reduction::None);
            let up_kind = if per_item || up_kind < 15 {
                up_kind
            } else {
                12
            };
            let up = match up_kind {
                0..=11 => Just(Up::Scalar(1.0)).boxed(),
                12 | 13 => Just(Up::Scalar(s)).boxed(),
                14 => prop::sample::select(vec![0.0, -0.0, NAN, INF])
                    .prop_map(Up::Scalar)
                    .boxed(),
                15..=17 => prop::collection::vec(-3.0..3.0f64, k)
                    .prop_map(Up::PerElement)
                    .boxed(),
                // Non-finite values now and then: refused like a non-finite scalar (TOL-4).
                18 => prop::collection::vec(
                    prop_oneof![
                        8 => -3.0..3.0f64,
                        1 => prop::sample::select(vec![NAN, INF, -INF]),
                    ],
                    k,
                )
                .prop_map(Up::PerElement)
                .boxed(),
                _ => prop::collection::vec(-3.0..3.0f64, k + 1)
                    .prop_map(Up::PerElement)
                    .boxed(),
            };
            let mode = [Mode::Grad, Mode::Forward, Mode::InPlace][mode as usize];
            up.prop_map(move |up| FuzzCall {
                call: call.clone(),
                up,
                mode,
            })
        })
        .boxed()
}
