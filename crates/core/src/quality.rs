//! Classification-quality losses of dense detectors, element-wise over logits `[N, C]`
//! (formulas `QUAL-1` .. `QUAL-7`): the varifocal loss (Zhang et al. 2021, arXiv 2008.13367) as
//! ultralytics `VarifocalLoss` and as mmdetection `varifocal_loss`, and the quality focal loss
//! (GFL, Li et al. 2020, arXiv 2006.04388) as mmdetection `quality_focal_loss`.

use crate::element::Element;
use crate::error::{LossError, Result, check_len};
use crate::op::Op;
use crate::plan::{Extent, LossConfig, Plan, check_f32_magnitude};
use crate::reduction::Reduction;

/// Whose focal weight a [`Varifocal`] uses (`QUAL-1`, `QUAL-2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VarifocalWeight {
    /// ultralytics `VarifocalLoss`: `w = alpha p^gamma (1 - label) + score label`, with a
    /// `label` per element (the one-hot class, [`VarifocalTargets::labels`]).
    #[default]
    Ultralytics,
    /// mmdetection `varifocal_loss(iou_weighted=True)`: `w = score` where `score > 0`, else
    /// `alpha |p - score|^gamma`; no labels.
    MmdetIouWeighted,
    /// mmdetection `varifocal_loss(iou_weighted=False)`: `w = 1` where `score > 0`, else
    /// `alpha |p - score|^gamma`; no labels.
    Mmdet,
}

impl VarifocalWeight {
    /// Parses `ultralytics`, `mmdet_iou_weighted` or `mmdet`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ultralytics" => Some(Self::Ultralytics),
            "mmdet_iou_weighted" => Some(Self::MmdetIouWeighted),
            "mmdet" => Some(Self::Mmdet),
            _ => None,
        }
    }

    /// The name used in case files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ultralytics => "ultralytics",
            Self::MmdetIouWeighted => "mmdet_iou_weighted",
            Self::Mmdet => "mmdet",
        }
    }

    /// The weight's code in every kernel.
    pub const fn code(self) -> u8 {
        match self {
            Self::Ultralytics => 0,
            Self::MmdetIouWeighted => 1,
            Self::Mmdet => 2,
        }
    }
}

/// The varifocal loss over logits (any shape, element-wise): `BCE(x, score) * w` (`QUAL-3`),
/// the weight `w` not detached (its gradient flows, as in both sources).
///
/// ultralytics' `VarifocalLoss()(pred, gt_score, label)` on `[B, Q, C]` sums and divides by
/// `Q` (`.mean(1).sum()`): `Varifocal::ultralytics().with_avg_factor(Q as f64)`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[doc(alias = "VarifocalLoss")]
pub struct Varifocal {
    /// Negative-sample balance, finite and >= 0 (0.75 in both sources).
    pub alpha: f64,
    /// Focusing exponent, finite and >= 0 (2 in both sources).
    pub gamma: f64,
    /// Which focal weight.
    pub weight: VarifocalWeight,
    /// Reduction over elements.
    pub reduction: Reduction,
    /// mmdetection's `avg_factor`: with `mean`, the sum is divided by it instead of the
    /// element count (`QUAL-4`). Finite and > 0; only with `mean`.
    pub avg_factor: Option<f64>,
}

impl Default for Varifocal {
    fn default() -> Self {
        Self::ultralytics()
    }
}

impl Varifocal {
    /// ultralytics `VarifocalLoss(gamma=2, alpha=0.75)`, reduction `sum` (its `.sum()` over
    /// `[Q, C]` logits with `B = 1` divided by `Q`: add [`Varifocal::with_avg_factor`]).
    pub fn ultralytics() -> Self {
        Self {
            alpha: 0.75,
            gamma: 2.0,
            weight: VarifocalWeight::Ultralytics,
            reduction: Reduction::Sum,
            avg_factor: None,
        }
    }

    /// mmdetection `VarifocalLoss(alpha=0.75, gamma=2.0, iou_weighted=True, reduction='mean')`.
    pub fn mmdetection() -> Self {
        Self {
            alpha: 0.75,
            gamma: 2.0,
            weight: VarifocalWeight::MmdetIouWeighted,
            reduction: Reduction::Mean,
            avg_factor: None,
        }
    }

    /// Sets alpha and gamma.
    pub fn with_alpha_gamma(mut self, alpha: f64, gamma: f64) -> Self {
        self.alpha = alpha;
        self.gamma = gamma;
        self
    }

