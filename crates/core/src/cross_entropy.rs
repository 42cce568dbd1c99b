//! Cross-entropy over logits `[N, C]` (formulas `CE-1` .. `CE-9`), with label smoothing, class
//! weights, `ignore_index`, probability targets and the three reductions, as PyTorch's
//! `F.cross_entropy`.

use crate::element::Element;
use crate::error::{LossError, Result, check_len, checked_size};
use crate::reduction::{Reduction, Upstream};

/// The targets of a cross-entropy call.
#[derive(Debug, Clone, Copy)]
pub enum CeTargets<'a, T> {
    /// One class index per row, in `0..C`, or the configured `ignore_index`.
    Classes(&'a [i64]),
    /// A target distribution per row, `[N, C]` row-major (`CE-6`). Values are used as given
    /// (PyTorch does not check that rows sum to one either).
    Probs(&'a [T]),
}

/// Cross-entropy configuration (PyTorch's `F.cross_entropy` parameters).
///
/// ```
/// use smoothloss_core::{CrossEntropy, Reduction};
/// let ce = CrossEntropy::new().with_label_smoothing(0.1).with_reduction(Reduction::Sum);
/// assert_eq!(ce.label_smoothing, 0.1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CrossEntropy {
    /// Label smoothing epsilon in `[0, 1]` (`CE-3`).
    pub label_smoothing: f64,
    /// Rows whose target equals this index contribute nothing (`CE-5`); PyTorch's default -100.
    pub ignore_index: Option<i64>,
    /// Optional per-class weights, length C, finite and non-negative (`CE-4`).
    pub class_weights: Option<Vec<f64>>,
    /// Reduction (`CE-7`).
    pub reduction: Reduction,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        Self {
            label_smoothing: 0.0,
            ignore_index: Some(-100),
            class_weights: None,
            reduction: Reduction::Mean,
        }
    }
}

/// The seed article's name for cross-entropy with label smoothing.
///
/// `SmoothLoss::new(alpha)` is standard label smoothing (Szegedy et al. 2016; PyTorch's
/// `label_smoothing`): the target distribution is `(1 - alpha) * onehot(y) + alpha / C`. The
/// article's printed code computes something else (see `FINDINGS.md`); this is what its prose
/// describes.
#[derive(Debug, Clone, Copy)]
pub struct SmoothLoss;

impl SmoothLoss {
    /// Cross-entropy with label smoothing `alpha`, mean reduction, ignore index -100.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(alpha: f64) -> CrossEntropy {
        CrossEntropy::new().with_label_smoothing(alpha)
    }
}

impl CrossEntropy {
    /// PyTorch's defaults: no smoothing, ignore index -100, no weights, mean.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the label smoothing.
    pub fn with_label_smoothing(mut self, eps: f64) -> Self {
        self.label_smoothing = eps;
        self
    }

    /// Sets (or clears) the ignore index.
    pub fn with_ignore_index(mut self, idx: Option<i64>) -> Self {
        self.ignore_index = idx;
        self
    }

    /// Sets the class weights.
    pub fn with_class_weights(mut self, w: Vec<f64>) -> Self {
        self.class_weights = Some(w);
        self
    }

    /// Sets the reduction.
    pub fn with_reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }

    /// Weight of class `j` (1 without class weights).
    #[inline]
    pub fn weight(&self, j: usize) -> f64 {
        self.class_weights.as_ref().map_or(1.0, |w| w[j])
    }

    /// Validates parameters, shapes and targets; every backend calls this first so that all of
    /// them reject the same input with the same error.
    pub fn validate<T: Element>(
        &self,
        logits_len: usize,
        rows: usize,
        classes: usize,
        targets: &CeTargets<'_, T>,
        upstream: &Upstream<'_>,
        grad_len: Option<usize>,
    ) -> Result<()> {
        let eps = self.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(LossError::InvalidParameter {
                name: "label_smoothing",
                value: eps,
                reason: "must lie in [0, 1]",
            });
        }
        if rows == 0 {
            return Err(LossError::EmptyInput {
                what: "logits",
                detail: "the batch must have at least one row",
            });
        }
        if classes == 0 {
            return Err(LossError::EmptyInput {
                what: "logits",
                detail: "there must be at least one class",
            });
        }
        let total = checked_size("logits", rows, classes)?;
        check_len("logits", total, logits_len)?;
        if let Some(g) = grad_len {
            check_len("grad", total, g)?;
        }
        if let Some(w) = &self.class_weights {
            check_len("class_weights", classes, w.len())?;
            if let Some(&bad) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(LossError::InvalidParameter {
                    name: "class_weights",
                    value: bad,
                    reason: "class weights must be finite and non-negative",
                });
            }
        }
        match targets {
            CeTargets::Classes(t) => {
                check_len("targets", rows, t.len())?;
                for (row, &y) in t.iter().enumerate() {
                    let ignored = self.ignore_index == Some(y);
                    if !ignored && (y < 0 || y as u64 >= classes as u64) {
                        return Err(LossError::TargetOutOfRange {
                            row,
                            target: y,
                            classes,
                        });
                    }
                }
            }
            CeTargets::Probs(p) => check_len("target_probs", total, p.len())?,
        }
        upstream.validate(self.reduction, rows)
    }
}
