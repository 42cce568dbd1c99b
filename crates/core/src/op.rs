//! Every loss defined once (candle's `op.rs` is the model): its name, family, formula-ID
//! prefix, the files that implement it in each layer, the codes of its kinds and formats, and
//! the names of its kernel entry points. The reference, the backends, the CUDA kernels' Rust
//! side, the emulation and the spec derive from these tables instead of spelling them again.

use crate::box_loss::{BoxFormat, BoxLossKind};

/// A loss family: one file per layer, with the same name in every layer
/// (`core/src/reference/<name>.rs`, `backend-cpu/src/<name>/`, `backend-cuda/kernels/<name>.cu`,
/// `spec/formulas/<name>.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Cross-entropy over logits `[N, C]` (`CE-*`).
    CrossEntropy,
    /// Box losses on aligned pairs and pairwise IoU (`BOX-*`).
    BoxLoss,
    /// Smooth L1 and Huber (`REG-*`).
    Regression,
    /// BCE with logits and sigmoid focal (`BIN-*`).
    Binary,
    /// Distribution focal loss over logits `[rows, bins]` (`DFL-*`).
    Distribution,
    /// Varifocal and quality focal losses of dense detectors (`QUAL-*`).
    Quality,
    /// Oriented boxes and ProbIoU (`OBB-*`).
    OrientedBox,
}

impl Family {
    /// Every family, in the order of the spec.
    pub const ALL: [Family; 7] = [
        Family::CrossEntropy,
        Family::BoxLoss,
        Family::Regression,
        Family::Binary,
        Family::Distribution,
        Family::Quality,
        Family::OrientedBox,
    ];

    /// The family's file stem in every layer (`cross_entropy`, `box_loss`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Family::CrossEntropy => "cross_entropy",
            Family::BoxLoss => "box_loss",
            Family::Regression => "regression",
            Family::Binary => "binary",
            Family::Distribution => "distribution",
            Family::Quality => "quality",
            Family::OrientedBox => "oriented_box",
        }
    }

    /// The formula-ID prefix of `spec/formulas/<name>.md` (`CE` for `CE-4`).
    pub const fn formula_prefix(self) -> &'static str {
        match self {
            Family::CrossEntropy => "CE",
            Family::BoxLoss => "BOX",
            Family::Regression => "REG",
            Family::Binary => "BIN",
            Family::Distribution => "DFL",
            Family::Quality => "QUAL",
            Family::OrientedBox => "OBB",
        }
    }

    /// The CUDA kernel file (`<name>.cu`).
    pub fn kernel_file(self) -> String {
        format!("{}.cu", self.name())
    }

    /// The spec file (`<name>.md` under `spec/formulas/`).
    pub fn formula_file(self) -> String {
        format!("{}.md", self.name())
    }

    /// The losses of this family.
    pub fn ops(self) -> impl Iterator<Item = Op> {
        Op::ALL.into_iter().filter(move |op| op.family() == self)
    }
}

/// One loss (or loss-like operation) of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Cross-entropy with label smoothing, class weights, ignore index, probability targets.
    CrossEntropy,
    /// IoU-family loss on aligned box pairs.
    BoxLoss,
    /// Pairwise IoU of two box sets (no gradient).
    BoxIou,
    /// Smooth L1 (`F.smooth_l1_loss`).
    SmoothL1,
    /// Huber (`F.huber_loss`).
    Huber,
    /// BCE with logits (`F.binary_cross_entropy_with_logits`).
    BceWithLogits,
    /// Sigmoid focal loss (`torchvision.ops.sigmoid_focal_loss`).
    SigmoidFocal,
    /// Distribution focal loss (ultralytics `DFLoss`, mmdetection `distribution_focal_loss`).
    DistributionFocal,
    /// Varifocal loss (ultralytics `VarifocalLoss`, mmdetection `varifocal_loss`).
    Varifocal,
    /// Quality focal loss (mmdetection `quality_focal_loss`).
    QualityFocal,
    /// `1 - ProbIoU` on aligned oriented-box pairs (ultralytics `probiou`).
    ProbIou,
    /// Pairwise ProbIoU of two oriented-box sets (ultralytics `batch_probiou`, no gradient).
    ProbIouPairwise,
}

impl Op {
    /// Every loss.
    pub const ALL: [Op; 12] = [
        Op::CrossEntropy,
        Op::BoxLoss,
        Op::BoxIou,
        Op::SmoothL1,
        Op::Huber,
        Op::BceWithLogits,
        Op::SigmoidFocal,
        Op::DistributionFocal,
        Op::Varifocal,
        Op::QualityFocal,
        Op::ProbIou,
        Op::ProbIouPairwise,
    ];

