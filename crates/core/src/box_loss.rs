//! Box regression losses on aligned pairs `[N, 4]` (formulas `BOX-1` .. `BOX-23`): IoU, GIoU,
//! DIoU, CIoU (two conventions), Efficient-IoU, Extended-IoU, SIoU, Wise-IoU v1, MPDIoU and
//! Shape-IoU, three box layouts; the composable modifiers Inner-IoU, Focaler-IoU, alpha-IoU,
//! focal weighting and the seed article's threshold weighting; and the pairwise `box_iou`.

use crate::error::{LossError, Result, check_len, checked_size};
use crate::op::Op;
use crate::plan::{Extent, LossConfig, PairLoss, Plan, check_f32_magnitude, check_f32_scale};
use crate::reduction::Reduction;

mod wise_iou;
pub use wise_iou::WiseIouState;
pub(crate) use wise_iou::run as run_wise_iou_v3;

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

/// Which box loss (`BOX-3` .. `BOX-8`, `BOX-14` .. `BOX-19`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BoxLossKind {
    /// `1 - IoU`.
    Iou,
    /// Generalized IoU loss (Rezatofighi et al. 2019), as torchvision.
    #[default]
    Giou,
    /// Distance IoU loss (Zheng et al. 2020), as torchvision.
    Diou,
    /// Complete IoU loss; the aspect weight alpha carries no gradient; its convention
    /// (torchvision/ultralytics or mmdetection) is [`BoxOptions::ciou`] (`BOX-6`, `BOX-14`).
    Ciou,
    /// Efficient IoU loss (Zhang et al. 2022, arXiv 2101.08158): width and height penalties.
    /// Not mmdetection's `EIoULoss`, which is [`BoxLossKind::ExtendedIou`].
    Eiou,
    /// mmdetection's `EIoULoss`: Extended-IoU (Shi et al. 2021, libfacedetection) with its
    /// `smooth_point` ([`BoxOptions::smooth_point`], `BOX-15`).
    ExtendedIou,
    /// SIoU (Gevorgyan 2022, arXiv 2205.12740): angle, distance and shape costs, theta 4, as
    /// mmdetection's `siou_loss` (`BOX-16`).
    Siou,
    /// Wise-IoU v1 (Tong et al. 2023, arXiv 2301.10051): `exp(rho^2 / (Wc^2 + Hc^2)*) (1 - IoU)`,
    /// the enclosing size detached as in the paper and the author's code (`BOX-17`).
    Wiou,
    /// MPDIoU (Ma and Xu 2023, arXiv 2307.07662): corner distances over the image diagonal;
    /// needs [`BoxLoss::with_image_size`] (`BOX-18`).
    Mpdiou,
    /// Shape-IoU (Zhang and Zhang 2023, arXiv 2312.17663) with its `scale`
    /// ([`BoxOptions::shape_scale`], `BOX-19`).
    ShapeIou,
}

impl BoxLossKind {
    /// Every kind, in order.
    pub const ALL: [BoxLossKind; 10] = [
        Self::Iou,
        Self::Giou,
        Self::Diou,
        Self::Ciou,
        Self::Eiou,
        Self::ExtendedIou,
        Self::Siou,
        Self::Wiou,
        Self::Mpdiou,
        Self::ShapeIou,
    ];

    /// The five kinds with torchvision's conventions and hand-derived `f32` kernels on the CPU.
    pub const TORCHVISION: [BoxLossKind; 5] =
        [Self::Iou, Self::Giou, Self::Diou, Self::Ciou, Self::Eiou];

    /// Parses the names of [`BoxLossKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The name used in case files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iou => "iou",
            Self::Giou => "giou",
            Self::Diou => "diou",
            Self::Ciou => "ciou",
            Self::Eiou => "eiou",
            Self::ExtendedIou => "extended_iou",
            Self::Siou => "siou",
            Self::Wiou => "wiou",
            Self::Mpdiou => "mpdiou",
            Self::ShapeIou => "shape_iou",
        }
    }

    /// Whether alpha-IoU's power form is defined for this kind (IoU, GIoU, DIoU, CIoU).
    pub fn has_alpha_power(self) -> bool {
        matches!(self, Self::Iou | Self::Giou | Self::Diou | Self::Ciou)
    }

    /// Whether the kind has a plain IoU term that Inner-IoU and Focaler-IoU replace (all but
    /// Extended-IoU, whose overlap term is signed).
    pub fn has_iou_term(self) -> bool {
        !matches!(self, Self::ExtendedIou)
    }
}

