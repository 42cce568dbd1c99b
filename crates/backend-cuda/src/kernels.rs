//! The CUDA C++ kernel sources (one file per loss family) and their entry points, derived from
//! the loss catalogue of `smoothloss_core::op`.
//!
//! Every file is compiled as [`KernelFamily::full_source`]: a generated [`prelude`] (the box
//! kind and format codes of `smoothloss_core`, the parameter-struct layout checks of
//! [`crate::params`]), [`COMMON`] (shared helpers and the final reduction kernel
//! `sl_reduce_final`), then the file, so NVRTC needs no include paths and no system headers.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

pub use smoothloss_core::op::Family;
use smoothloss_core::op::{Op, kernel_name};
use smoothloss_core::{BoxFormat, BoxLossKind};

/// Shared helpers prepended to every kernel file.
pub const COMMON: &str = include_str!("../kernels/common.cuh");
/// Cross-entropy kernels: `cross_entropy.cu` (helpers, the options' row kernel), then
/// `cross_entropy_fast.cu` (the default entry points' row kernel and every entry point).
pub const CROSS_ENTROPY: &str = concat!(
    include_str!("../kernels/cross_entropy.cu"),
    "\n",
    include_str!("../kernels/cross_entropy_fast.cu")
);
/// Box loss and pairwise IoU kernels.
pub const BOX_LOSS: &str = include_str!("../kernels/box_loss.cu");
/// Smooth L1 and Huber kernels.
pub const REGRESSION: &str = include_str!("../kernels/regression.cu");
/// BCE with logits and sigmoid focal kernels.
pub const BINARY: &str = include_str!("../kernels/binary.cu");
/// Distribution focal loss kernel.
pub const DISTRIBUTION: &str = include_str!("../kernels/distribution.cu");
/// Varifocal and quality focal kernels.
pub const QUALITY: &str = include_str!("../kernels/quality.cu");
/// ProbIoU loss and pairwise kernels.
pub const ORIENTED_BOX: &str = include_str!("../kernels/oriented_box.cu");

/// The final reduction kernel of every family (in [`COMMON`]).
pub const REDUCE_FINAL: &str = "sl_reduce_final";
/// Cross-entropy helper: mean denominator and target check.
pub const CE_PREPARE: &str = "ce_prepare";
/// Cross-entropy helper: sum of the per-row losses.
pub const CE_REDUCE_ROWS: &str = "ce_reduce_rows";
/// Binary losses' helper: the value of the first target outside `[0, 1]`.
pub const BIN_TARGET_CHECK: &str = "bin_target_check";
/// One thread: the value of the distribution focal loss's flagged target (`distribution.cu`).
pub const DFL_TARGET_CHECK: &str = "dfl_target_check";
/// One thread: the value of a varifocal / quality focal loss's flagged target (`quality.cu`).
pub const QUAL_TARGET_CHECK: &str = "qual_target_check";

/// Element types of the cross-entropy kernels (`CeElement::DTYPE`), in entry-point order.
pub const CE_DTYPES: [&str; 3] = ["f32", "bf16", "f16"];
/// Suffixes of the cross-entropy entry points' dtype: the default ones, and those of calls
/// with the options of `CE-10` .. `CE-15` (`ce_fwd_bwd_f32opt_c2`, ...).
pub const CE_VARIANTS: [&str; 2] = ["", "opt"];
/// Cluster sizes of the cross-entropy kernels (1: no cluster).
pub const CE_CLUSTERS: [u32; 4] = [1, 2, 4, 8];
/// Suffix of the dtype of the warp-per-row entry points (`ce_fwd_bwd_f32w`, no cluster:
/// `geometry::CE_WARP_ROWS` plans, [`CeRowParams`](crate::params::CeRowParams)).
pub const CE_WARP_VARIANT: &str = "w";

/// One kernel entry point: its name, the parameter struct it takes by value (the same name in
/// [`crate::params`] and in the `.cu`), and its thread-block cluster size (1: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The `extern "C" __global__` name.
    pub name: &'static str,
    /// The parameter struct's name.
    pub params: &'static str,
    /// Blocks per cluster (compiled for sm_90 and newer only when over 1).
    pub cluster: u32,
}

/// An entry-point name of the catalogue ([`kernel_name`]) as a `&'static str` (interned once).
pub fn entry_name(op: Op, dtype: &str, cluster: u32) -> &'static str {
    type Names = HashMap<(Op, String, u32), &'static str>;
    static NAMES: OnceLock<Mutex<Names>> = OnceLock::new();
    let mut map = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry((op, dtype.to_string(), cluster))
        .or_insert_with(|| Box::leak(kernel_name(op, dtype, cluster).into_boxed_str()))
}

