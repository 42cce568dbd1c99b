//! Box regression losses on aligned pairs `[N, 4]` (formulas `BOX-1` .. `BOX-12`): IoU, GIoU,
//! DIoU, CIoU and EIoU, three box layouts, the seed article's threshold weighting, and the
//! pairwise `box_iou`.

use crate::error::{LossError, Result, check_len, checked_size};
use crate::op::Op;
use crate::plan::{Extent, LossConfig, PairLoss, Plan, check_f32_magnitude, check_f32_scale};
use crate::reduction::Reduction;

/// The layout of the four numbers of a box (`BOX-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BoxFormat {
    /// `(x1, y1, x2, y2)`: two corners.
    #[default]
    Xyxy,
    /// `(x, y, w, h)`: top-left corner and size.
    Xywh,
    /// `(cx, cy, w, h)`: centre and size (YOLO; the seed's `x1y1x2y2=False`).
    Cxcywh,
}

impl BoxFormat {
    /// Parses `xyxy`, `xywh` or `cxcywh`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "xyxy" => Some(Self::Xyxy),
            "xywh" => Some(Self::Xywh),
            "cxcywh" => Some(Self::Cxcywh),
            _ => None,
        }
    }

    /// The name used in case files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Xyxy => "xyxy",
            Self::Xywh => "xywh",
            Self::Cxcywh => "cxcywh",
        }
    }

    /// Converts one box to `(x1, y1, x2, y2)` (`BOX-1`).
    #[inline]
    pub fn to_xyxy(self, b: [f64; 4]) -> [f64; 4] {
        match self {
            Self::Xyxy => b,
            Self::Xywh => [b[0], b[1], b[0] + b[2], b[1] + b[3]],
            Self::Cxcywh => [
                b[0] - 0.5 * b[2],
                b[1] - 0.5 * b[3],
                b[0] + 0.5 * b[2],
                b[1] + 0.5 * b[3],
            ],
        }
    }

    /// Converts one `(x1, y1, x2, y2)` box to this layout (inverse of [`BoxFormat::to_xyxy`]).
    #[inline]
    pub fn from_xyxy(self, b: [f64; 4]) -> [f64; 4] {
        match self {
            Self::Xyxy => b,
            Self::Xywh => [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            Self::Cxcywh => [
                0.5 * (b[0] + b[2]),
                0.5 * (b[1] + b[3]),
                b[2] - b[0],
                b[3] - b[1],
            ],
        }
    }
}

/// Which box loss (`BOX-3` .. `BOX-8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BoxLossKind {
    /// `1 - IoU`.
    Iou,
    /// Generalized IoU loss (Rezatofighi et al. 2019), as torchvision.
    #[default]
    Giou,
    /// Distance IoU loss (Zheng et al. 2020), as torchvision.
    Diou,
    /// Complete IoU loss; the aspect weight alpha carries no gradient, as torchvision.
    Ciou,
    /// Efficient IoU loss (Zhang et al. 2022).
    Eiou,
}

impl BoxLossKind {
    /// Every kind, in order.
    pub const ALL: [BoxLossKind; 5] = [Self::Iou, Self::Giou, Self::Diou, Self::Ciou, Self::Eiou];

    /// Parses `iou`, `giou`, `diou`, `ciou` or `eiou`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "iou" => Some(Self::Iou),
            "giou" => Some(Self::Giou),
            "diou" => Some(Self::Diou),
            "ciou" => Some(Self::Ciou),
            "eiou" => Some(Self::Eiou),
            _ => None,
        }
    }

    /// The name used in case files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iou => "iou",
            Self::Giou => "giou",
            Self::Diou => "diou",
            Self::Ciou => "ciou",
            Self::Eiou => "eiou",
        }
    }
}

/// The seed article's weighting (`BOX-9`): pairs whose plain IoU is below `threshold` are
/// multiplied by `1 - alpha`; the weight is piecewise constant and carries no gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdWeight {
    /// Down-weighting in `[0, 1]`.
    pub alpha: f64,
    /// IoU threshold (finite).
    pub threshold: f64,
}

/// Box loss configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxLoss {
    /// Which loss.
    pub kind: BoxLossKind,
    /// Layout of predicted and target boxes (the gradient is in the same layout).
    pub format: BoxFormat,
    /// Added to denominators, finite and > 0 (torchvision's default 1e-7).
    pub eps: f64,
    /// Reduction over pairs.
    pub reduction: Reduction,
    /// Optional seed-article threshold weighting.
    pub threshold_weight: Option<ThresholdWeight>,
}

impl Default for BoxLoss {
    fn default() -> Self {
        Self {
            kind: BoxLossKind::Giou,
            format: BoxFormat::Xyxy,
            eps: 1e-7,
            reduction: Reduction::Mean,
            threshold_weight: None,
        }
    }
}

