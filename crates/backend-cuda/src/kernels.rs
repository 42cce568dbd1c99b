//! The CUDA C++ kernel sources (one file per loss family) and their entry points.
//!
//! Every file is compiled with [`COMMON`] prepended (shared helpers and the final reduction
//! kernel `sl_reduce_final`), so NVRTC needs no include paths and no system headers.

/// Shared helpers prepended to every kernel file.
pub const COMMON: &str = include_str!("../kernels/common.cuh");
/// Cross-entropy kernels.
pub const CROSS_ENTROPY: &str = include_str!("../kernels/cross_entropy.cu");
/// Box loss and pairwise IoU kernels.
pub const BOX_LOSS: &str = include_str!("../kernels/box_loss.cu");
/// Smooth L1 and Huber kernels.
pub const REGRESSION: &str = include_str!("../kernels/regression.cu");
/// BCE with logits and sigmoid focal kernels.
pub const BINARY: &str = include_str!("../kernels/binary.cu");

/// A kernel file: one loss family, compiled and loaded as one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `cross_entropy.cu`.
    CrossEntropy,
    /// `box_loss.cu`.
    BoxLoss,
    /// `regression.cu`.
    Regression,
    /// `binary.cu`.
    Binary,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 4] = [
        Family::CrossEntropy,
        Family::BoxLoss,
        Family::Regression,
        Family::Binary,
    ];

    /// The kernel file's name.
    pub fn file_name(self) -> &'static str {
        match self {
            Family::CrossEntropy => "cross_entropy.cu",
            Family::BoxLoss => "box_loss.cu",
            Family::Regression => "regression.cu",
            Family::Binary => "binary.cu",
        }
    }

    /// The file's own source (without [`COMMON`]).
    pub fn source(self) -> &'static str {
        match self {
            Family::CrossEntropy => CROSS_ENTROPY,
            Family::BoxLoss => BOX_LOSS,
            Family::Regression => REGRESSION,
            Family::Binary => BINARY,
        }
    }

    /// The source NVRTC compiles: [`COMMON`] then the file.
    pub fn full_source(self) -> String {
        format!(
            "// ---- common.cuh\n{COMMON}\n// ---- {}\n{}",
            self.file_name(),
            self.source()
        )
    }

    /// Every `extern "C" __global__` entry point the Rust side launches from this module
    /// (including `sl_reduce_final` from [`COMMON`]).
    pub fn entry_points(self) -> &'static [&'static str] {
        match self {
            Family::CrossEntropy => &[
                "sl_reduce_final",
                "ce_prepare",
                "ce_reduce_rows",
                "ce_fwd_bwd_f32",
                "ce_fwd_bwd_bf16",
                "ce_fwd_bwd_f16",
                "ce_fwd_bwd_f32_c2",
                "ce_fwd_bwd_f32_c4",
                "ce_fwd_bwd_f32_c8",
                "ce_fwd_bwd_bf16_c2",
                "ce_fwd_bwd_bf16_c4",
                "ce_fwd_bwd_bf16_c8",
                "ce_fwd_bwd_f16_c2",
                "ce_fwd_bwd_f16_c4",
                "ce_fwd_bwd_f16_c8",
            ],
            Family::BoxLoss => &["sl_reduce_final", "box_loss_fwd_bwd", "box_iou_pairwise"],
            Family::Regression => &["sl_reduce_final", "reg_smooth_l1", "reg_huber"],
            Family::Binary => &[
                "sl_reduce_final",
                "bin_bce_with_logits",
                "bin_sigmoid_focal",
                "bin_target_check",
            ],
        }
    }

    /// The entry points compiled for a device of compute capability `major`.x: the
    /// thread-block-cluster ones (`_c2`, `_c4`, `_c8`) need 9.0 or newer.
    pub fn entry_points_for(self, major: i32) -> Vec<&'static str> {
        self.entry_points()
            .iter()
            .copied()
            .filter(|n| major >= 9 || !is_cluster_entry(n))
            .collect()
    }
}

/// Whether `name` is a thread-block-cluster entry point (compiled for sm_90 and newer only).
pub fn is_cluster_entry(name: &str) -> bool {
    ["_c2", "_c4", "_c8"].iter().any(|s| name.ends_with(s))
}
