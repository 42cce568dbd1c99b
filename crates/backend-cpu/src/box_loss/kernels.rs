//! The box kernels compiled twice, with AVX2 + FMA (chosen by the backend's level) and
//! portable, and their selection by (kind, format, gradient). Both builds perform the same IEEE
//! operations (no contraction into FMA), so their results are bit-identical.

use super::math::{FormatMarker, KindMarker, PairParams, block, iou_row, with_format, with_kind};
use crate::SimdLevel;
use crate::blocks::Up;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn block_avx2<K: KindMarker, F: FormatMarker, const G: bool, const M: bool, const X: bool>(
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    block::<K, F, G, M, X>(pred, target, grad, up, prm, losses)
}

fn block_plain<K: KindMarker, F: FormatMarker, const G: bool, const M: bool, const X: bool>(
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    block::<K, F, G, M, X>(pred, target, grad, up, prm, losses)
}

fn block_dispatch<K: KindMarker, F: FormatMarker, const G: bool, const M: bool, const X: bool>(
    level: SimdLevel,
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if level == SimdLevel::Avx2Fma {
        // SAFETY: a backend's level is `Avx2Fma` only when the CPU supports AVX2 and FMA
        // (`CpuBackend::with_simd_level` falls back to scalar otherwise).
        return unsafe { block_avx2::<K, F, G, M, X>(pred, target, grad, up, prm, losses) };
    }
    let _ = level;
    block_plain::<K, F, G, M, X>(pred, target, grad, up, prm, losses)
}

/// One block of pairs on a level: `(level, pred, target, grad, up, params, losses) -> sum`.
pub(super) type BlockFn = fn(
    SimdLevel,
    &[f32],
    &[f32],
    Option<&mut [f32]>,
    Up<'_>,
    &PairParams,
    Option<&mut [f64]>,
) -> f64;

/// Which of the three kernels of a (kind, format) runs: the plain kinds (the modifier code
/// compiled out), the options (focal, Focaler, mmdetection's CIoU, Wise-IoU v3's focus,
/// `M`), or every option with Inner-IoU and alpha-IoU too (`M` and `X`). Within each, the
/// options a call sets are selected at run time (`PairParams`): no kernel per combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Options {
    /// No modifier.
    Plain,
    /// Focal, Focaler, mmdetection's CIoU, Wise-IoU v3's focus.
    Some,
    /// Those and Inner-IoU, alpha-IoU.
    All,
}

/// The block kernel of (`kind`, `format`, `grad`, options).
pub(super) fn select_block(
    kind: smoothloss_core::BoxLossKind,
    format: smoothloss_core::BoxFormat,
    grad: bool,
    options: Options,
) -> BlockFn {
    with_kind!(kind, |K| with_format!(format, |F| match (grad, options) {
        (true, Options::Plain) => block_dispatch::<K, F, true, false, false>,
        (false, Options::Plain) => block_dispatch::<K, F, false, false, false>,
        (true, Options::Some) => block_dispatch::<K, F, true, true, false>,
        (false, Options::Some) => block_dispatch::<K, F, false, true, false>,
        (true, Options::All) => block_dispatch::<K, F, true, true, true>,
        (false, Options::All) => block_dispatch::<K, F, false, true, true>,
    }))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn iou_rows_avx2<F: FormatMarker>(a: &[f32], cols: &[Vec<f32>; 4], out: &mut [f32]) {
    iou_rows_plain::<F>(a, cols, out)
}

#[inline(always)]
fn iou_rows_plain<F: FormatMarker>(a: &[f32], cols: &[Vec<f32>; 4], out: &mut [f32]) {
    let m = cols[0].len();
    for (b, row) in a.chunks_exact(4).zip(out.chunks_exact_mut(m)) {
        iou_row::<F>([b[0], b[1], b[2], b[3]], cols, row);
    }
}

fn iou_rows<F: FormatMarker>(level: SimdLevel, a: &[f32], cols: &[Vec<f32>; 4], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if level == SimdLevel::Avx2Fma {
        // SAFETY: a backend's level is `Avx2Fma` only when the CPU supports AVX2 and FMA.
        return unsafe { iou_rows_avx2::<F>(a, cols, out) };
    }
    let _ = level;
    iou_rows_plain::<F>(a, cols, out)
}

/// Rows of pairwise IoU on a level: `(level, boxes1 rows, boxes2 columns, out rows)`.
pub(super) type IouFn = fn(SimdLevel, &[f32], &[Vec<f32>; 4], &mut [f32]);

/// The pairwise-IoU kernel of `format`.
pub(super) fn select_iou(format: smoothloss_core::BoxFormat) -> IouFn {
    with_format!(format, |F| iou_rows::<F>)
}