    /// Sets the reduction.
    pub fn with_reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }

    /// Sets mmdetection's `avg_factor` (and the reduction `mean` it goes with).
    pub fn with_avg_factor(mut self, avg_factor: f64) -> Self {
        self.avg_factor = Some(avg_factor);
        self.reduction = Reduction::Mean;
        self
    }

    /// The divisor of `mean` over `items` elements: `avg_factor` or `items`.
    pub fn mean_denominator(&self, items: usize) -> f64 {
        self.avg_factor.unwrap_or(items as f64)
    }

    /// Validates the parameters and the shapes: logits `ext`, `scores_len` scores and
    /// `labels_len` labels (the logits' count for [`VarifocalWeight::Ultralytics`], 0
    /// otherwise); returns the plan (one item per element).
    pub fn plan(
        &self,
        ext: &Extent,
        scores_len: usize,
        labels_len: usize,
    ) -> Result<Plan<'_, Self>> {
        for (name, v) in [("alpha", self.alpha), ("gamma", self.gamma)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(LossError::InvalidParameter {
                    name,
                    value: v,
                    reason: "must be finite and >= 0",
                });
            }
        }
        check_avg_factor(self.avg_factor, self.reduction)?;
        if ext.len == 0 {
            return Err(LossError::EmptyInput {
                what: "logits",
                detail: "at least one element is required",
            });
        }
        if let Some([r, c]) = ext.shape {
            check_len(
                "logits",
                crate::error::checked_size("logits", r, c)?,
                ext.len,
            )?;
        }
        check_len("scores", ext.len, scores_len)?;
        let want_labels = match self.weight {
            VarifocalWeight::Ultralytics => ext.len,
            _ => 0,
        };
        check_len("labels", want_labels, labels_len)?;
        Plan::finish(self, ext.len, 1, ext)
    }

    /// Checks the targets' values: scores and labels in `[0, 1]` (NaN refused).
    pub fn check_targets<T: Element>(&self, targets: &VarifocalTargets<'_, T>) -> Result<()> {
        check_unit("scores", targets.scores)?;
        check_unit("labels", targets.labels.unwrap_or(&[]))
    }

    /// `alpha` and `gamma` at most `f32::MAX` (`TOL-4`; `avg_factor` is applied in `f64`).
    pub fn check_f32(&self) -> Result<()> {
        check_f32_magnitude("alpha", self.alpha)?;
        check_f32_magnitude("gamma", self.gamma)
    }
}

fn check_avg_factor(avg_factor: Option<f64>, reduction: Reduction) -> Result<()> {
    if let Some(a) = avg_factor {
        if !(a.is_finite() && a > 0.0) {
            return Err(LossError::InvalidParameter {
                name: "avg_factor",
                value: a,
                reason: "must be finite and > 0",
            });
        }
        if reduction != Reduction::Mean {
            return Err(LossError::InvalidParameter {
                name: "avg_factor",
                value: a,
                reason: "avg_factor goes with reduction `mean` only (as mmdetection)",
            });
        }
    }
    Ok(())
}

fn check_unit<T: Element>(name: &'static str, v: &[T]) -> Result<()> {
    match v
        .iter()
        .map(|t| t.to_f64())
        .find(|x| !(0.0..=1.0).contains(x))
    {
        None => Ok(()),
        Some(bad) => Err(LossError::InvalidParameter {
            name,
            value: bad,
            reason: "must lie in [0, 1]",
        }),
    }
}

/// The targets of a varifocal call: the quality scores (IoU-aware classification targets, the
/// logits' shape) and, for ultralytics' weight, the one-hot labels (the logits' shape).
#[derive(Debug, Clone, Copy)]
pub struct VarifocalTargets<'a, T> {
    /// `gt_score` (ultralytics) / `target` (mmdetection), each in `[0, 1]`.
    pub scores: &'a [T],
    /// ultralytics' `label`, each in `[0, 1]`; `None` for mmdetection's weights.
    pub labels: Option<&'a [T]>,
}

impl<'a, T> From<&'a [T]> for VarifocalTargets<'a, T> {
    fn from(scores: &'a [T]) -> Self {
        Self {
            scores,
            labels: None,
        }
    }
}

impl<'a, T> From<&'a Vec<T>> for VarifocalTargets<'a, T> {
    fn from(scores: &'a Vec<T>) -> Self {
        Self {
            scores,
            labels: None,
        }
    }
}

impl<'a, T> From<(&'a [T], &'a [T])> for VarifocalTargets<'a, T> {
    fn from((scores, labels): (&'a [T], &'a [T])) -> Self {
        Self {
            scores,
            labels: Some(labels),
        }
    }
}

