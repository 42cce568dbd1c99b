//! Oriented boxes `(cx, cy, w, h, angle)` (angle in radians) and the ProbIoU of their Gaussian
//! distributions (Llerena et al. 2021, arXiv 2106.06072; formulas `OBB-1` .. `OBB-7`) as
//! ultralytics `probiou` / `batch_probiou`: the loss `1 - ProbIoU` on aligned pairs `[N, 5]`
//! with its gradient with respect to `pred`, and the pairwise `[N, M]` matrix.

use crate::error::{LossError, Result, check_len, checked_size};
use crate::op::Op;
use crate::plan::{Extent, LossConfig, PairLoss, Plan, check_f32_magnitude, check_f32_scale};
use crate::reduction::Reduction;

/// Numbers per oriented box: `(cx, cy, w, h, angle)`.
pub const OBB_WIDTH: usize = 5;

/// `1 - ProbIoU(pred, target)` per pair (`OBB-5`), as ultralytics' `RotatedBboxLoss` uses
/// `probiou(pred, target)`; with `ciou` the aspect-ratio term of ultralytics' `CIoU=True`
/// (`OBB-4`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[doc(alias = "probiou")]
pub struct ProbIou {
    /// ultralytics' `eps` (1e-7), finite and > 0.
    pub eps: f64,
    /// ultralytics' `floor` added to `w^2 / 12` and `h^2 / 12` (0 by default), finite, >= 0.
    pub floor: f64,
    /// Subtract ultralytics' CIoU aspect term (`CIoU=True`; its `alpha` detached).
    pub ciou: bool,
    /// Reduction over pairs.
    pub reduction: Reduction,
}

impl Default for ProbIou {
    fn default() -> Self {
        Self {
            eps: 1e-7,
            floor: 0.0,
            ciou: false,
            reduction: Reduction::Mean,
        }
    }
}

impl ProbIou {
    /// ultralytics' defaults (`eps = 1e-7`, `floor = 0`, no CIoU), reduction `mean`.
    pub fn new() -> Self {
        Self::default()
    }

    /// With ultralytics' CIoU aspect term.
    pub fn with_ciou(mut self, on: bool) -> Self {
        self.ciou = on;
        self
    }

    /// Sets eps.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets ultralytics' `floor`.
    pub fn with_floor(mut self, floor: f64) -> Self {
        self.floor = floor;
        self
    }

    /// Sets the reduction.
    pub fn with_reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }

    fn check_params(&self) -> Result<()> {
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(LossError::InvalidParameter {
                name: "eps",
                value: self.eps,
                reason: "must be finite and > 0",
            });
        }
        if !(self.floor.is_finite() && self.floor >= 0.0) {
            return Err(LossError::InvalidParameter {
                name: "floor",
                value: self.floor,
                reason: "must be finite and >= 0",
            });
        }
        Ok(())
    }

    /// Validates the parameters and the shapes of `pred` (`ext`, `[N, 5]`) and `target`
    /// (`target_len` numbers); returns the plan (`N` pairs of width 5).
    pub fn plan(&self, ext: &Extent, target_len: usize) -> Result<Plan<'_, Self>> {
        self.check_params()?;
        let n = obb_count("pred", ext.len)?;
        if let Some([rows, cols]) = ext.shape {
            check_len("pred", OBB_WIDTH, cols)?;
            check_len("pred", rows * OBB_WIDTH, ext.len)?;
        }
        check_len("target", ext.len, target_len)?;
        if n == 0 {
            return Err(LossError::EmptyInput {
                what: "pred",
                detail: "at least one box pair is required",
            });
        }
        Plan::finish(self, n, OBB_WIDTH, ext)
    }
}

/// Checks that a buffer holds whole oriented boxes and returns their count.
pub fn obb_count(what: &'static str, len: usize) -> Result<usize> {
    if !len.is_multiple_of(OBB_WIDTH) {
        return Err(LossError::ShapeMismatch {
            what,
            expected: len.div_ceil(OBB_WIDTH) * OBB_WIDTH,
            got: len,
        });
    }
    Ok(len / OBB_WIDTH)
}

impl LossConfig for ProbIou {
    const OP: Op = Op::ProbIou;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

impl PairLoss for ProbIou {
    fn plan_pair(&self, ext: &Extent, second_len: usize) -> Result<Plan<'_, Self>> {
        self.plan(ext, second_len)
    }

    /// `eps` a normal `f32`, `floor` at most `f32::MAX` (`TOL-4`).
    fn check_f32(&self) -> Result<()> {
        check_f32_scale("eps", self.eps, false)?;
        check_f32_magnitude("floor", self.floor)
    }
}

/// A validated pairwise ProbIoU (`OBB-6`, ultralytics `batch_probiou`): `n` boxes against `m`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbIouPairwisePlan {
    /// `eps`.
    pub eps: f64,
    /// Boxes in the first set.
    pub n: usize,
    /// Boxes in the second set.
    pub m: usize,
}

impl ProbIouPairwisePlan {
    /// Validates a pairwise ProbIoU of `len1` and `len2` numbers into `out_len` values.
    pub fn new(eps: f64, len1: usize, len2: usize, out_len: usize) -> Result<Self> {
        ProbIou::new().with_eps(eps).check_params()?;
        let n = obb_count("boxes1", len1)?;
        let m = obb_count("boxes2", len2)?;
        check_len("probiou", checked_size("probiou", n, m)?, out_len)?;
        Ok(Self { eps, n, m })
    }
}

/// A validated pairwise ProbIoU on host slices: the plan and its buffers.
#[derive(Debug)]
pub struct ProbIouPairwiseCall<'a, T> {
    plan: ProbIouPairwisePlan,
    boxes1: &'a [T],
    boxes2: &'a [T],
    out: &'a mut [T],
}

impl<'a, T> ProbIouPairwiseCall<'a, T> {
    pub(crate) fn bind(
        plan: ProbIouPairwisePlan,
        boxes1: &'a [T],
        boxes2: &'a [T],
        out: &'a mut [T],
    ) -> Self {
        Self {
            plan,
            boxes1,
            boxes2,
            out,
        }
    }

    /// `(plan, boxes1 [n, 5], boxes2 [m, 5], out [n, m])`.
    #[allow(clippy::type_complexity)]
    pub fn into_parts(self) -> (ProbIouPairwisePlan, &'a [T], &'a [T], &'a mut [T]) {
        (self.plan, self.boxes1, self.boxes2, self.out)
    }
}
