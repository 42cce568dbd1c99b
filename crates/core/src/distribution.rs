//! Distribution focal loss (GFL, Li et al. 2020, arXiv 2006.04388; formulas `DFL-1` ..
//! `DFL-4`) over logits `[rows, bins]`, one distance target per row, as ultralytics
//! `DFLoss(reg_max)` and as mmdetection's `distribution_focal_loss`.

use crate::element::Element;
use crate::error::{LossError, Result, check_len};
use crate::op::Op;
use crate::plan::{Extent, LossConfig, PairLoss, Plan};
use crate::reduction::Reduction;

/// Whose conventions a [`DistributionFocal`] follows (`DFL-1`, `DFL-4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DflConvention {
    /// ultralytics `DFLoss(reg_max)`: targets clamped to `[0, bins - 1 - 0.01]`, the rows taken
    /// four at a time (the four sides `l, t, r, b` of a box) and each box's loss the mean of
    /// its four sides; an item is a box.
    #[default]
    Ultralytics,
    /// mmdetection `distribution_focal_loss`: targets must lie in `[0, bins - 1)` (no clamp);
    /// an item is a row.
    Mmdetection,
}

impl DflConvention {
    /// Parses `ultralytics` or `mmdetection`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ultralytics" => Some(Self::Ultralytics),
            "mmdetection" => Some(Self::Mmdetection),
            _ => None,
        }
    }

    /// The name used in case files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ultralytics => "ultralytics",
            Self::Mmdetection => "mmdetection",
        }
    }

    /// Rows per item: 4 (the sides of a box) for ultralytics, 1 for mmdetection.
    pub const fn rows_per_item(self) -> usize {
        match self {
            Self::Ultralytics => 4,
            Self::Mmdetection => 1,
        }
    }
}

/// Distribution focal loss over logits `[rows, bins]` (the bins are ultralytics' `reg_max`)
/// and one continuous target per row; the gradient is with respect to the logits.
///
/// `DistributionFocal::ultralytics()` is `DFLoss(reg_max)(pred_dist, target)` with the
/// reduction `none` it returns (one loss per box, `[rows / 4]`);
/// `DistributionFocal::mmdetection()` is `DistributionFocalLoss()` (reduction `mean` over rows).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[doc(alias = "DFLoss")]
pub struct DistributionFocal {
    /// Clamp and item conventions.
    pub convention: DflConvention,
    /// Reduction over items (boxes for ultralytics, rows for mmdetection).
    pub reduction: Reduction,
}

impl DistributionFocal {
    /// ultralytics `DFLoss`: one loss per box (reduction `none`), targets clamped.
    pub fn ultralytics() -> Self {
        Self {
            convention: DflConvention::Ultralytics,
            reduction: Reduction::None,
        }
    }

    /// mmdetection `DistributionFocalLoss`: mean over rows, targets in `[0, bins - 1)`.
    pub fn mmdetection() -> Self {
        Self {
            convention: DflConvention::Mmdetection,
            reduction: Reduction::Mean,
        }
    }

    /// Sets the reduction.
    pub fn with_reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }

    /// Validates the shapes of logits `ext` (`[rows, bins]`; without a shape the rows are the
    /// targets' count) and `targets_len` targets; returns the plan (`items` boxes or rows,
    /// `width` = `bins * rows_per_item`).
    pub fn plan(&self, ext: &Extent, targets_len: usize) -> Result<Plan<'_, Self>> {
        let [rows, bins] = match ext.shape {
            Some(s) => s,
            None if targets_len > 0 && ext.len.is_multiple_of(targets_len) => {
                [targets_len, ext.len / targets_len]
            }
            None if targets_len > 0 => {
                return Err(LossError::ShapeMismatch {
                    what: "logits",
                    expected: ext.len.div_ceil(targets_len) * targets_len,
                    got: ext.len,
                });
            }
            None => [0, 0],
        };
        if rows == 0 {
            return Err(LossError::EmptyInput {
                what: "logits",
                detail: "at least one row is required",
            });
        }
        if bins < 2 {
            return Err(LossError::EmptyInput {
                what: "logits",
                detail: "the distribution needs at least 2 bins (a target's left and right bin)",
            });
        }
        check_len(
            "logits",
            crate::error::checked_size("logits", rows, bins)?,
            ext.len,
        )?;
        check_len("targets", rows, targets_len)?;
        let per = self.convention.rows_per_item();
        if !rows.is_multiple_of(per) {
            return Err(LossError::ShapeMismatch {
                what: "targets",
                expected: rows.div_ceil(per) * per,
                got: rows,
            });
        }
        Plan::finish(self, rows / per, bins * per, ext)
    }

    /// Checks the targets' values: none may be NaN; for mmdetection each must lie in
    /// `[0, bins - 1)` (its right bin must exist). Reports the first offending value.
    pub fn check_targets<T: Element>(&self, targets: &[T], bins: usize) -> Result<()> {
        let hi = (bins - 1) as f64;
        for t in targets {
            let v = t.to_f64();
            let ok = match self.convention {
                DflConvention::Ultralytics => !v.is_nan(),
                DflConvention::Mmdetection => (0.0..hi).contains(&v),
            };
            if !ok {
                return Err(LossError::InvalidParameter {
                    name: "targets",
                    value: v,
                    reason: match self.convention {
                        DflConvention::Ultralytics => "distribution targets must not be NaN",
                        DflConvention::Mmdetection => {
                            "mmdetection distribution targets must lie in [0, bins - 1)"
                        }
                    },
                });
            }
        }
        Ok(())
    }

    /// The bins of a validated plan.
    pub fn bins(&self, plan: &Plan<'_, Self>) -> usize {
        plan.width / self.convention.rows_per_item()
    }
}

impl LossConfig for DistributionFocal {
    const OP: Op = Op::DistributionFocal;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

impl PairLoss for DistributionFocal {
    fn plan_pair(&self, ext: &Extent, second_len: usize) -> Result<Plan<'_, Self>> {
        self.plan(ext, second_len)
    }

    /// The bins follow from the logits, which this check does not see: the front door calls
    /// [`DistributionFocal::check_targets`] with them instead.
    fn check_second<T: Element>(&self, _second: &[T]) -> Result<()> {
        Ok(())
    }
}
