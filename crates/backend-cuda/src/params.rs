//! The kernels' ABI, written once per side: every entry point takes ONE `#[repr(C)]` struct by
//! value, defined here and, with the same name, fields and order, in `kernels/common.cuh`
//! ([`ReduceFinalParams`]) or the family's `.cu`. Device pointers are `u64` addresses (0 for an
//! absent buffer; the kernels test every nullable pointer against `nullptr`); the C side types
//! them (`const float*`, 8 bytes too). No implicit padding: 8-byte fields first, `i32` fields
//! last, an explicit `_pad` where their count is odd.
//!
//! [`layout_asserts`] turns `size_of` / `align_of` / `offset_of!` of every struct into
//! `static_assert`s that are compiled after the `.cu` (by NVRTC in every compile, and by g++ in
//! the CPU emulation), so a field moved on one side only fails to compile.
//!
//! Each `unsafe impl DeviceRepr` carries the struct's contract: what the kernel may touch given
//! the fields. A launch passes the struct with one `.arg(&params)` after establishing that
//! contract (buffer lengths from the core plan, guards alive until the launch is enqueued).

use std::fmt::Write as _;
use std::mem::{align_of, offset_of, size_of};

use cudarc::driver::DeviceRepr;

use crate::kernels::{Family, KernelFamily};

/// The layout of one parameter struct as Rust compiles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The struct's name (the same in the `.cu`).
    pub name: &'static str,
    /// `size_of`.
    pub size: usize,
    /// `align_of`.
    pub align: usize,
    /// Every field: (name, `offset_of!`, `size_of` its type).
    pub fields: Vec<(&'static str, usize, usize)>,
}

