//! The dense-detector losses in the case format (`distribution_focal`, `varifocal`,
//! `quality_focal`, `probiou_loss`, `batch_probiou`; `spec/cases/detection_dense.json`): their
//! decoded call ([`DetectionCall`], one [`LossCall::Detection`] variant for all of them), the
//! runner, the rounding to `T` and random calls against the reference.

use super::{Case, CaseError, Expected, LossCall};
use crate::random::Rng;
use crate::runner::Output;
use serde_json::Value;
use smoothloss_core::{
    Backend, DflConvention, DistributionFocal, Element, Input, LossError, Losses, ProbIou,
    QualityFocal, Reduction, Upstream, Varifocal, VarifocalTargets, VarifocalWeight,
};

/// A decoded dense-detector call, all numbers in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum DetectionCall {
    /// Distribution focal loss.
    Dfl {
        /// Configuration.
        cfg: DistributionFocal,
        /// Logits `[rows, bins]`.
        logits: Vec<f64>,
        /// Rows.
        rows: usize,
        /// Bins.
        bins: usize,
        /// One target per row.
        targets: Vec<f64>,
    },
    /// Varifocal loss.
    Varifocal {
        /// Configuration.
        cfg: Varifocal,
        /// Logits.
        logits: Vec<f64>,
        /// Scores.
        scores: Vec<f64>,
        /// Labels (ultralytics' weight only).
        labels: Option<Vec<f64>>,
    },
    /// Quality focal loss.
    Qfl {
        /// Configuration.
        cfg: QualityFocal,
        /// Logits `[rows, classes]`.
        logits: Vec<f64>,
        /// Rows.
        rows: usize,
        /// Classes.
        classes: usize,
        /// Label per row (`classes` is the background).
        labels: Vec<i64>,
        /// Score per row.
        scores: Vec<f64>,
    },
    /// `1 - ProbIoU` on aligned pairs.
    ProbIou {
        /// Configuration.
        cfg: ProbIou,
        /// `[N, 5]`.
        pred: Vec<f64>,
        /// `[N, 5]`.
        target: Vec<f64>,
    },
    /// Pairwise ProbIoU.
    BatchProbIou {
        /// eps.
        eps: f64,
        /// `[N, 5]`.
        boxes1: Vec<f64>,
        /// `[M, 5]`.
        boxes2: Vec<f64>,
    },
}

impl DetectionCall {
    /// The reduction (none for the pairwise ProbIoU).
    pub fn reduction(&self) -> Option<Reduction> {
        match self {
            Self::Dfl { cfg, .. } => Some(cfg.reduction),
            Self::Varifocal { cfg, .. } => Some(cfg.reduction),
            Self::Qfl { cfg, .. } => Some(cfg.reduction),
            Self::ProbIou { cfg, .. } => Some(cfg.reduction),
            Self::BatchProbIou { .. } => None,
        }
    }

    /// Loss values before the reduction (boxes, rows, elements or pairs).
    pub fn items(&self) -> usize {
        match self {
            Self::Dfl { cfg, rows, .. } => rows / cfg.convention.rows_per_item(),
            Self::Varifocal { logits, .. } => logits.len(),
            Self::Qfl { rows, .. } => *rows,
            Self::ProbIou { pred, .. } => pred.len() / 5,
            Self::BatchProbIou { .. } => 0,
        }
    }

    /// Gradient entries per item.
    pub fn width(&self) -> usize {
        match self {
            Self::Dfl { cfg, bins, .. } => bins * cfg.convention.rows_per_item(),
            Self::Varifocal { .. } => 1,
            Self::Qfl { classes, .. } => *classes,
            Self::ProbIou { .. } | Self::BatchProbIou { .. } => 5,
        }
    }

    /// Every floating input rounded to `T` and back.
    pub fn round<T: Element>(&self) -> Self {
        let r = |v: &Vec<f64>| {
            v.iter()
                .map(|&x| T::from_f64(x).to_f64())
                .collect::<Vec<_>>()
        };
        let mut c = self.clone();
        match &mut c {
            Self::Dfl {
                logits, targets, ..
            } => {
                *logits = r(logits);
                *targets = r(targets);
            }
            Self::Varifocal {
                logits,
                scores,
                labels,
                ..
            } => {
                *logits = r(logits);
                *scores = r(scores);
                *labels = labels.as_ref().map(r);
            }
            Self::Qfl { logits, scores, .. } => {
                *logits = r(logits);
                *scores = r(scores);
            }
            Self::ProbIou { pred, target, .. } => {
                *pred = r(pred);
                *target = r(target);
            }
            Self::BatchProbIou { boxes1, boxes2, .. } => {
                *boxes1 = r(boxes1);
                *boxes2 = r(boxes2);
            }
        }
        c
    }