/// Checks that a box buffer holds whole boxes and returns their count.
pub fn box_count(what: &'static str, len: usize) -> Result<usize> {
    if !len.is_multiple_of(4) {
        return Err(LossError::ShapeMismatch {
            what,
            expected: len.div_ceil(4) * 4,
            got: len,
        });
    }
    Ok(len / 4)
}

impl BoxLoss {
    /// Builds a configuration of `kind` in `format` with torchvision's defaults otherwise.
    pub fn new(kind: BoxLossKind, format: BoxFormat) -> Self {
        Self {
            kind,
            format,
            ..Self::default()
        }
    }

    /// The seed article's `IouLoss(alpha, threshold)`: `mean(w_i * (1 - IoU_i))` over `cxcywh`
    /// boxes with `w_i = 1 - alpha` where `IoU_i < threshold`, else 1 (`BOX-9`). The article
    /// printed `mean(-w_i * IoU_i)`, which differs by a constant and has the same gradient.
    /// Change `kind` on the result to weight GIoU, CIoU and so on.
    #[doc(alias = "IouLoss")]
    pub fn iou_loss(alpha: f64, threshold: f64) -> Self {
        Self {
            kind: BoxLossKind::Iou,
            format: BoxFormat::Cxcywh,
            threshold_weight: Some(ThresholdWeight { alpha, threshold }),
            ..Self::default()
        }
    }

    /// Sets the reduction.
    pub fn with_reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }

    /// Sets eps.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the seed's threshold weighting.
    pub fn with_threshold_weight(mut self, alpha: f64, threshold: f64) -> Self {
        self.threshold_weight = Some(ThresholdWeight { alpha, threshold });
        self
    }

    /// Validates the parameters and the shapes of a call on `pred` (`ext`) and `target`
    /// (`target_len` numbers) and returns its plan (`items` pairs of width 4).
    pub fn plan(&self, ext: &Extent, target_len: usize) -> Result<BoxPlan<'_>> {
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(LossError::InvalidParameter {
                name: "eps",
                value: self.eps,
                reason: "must be finite and > 0",
            });
        }
        if let Some(tw) = self.threshold_weight {
            if !(0.0..=1.0).contains(&tw.alpha) {
                return Err(LossError::InvalidParameter {
                    name: "alpha",
                    value: tw.alpha,
                    reason: "the threshold weight alpha must lie in [0, 1]",
                });
            }
            if !tw.threshold.is_finite() {
                return Err(LossError::InvalidParameter {
                    name: "threshold",
                    value: tw.threshold,
                    reason: "must be finite",
                });
            }
        }
        let n = box_count("pred", ext.len)?;
        if let Some([rows, cols]) = ext.shape {
            check_len("pred", 4, cols)?;
            check_len("pred", rows * 4, ext.len)?;
        }
        check_len("target", ext.len, target_len)?;
        if n == 0 {
            return Err(LossError::EmptyInput {
                what: "pred",
                detail: "at least one box pair is required",
            });
        }
        Plan::finish(self, n, 4, ext)
    }
}

/// A validated box-loss call: `items` pairs.
pub type BoxPlan<'c> = Plan<'c, BoxLoss>;

impl LossConfig for BoxLoss {
    const OP: Op = Op::BoxLoss;
    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

/// A validated pairwise IoU call: `n` boxes against `m`, in `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxIouPlan {
    /// The boxes' layout.
    pub format: BoxFormat,
    /// Boxes in the first set.
    pub n: usize,
    /// Boxes in the second set.
    pub m: usize,
}

impl BoxIouPlan {
    /// Validates a pairwise `box_iou` of `len1` and `len2` numbers into `out_len` values.
    pub fn new(format: BoxFormat, len1: usize, len2: usize, out_len: usize) -> Result<Self> {
        let n = box_count("boxes1", len1)?;
        let m = box_count("boxes2", len2)?;
        let total = checked_size("iou", n, m)?;
        check_len("iou", total, out_len)?;
        Ok(Self { format, n, m })
    }
}

impl PairLoss for BoxLoss {
    fn plan_pair(&self, ext: &Extent, second_len: usize) -> Result<Plan<'_, Self>> {
        self.plan(ext, second_len)
    }

    /// `eps` is a normal `f32`, the threshold at most `f32::MAX` in magnitude (`TOL-4`).
    fn check_f32(&self) -> Result<()> {
        check_f32_scale("eps", self.eps, false)?;
        match self.threshold_weight {
            Some(tw) => check_f32_magnitude("threshold", tw.threshold),
            None => Ok(()),
        }
    }
}