macro_rules! kernel_params {
    ($(
        $(#[$m:meta])*
        pub struct $name:ident {
            $( $(#[$fm:meta])* pub $f:ident : $t:ty, )*
        }
    )*) => {
        $(
            $(#[$m])*
            #[repr(C)]
            #[derive(Debug, Clone, Copy, Default, PartialEq)]
            pub struct $name {
                $( $(#[$fm])* pub $f: $t, )*
            }
        )*

        /// The layout of every parameter struct.
        pub fn layouts() -> Vec<Layout> {
            vec![$(
                Layout {
                    name: stringify!($name),
                    size: size_of::<$name>(),
                    align: align_of::<$name>(),
                    fields: vec![$( (stringify!($f), offset_of!($name, $f), size_of::<$t>()) ),*],
                },
            )*]
        }
    };
}

kernel_params! {
    /// `sl_reduce_final` (`common.cuh`): one block sums `n` partials, writes `sum / divisor`
    /// (or `sum / denom[0]`) to `out[0]`.
    pub struct ReduceFinalParams {
        /// `const double*`, `n` values.
        pub partials: u64,
        /// Number of partials.
        pub n: i64,
        /// Divisor when `denom` is null.
        pub divisor: f64,
        /// `const double*` (nullable), one value.
        pub denom: u64,
        /// `double*`, one value.
        pub out: u64,
    }

    /// `ce_prepare` (`cross_entropy.cu`): mean denominator and first out-of-range target.
    pub struct CePrepareParams {
        /// `const long long*` (nullable: probability targets), `rows` values.
        pub targets: u64,
        /// Rows.
        pub rows: i64,
        /// Rows per block (`geometry::ce_rows_grid`).
        pub chunk: i64,
        /// Classes.
        pub classes: i64,
        /// `const float*` (nullable), `classes` class weights.
        pub weights: u64,
        /// The ignore index (used when `has_ignore`).
        pub ignore_index: i64,
        /// `double*`, 2 values: denominator, 1 / denominator.
        pub stats: u64,
        /// `long long*`, 2 values: first bad row or -1, its target.
        pub err: u64,
        /// `double*`, one per block.
        pub part_w: u64,
        /// `long long*`, one per block.
        pub part_bad: u64,
        /// `unsigned int*`, a zeroed counter.
        pub counter: u64,
        /// `const double*` (nullable), `rows` row weights (`CE-12`): each kept row adds
        /// `r_i w_{y_i}` (`r_i` for probability targets).
        pub row_w: u64,
        /// A given denominator (`CE-13`), or 0: the batch's own.
        pub denom: f64,
        /// 1 when `ignore_index` applies.
        pub has_ignore: i32,
        /// Padding (0).
        pub _pad: i32,
    }

    /// `ce_reduce_rows` (`cross_entropy.cu`): sum (or mean) of the per-row losses.
    pub struct CeReduceRowsParams {
        /// `const double*`, `n` values.
        pub values: u64,
        /// Number of values.
        pub n: i64,
        /// Values per block.
        pub chunk: i64,
        /// Divisor when `denom` is null.
        pub divisor: f64,
        /// `const double*` (nullable), one value.
        pub denom: u64,
        /// `double*`, one value.
        pub out: u64,
        /// `double*`, one per block.
        pub part: u64,
        /// `unsigned int*`, a zeroed counter.
        pub counter: u64,
    }

    /// `ce_fwd_bwd_<dtype>[_cK]` (`cross_entropy.cu`): one row per cluster of K blocks.
    pub struct CeRowParams {
        /// `T*` logits, `rows * classes` (the gradient's destination when `in_place`).
        pub z: u64,
        /// `T*` (nullable) gradient, `rows * classes`.
        pub g: u64,
        /// `const long long*` (nullable: probability targets), `rows` class targets.
        pub targets: u64,
        /// `const T*` (nullable: class targets), `rows * classes` target probabilities.
        pub probs: u64,
        /// Classes per row.
        pub classes: i64,
        /// Classes per block (`CePlan::slice`).
        pub slice: i64,
        /// `const float*` (nullable), `classes` class weights.
        pub weights: u64,
        /// Sum of the class weights (f32 values), or `classes`.
        pub wsum: f64,
        /// The ignore index (used when `has_ignore`).
        pub ignore_index: i64,
        /// Label smoothing.
        pub eps: f64,
        /// `const double*` (nullable: not a mean), `ce_prepare`'s 2 stats.
        pub stats: u64,
        /// Upstream gradient when `up` is null.
        pub up_scalar: f64,
        /// `const double*` (nullable), `rows` upstream gradients.
        pub up: u64,
        /// `double*`, `rows` losses.
        pub row_loss: u64,
        /// 1: the gradient overwrites `z`.
        pub in_place: i32,
        /// 1 when `ignore_index` applies.
        pub has_ignore: i32,
        /// `CE_SMEM_ROW | CE_VEC16 | CE_WARP_ROWS` bits (`CePlan::flags`).
        pub flags: i32,
        /// Rows of the grid's last block in the warp-per-row layout (`CePlan::last_rows`;
        /// 0 otherwise).
        pub last_rows: i32,
    }

    /// `ce_fwd_bwd_<dtype>opt[_cK]` (`cross_entropy.cu`): the entry points of calls with the
    /// options of `CE-10` .. `CE-15`; [`CeRowParams`]'s fields, then the options'. (A struct
    /// of its own: a larger `CeRowParams` made ptxas spill the default entry points.)
    pub struct CeRowOptParams {
        /// `T*` logits, `rows * classes` (the gradient's destination when `in_place`).
        pub z: u64,
        /// `T*` (nullable) gradient, `rows * classes`.
        pub g: u64,
        /// `const long long*` (nullable: probability targets), `rows` class targets.
        pub targets: u64,
        /// `const T*` (nullable: class targets), `rows * classes` target probabilities.
        pub probs: u64,
        /// Classes per row.
        pub classes: i64,
        /// Classes per block (`CePlan::slice`).
        pub slice: i64,
        /// `const float*` (nullable), `classes` class weights.
        pub weights: u64,
        /// Sum of the class weights (f32 values), or `classes`.
        pub wsum: f64,
        /// The ignore index (used when `has_ignore`).
        pub ignore_index: i64,
        /// Label smoothing.
        pub eps: f64,
        /// `const double*` (nullable: not a mean), `ce_prepare`'s 2 stats.
        pub stats: u64,
        /// Upstream gradient when `up` is null.
        pub up_scalar: f64,
        /// `const double*` (nullable), `rows` upstream gradients.
        pub up: u64,
        /// `double*`, `rows` losses.
        pub row_loss: u64,
        /// `const double*` (nullable), `rows` row weights (`CE-12`).
        pub row_w: u64,
        /// The logit softcap (`CE-10`), or 0: none.
        pub softcap: f64,
        /// The z-loss scale (`CE-11`), 0: none.
        pub z_loss: f64,
        /// `float*` (nullable), `rows` log-sum-exps (`CE-14`).
        pub lse_out: u64,
        /// `unsigned char*` (nullable), `rows` argmax hits, 0 or 1 (`CE-14`).
        pub hit_out: u64,
        /// `double*` (nullable), `rows` z-losses `r_i s lse_i^2` (`CE-15`).
        pub row_z: u64,
        /// 1: the gradient overwrites `z`.
        pub in_place: i32,
        /// 1 when `ignore_index` applies.
        pub has_ignore: i32,
        /// `CE_SMEM_ROW | CE_VEC16` bits (`CePlan::flags`).
        pub flags: i32,
        /// Padding (0).
        pub _pad: i32,
    }

    /// `box_loss_fwd_bwd` (`box_loss.cu`): aligned box pairs.
    pub struct BoxLossParams {
        /// `const float*`, `4n`.
        pub pred: u64,
        /// `const float*`, `4n`.
        pub target: u64,
        /// Pairs.
        pub n: i64,
        /// The loss's eps.
        pub eps: f64,
        /// Threshold weighting's alpha (used when `has_tw`).
        pub tw_alpha: f64,
        /// Threshold weighting's IoU threshold.
        pub tw_threshold: f64,
        /// Upstream gradient when `up` is null.
        pub up_scalar: f64,
        /// `const double*` (nullable), `n` upstream gradients.
        pub up: u64,
        /// Gradient scale (1/n for a mean).
        pub scale: f64,
        /// `double*` (nullable: reduction none only), `n` losses.
        pub losses: u64,
        /// `double*`, one per block.
        pub partials: u64,
        /// `float*` (nullable), `4n` gradient (may be `pred`: in place).
        pub grad: u64,
        /// Extended-IoU's `smooth_point` (`BOX-15`).
        pub smooth_point: f64,
        /// MPDIoU's `W^2 + H^2` (`BOX-18`; 2 when unused).
        pub img_diag2: f64,
        /// Shape-IoU's `scale` (`BOX-19`).
        pub shape_scale: f64,
        /// Inner-IoU's ratio (`BOX-20`, with `SL_BOX_MOD_INNER`).
        pub inner_ratio: f64,
        /// Focaler-IoU's `d` (`BOX-21`, with `SL_BOX_MOD_FOCALER`).
        pub focaler_d: f64,
        /// Focaler-IoU's `u`.
        pub focaler_u: f64,
        /// alpha-IoU's power (`BOX-22`, with `SL_BOX_MOD_ALPHA`).
        pub alpha_power: f64,
        /// The focal weight's gamma (`BOX-23`, with `SL_BOX_MOD_FOCAL`).
        pub focal_gamma: f64,
        /// `BoxLossKind::code` (`SL_BOX_KIND_*`).
        pub kind: i32,
        /// `BoxFormat::code` (`SL_BOX_FORMAT_*`).
        pub format: i32,
        /// 1 with threshold weighting.
        pub has_tw: i32,
        /// 1 for mmdetection's CIoU convention (`BOX-14`).
        pub ciou_mmdet: i32,
        /// 1 for SIoU's paper gamma (`BOX-16`).
        pub siou_paper_gamma: i32,
        /// `SL_BOX_MOD_*` bits: 1 Inner, 2 Focaler, 4 alpha power, 8 focal.
        pub mods: i32,
    }

    /// `box_iou_pairwise` (`box_loss.cu`): IoU of every pair of two box sets.
    pub struct BoxIouParams {
        /// `const float*`, `4n`.
        pub b1: u64,
        /// `const float*`, `4m`.
        pub b2: u64,
        /// Boxes of `b1`.
        pub n: i64,
        /// Boxes of `b2`.
        pub m: i64,
        /// `float*`, `n * m`.
        pub out: u64,
        /// `BoxFormat::code` (`SL_BOX_FORMAT_*`).
        pub format: i32,
        /// Padding (0).
        pub _pad: i32,
    }

    /// `reg_smooth_l1`, `reg_huber` (`regression.cu`).
    pub struct RegParams {
        /// `const float*`, `n`.
        pub pred: u64,
        /// `const float*`, `n`.
        pub target: u64,
        /// Elements.
        pub n: i64,
        /// Smooth L1's beta or Huber's delta.
        pub param: f64,
        /// Upstream gradient when `up` is null.
        pub up_scalar: f64,
        /// `const double*` (nullable), `n`.
        pub up: u64,
        /// Gradient scale (1/n for a mean).
        pub scale: f64,
        /// `double*` (nullable: reduction none only), `n`.
        pub losses: u64,
        /// `double*`, one per block.
        pub partials: u64,
        /// `float*` (nullable), `n` gradient (may be the input: in place).
        pub grad: u64,
    }

    /// `bin_bce_with_logits` (`binary.cu`).
    pub struct BceParams {
        /// `const float*`, `n`.
        pub logits: u64,
        /// `const float*`, `n`.
        pub targets: u64,
        /// Elements.
        pub n: i64,
        /// `const double*` (nullable), `p_len` positive weights (element i uses i % p_len).
        pub pos_weight: u64,
        /// Positive weights (>= 1).
        pub p_len: i64,
        /// Upstream gradient when `up` is null.
        pub up_scalar: f64,
        /// `const double*` (nullable), `n`.
        pub up: u64,
        /// Gradient scale (1/n for a mean).
        pub scale: f64,
        /// `double*` (nullable: reduction none only), `n`.
        pub losses: u64,
        /// `double*`, one per block.
        pub partials: u64,
        /// `float*` (nullable), `n` gradient (may be the input: in place).
        pub grad: u64,
        /// `unsigned long long*` (nullable), 2 zeroed words: the target check.
        pub check: u64,
    }

    /// `bin_sigmoid_focal` (`binary.cu`).
    pub struct FocalParams {
        /// `const float*`, `n`.
        pub logits: u64,
        /// `const float*`, `n`.
        pub targets: u64,
        /// Elements.
        pub n: i64,
        /// Focal alpha (negative: none).
        pub alpha: f64,
        /// Focal gamma.
        pub gamma: f64,
        /// Upstream gradient when `up` is null.
        pub up_scalar: f64,
        /// `const double*` (nullable), `n`.
        pub up: u64,
        /// Gradient scale (1/n for a mean).
        pub scale: f64,
        /// `double*` (nullable: reduction none only), `n`.
        pub losses: u64,
        /// `double*`, one per block.
        pub partials: u64,
        /// `float*` (nullable), `n` gradient (may be the input: in place).
        pub grad: u64,
        /// `unsigned long long*` (nullable), 2 zeroed words: the target check.
        pub check: u64,
    }

    /// `bin_target_check` (`binary.cu`): one thread copies the flagged target's value.
    pub struct BinTargetCheckParams {
        /// `const float*`, the `n` targets the loss kernel checked.
        pub targets: u64,
        /// `unsigned long long*`, the loss kernel's 2 check words.
        pub check: u64,
    }

    /// `dfl_target_check` (`distribution.cu`) and `qual_target_check` (`quality.cu`): one
    /// thread copies a flagged target's value into its check words.
    pub struct TargetValueParams {
        /// `const float*` (nullable), the values the loss kernel checked.
        pub values: u64,
        /// `const long long*` (nullable, when `values` is), the labels it checked.
        pub labels: u64,
        /// `unsigned long long*`, the loss kernel's 2 check words of those values.
        pub check: u64,
    }

    /// `dfl_fwd_bwd` (`distribution.cu`): one thread per item (4 rows or 1 of `bins` logits).
    pub struct DflParams {
        /// `const float*`, `rows * bins` logits (`rows = items * rows_per_item`).
        pub logits: u64,
        /// `const float*`, `rows` targets.
        pub targets: u64,
        /// Items (boxes for ultralytics, rows for mmdetection).
        pub items: i64,
        /// Bins per row.
        pub bins: i64,
        /// Upstream gradient when `up` is null.
        pub up_scalar: f64,
        /// `const double*` (nullable), `items` values.
        pub up: u64,
        /// The mean's `1 / items`, else 1.
        pub scale: f64,
        /// `double*` (nullable), `items` values.
        pub losses: u64,
        /// `double*` (nullable), one per block.
        pub partials: u64,
        /// `float*` (nullable), `rows * bins` (may be the logits: in place).
        pub grad: u64,
        /// `unsigned long long*` (nullable: the host front door checked the targets), 2 zeroed
        /// words: the bitwise NOT of the first row whose target is invalid (NaN; mmdetection:
        /// outside `[0, bins - 1)`), then `dfl_target_check` puts its value's f64 bits in the
        /// second (`DeviceLoss::to_host` reports it).
        pub check: u64,
        /// 0 ultralytics, 1 mmdetection (`DflConvention`).
        pub convention: i32,
        /// Padding (0).
        pub _pad: i32,
    }

    /// `qual_varifocal` (`quality.cu`): one thread per element.
    pub struct VarifocalParams {
        /// `const float*`, `n`.
        pub logits: u64,
        /// `const float*`, `n`.
        pub scores: u64,
        /// `const float*` (nullable: mmdetection's weights), `n`.
        pub labels: u64,
        /// Elements.
        pub n: i64,
        /// alpha.
        pub alpha: f64,
        /// gamma.
        pub gamma: f64,
        /// Upstream gradient when `up` is null.
        pub up_scalar: f64,
        /// `const double*` (nullable), `n`.
        pub up: u64,
        /// `1 / (avg_factor or n)` for a mean, else 1.
        pub scale: f64,
        /// `double*` (nullable), `n`.
        pub losses: u64,
        /// `double*` (nullable), one per block.
        pub partials: u64,
        /// `float*` (nullable), `n` (may be the logits).
        pub grad: u64,
        /// `unsigned long long*` (nullable: the host front door checked), 4 zeroed words: for
        /// the scores, then the labels, the bitwise NOT of the first index outside `[0, 1]`
        /// (NaN included) and (by `qual_target_check`) its value's f64 bits.
        pub check: u64,
        /// `VarifocalWeight::code`.
        pub weight: i32,
        /// Padding (0).
        pub _pad: i32,
    }

    /// `qual_quality_focal` (`quality.cu`): one thread per row.
    pub struct QflParams {
        /// `const float*`, `rows * classes`.
        pub logits: u64,
        /// `const long long*`, `rows` labels in `[0, classes]`.
        pub labels: u64,
        /// `const float*`, `rows`.
        pub scores: u64,
        /// Rows.
        pub rows: i64,
        /// Classes.
        pub classes: i64,
        /// beta.
        pub beta: f64,
        /// Upstream gradient when `up` is null.
        pub up_scalar: f64,
        /// `const double*` (nullable), `rows`.
        pub up: u64,
        /// `1 / (avg_factor or rows)` for a mean, else 1.
        pub scale: f64,
        /// `double*` (nullable), `rows`.
        pub losses: u64,
        /// `double*` (nullable), one per block.
        pub partials: u64,
        /// `float*` (nullable), `rows * classes` (may be the logits).
        pub grad: u64,
        /// `unsigned long long*` (nullable: the host front door checked), 4 zeroed words: for
        /// the labels (outside `[0, classes]`), then the scores (outside `[0, 1]`), the bitwise
        /// NOT of the first such row and (by `qual_target_check`) its value (a label's bits, a
        /// score's f64 bits).
        pub check: u64,
    }

    /// `obb_probiou_fwd_bwd` (`oriented_box.cu`): one thread per pair.
    pub struct ProbIouParams {
        /// `const float*`, `5n`.
        pub pred: u64,
        /// `const float*`, `5n`.
        pub target: u64,
        /// Pairs.
        pub n: i64,
        /// eps.
        pub eps: f64,
        /// ultralytics' floor.
        pub floor: f64,
        /// Upstream gradient when `up` is null.
        pub up_scalar: f64,
        /// `const double*` (nullable), `n`.
        pub up: u64,
        /// `1 / n` for a mean, else 1.
        pub scale: f64,
        /// `double*` (nullable), `n`.
        pub losses: u64,
        /// `double*` (nullable), one per block.
        pub partials: u64,
        /// `float*` (nullable), `5n` (may be pred).
        pub grad: u64,
        /// 1 with the CIoU term.
        pub ciou: i32,
        /// Padding (0).
        pub _pad: i32,
    }

    /// `obb_probiou_pairwise` (`oriented_box.cu`): one thread per output.
    pub struct ProbIouPairwiseParams {
        /// `const float*`, `5n`.
        pub b1: u64,
        /// `const float*`, `5m`.
        pub b2: u64,
        /// Boxes of `b1`.
        pub n: i64,
        /// Boxes of `b2`.
        pub m: i64,
        /// eps.
        pub eps: f64,
        /// `float*`, `n * m`.
        pub out: u64,
    }
}

// SAFETY: plain `#[repr(C)]` data (u64 / i64 / f64 / i32, no padding, no references), the same
// layout as the C struct (`layout_asserts`). `sl_reduce_final` reads partials[0..n),
// denom[0] when non-null, and writes out[0]; one block of `geometry::REDUCE_THREADS`
// (= SL_REDUCE_THREADS, the size of its shared array) threads.
unsafe impl DeviceRepr for ReduceFinalParams {}
// SAFETY: plain repr(C) data as above. Block b of the `geometry::ce_rows_grid(rows)` grid
// (CE_ROWS_THREADS threads, blocks * chunk >= rows) reads targets[b*chunk .. min(rows,
// (b+1)*chunk)) (null for probability targets) and weights[t] only for in-range targets t <
// classes (weights has `classes` values), writes part_w[b] and part_bad[b] (one word per
// block each) and atomically increments *counter (zeroed); the last block reads every
// part_w / part_bad, writes stats[0..2) and err[0..2) and resets *counter.
unsafe impl DeviceRepr for CePrepareParams {}
// SAFETY: plain repr(C) data as above. Block b of the `geometry::ce_rows_grid(n)` grid reads
// values[b*chunk .. min(n, (b+1)*chunk)), writes part[b] (one per block), increments *counter
// (zeroed); the last block reads every part, denom[0] when non-null, writes out[0] and resets
// *counter.
unsafe impl DeviceRepr for CeReduceRowsParams {}
// SAFETY: plain repr(C) data as above. Launched as `rows * K` blocks (K compiled into the
// entry point, `CePlan::cluster`) of `CePlan::threads` (a multiple of 32, <= 512) threads with
// `CePlan::smem_bytes` of dynamic shared memory (1024-byte header, plus `slice` elements of T
// with CE_SMEM_ROW). Block b (row b / K, rank r) touches z, g and probs (each rows * classes
// elements of T, the entry point's dtype) only in [row*classes + r*slice, min(row*classes +
// (r+1)*slice, (row+1)*classes)), plus z[row*classes + targets[row]] for an in-range target;
// targets[row], up[row] (rows values), weights[0..classes), stats[1], row_loss[row] (rows
// values). 16-byte vector accesses only with CE_VEC16, which `ce_plan` sets only when z, g and
// probs start on 16-byte boundaries and a row is a whole number of vectors.
unsafe impl DeviceRepr for CeRowParams {}

// SAFETY: plain `#[repr(C)]` data (integers, floats, addresses); the kernels read and write
// only the buffers its fields name, within the sizes CeRowParams's contract states, plus the
// `rows` entries of `row_w`, `lse_out`, `hit_out` and `row_z` when they are not null.
unsafe impl DeviceRepr for CeRowOptParams {}
// SAFETY: plain repr(C) data as above. Grid-stride over n pairs: pair i reads pred and
// target[4i..4i+4) (4n floats each), up[i] (n), writes losses[i] (n, when non-null) and
// grad[4i..4i+4) (4n, when non-null; grad may equal pred, in place: the thread of pair i
// reads its pred values before it writes their gradient, and no other thread touches them);
// block k writes partials[k] (one per block, when non-null). Blocks of a multiple of 32
// threads (<= 1024).
unsafe impl DeviceRepr for BoxLossParams {}

impl BoxLossParams {
    /// Sets the kind, format and every option and modifier field from a configuration
    /// (`BOX-14` .. `BOX-23`); the unused fields get neutral values.
    pub fn set_options(&mut self, cfg: &smoothloss_core::BoxLoss) {
        let o = &cfg.options;
        let m = &o.modifiers;
        self.kind = i32::from(cfg.kind.code());
        self.format = i32::from(cfg.format.code());
        self.smooth_point = o.smooth_point;
        self.img_diag2 = o.image_size.map_or(2.0, |[w, h]| w * w + h * h);
        self.shape_scale = o.shape_scale;
        self.ciou_mmdet = i32::from(o.ciou == smoothloss_core::CiouConvention::Mmdetection);
        self.siou_paper_gamma = i32::from(o.siou_paper_gamma);
        let mut mods = 0;
        if let Some(r) = m.inner_ratio {
            mods |= 1;
            self.inner_ratio = r;
        }
        if let Some([d, u]) = m.focaler {
            mods |= 2;
            (self.focaler_d, self.focaler_u) = (d, u);
        }
        if let Some(a) = m.alpha_power {
            mods |= 4;
            self.alpha_power = a;
        }
        if let Some(g) = m.focal_gamma {
            mods |= 8;
            self.focal_gamma = g;
        }
        self.mods = mods;
    }
}
// SAFETY: plain repr(C) data as above. Grid-stride over n*m outputs: output idx reads
// b1[4i..4i+4) with i = idx / m < n (4n floats), b2[4j..4j+4) with j < m (4m floats), and
// writes out[idx] (n*m floats).
unsafe impl DeviceRepr for BoxIouParams {}
// SAFETY: plain repr(C) data as above. Grid-stride over n elements: element i reads pred[i],
// target[i] (n floats each), up[i] (n), writes losses[i] (n, when non-null), grad[i] (n, when
// non-null; grad may equal pred, in place: element i's thread reads pred[i] before it writes
// grad[i], and no other thread touches either); block k writes partials[k] (one per block,
// when non-null). Blocks of a multiple of 32 threads (<= 1024).
unsafe impl DeviceRepr for RegParams {}
// SAFETY: plain repr(C) data as above. As RegParams over logits / targets, plus
// pos_weight[i % p_len] (p_len >= 1 values, when non-null) and an atomic max on check[0]
// (2 zeroed words, when non-null).
unsafe impl DeviceRepr for BceParams {}
// SAFETY: plain repr(C) data as above. As RegParams over logits / targets, plus an atomic max
// on check[0] (2 zeroed words, when non-null).
unsafe impl DeviceRepr for FocalParams {}
// SAFETY: plain repr(C) data as above. One thread reads check[0] and, when it is not 0,
// targets[!check[0]] (an index below the loss kernel's n, the only indices it flags), and
// writes check[1].
unsafe impl DeviceRepr for BinTargetCheckParams {}
// SAFETY: plain repr(C) data as above. Grid-stride over `items` items: item i reads up[i]
// (items values, when non-null), the logits and grad rows [i*per, (i+1)*per) of `bins` values
// each (per = 4 for convention 0, else 1; rows = items * per, the plan's), targets of those
// rows, writes losses[i] (when non-null) and those grad rows (when non-null; grad may equal
// logits: each row is read before its thread writes it, no other thread touches it); block k
// writes partials[k] (when non-null), and atomically check[0] (2 words, when non-null). A row
// whose target is invalid is not indexed by its target. Blocks of a multiple of 32 threads
// (<= 1024).
unsafe impl DeviceRepr for DflParams {}
// SAFETY: plain repr(C) data as above. One thread reads check[0] and, when it is not 0,
// values[!check[0]] (or labels[!check[0]] when values is null; an index below the loss
// kernel's count of those values, the only indices it flags), and writes check[1].
unsafe impl DeviceRepr for TargetValueParams {}
// SAFETY: plain repr(C) data as above. As RegParams over logits / scores (n floats each), plus
// labels[i] (n floats, when non-null), and atomically check[0] and check[2] (4 words, when
// non-null).
unsafe impl DeviceRepr for VarifocalParams {}
// SAFETY: plain repr(C) data as above. Grid-stride over `rows` rows: row i reads labels[i],
// scores[i], up[i] (rows values each, up when non-null), logits and grad [i*classes,
// (i+1)*classes) (grad may equal logits: each element is read before it is written, by its
// row's thread only), writes losses[i] (when non-null), atomically check[0] and check[2] (4
// words, when non-null); block k writes partials[k]. Labels only compare with class indices
// (never index memory), so an out-of-range label reads nothing out of bounds.
unsafe impl DeviceRepr for QflParams {}
// SAFETY: plain repr(C) data as above. As BoxLossParams with 5 floats per box (pred, target
// and grad 5n floats; grad may equal pred: a pair's thread reads its 5 values first).
unsafe impl DeviceRepr for ProbIouParams {}
// SAFETY: plain repr(C) data as above. Grid-stride over n*m outputs: output idx reads
// b1[5i..5i+5) with i = idx / m < n (5n floats), b2[5j..5j+5) with j < m (5m floats), and
// writes out[idx] (n*m floats).
unsafe impl DeviceRepr for ProbIouPairwiseParams {}

/// The layouts of the structs a family's kernels take (`sl_reduce_final`'s first).
pub fn family_layouts(family: Family) -> Vec<Layout> {
    let all = layouts();
    let mut out: Vec<Layout> = Vec::new();
    for e in family.entries() {
        if !out.iter().any(|l| l.name == e.params) {
            let l = all
                .iter()
                .find(|l| l.name == e.params)
                .unwrap_or_else(|| panic!("no parameter struct {}", e.params));
            out.push(l.clone());
        }
    }
    out
}

/// `static_assert`s of `layouts` (size, alignment, the offset of every field), for a C++
/// source in which those structs are defined. NVRTC has no `<cstddef>` and no
/// `__builtin_offsetof`; its front end's `__INTADDR__` gives a constant offset, and g++ (the
/// CPU emulation) has `__builtin_offsetof`.
pub fn layout_asserts_of(layouts: &[Layout]) -> String {
    let mut s = String::from(
        "// Generated by smoothloss_cuda::params: the Rust layouts.\n\
         #ifndef SL_OFFSETOF\n\
         #ifdef __CUDACC_RTC__\n\
         #define SL_OFFSETOF(T, f) __INTADDR__(&(((T*)0)->f))\n\
         #else\n\
         #define SL_OFFSETOF(T, f) __builtin_offsetof(T, f)\n\
         #endif\n\
         #endif\n",
    );
    for l in layouts {
        let n = l.name;
        let _ = writeln!(
            s,
            "static_assert(sizeof({n}) == {}, \"{n}: size differs from Rust's {}\");",
            l.size, l.size
        );
        let _ = writeln!(
            s,
            "static_assert(alignof({n}) == {}, \"{n}: alignment differs from Rust's {}\");",
            l.align, l.align
        );
        for (f, off, _) in &l.fields {
            let _ = writeln!(
                s,
                "static_assert(SL_OFFSETOF({n}, {f}) == {off}, \
                 \"{n}.{f}: offset differs from Rust's {off}\");"
            );
        }
    }
    s
}

/// [`layout_asserts_of`] the family's structs ([`family_layouts`]); part of every source
/// NVRTC compiles ([`KernelFamily::full_source`]).
pub fn layout_asserts(family: Family) -> String {
    layout_asserts_of(&family_layouts(family))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_struct_is_packed_and_named_once() {
        let all = layouts();
        for (i, l) in all.iter().enumerate() {
            assert!(
                all[..i].iter().all(|o| o.name != l.name),
                "{} twice",
                l.name
            );
            // No implicit padding: the fields end where the struct does, in order.
            let mut end = 0;
            for (f, off, size) in &l.fields {
                assert_eq!(*off, end, "{}.{f}: padding before it", l.name);
                end = off + size;
            }
            assert_eq!(end, l.size, "{}: trailing padding", l.name);
        }
        // Every entry point's struct exists.
        for fam in Family::ALL {
            assert!(family_layouts(fam).len() >= 2);
        }
    }
}
