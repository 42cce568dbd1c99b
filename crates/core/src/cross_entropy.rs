//! Cross-entropy over logits `[N, C]` (formulas `CE-1` .. `CE-9`), with label smoothing, class
//! weights, `ignore_index`, probability targets and the three reductions, as PyTorch's
//! `F.cross_entropy`; and the options of language-model training (`CE-10` .. `CE-15`): logit
//! softcap, z-loss, per-row (token) weights, a given `mean` denominator (exact normalisation
//! across micro-batches and ranks), per-row log-sum-exp and argmax-hit outputs.

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
    /// z-loss scale `s >= 0` (`CE-11`, PaLM's z-loss, Liger's `lse_square_scale`): each row not
    /// ignored adds `s * lse_i^2`. 0 (the default) is off.
    pub z_loss: f64,
    /// Logit softcap `cap > 0` (`CE-10`, Gemma 2): the logits become `cap * tanh(z / cap)`
    /// before the softmax; the gradient is with respect to the raw logits.
    pub softcap: Option<f64>,
    /// Per-row (token) weights `[N]`, finite and non-negative, multiplying each row's loss and
    /// gradient (`CE-12`); they also weight the `mean` denominator.
    pub row_weights: Option<Vec<f64>>,
    /// A given `mean` denominator `d > 0` (`CE-13`): `mean` returns `sum_i loss_i / d` instead
    /// of dividing by the batch's own [`CrossEntropy::mean_denominator`]. For the exact mean
    /// over micro-batches or ranks: sum each batch's `mean_denominator` first.
    pub denominator: Option<f64>,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        Self {
            label_smoothing: 0.0,
            ignore_index: Some(-100),
            class_weights: None,
            reduction: Reduction::Mean,
            z_loss: 0.0,
            softcap: None,
            row_weights: None,
            denominator: None,
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

    /// Sets the z-loss scale (`CE-11`; Liger's `lse_square_scale`, PaLM uses `1e-4`).
    pub fn with_z_loss(mut self, scale: f64) -> Self {
        self.z_loss = scale;
        self
    }

    /// Sets the logit softcap (`CE-10`; Gemma 2 uses 30 on the final logits).
    pub fn with_softcap(mut self, cap: f64) -> Self {
        self.softcap = Some(cap);
        self
    }

    /// Sets per-row (token) weights, one per row (`CE-12`).
    pub fn with_row_weights(mut self, w: Vec<f64>) -> Self {
        self.row_weights = Some(w);
        self
    }

    /// `mean` over a given denominator (`CE-13`): sets the reduction to `mean` and divides by
    /// `d` (for example the number of non-ignored tokens of the whole step, the sum of every
    /// micro-batch's [`CrossEntropy::mean_denominator`]).
    ///
    /// ```
    /// use smoothloss_core::{CeTargets, CrossEntropy, Input, Losses, ReferenceBackend};
    /// let (z, t) = ([2.0_f64, 0.5, -1.0, 0.1, 0.2, 0.3], [0_i64, 2]);
    /// let ce = CrossEntropy::new();
    /// // Two micro-batches of one row each: their denominators summed first...
    /// let d: f64 = (0..2).map(|i| ce.mean_denominator(&CeTargets::<f64>::Classes(&t[i..i + 1]), 1)).sum();
    /// let part = |i: usize| ReferenceBackend
    ///     .cross_entropy(&ce.clone().with_denominator(d), Input::matrix(&z[3 * i..3 * i + 3], 1, 3), &t[i..i + 1])
    ///     .map(|l| l.value());
    /// // ...so the micro-batch values add up to the whole batch's mean.
    /// let whole = ReferenceBackend.cross_entropy(&ce, Input::matrix(&z, 2, 3), &t)?.value();
    /// assert!((part(0)? + part(1)? - whole).abs() < 1e-15);
    /// # Ok::<(), smoothloss_core::LossError>(())
    /// ```
    pub fn with_denominator(mut self, d: f64) -> Self {
        self.reduction = Reduction::Mean;
        self.denominator = Some(d);
        self
    }

    /// Whether any option of `CE-10` .. `CE-13` is set (softcap, z-loss, row weights, a given
    /// denominator): what a backend without them must refuse.
    pub fn has_llm_options(&self) -> bool {
        self.softcap.is_some()
            || self.z_loss != 0.0
            || self.row_weights.is_some()
            || self.denominator.is_some()
    }

    /// Weight of row `i` (1 without row weights; NaN for a row the weights do not have).
    #[inline]
    pub fn row_weight(&self, i: usize) -> f64 {
        self.row_weights
            .as_ref()
            .map_or(1.0, |w| w.get(i).copied().unwrap_or(f64::NAN))
    }

    /// The denominator the reduction divides by (`CE-7`, `CE-13`): the given
    /// [`CrossEntropy::denominator`], else the batch's [`CrossEntropy::mean_denominator`].
    pub fn reduction_denominator<T>(&self, targets: &CeTargets<'_, T>, rows: usize) -> f64 {
        match self.denominator {
            Some(d) => d,
            None => self.mean_denominator(targets, rows),
        }
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
        self.check_llm_options(rows)?;
        Plan::finish(self, rows, classes, ext)
    }

    /// The checks of `CE-10` .. `CE-13` (after the targets' shape, before the gradient buffer
    /// and the upstream gradient of [`Plan::finish`]), in this order.
    fn check_llm_options(&self, rows: usize) -> Result<()> {
        if !(self.z_loss.is_finite() && self.z_loss >= 0.0) {
            return Err(LossError::InvalidParameter {
                name: "z_loss",
                value: self.z_loss,
                reason: "the z-loss scale must be finite and >= 0",
            });
        }
        if let Some(cap) = self.softcap
            && !(cap.is_finite() && cap > 0.0)
        {
            return Err(LossError::InvalidParameter {
                name: "softcap",
                value: cap,
                reason: "the softcap must be finite and > 0",
            });
        }
        if let Some(w) = &self.row_weights {
            check_len("row_weights", rows, w.len())?;
            if let Some(&bad) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(LossError::InvalidParameter {
                    name: "row_weights",
                    value: bad,
                    reason: "row weights must be finite and non-negative",
                });
            }
        }
        if let Some(d) = self.denominator {
            if !(d.is_finite() && d > 0.0) {
                return Err(LossError::InvalidParameter {
                    name: "denominator",
                    value: d,
                    reason: "the denominator must be finite and > 0",
                });
            }
            if self.reduction != Reduction::Mean {
                return Err(LossError::InvalidParameter {
                    name: "denominator",
                    value: d,
                    reason: "a given denominator needs reduction `mean` (with_denominator sets it)",
                });
            }
        }
        Ok(())
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

    /// The denominator of `mean` (`CE-7`, `CE-12`), summed in row order: the sum of the
    /// target-class weights of the rows not ignored (their count without class weights); the
    /// number of rows for probability targets; with row weights each row's term is multiplied
    /// by its row weight. Targets must have passed [`CrossEntropy::check_targets`]. This is the
    /// batch's share of an exact mean over micro-batches or ranks (`CE-13`): the sum of the
    /// batches' values is the denominator to give [`CrossEntropy::with_denominator`]. Cheap:
    /// one pass over the targets, no logits read.
    pub fn mean_denominator<T>(&self, targets: &CeTargets<'_, T>, rows: usize) -> f64 {
        if let Some(r) = &self.row_weights {
            return self.row_weighted_denominator(targets, rows, r);
        }
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

impl CrossEntropy {
    /// `mean_denominator` with row weights: `sum_i r_i w_{y_i}` over the rows not ignored
    /// (`sum_i r_i` for probability targets), in row order.
    fn row_weighted_denominator<T>(
        &self,
        targets: &CeTargets<'_, T>,
        rows: usize,
        r: &[f64],
    ) -> f64 {
        let mut d = 0.0;
        match targets {
            CeTargets::Classes(t) => {
                for (i, &y) in t.iter().enumerate() {
                    if self.ignore_index != Some(y) {
                        let wy = match &self.class_weights {
                            None => 1.0,
                            Some(w) => w.get(y as usize).copied().unwrap_or(f64::NAN),
                        };
                        d += r.get(i).copied().unwrap_or(f64::NAN) * wy;
                    }
                }
            }
            CeTargets::Probs(_) => {
                for i in 0..rows {
                    d += r.get(i).copied().unwrap_or(f64::NAN);
                }
            }
        }
        d
    }
}

/// Optional per-row outputs of a cross-entropy call, written in the same pass as the loss
/// (`CE-14`): the log-sum-exp of each row's (softcapped) logits and whether the row's target
/// logit is the row's maximum (token accuracy). Each buffer, when given, has one entry per row.
#[derive(Debug, Default)]
pub struct CeRowOutputs<'a, T> {
    /// `lse_i = max_j z'_ij + ln sum_j exp(z'_ij - max)` (0 for ignored rows).
    pub lse: Option<&'a mut [T]>,
    /// `z'_{i y_i} == max_j z'_ij` (class targets only; false for ignored rows and NaN rows).
    pub hit: Option<&'a mut [bool]>,
}

impl<'a, T> CeRowOutputs<'a, T> {
    /// No per-row output.
    pub fn new() -> Self {
        Self {
            lse: None,
            hit: None,
        }
    }

    /// Writes each row's log-sum-exp into `lse` (`[N]`).
    pub fn with_lse(mut self, lse: &'a mut [T]) -> Self {
        self.lse = Some(lse);
        self
    }

    /// Writes each row's argmax hit into `hit` (`[N]`, class targets only).
    pub fn with_hits(mut self, hit: &'a mut [bool]) -> Self {
        self.hit = Some(hit);
        self
    }

    /// Whether any output is wanted.
    pub fn wanted(&self) -> bool {
        self.lse.is_some() || self.hit.is_some()
    }
}

/// What [`Losses::cross_entropy_rows`](crate::Losses::cross_entropy_rows) returns: the loss
/// (z-loss included) and the z-loss apart (`CE-15`, Liger's `return_z_loss`), reduced alike.
#[derive(Debug, Clone, PartialEq)]
pub struct CeOutput {
    /// The loss, z-loss included (as [`Losses::cross_entropy`](crate::Losses::cross_entropy)).
    pub loss: crate::call::Loss,
    /// The z-loss part of [`CeOutput::loss`], with the same reduction and denominator (zeros
    /// without z-loss).
    pub z_loss: crate::call::Loss,
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

    /// Checks per-row output buffers against the plan (`CE-14`): `N` entries each; hits need
    /// class targets.
    pub fn check_row_outputs(
        &self,
        lse: Option<usize>,
        hit: Option<usize>,
        targets: CeTargetsShape,
    ) -> Result<()> {
        if let Some(n) = lse {
            check_len("lse", self.items, n)?;
        }
        if let Some(n) = hit {
            check_len("hit", self.items, n)?;
            if let CeTargetsShape::Probs(_) = targets {
                return Err(LossError::InvalidParameter {
                    name: "hit",
                    value: n as f64,
                    reason: "argmax hits need class targets",
                });
            }
        }
        Ok(())
    }
}

impl LossConfig for CrossEntropy {
    const OP: Op = Op::CrossEntropy;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}
