//! Smooth L1 and Huber losses (formulas `REG-1` .. `REG-4`), element-wise, as PyTorch.

use crate::element::Element;
use crate::error::{LossError, Result, check_len};
use crate::reduction::{Reduction, Upstream};

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

/// Shared shape checks for element-wise losses; returns the element count.
pub fn validate_elementwise<T: Element>(
    a_name: &'static str,
    a: &[T],
    b_name: &'static str,
    b: &[T],
    reduction: Reduction,
    upstream: &Upstream<'_>,
    grad_len: Option<usize>,
) -> Result<usize> {
    if a.is_empty() {
        return Err(LossError::EmptyInput {
            what: a_name,
            detail: "at least one element is required",
        });
    }
    check_len(b_name, a.len(), b.len())?;
    if let Some(g) = grad_len {
        check_len("grad", a.len(), g)?;
    }
    upstream.validate(reduction, a.len())?;
    Ok(a.len())
}

impl SmoothL1 {
    /// Validates beta and shapes.
    pub fn validate<T: Element>(
        &self,
        pred: &[T],
        target: &[T],
        upstream: &Upstream<'_>,
        grad_len: Option<usize>,
    ) -> Result<usize> {
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(LossError::InvalidParameter {
                name: "beta",
                value: self.beta,
                reason: "must be finite and >= 0",
            });
        }
        validate_elementwise(
            "pred",
            pred,
            "target",
            target,
            self.reduction,
            upstream,
            grad_len,
        )
    }
}

impl Huber {
    /// Validates delta and shapes.
    pub fn validate<T: Element>(
        &self,
        pred: &[T],
        target: &[T],
        upstream: &Upstream<'_>,
        grad_len: Option<usize>,
    ) -> Result<usize> {
        if !(self.delta.is_finite() && self.delta > 0.0) {
            return Err(LossError::InvalidParameter {
                name: "delta",
                value: self.delta,
                reason: "must be finite and > 0",
            });
        }
        validate_elementwise(
            "pred",
            pred,
            "target",
            target,
            self.reduction,
            upstream,
            grad_len,
        )
    }
}