    /// Runs the call on `backend` with data of type `T`.
    pub fn run<T: Element, B: Backend<T> + ?Sized>(
        &self,
        backend: &B,
        upstream: Upstream<'_>,
        with_grad: bool,
    ) -> Result<Output, LossError> {
        let n = |v: &[f64]| v.iter().map(|&x| T::from_f64(x)).collect::<Vec<T>>();
        let w = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
        if let Self::BatchProbIou {
            eps,
            boxes1,
            boxes2,
        } = self
        {
            let (b1, b2) = (n(boxes1), n(boxes2));
            let mut out = vec![T::from_f64(0.0); (b1.len() / 5) * (b2.len() / 5)];
            backend.batch_probiou(*eps, &b1, &b2, &mut out)?;
            return Ok(Output {
                loss: w(&out),
                grad: None,
            });
        }
        let x = n(match self {
            Self::Dfl { logits, .. }
            | Self::Varifocal { logits, .. }
            | Self::Qfl { logits, .. } => logits,
            Self::ProbIou { pred, .. } => pred,
            Self::BatchProbIou { .. } => unreachable!("returned above"),
        });
        let mut g = with_grad.then(|| vec![T::from_f64(0.0); x.len()]);
        let inp = Input::new(&x[..])
            .with_upstream(upstream)
            .with_optional_grad(g.as_deref_mut());
        let loss = match self {
            Self::Dfl {
                cfg,
                rows,
                bins,
                targets,
                ..
            } => backend.distribution_focal(cfg, inp.shaped(*rows, *bins), &n(targets))?,
            Self::Varifocal {
                cfg,
                scores,
                labels,
                ..
            } => {
                let (s, l) = (n(scores), labels.as_deref().map(n));
                let t = VarifocalTargets {
                    scores: &s[..],
                    labels: l.as_deref(),
                };
                backend.varifocal(cfg, inp, t)?
            }
            Self::Qfl {
                cfg,
                rows,
                classes,
                labels,
                scores,
                ..
            } => backend.quality_focal(cfg, inp.shaped(*rows, *classes), labels, &n(scores))?,
            Self::ProbIou { cfg, target, .. } => backend.probiou_loss(cfg, inp, &n(target))?,
            Self::BatchProbIou { .. } => unreachable!("returned above"),
        };
        Ok(Output {
            loss: loss.into_values(),
            grad: g.map(|g| w(&g)),
        })
    }
}

fn matrix(case: &Case, name: &str) -> Result<(Vec<f64>, usize, usize), CaseError> {
    let t = case.tensor(name)?;
    if t.shape.len() != 2 {
        return Err(case.malformed(format!("`{name}` must be [rows, cols]")));
    }
    Ok((t.data, t.shape[0], t.shape[1]))
}

fn opt_f64(case: &Case, name: &str, default: f64) -> Result<f64, CaseError> {
    match case.param(name) {
        None => Ok(default),
        Some(_) => case.f64_param(name),
    }
}

