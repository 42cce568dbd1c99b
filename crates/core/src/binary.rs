//! Binary cross-entropy with logits and sigmoid focal loss (formulas `BIN-1` .. `BIN-5`),
//! element-wise, as PyTorch / torchvision.

use crate::element::Element;
use crate::error::{LossError, Result};
use crate::op::Op;
use crate::plan::{Extent, LossConfig, PairLoss, Plan, check_f32_magnitude};
use crate::reduction::Reduction;
use crate::regression::plan_elementwise;

/// `F.binary_cross_entropy_with_logits(logits, targets, pos_weight=...)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BceWithLogits {
    /// Optional positive-class weight broadcast along the last dimension: element `i` uses
    /// `pos_weight[i % P]`; P must divide the number of elements. Finite and >= 0.
    pub pos_weight: Option<Vec<f64>>,
    /// Reduction over elements.
    pub reduction: Reduction,
}

/// `torchvision.ops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SigmoidFocal {
    /// Positive-class balance in `[0, 1]`; a negative value means no alpha weighting.
    pub alpha: f64,
    /// Focusing exponent, finite and >= 0.
    pub gamma: f64,
    /// Reduction over elements (torchvision's default is `none`).
    pub reduction: Reduction,
}

impl Default for SigmoidFocal {
    fn default() -> Self {
        Self {
            alpha: 0.25,
            gamma: 2.0,
            reduction: Reduction::None,
        }
    }
}

/// Checks the values of binary targets: each in `[0, 1]` (NaN is refused too); reports the
/// first offending value.
pub fn check_binary_targets<T: Element>(targets: &[T]) -> Result<()> {
    for t in targets {
        let v = t.to_f64();
        if !(0.0..=1.0).contains(&v) {
            return Err(LossError::InvalidParameter {
                name: "targets",
                value: v,
                reason: "binary targets must lie in [0, 1]",
            });
        }
    }
    Ok(())
}

impl BceWithLogits {
    /// Validates pos_weight and the shapes (not the targets' values:
    /// [`check_binary_targets`]); returns the plan.
    pub fn plan(&self, ext: &Extent, targets_len: usize) -> Result<Plan<'_, BceWithLogits>> {
        let plan = plan_elementwise(self, "logits", ext, "targets", targets_len)?;
        let n = plan.items;
        if let Some(pw) = &self.pos_weight {
            if pw.is_empty() || n % pw.len() != 0 {
                return Err(LossError::ShapeMismatch {
                    what: "pos_weight",
                    expected: n,
                    got: pw.len(),
                });
            }
            if let Some(&bad) = pw.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(LossError::InvalidParameter {
                    name: "pos_weight",
                    value: bad,
                    reason: "must be finite and >= 0",
                });
            }
        }
        Ok(plan)
    }
}

impl SigmoidFocal {
    /// Validates alpha, gamma and the shapes (not the targets' values:
    /// [`check_binary_targets`]); returns the plan.
    pub fn plan(&self, ext: &Extent, targets_len: usize) -> Result<Plan<'_, SigmoidFocal>> {
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return Err(LossError::InvalidParameter {
                name: "gamma",
                value: self.gamma,
                reason: "must be finite and >= 0",
            });
        }
        if !(self.alpha.is_finite() && self.alpha <= 1.0) {
            return Err(LossError::InvalidParameter {
                name: "alpha",
                value: self.alpha,
                reason: "must be <= 1 (negative disables alpha weighting)",
            });
        }
        plan_elementwise(self, "logits", ext, "targets", targets_len)
    }
}

impl LossConfig for BceWithLogits {
    const OP: Op = Op::BceWithLogits;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

impl LossConfig for SigmoidFocal {
    const OP: Op = Op::SigmoidFocal;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

impl PairLoss for BceWithLogits {
    fn plan_pair(&self, ext: &Extent, second_len: usize) -> Result<Plan<'_, Self>> {
        self.plan(ext, second_len)
    }

    fn check_second<T: Element>(&self, targets: &[T]) -> Result<()> {
        check_binary_targets(targets)
    }

    /// Every `pos_weight` at most `f32::MAX` (`TOL-4`).
    fn check_f32(&self) -> Result<()> {
        for &w in self.pos_weight.iter().flatten() {
            check_f32_magnitude("pos_weight", w)?;
        }
        Ok(())
    }
}

impl PairLoss for SigmoidFocal {
    fn plan_pair(&self, ext: &Extent, second_len: usize) -> Result<Plan<'_, Self>> {
        self.plan(ext, second_len)
    }

    fn check_second<T: Element>(&self, targets: &[T]) -> Result<()> {
        check_binary_targets(targets)
    }

    /// `gamma` (and `alpha`) at most `f32::MAX` in magnitude (`TOL-4`).
    fn check_f32(&self) -> Result<()> {
        check_f32_magnitude("gamma", self.gamma)?;
        check_f32_magnitude("alpha", self.alpha)
    }
}
