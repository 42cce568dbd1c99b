//! Cross-entropy over logits `[N, C]` (formulas `CE-1` .. `CE-9`), with label smoothing, class
//! weights, `ignore_index`, probability targets and the three reductions, as PyTorch's
//! `F.cross_entropy`.

use crate::call::GradDest;
use crate::error::{LossError, Result, check_len, checked_size};
use crate::op::Op;
use crate::plan::{Extent, LossConfig, Plan};
use crate::reduction::Reduction;

/// The targets of a cross-entropy call.
#[derive(Debug, Clone, Copy)]
pub enum CeTargets<'a, T> {
    /// One class index per row, in `0..C`, or the configured `ignore_index`.
    Classes(&'a [i64]),
    /// A target distribution per row, `[N, C]` row-major (`CE-6`). Values are used as given
    /// (PyTorch does not check that rows sum to one either).
    Probs(&'a [T]),
}

/// The shape of a call's targets: how many class indices or probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeTargetsShape {
    /// This many class indices.
    Classes(usize),
    /// This many probabilities.
    Probs(usize),
}

impl<T> CeTargets<'_, T> {
    /// The targets' shape.
    pub fn shape(&self) -> CeTargetsShape {
        match self {
            CeTargets::Classes(t) => CeTargetsShape::Classes(t.len()),
            CeTargets::Probs(p) => CeTargetsShape::Probs(p.len()),
        }
    }
}

impl<'a, T> From<&'a [i64]> for CeTargets<'a, T> {
    fn from(t: &'a [i64]) -> Self {
        CeTargets::Classes(t)
    }
}

impl<'a, T, const N: usize> From<&'a [i64; N]> for CeTargets<'a, T> {
    fn from(t: &'a [i64; N]) -> Self {
        CeTargets::Classes(t)
    }
}

impl<'a, T> From<&'a Vec<i64>> for CeTargets<'a, T> {
    fn from(t: &'a Vec<i64>) -> Self {
        CeTargets::Classes(t)
    }
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

impl CrossEntropy {
    /// PyTorch's defaults: no smoothing, ignore index -100, no weights, mean.
    pub fn new() -> Self {
        Self::default()
    }

    /// The seed article's `SmoothLoss(alpha)`: cross-entropy with label smoothing `alpha`,
    /// mean reduction, ignore index -100.
    ///
    /// This is standard label smoothing (Szegedy et al. 2016; PyTorch's `label_smoothing`):
    /// the target distribution is `(1 - alpha) * onehot(y) + alpha / C` (`CE-3`). The article's
    /// printed code computes something else (see the seed article's findings in `EXPERIMENT.md`);
    /// this is what its prose describes.
    #[doc(alias = "SmoothLoss")]
    pub fn smooth_loss(alpha: f64) -> Self {
        Self::new().with_label_smoothing(alpha)
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

    /// Weight of class `j` (1 without class weights; NaN for a class the weights do not have).
    #[inline]
    pub fn weight(&self, j: usize) -> f64 {
        self.class_weights
            .as_ref()
            .map_or(1.0, |w| w.get(j).copied().unwrap_or(f64::NAN))
    }

    /// Validates the parameters and the shapes of a call (never the targets' values: see
    /// [`CrossEntropy::check_targets`]) and returns its plan. The logits are `[rows, classes]`:
    /// from `ext.shape`, or, for class targets without a declared shape, `rows` = the number of
    /// targets.
    pub fn plan(&self, ext: &Extent, targets: CeTargetsShape) -> Result<CePlan<'_>> {
        let eps = self.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(LossError::InvalidParameter {
                name: "label_smoothing",
                value: eps,
                reason: "must lie in [0, 1]",
            });
        }
        let [rows, classes] = match (ext.shape, targets) {
            (Some(s), _) => s,
            (None, CeTargetsShape::Classes(n)) if n > 0 && ext.len.is_multiple_of(n) => {
                [n, ext.len / n]
            }
            (None, CeTargetsShape::Classes(n)) if n > 0 => {
                return Err(LossError::ShapeMismatch {
                    what: "logits",
                    expected: ext.len.div_ceil(n) * n,
                    got: ext.len,
                });
            }
            (None, CeTargetsShape::Classes(_)) => [0, 0],
            (None, CeTargetsShape::Probs(_)) => {
                return Err(LossError::MissingShape {
                    what: "logits",
                    detail: "probability targets need the logits' shape: Input::matrix(data, rows, classes)",
                });
            }
        };
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
        check_len("logits", total, ext.len)?;
        if let GradDest::Separate(g) = ext.grad {
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
            CeTargetsShape::Classes(n) => check_len("targets", rows, n)?,
            CeTargetsShape::Probs(n) => check_len("target_probs", total, n)?,
        }
        Plan::finish(self, rows, classes, ext)
    }

    /// Checks the values of class targets: each in `0..classes` or the ignore index. Returns
    /// the first offending row.
    pub fn check_targets(&self, targets: &[i64], classes: usize) -> Result<()> {
        for (row, &y) in targets.iter().enumerate() {
            let ignored = self.ignore_index == Some(y);
            if !ignored && (y < 0 || y as u64 >= classes as u64) {
                return Err(LossError::TargetOutOfRange {
                    row,
                    target: y,
                    classes,
                });
            }
        }
        Ok(())
    }

    /// The denominator of `mean` (`CE-7`), summed in row order: the sum of the target-class
    /// weights of the rows not ignored (their count without class weights); the number of rows
    /// for probability targets. Targets must have passed [`CrossEntropy::check_targets`].
    pub fn mean_denominator<T>(&self, targets: &CeTargets<'_, T>, rows: usize) -> f64 {
        match targets {
            // Exact: without class weights the sum of ones is the count (< 2^53).
            CeTargets::Classes(t) => match &self.class_weights {
                None => t.iter().filter(|&&y| self.ignore_index != Some(y)).count() as f64,
                Some(w) => {
                    let mut d = 0.0;
                    for &y in t.iter() {
                        if self.ignore_index != Some(y) {
                            // Checked targets are in range; an unchecked one gives NaN.
                            d += w.get(y as usize).copied().unwrap_or(f64::NAN);
                        }
                    }
                    d
                }
            },
            // Exact: `rows` ones sum to `rows` in f64 (rows < 2^53).
            CeTargets::Probs(_) => rows as f64,
        }
    }
}

/// A validated cross-entropy call: `items` rows of `width` classes.
pub type CePlan<'c> = Plan<'c, CrossEntropy>;

impl CePlan<'_> {
    /// Rows `N`.
    pub fn rows(&self) -> usize {
        self.items
    }

    /// Classes `C`.
    pub fn classes(&self) -> usize {
        self.width
    }
}

impl LossConfig for CrossEntropy {
    const OP: Op = Op::CrossEntropy;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}
