//! Deterministic random cases covering every loss and option, for comparing a backend with the
//! reference (`TOL-2`). Shapes include C = 1, N = 1 and lengths that are not a multiple of any
//! SIMD width; values include wide logit ranges, and boxes of every relative position.

use crate::cases::{LossCall, Targets};
use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, BoxOptions, CiouConvention, CrossEntropy,
    Huber, Reduction, SigmoidFocal, SmoothL1, ThresholdWeight,
};

/// SplitMix64: tiny, deterministic, good enough for test inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A vector of `n` uniform values.
    pub fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.range(lo, hi)).collect()
    }
}

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

/// A random box in xyxy with positive size near `(cx, cy)`.
fn rand_box(rng: &mut Rng, cx: f64, cy: f64, scale: f64) -> [f64; 4] {
    let w = rng.range(0.05, 1.0) * scale;
    let h = rng.range(0.05, 1.0) * scale;
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

/// Box pairs in `format`: overlapping, disjoint, nested, identical and degenerate pairs.
pub fn box_pairs(rng: &mut Rng, n: usize, format: BoxFormat) -> (Vec<f64>, Vec<f64>) {
    let mut pred = Vec::with_capacity(4 * n);
    let mut target = Vec::with_capacity(4 * n);
    for i in 0..n {
        let scale = rng.range(0.5, 50.0);
        let cx = rng.range(-10.0, 10.0);
        let cy = rng.range(-10.0, 10.0);
        let t = rand_box(rng, cx, cy, scale);
        let p = match i % 6 {
            // Overlapping: a jittered copy.
            0 | 1 => {
                let px = cx + rng.range(-0.3, 0.3) * scale;
                let py = cy + rng.range(-0.3, 0.3) * scale;
                rand_box(rng, px, py, scale)
            }
            // Disjoint: far away.
            2 => rand_box(rng, cx + 3.0 * scale, cy - 2.0 * scale, scale),
            // Nested inside the target.
            3 => {
                let w = t[2] - t[0];
                let h = t[3] - t[1];
                [
                    t[0] + 0.1 * w,
                    t[1] + 0.2 * h,
                    t[2] - 0.3 * w,
                    t[3] - 0.1 * h,
                ]
            }
            // Identical.
            4 => t,
            // Degenerate: zero width and/or negative height.
            _ => {
                let x = rng.range(t[0], t[2]);
                [x, t[1], x, t[1] - rng.range(0.0, 1.0) * scale]
            }
        };
        pred.extend(format.from_xyxy(p));
        target.extend(format.from_xyxy(t));
    }
    (pred, target)
}

/// Non-finite inputs (`TOL-4`): every backend must give the reference's NaN / inf pattern.
pub fn non_finite_calls() -> Vec<(String, LossCall)> {
    let inf = f64::INFINITY;
    let nan = f64::NAN;
    let mut out = Vec::new();
    // CE-1: rows with NaN, +inf, -inf (masked classes), all -inf, huge values; 19 classes so
    // the SIMD tails are exercised too.
    let c = 19;
    let mut z: Vec<f64> = (0..6 * c).map(|k| ((k * 7) % 11) as f64 - 5.0).collect();
    z[3] = nan;
    z[c + 4] = inf;
    for k in 0..c {
        if k != 2 {
            z[2 * c + k] = -inf;
        }
        z[3 * c + k] = -inf;
        z[4 * c + k] = if k % 2 == 0 { 1e30 } else { -1e30 };
    }
    z[5 * c + 7] = -inf;
    for (ls, reduction) in [
        (0.0, Reduction::None),
        (0.1, Reduction::None),
        (0.1, Reduction::Sum),
    ] {
        out.push((
            format!("nonfinite-ce-ls{ls}-{}", reduction.as_str()),
            LossCall::CrossEntropy {
                cfg: CrossEntropy {
                    label_smoothing: ls,
                    ignore_index: Some(-100),
                    class_weights: None,
                    reduction,
                    ..CrossEntropy::default()
                },
                logits: z.clone(),
                rows: 6,
                classes: c,
                targets: Targets::Classes(vec![0, 1, 2, 3, 0, 1]),
            },
        ));
    }
    // CE-10 / CE-11 / CE-12: the same rows with a softcap (`+-inf` become `+-cap`), z-loss and
    // row weights.
    for (cap, zl) in [(Some(5.0), 0.1), (None, 1e-3)] {
        out.push((
            format!("nonfinite-ce-llm-cap{cap:?}-z{zl}"),
            LossCall::CrossEntropy {
                cfg: CrossEntropy {
                    label_smoothing: 0.1,
                    reduction: Reduction::None,
                    softcap: cap,
                    z_loss: zl,
                    row_weights: Some(vec![1.0, 0.5, 2.0, 0.0, 1.5, 1.0]),
                    ..CrossEntropy::default()
                },
                logits: z.clone(),
                rows: 6,
                classes: c,
                targets: Targets::Classes(vec![0, 1, 2, 3, 0, 1]),
            },
        ));
    }
    // BOX-12: a non-finite coordinate in one pair only.
    for kind in BoxLossKind::ALL {
        let mut pred = vec![0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0];
        let mut target = vec![1.0, 1.0, 3.0, 3.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 2.0, 2.0];
        pred[2] = inf;
        target[7] = nan;
        out.push((
            format!("nonfinite-box-{}", kind.as_str()),
            LossCall::BoxLoss {
                cfg: BoxLoss {
                    kind,
                    format: BoxFormat::Xyxy,
                    eps: 1e-7,
                    reduction: Reduction::None,
                    threshold_weight: None,
                    options: box_options(kind, 0),
                },
                pred,
                target,
            },
        ));
    }
    // TOL-4 for element-wise losses: NaN propagates, infinities follow the formula.
    let x = vec![nan, inf, -inf, inf, -inf, 0.5, 1e30, -1e30, 3.0];
    let y = vec![1.0, 1.0, 0.0, 0.0, 1.0, 0.5, 1.0, 0.0, 0.0];
    out.push((
        "nonfinite-smooth-l1".into(),
        LossCall::SmoothL1 {
            cfg: SmoothL1 {
                beta: 1.0,
                reduction: Reduction::None,
            },
            pred: x.clone(),
            target: y.clone(),
        },
    ));
    out.push((
        "nonfinite-huber".into(),
        LossCall::Huber {
            cfg: Huber {
                delta: 1.0,
                reduction: Reduction::None,
            },
            pred: x.clone(),
            target: y.clone(),
        },
    ));
    out.push((
        "nonfinite-bce".into(),
        LossCall::Bce {
            cfg: BceWithLogits {
                pos_weight: Some(vec![2.0, 0.5, 1.0]),
                reduction: Reduction::None,
            },
            logits: x.clone(),
            targets: y.clone(),
        },
    ));
    out.push((
        "nonfinite-focal".into(),
        LossCall::Focal {
            cfg: SigmoidFocal {
                alpha: 0.25,
                gamma: 2.0,
                reduction: Reduction::None,
            },
            logits: x,
            targets: y,
        },
    ));
    out
}

/// Every random case: `(id, call)`, then the non-finite cases of [`non_finite_calls`].
pub fn random_calls(seed: u64) -> Vec<(String, LossCall)> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    // Cross-entropy: shapes, options and logit scales.
    let shapes = [
        (1, 1),
        (1, 7),
        (3, 1),
        (5, 17),
        (4, 33),
        (2, 1000),
        (7, 129),
        (33, 10),
    ];
    for (si, &(n, c)) in shapes.iter().enumerate() {
        for (oi, &(ls, weighted, ignore, probs)) in [
            (0.0, false, false, false),
            (0.1, false, false, false),
            (0.3, true, false, false),
            (0.1, true, true, false),
            (1.0, false, true, false),
            (0.0, false, false, true),
            (0.2, true, false, true),
        ]
        .iter()
        .enumerate()
        {
            let reduction = REDUCTIONS[(si + oi) % 3];
            let spread = [1.0, 10.0, 60.0][(si + 2 * oi) % 3];
            let logits = rng.vec(n * c, -spread, spread);
            let targets = if probs {
                let mut p = rng.vec(n * c, 0.0, 1.0);
                for row in p.chunks_mut(c) {
                    let s: f64 = row.iter().sum();
                    row.iter_mut().for_each(|v| *v /= s);
                }
                Targets::Probs(p)
            } else {
                Targets::Classes(
                    (0..n)
                        .map(|i| {
                            if ignore && i % 3 == 1 {
                                -100
                            } else {
                                rng.below(c) as i64
                            }
                        })
                        .collect(),
                )
            };
            let cfg = CrossEntropy {
                label_smoothing: ls,
                ignore_index: Some(-100),
                class_weights: weighted.then(|| rng.vec(c, 0.1, 3.0)),
                reduction,
                ..CrossEntropy::default()
            };
            out.push((
                format!("random-ce-{n}x{c}-opt{oi}-{}", reduction.as_str()),
                LossCall::CrossEntropy {
                    cfg,
                    logits,
                    rows: n,
                    classes: c,
                    targets,
                },
            ));
        }
    }
    // Cross-entropy with the LLM options (CE-10 .. CE-13), alone and together.
    for (si, &(n, c)) in shapes.iter().enumerate() {
        for (oi, &(cap, zl, rw, den, probs)) in [
            (Some(2.0), 0.0, false, false, false),
            (None, 0.1, false, false, false),
            (None, 0.0, true, false, false),
            (None, 0.0, false, true, false),
            (Some(30.0), 1e-3, true, true, false),
            (Some(4.0), 0.05, true, false, true),
        ]
        .iter()
        .enumerate()
        {
            let reduction = if den {
                Reduction::Mean
            } else {
                REDUCTIONS[(si + oi) % 3]
            };
            let spread = [1.0, 10.0, 60.0][(si + oi) % 3];
            let logits = rng.vec(n * c, -spread, spread);
            let targets = if probs {
                let mut p = rng.vec(n * c, 0.0, 1.0);
                for row in p.chunks_mut(c) {
                    let s: f64 = row.iter().sum();
                    row.iter_mut().for_each(|v| *v /= s);
                }
                Targets::Probs(p)
            } else {
                Targets::Classes(
                    (0..n)
                        .map(|i| {
                            if i % 4 == 3 {
                                -100
                            } else {
                                rng.below(c) as i64
                            }
                        })
                        .collect(),
                )
            };
            let cfg = CrossEntropy {
                label_smoothing: [0.0, 0.1][oi % 2],
                class_weights: (oi % 3 == 1).then(|| rng.vec(c, 0.1, 3.0)),
                reduction,
                softcap: cap,
                z_loss: zl,
                row_weights: rw.then(|| rng.vec(n, 0.0, 2.0)),
                denominator: den.then(|| 0.5 + rng.vec(1, 1.0, 3.0 * n as f64)[0]),
                ..CrossEntropy::default()
            };
            out.push((
                format!("random-ce-llm-{n}x{c}-opt{oi}-{}", reduction.as_str()),
                LossCall::CrossEntropy {
                    cfg,
                    logits,
                    rows: n,
                    classes: c,
                    targets,
                },
            ));
        }
    }
    // Box losses: every kind, format, reduction; with and without the threshold weight.
    for kind in BoxLossKind::ALL {
        for (fi, format) in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh]
            .into_iter()
            .enumerate()
        {
            for (ri, reduction) in REDUCTIONS.iter().enumerate() {
                let n = [1, 13, 37][ri];
                let (pred, target) = box_pairs(&mut rng, n, format);
                let threshold_weight = (ri == 1).then_some(ThresholdWeight {
                    alpha: 0.3,
                    threshold: 0.5,
                });
                out.push((
                    format!(
                        "random-box-{}-{}-{}-n{n}-o{}",
                        kind.as_str(),
                        format.as_str(),
                        reduction.as_str(),
                        ri + 3 * fi
                    ),
                    LossCall::BoxLoss {
                        cfg: BoxLoss {
                            kind,
                            format,
                            eps: 1e-7,
                            reduction: *reduction,
                            threshold_weight,
                            options: box_options(kind, ri + 3 * fi),
                        },
                        pred,
                        target,
                    },
                ));
            }
        }
    }
    for format in [BoxFormat::Xyxy, BoxFormat::Cxcywh] {
        let (b1, b2) = box_pairs(&mut rng, 9, format);
        out.push((
            format!("random-box-iou-{}", format.as_str()),
            LossCall::BoxIou {
                format,
                boxes1: b1,
                boxes2: b2[..20].to_vec(),
            },
        ));
    }
    // Element-wise losses.
    for (ri, &reduction) in REDUCTIONS.iter().enumerate() {
        let n = [1, 19, 131][ri];
        let pred = rng.vec(n, -3.0, 3.0);
        let target = rng.vec(n, -3.0, 3.0);
        for beta in [0.0, 0.5, 1.0] {
            out.push((
                format!("random-smooth-l1-beta{beta}-{}", reduction.as_str()),
                LossCall::SmoothL1 {
                    cfg: SmoothL1 { beta, reduction },
                    pred: pred.clone(),
                    target: target.clone(),
                },
            ));
        }
        for delta in [0.25, 1.0, 2.0] {
            out.push((
                format!("random-huber-delta{delta}-{}", reduction.as_str()),
                LossCall::Huber {
                    cfg: Huber { delta, reduction },
                    pred: pred.clone(),
                    target: target.clone(),
                },
            ));
        }
        let logits = rng.vec(n, -20.0, 20.0);
        let targets: Vec<f64> = (0..n)
            .map(|i| {
                if i % 4 == 3 {
                    rng.unit()
                } else {
                    (i % 2) as f64
                }
            })
            .collect();
        for pw in [None, Some(vec![2.5])] {
            out.push((
                format!("random-bce-pw{}-{}", pw.is_some(), reduction.as_str()),
                LossCall::Bce {
                    cfg: BceWithLogits {
                        pos_weight: pw,
                        reduction,
                    },
                    logits: logits.clone(),
                    targets: targets.clone(),
                },
            ));
        }
        for (alpha, gamma) in [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.5)] {
            out.push((
                format!("random-focal-a{alpha}-g{gamma}-{}", reduction.as_str()),
                LossCall::Focal {
                    cfg: SigmoidFocal {
                        alpha,
                        gamma,
                        reduction,
                    },
                    logits: logits.clone(),
                    targets: targets.clone(),
                },
            ));
        }
    }
    out.extend(non_finite_calls());
    out
}

/// The options of a box call of `kind`, variant `i`: what the kind needs (MPDIoU's image
/// size) and, cycling with `i`, the conventions and modifiers that apply to it (variant 0 has
/// no modifier).
pub fn box_options(kind: BoxLossKind, i: usize) -> BoxOptions {
    let mut o = BoxOptions::default();
    if kind == BoxLossKind::Mpdiou {
        o.image_size = Some([64.0, 48.0]);
    }
    let m = &mut o.modifiers;
    match i % 6 {
        1 if kind.has_iou_term() => m.inner_ratio = Some(0.8),
        2 if kind.has_iou_term() => m.focaler = Some([0.1, 0.9]),
        3 if kind.has_alpha_power() => m.alpha_power = Some(3.0),
        3 => m.focal_gamma = Some(0.5),
        4 if kind.has_iou_term() => {
            m.inner_ratio = Some(1.2);
            m.focaler = Some([0.0, 0.8]);
            m.focal_gamma = Some(0.5);
        }
        5 => {
            o.ciou = CiouConvention::Mmdetection;
            o.siou_paper_gamma = true;
            o.shape_scale = 0.5;
            o.smooth_point = 0.3;
        }
        _ => {}
    }
    o
}