impl<'a, T> From<(&'a Vec<T>, &'a Vec<T>)> for VarifocalTargets<'a, T> {
    fn from((scores, labels): (&'a Vec<T>, &'a Vec<T>)) -> Self {
        Self {
            scores,
            labels: Some(labels),
        }
    }
}

impl LossConfig for Varifocal {
    const OP: Op = Op::Varifocal;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

/// mmdetection's `quality_focal_loss` over logits `[N, C]` with a class label (`C` is the
/// background) and a quality score per row (`QUAL-5` .. `QUAL-7`); one loss per row (the sum
/// over classes), reduction `mean` over rows by default. Gradient with respect to the logits.
#[derive(Debug, Clone, Copy, PartialEq)]
#[doc(alias = "QualityFocalLoss")]
pub struct QualityFocal {
    /// The modulating exponent, finite and >= 0 (2 in mmdetection).
    pub beta: f64,
    /// Reduction over rows.
    pub reduction: Reduction,
    /// mmdetection's `avg_factor` (see [`Varifocal::avg_factor`]).
    pub avg_factor: Option<f64>,
}

impl Default for QualityFocal {
    fn default() -> Self {
        Self {
            beta: 2.0,
            reduction: Reduction::Mean,
            avg_factor: None,
        }
    }
}

impl QualityFocal {
    /// mmdetection `QualityFocalLoss(beta=2.0)`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets beta.
    pub fn with_beta(mut self, beta: f64) -> Self {
        self.beta = beta;
        self
    }

    /// Sets the reduction.
    pub fn with_reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }

    /// Sets `avg_factor` (and the reduction `mean`).
    pub fn with_avg_factor(mut self, avg_factor: f64) -> Self {
        self.avg_factor = Some(avg_factor);
        self.reduction = Reduction::Mean;
        self
    }

    /// The divisor of `mean` over `rows` rows.
    pub fn mean_denominator(&self, rows: usize) -> f64 {
        self.avg_factor.unwrap_or(rows as f64)
    }

    /// Validates beta and the shapes: logits `ext` (`[rows, classes]`; without a shape the
    /// rows are the labels' count), `labels_len` labels and `scores_len` scores (one per row).
    pub fn plan(
        &self,
        ext: &Extent,
        labels_len: usize,
        scores_len: usize,
    ) -> Result<Plan<'_, Self>> {
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(LossError::InvalidParameter {
                name: "beta",
                value: self.beta,
                reason: "must be finite and >= 0",
            });
        }
        check_avg_factor(self.avg_factor, self.reduction)?;
        let [rows, classes] = match ext.shape {
            Some(s) => s,
            None if labels_len > 0 && ext.len.is_multiple_of(labels_len) => {
                [labels_len, ext.len / labels_len]
            }
            None if labels_len > 0 => {
                return Err(LossError::ShapeMismatch {
                    what: "logits",
                    expected: ext.len.div_ceil(labels_len) * labels_len,
                    got: ext.len,
                });
            }
            None => [0, 0],
        };
        if rows == 0 || classes == 0 {
            return Err(LossError::EmptyInput {
                what: "logits",
                detail: "at least one row and one class are required",
            });
        }
        check_len(
            "logits",
            crate::error::checked_size("logits", rows, classes)?,
            ext.len,
        )?;
        check_len("labels", rows, labels_len)?;
        check_len("scores", rows, scores_len)?;
        Plan::finish(self, rows, classes, ext)
    }

    /// Checks the targets' values: labels in `[0, classes]` (`classes` is the background, as
    /// mmdetection), scores in `[0, 1]`.
    pub fn check_targets<T: Element>(
        &self,
        labels: &[i64],
        scores: &[T],
        classes: usize,
    ) -> Result<()> {
        if let Some((row, &t)) = labels
            .iter()
            .enumerate()
            .find(|(_, t)| !(0..=classes as i64).contains(t))
        {
            return Err(LossError::TargetOutOfRange {
                row,
                target: t,
                classes,
            });
        }
        check_unit("scores", scores)
    }

    /// `beta` at most `f32::MAX` (`TOL-4`).
    pub fn check_f32(&self) -> Result<()> {
        check_f32_magnitude("beta", self.beta)
    }
}

impl LossConfig for QualityFocal {
    const OP: Op = Op::QualityFocal;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

/// The targets of a quality focal call: per row a label in `[0, C]` (`C`: background) and a
/// quality score in `[0, 1]`.
#[derive(Debug, Clone, Copy)]
pub struct QflTargets<'a, T> {
    /// Class per row (`C` is the background).
    pub labels: &'a [i64],
    /// Quality score per row.
    pub scores: &'a [T],
}