/// Decodes a dense-detector case; `None` when `case.loss` is none of them.
pub(super) fn decode(case: &Case) -> Option<Result<(LossCall, Expected), CaseError>> {
    let f = || -> Result<(DetectionCall, Expected), CaseError> {
        match case.loss.as_str() {
            "distribution_focal" => {
                case.check_params(&["convention", "reduction"])?;
                let conv_s = case
                    .param("convention")
                    .and_then(Value::as_str)
                    .ok_or_else(|| case.malformed("missing `convention`"))?;
                let convention = DflConvention::parse(conv_s)
                    .ok_or_else(|| case.unsupported(format!("DFL convention {conv_s:?}")))?;
                let (logits, rows, bins) = matrix(case, "logits")?;
                let cfg = DistributionFocal {
                    convention,
                    reduction: case.reduction()?,
                };
                let exp = case.expected("loss", Some("logits"))?;
                let targets = case.tensor("targets")?.data;
                Ok((
                    DetectionCall::Dfl {
                        cfg,
                        logits,
                        rows,
                        bins,
                        targets,
                    },
                    exp,
                ))
            }
            "varifocal" => {
                case.check_params(&["weight", "alpha", "gamma", "reduction", "avg_factor"])?;
                let ws = case
                    .param("weight")
                    .and_then(Value::as_str)
                    .ok_or_else(|| case.malformed("missing `weight`"))?;
                let weight = VarifocalWeight::parse(ws)
                    .ok_or_else(|| case.unsupported(format!("varifocal weight {ws:?}")))?;
                let cfg = Varifocal {
                    alpha: case.f64_param("alpha")?,
                    gamma: case.f64_param("gamma")?,
                    weight,
                    reduction: case.reduction()?,
                    avg_factor: case
                        .param("avg_factor")
                        .map(|_| case.f64_param("avg_factor"))
                        .transpose()?,
                };
                let labels = match case.inputs.get("labels") {
                    None => None,
                    Some(_) => Some(case.tensor("labels")?.data),
                };
                let exp = case.expected("loss", Some("logits"))?;
                Ok((
                    DetectionCall::Varifocal {
                        cfg,
                        logits: case.tensor("logits")?.data,
                        scores: case.tensor("scores")?.data,
                        labels,
                    },
                    exp,
                ))
            }
            "quality_focal" => {
                case.check_params(&["beta", "reduction", "avg_factor"])?;
                let cfg = QualityFocal {
                    beta: opt_f64(case, "beta", 2.0)?,
                    reduction: case.reduction()?,
                    avg_factor: case
                        .param("avg_factor")
                        .map(|_| case.f64_param("avg_factor"))
                        .transpose()?,
                };
                let (logits, rows, classes) = matrix(case, "logits")?;
                let labels = case
                    .inputs
                    .get("labels")
                    .and_then(Value::as_array)
                    .ok_or_else(|| case.malformed("`labels` must be an array"))?
                    .iter()
                    .map(Value::as_i64)
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(|| case.malformed("`labels` must hold integers"))?;
                let exp = case.expected("loss", Some("logits"))?;
                Ok((
                    DetectionCall::Qfl {
                        cfg,
                        logits,
                        rows,
                        classes,
                        labels,
                        scores: case.tensor("scores")?.data,
                    },
                    exp,
                ))
            }
            "probiou_loss" => {
                case.check_params(&["eps", "floor", "ciou", "reduction"])?;
                let cfg = ProbIou {
                    eps: opt_f64(case, "eps", 1e-7)?,
                    floor: opt_f64(case, "floor", 0.0)?,
                    ciou: match case.param("ciou") {
                        None => false,
                        Some(v) => v
                            .as_bool()
                            .ok_or_else(|| case.malformed("`ciou` must be a boolean"))?,
                    },
                    reduction: case.reduction()?,
                };
                let exp = case.expected("loss", Some("pred"))?;
                Ok((
                    DetectionCall::ProbIou {
                        cfg,
                        pred: case.tensor("pred")?.data,
                        target: case.tensor("target")?.data,
                    },
                    exp,
                ))
            }
            "batch_probiou" => {
                case.check_params(&["eps"])?;
                let exp = case.expected("iou", None)?;
                Ok((
                    DetectionCall::BatchProbIou {
                        eps: opt_f64(case, "eps", 1e-7)?,
                        boxes1: case.tensor("boxes1")?.data,
                        boxes2: case.tensor("boxes2")?.data,
                    },
                    exp,
                ))
            }
            _ => unreachable!("matched below"),
        }
    };
    match case.loss.as_str() {
        "distribution_focal" | "varifocal" | "quality_focal" | "probiou_loss" | "batch_probiou" => {
            Some(f().map(|(c, e)| (LossCall::Detection(c), e)))
        }
        _ => None,
    }
}

/// Random oriented-box pairs: targets anywhere, predictions near them (`jitter` scales the
/// offsets), sizes in `[0.5, 30]`, any angle.
pub fn obb_pairs(rng: &mut Rng, n: usize, jitter: f64) -> (Vec<f64>, Vec<f64>) {
    let (mut p, mut t) = (Vec::with_capacity(5 * n), Vec::with_capacity(5 * n));
    for _ in 0..n {
        let tb = [
            rng.range(-20.0, 60.0),
            rng.range(-20.0, 60.0),
            rng.range(0.5, 30.0),
            rng.range(0.5, 30.0),
            rng.range(-4.0, 4.0),
        ];
        let pb = [
            tb[0] + jitter * rng.range(-4.0, 4.0),
            tb[1] + jitter * rng.range(-4.0, 4.0),
            (tb[2] + jitter * rng.range(-3.0, 3.0)).abs() + 0.5,
            (tb[3] + jitter * rng.range(-3.0, 3.0)).abs() + 0.5,
            tb[4] + jitter * rng.range(-0.8, 0.8),
        ];
        t.extend(tb);
        p.extend(pb);
    }
    (p, t)
}