/// CIoU's aspect weight `alpha` (`BOX-6`, `BOX-14`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CiouConvention {
    /// torchvision and ultralytics: `alpha = v / (1 - IoU + v + eps)`, no clamp.
    #[default]
    Torchvision,
    /// mmdetection's `ciou_loss`: `alpha = [IoU > 0.5] v / (1 - IoU + v)`, heights `+ eps` in
    /// the aspect ratios, the CIoU value clamped to `[-1, 1]`.
    Mmdetection,
}

/// The composable modifiers of a box loss (`BOX-20` .. `BOX-23`), applied on top of any kind
/// in one pass: `L = w_thr * IoU^gamma * (L_kind^alpha + IoU - F(IoU_inner))`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BoxModifiers {
    /// Inner-IoU's `ratio` (`BOX-20`): the IoU term is the IoU of the boxes scaled by `ratio`
    /// about their centres.
    pub inner_ratio: Option<f64>,
    /// Focaler-IoU's interval `[d, u]` (`BOX-21`): the IoU term is mapped linearly to `[0, 1]`.
    pub focaler: Option<[f64; 2]>,
    /// alpha-IoU's power (`BOX-22`): every term of IoU/GIoU/DIoU/CIoU raised to `alpha`.
    pub alpha_power: Option<f64>,
    /// Focal-EIoU's `gamma` (`BOX-23`): the loss weighted by the detached `IoU^gamma`.
    pub focal_gamma: Option<f64>,
}

impl BoxModifiers {
    /// Whether no modifier is set.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
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
    /// Parameters of the newer kinds and the composable modifiers.
    pub options: BoxOptions,
}

/// Parameters of [`BoxLoss`] beyond the torchvision kinds: the kinds' own constants and the
/// modifiers. Set them with the `with_*` methods of [`BoxLoss`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxOptions {
    /// CIoU's aspect-weight convention.
    pub ciou: CiouConvention,
    /// Extended-IoU's `smooth_point` (mmdetection's default 0.1), in `(0, 1]`.
    pub smooth_point: f64,
    /// SIoU's distance-cost sign: `false` is mmdetection's default (`neg_gamma=False`,
    /// `gamma = 2 - Lambda`), `true` the paper's `gamma = Lambda - 2`.
    pub siou_paper_gamma: bool,
    /// MPDIoU's image `(width, height)`, finite and > 0.
    pub image_size: Option<[f64; 2]>,
    /// Shape-IoU's `scale` (the author's default 0), finite and >= 0.
    pub shape_scale: f64,
    /// The composable modifiers.
    pub modifiers: BoxModifiers,
}

impl Default for BoxOptions {
    fn default() -> Self {
        Self {
            ciou: CiouConvention::Torchvision,
            smooth_point: 0.1,
            siou_paper_gamma: false,
            image_size: None,
            shape_scale: 0.0,
            modifiers: BoxModifiers::default(),
        }
    }
}

