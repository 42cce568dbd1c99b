//! Smooth L1 and Huber losses (formulas `REG-1` .. `REG-4`), element-wise, as PyTorch.

use crate::error::{LossError, Result, check_len};
use crate::op::Op;
use crate::plan::{Extent, LossConfig, PairLoss, Plan, check_f32_scale};
use crate::reduction::Reduction;

/// `F.smooth_l1_loss(pred, target, beta=beta)`; `beta = 0` is the L1 loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothL1 {
    /// Transition point, finite and >= 0.
    pub beta: f64,
    /// Reduction over elements.
    pub reduction: Reduction,
}

impl Default for SmoothL1 {
    fn default() -> Self {
        Self {
            beta: 1.0,
            reduction: Reduction::Mean,
        }
    }
}

/// `F.huber_loss(pred, target, delta=delta)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Huber {
    /// Transition point, finite and > 0.
    pub delta: f64,
    /// Reduction over elements.
    pub reduction: Reduction,
}

impl Default for Huber {
    fn default() -> Self {
        Self {
            delta: 1.0,
            reduction: Reduction::Mean,
        }
    }
}

/// Shared shape checks of element-wise losses (`a` is the differentiated input, `b_len` the
/// length of the second one); returns the plan of `a.len` items of width 1.
pub fn plan_elementwise<'c, C: LossConfig>(
    cfg: &'c C,
    a_name: &'static str,
    ext: &Extent,
    b_name: &'static str,
    b_len: usize,
) -> Result<Plan<'c, C>> {
    if ext.len == 0 {
        return Err(LossError::EmptyInput {
            what: a_name,
            detail: "at least one element is required",
        });
    }
    check_len(b_name, ext.len, b_len)?;
    Plan::finish(cfg, ext.len, 1, ext)
}

impl SmoothL1 {
    /// Validates beta and the shapes; returns the plan.
    pub fn plan(&self, ext: &Extent, target_len: usize) -> Result<Plan<'_, SmoothL1>> {
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(LossError::InvalidParameter {
                name: "beta",
                value: self.beta,
                reason: "must be finite and >= 0",
            });
        }
        plan_elementwise(self, "pred", ext, "target", target_len)
    }
}

impl Huber {
    /// Validates delta and the shapes; returns the plan.
    pub fn plan(&self, ext: &Extent, target_len: usize) -> Result<Plan<'_, Huber>> {
        if !(self.delta.is_finite() && self.delta > 0.0) {
            return Err(LossError::InvalidParameter {
                name: "delta",
                value: self.delta,
                reason: "must be finite and > 0",
            });
        }
        plan_elementwise(self, "pred", ext, "target", target_len)
    }
}

impl LossConfig for SmoothL1 {
    const OP: Op = Op::SmoothL1;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

impl LossConfig for Huber {
    const OP: Op = Op::Huber;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

impl PairLoss for SmoothL1 {
    fn plan_pair(&self, ext: &Extent, second_len: usize) -> Result<Plan<'_, Self>> {
        self.plan(ext, second_len)
    }

    /// `beta` is 0 or a normal `f32` (`TOL-4`).
    fn check_f32(&self) -> Result<()> {
        check_f32_scale("beta", self.beta, true)
    }
}

impl PairLoss for Huber {
    fn plan_pair(&self, ext: &Extent, second_len: usize) -> Result<Plan<'_, Self>> {
        self.plan(ext, second_len)
    }

    /// `delta` is a normal `f32` (`TOL-4`).
    fn check_f32(&self) -> Result<()> {
        check_f32_scale("delta", self.delta, false)
    }
}