/// Random dense-detector calls for every loss and option (the conformance suite's random part).
pub fn random_calls(seed: u64) -> Vec<(String, LossCall)> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let reds = [Reduction::None, Reduction::Mean, Reduction::Sum];
    for (k, &(boxes, bins)) in [(1, 16), (3, 16), (17, 16), (5, 7), (2, 2), (40, 16)]
        .iter()
        .enumerate()
    {
        for conv in [DflConvention::Ultralytics, DflConvention::Mmdetection] {
            let rows = 4 * boxes;
            let hi = bins as f64 - 1.0;
            let targets = (0..rows)
                .map(|_| match conv {
                    DflConvention::Ultralytics => rng.range(-1.0, hi + 1.0),
                    DflConvention::Mmdetection => rng.range(0.0, hi * 0.999),
                })
                .collect();
            let cfg = DistributionFocal {
                convention: conv,
                reduction: reds[k % 3],
            };
            out.push((
                format!("dfl-{}-{k}", conv.as_str()),
                LossCall::Detection(DetectionCall::Dfl {
                    cfg,
                    logits: rng.vec(rows * bins, -12.0, 12.0),
                    rows,
                    bins,
                    targets,
                }),
            ));
        }
    }
    let weights = [
        VarifocalWeight::Ultralytics,
        VarifocalWeight::MmdetIouWeighted,
        VarifocalWeight::Mmdet,
    ];
    for (k, &(n, gamma)) in [
        (1, 2.0),
        (7, 2.0),
        (64, 2.0),
        (67, 1.5),
        (200, 0.0),
        (9, 1.0),
    ]
    .iter()
    .enumerate()
    {
        for weight in weights {
            let labels: Vec<f64> = (0..n)
                .map(|_| f64::from(u8::from(rng.unit() < 0.3)))
                .collect();
            let scores: Vec<f64> = match weight {
                VarifocalWeight::Ultralytics => labels.iter().map(|l| l * rng.unit()).collect(),
                _ => (0..n)
                    .map(|_| if rng.unit() < 0.3 { rng.unit() } else { 0.0 })
                    .collect(),
            };
            let mut cfg = Varifocal {
                alpha: 0.75,
                gamma,
                weight,
                reduction: reds[k % 3],
                avg_factor: None,
            };
            if k == 3 {
                cfg = cfg.with_avg_factor(2.5);
            }
            out.push((
                format!("varifocal-{}-{k}", weight.as_str()),
                LossCall::Detection(DetectionCall::Varifocal {
                    cfg,
                    logits: rng.vec(n, -15.0, 15.0),
                    scores,
                    labels: (weight == VarifocalWeight::Ultralytics).then_some(labels),
                }),
            ));
        }
    }
    for (k, &(rows, classes, beta)) in [
        (1, 1, 2.0),
        (5, 3, 2.0),
        (33, 20, 2.0),
        (8, 4, 1.0),
        (6, 80, 0.5),
    ]
    .iter()
    .enumerate()
    {
        let labels = (0..rows).map(|_| rng.below(classes + 1) as i64).collect();
        let mut cfg = QualityFocal::new()
            .with_beta(beta)
            .with_reduction(reds[k % 3]);
        if k == 3 {
            cfg = cfg.with_avg_factor(3.0);
        }
        out.push((
            format!("qfl-{k}"),
            LossCall::Detection(DetectionCall::Qfl {
                cfg,
                logits: rng.vec(rows * classes, -12.0, 12.0),
                rows,
                classes,
                labels,
                scores: rng.vec(rows, 0.0, 1.0),
            }),
        ));
    }
    for (k, &(n, jitter, ciou, floor)) in [
        (1, 1.0, false, 0.0),
        (9, 1.0, false, 0.0),
        (33, 3.0, true, 0.0),
        (20, 0.2, false, 0.5),
        (12, 10.0, true, 0.0),
    ]
    .iter()
    .enumerate()
    {
        let (pred, target) = obb_pairs(&mut rng, n, jitter);
        let cfg = ProbIou::new()
            .with_ciou(ciou)
            .with_floor(floor)
            .with_reduction(reds[k % 3]);
        out.push((
            format!("probiou-{k}"),
            LossCall::Detection(DetectionCall::ProbIou { cfg, pred, target }),
        ));
    }
    for (k, &(n, m)) in [(1, 1), (4, 7), (9, 3)].iter().enumerate() {
        let (b1, _) = obb_pairs(&mut rng, n, 1.0);
        let (b2, _) = obb_pairs(&mut rng, m, 1.0);
        out.push((
            format!("batch-probiou-{k}"),
            LossCall::Detection(DetectionCall::BatchProbIou {
                eps: 1e-7,
                boxes1: b1,
                boxes2: b2,
            }),
        ));
    }
    out
}