/// The parameter struct of a loss's entry points.
fn params_of(op: Op) -> &'static str {
    match op {
        Op::CrossEntropy => "CeRowParams",
        Op::BoxLoss => "BoxLossParams",
        Op::BoxIou => "BoxIouParams",
        Op::SmoothL1 | Op::Huber => "RegParams",
        Op::BceWithLogits => "BceParams",
        Op::SigmoidFocal => "FocalParams",
        Op::DistributionFocal => "DflParams",
        Op::Varifocal => "VarifocalParams",
        Op::QualityFocal => "QflParams",
        Op::ProbIou => "ProbIouParams",
        Op::ProbIouPairwise => "ProbIouPairwiseParams",
    }
}

/// The CUDA side of a [`Family`]: its source and entry points.
pub trait KernelFamily: Copy {
    /// The file's own source (without the prelude and [`COMMON`]).
    fn source(self) -> &'static str;
    /// The source NVRTC compiles: [`prelude`], [`COMMON`], then the file.
    fn full_source(self) -> String;
    /// Every entry point of the module, helpers (`sl_reduce_final`, ...) first.
    fn entries(self) -> Vec<Entry>;
    /// Every `extern "C" __global__` entry point the Rust side launches from this module.
    fn entry_points(self) -> Vec<&'static str> {
        self.entries().into_iter().map(|e| e.name).collect()
    }
    /// The entry points compiled for a device of compute capability `major`.x: the
    /// thread-block-cluster ones need 9.0 or newer.
    fn entry_points_for(self, major: i32) -> Vec<&'static str> {
        self.entries()
            .into_iter()
            .filter(|e| major >= 9 || e.cluster == 1)
            .map(|e| e.name)
            .collect()
    }
}

impl KernelFamily for Family {
    fn source(self) -> &'static str {
        match self {
            Family::CrossEntropy => CROSS_ENTROPY,
            Family::BoxLoss => BOX_LOSS,
            Family::Regression => REGRESSION,
            Family::Binary => BINARY,
            Family::Distribution => DISTRIBUTION,
            Family::Quality => QUALITY,
            Family::OrientedBox => ORIENTED_BOX,
        }
    }

    fn full_source(self) -> String {
        format!(
            "{}\n// ---- common.cuh\n{COMMON}\n// ---- {}\n{}\n{}",
            prelude(),
            self.kernel_file(),
            self.source(),
            crate::params::layout_asserts(self)
        )
    }

    fn entries(self) -> Vec<Entry> {
        let helper = |name, params| Entry {
            name,
            params,
            cluster: 1,
        };
        let mut out = vec![helper(REDUCE_FINAL, "ReduceFinalParams")];
        match self {
            Family::CrossEntropy => {
                out.push(helper(CE_PREPARE, "CePrepareParams"));
                out.push(helper(CE_REDUCE_ROWS, "CeReduceRowsParams"));
            }
            Family::Binary => out.push(helper(BIN_TARGET_CHECK, "BinTargetCheckParams")),
            Family::Distribution => out.push(helper(DFL_TARGET_CHECK, "TargetValueParams")),
            Family::Quality => out.push(helper(QUAL_TARGET_CHECK, "TargetValueParams")),
            Family::BoxLoss | Family::Regression | Family::OrientedBox => {}
        }
        for op in self.ops() {
            if op == Op::CrossEntropy {
                for v in CE_VARIANTS {
                    for k in CE_CLUSTERS {
                        for dt in CE_DTYPES {
                            out.push(Entry {
                                name: entry_name(op, &format!("{dt}{v}"), k),
                                params: if v.is_empty() {
                                    params_of(op)
                                } else {
                                    "CeRowOptParams"
                                },
                                cluster: k,
                            });
                        }
                    }
                }
                for dt in CE_DTYPES {
                    out.push(Entry {
                        name: entry_name(op, &format!("{dt}{CE_WARP_VARIANT}"), 1),
                        params: params_of(op),
                        cluster: 1,
                    });
                }
            } else {
                out.push(helper(op.kernel_stem(), params_of(op)));
            }
        }
        out
    }
}

/// The generated start of every kernel source: the codes of `smoothloss_core`'s box kinds and
/// formats as `#define`s (`SL_BOX_KIND_GIOU`, `SL_BOX_FORMAT_XYWH`, ...), so the kernels use
/// names and the codes are written once, in `smoothloss_core::op`.
pub fn prelude() -> String {
    let mut s = String::from(
        "// Generated by smoothloss_cuda::kernels::prelude from smoothloss_core::op.\n",
    );
    for k in BoxLossKind::ALL {
        let _ = writeln!(
            s,
            "#define SL_BOX_KIND_{} {}",
            k.as_str().to_uppercase(),
            k.code()
        );
    }
    for f in BoxFormat::ALL {
        let _ = writeln!(
            s,
            "#define SL_BOX_FORMAT_{} {}",
            f.as_str().to_uppercase(),
            f.code()
        );
    }
    s
}