impl Default for BoxLoss {
    fn default() -> Self {
        Self {
            kind: BoxLossKind::Giou,
            format: BoxFormat::Xyxy,
            eps: 1e-7,
            reduction: Reduction::Mean,
            threshold_weight: None,
            options: BoxOptions::default(),
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

    /// Sets every option at once.
    pub fn with_options(mut self, o: BoxOptions) -> Self {
        self.options = o;
        self
    }

    /// Sets CIoU's aspect-weight convention (`BOX-6`, `BOX-14`).
    pub fn with_ciou_convention(mut self, c: CiouConvention) -> Self {
        self.options.ciou = c;
        self
    }

    /// Sets Extended-IoU's `smooth_point` (`BOX-15`).
    pub fn with_smooth_point(mut self, p: f64) -> Self {
        self.options.smooth_point = p;
        self
    }

    /// SIoU with the paper's negative `gamma` (mmdetection's `neg_gamma=True`, `BOX-16`).
    pub fn with_siou_paper_gamma(mut self, on: bool) -> Self {
        self.options.siou_paper_gamma = on;
        self
    }

    /// Sets MPDIoU's image size (`BOX-18`).
    pub fn with_image_size(mut self, width: f64, height: f64) -> Self {
        self.options.image_size = Some([width, height]);
        self
    }

    /// Sets Shape-IoU's `scale` (`BOX-19`).
    pub fn with_shape_scale(mut self, scale: f64) -> Self {
        self.options.shape_scale = scale;
        self
    }

    /// Inner-IoU: the IoU term from the boxes scaled by `ratio` about their centres
    /// (`BOX-20`; the paper suggests 0.5 .. 1.5).
    pub fn with_inner(mut self, ratio: f64) -> Self {
        self.options.modifiers.inner_ratio = Some(ratio);
        self
    }

    /// Focaler-IoU: the IoU term mapped from `[d, u]` to `[0, 1]` (`BOX-21`).
    pub fn with_focaler(mut self, d: f64, u: f64) -> Self {
        self.options.modifiers.focaler = Some([d, u]);
        self
    }

    /// alpha-IoU: the terms of IoU/GIoU/DIoU/CIoU raised to `alpha` (`BOX-22`; the paper's 3).
    pub fn with_alpha_power(mut self, alpha: f64) -> Self {
        self.options.modifiers.alpha_power = Some(alpha);
        self
    }

    /// Focal weighting by the detached `IoU^gamma` (Focal-EIoU with kind EIoU, `BOX-23`).
    pub fn with_focal(mut self, gamma: f64) -> Self {
        self.options.modifiers.focal_gamma = Some(gamma);
        self
    }

    fn check_options(&self) -> Result<()> {
        let bad = |name, value, reason| {
            Err(LossError::InvalidParameter {
                name,
                value,
                reason,
            })
        };
        let o = &self.options;
        if !(o.smooth_point > 0.0 && o.smooth_point <= 1.0) {
            return bad("smooth_point", o.smooth_point, "must lie in (0, 1]");
        }
        if !(o.shape_scale.is_finite() && o.shape_scale >= 0.0) {
            return bad("shape_scale", o.shape_scale, "must be finite and >= 0");
        }
        match (self.kind, o.image_size) {
            (BoxLossKind::Mpdiou, None) => {
                return bad(
                    "image_size",
                    f64::NAN,
                    "MPDIoU needs the image size (BoxLoss::with_image_size)",
                );
            }
            (_, Some([w, h])) => {
                for v in [w, h] {
                    if !(v.is_finite() && v > 0.0) {
                        return bad("image_size", v, "width and height must be finite and > 0");
                    }
                }
            }
            _ => {}
        }
        let m = &o.modifiers;
        if let Some(r) = m.inner_ratio
            && !(r.is_finite() && r > 0.0)
        {
            return bad("inner_ratio", r, "must be finite and > 0");
        }
        if let Some([d, u]) = m.focaler
            && !(0.0 <= d && d < u && u <= 1.0)
        {
            let v = if d.is_nan() || d < 0.0 || d >= u {
                d
            } else {
                u
            };
            return bad("focaler", v, "needs 0 <= d < u <= 1");
        }
        if (m.inner_ratio.is_some() || m.focaler.is_some()) && !self.kind.has_iou_term() {
            return bad(
                "kind",
                f64::NAN,
                "Inner-IoU and Focaler-IoU need a kind with a plain IoU term (not extended_iou)",
            );
        }
        if let Some(a) = m.alpha_power {
            if !(a > 0.0 && a <= 16.0) {
                return bad("alpha_power", a, "must lie in (0, 16]");
            }
            if !self.kind.has_alpha_power() {
                return bad(
                    "alpha_power",
                    a,
                    "alpha-IoU is defined for iou, giou, diou and ciou only",
                );
            }
        }
        if let Some(g) = m.focal_gamma
            && !(0.0..=16.0).contains(&g)
        {
            return bad("focal_gamma", g, "must lie in [0, 16]");
        }
        Ok(())
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
        self.check_options()?;
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