    /// The loss's name: its method name on a backend and its name in case files.
    pub const fn name(self) -> &'static str {
        match self {
            Op::CrossEntropy => "cross_entropy",
            Op::BoxLoss => "box_loss",
            Op::BoxIou => "box_iou",
            Op::SmoothL1 => "smooth_l1",
            Op::Huber => "huber",
            Op::BceWithLogits => "bce_with_logits",
            Op::SigmoidFocal => "sigmoid_focal",
            Op::DistributionFocal => "distribution_focal",
            Op::Varifocal => "varifocal",
            Op::QualityFocal => "quality_focal",
            Op::ProbIou => "probiou_loss",
            Op::ProbIouPairwise => "batch_probiou",
        }
    }

    /// Parses [`Op::name`].
    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == s)
    }

    /// The family (and so the file in every layer).
    pub const fn family(self) -> Family {
        match self {
            Op::CrossEntropy => Family::CrossEntropy,
            Op::BoxLoss | Op::BoxIou => Family::BoxLoss,
            Op::SmoothL1 | Op::Huber => Family::Regression,
            Op::BceWithLogits | Op::SigmoidFocal => Family::Binary,
            Op::DistributionFocal => Family::Distribution,
            Op::Varifocal | Op::QualityFocal => Family::Quality,
            Op::ProbIou | Op::ProbIouPairwise => Family::OrientedBox,
        }
    }

    /// The stem of the CUDA entry point(s) of this loss; [`kernel_name`] adds the element type
    /// (and a cluster size) where a loss has one entry point per type.
    pub const fn kernel_stem(self) -> &'static str {
        match self {
            Op::CrossEntropy => "ce_fwd_bwd",
            Op::BoxLoss => "box_loss_fwd_bwd",
            Op::BoxIou => "box_iou_pairwise",
            Op::SmoothL1 => "reg_smooth_l1",
            Op::Huber => "reg_huber",
            Op::BceWithLogits => "bin_bce_with_logits",
            Op::SigmoidFocal => "bin_sigmoid_focal",
            Op::DistributionFocal => "dfl_fwd_bwd",
            Op::Varifocal => "qual_varifocal",
            Op::QualityFocal => "qual_quality_focal",
            Op::ProbIou => "obb_probiou_fwd_bwd",
            Op::ProbIouPairwise => "obb_probiou_pairwise",
        }
    }
}

/// A kernel entry-point name derived from the loss, the element type's short name (`f32`,
/// `bf16`, `f16`; empty for losses with one entry point) and, for cross-entropy, the thread-block
/// cluster size (1 has no suffix): `kernel_name(Op::CrossEntropy, "bf16", 4) == "ce_fwd_bwd_bf16_c4"`.
pub fn kernel_name(op: Op, dtype: &str, cluster: u32) -> String {
    let mut s = String::from(op.kernel_stem());
    if !dtype.is_empty() {
        s.push('_');
        s.push_str(dtype);
    }
    if cluster > 1 {
        s.push_str(&format!("_c{cluster}"));
    }
    s
}

impl BoxLossKind {
    /// The kind's code in every kernel (`int kind` in `box_loss.cu`, the CPU's const generics).
    pub const fn code(self) -> u8 {
        match self {
            BoxLossKind::Iou => 0,
            BoxLossKind::Giou => 1,
            BoxLossKind::Diou => 2,
            BoxLossKind::Ciou => 3,
            BoxLossKind::Eiou => 4,
            BoxLossKind::ExtendedIou => 5,
            BoxLossKind::Siou => 6,
            BoxLossKind::Wiou => 7,
            BoxLossKind::Mpdiou => 8,
            BoxLossKind::ShapeIou => 9,
        }
    }

    /// Inverse of [`BoxLossKind::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        BoxLossKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl BoxFormat {
    /// Every format, in code order.
    pub const ALL: [BoxFormat; 3] = [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh];

    /// The format's code in every kernel (`int format` in `box_loss.cu`).
    pub const fn code(self) -> u8 {
        match self {
            BoxFormat::Xyxy => 0,
            BoxFormat::Xywh => 1,
            BoxFormat::Cxcywh => 2,
        }
    }

    /// Inverse of [`BoxFormat::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        BoxFormat::ALL.into_iter().find(|f| f.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_families_cover_every_op() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.name()), Some(op));
            assert!(op.family().ops().any(|o| o == op));
        }
        let total: usize = Family::ALL.iter().map(|f| f.ops().count()).sum();
        assert_eq!(total, Op::ALL.len());
        assert_eq!(Op::parse("nope"), None);
    }

    #[test]
    fn kernel_names_follow_the_cuda_entry_points() {
        assert_eq!(kernel_name(Op::CrossEntropy, "f32", 1), "ce_fwd_bwd_f32");
        assert_eq!(
            kernel_name(Op::CrossEntropy, "bf16", 8),
            "ce_fwd_bwd_bf16_c8"
        );
        assert_eq!(kernel_name(Op::BoxLoss, "", 1), "box_loss_fwd_bwd");
        assert_eq!(Family::Binary.kernel_file(), "binary.cu");
        assert_eq!(Family::BoxLoss.formula_file(), "box_loss.md");
    }

    #[test]
    fn codes_are_distinct_and_invertible() {
        for k in BoxLossKind::ALL {
            assert_eq!(BoxLossKind::from_code(k.code()), Some(k));
        }
        for f in BoxFormat::ALL {
            assert_eq!(BoxFormat::from_code(f.code()), Some(f));
        }
        assert_eq!(BoxLossKind::from_code(200), None);
        assert_eq!(BoxFormat::from_code(3), None);
    }
}
