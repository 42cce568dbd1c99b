//! The box kernels compiled three times, with AVX-512, with AVX2 + FMA (chosen by the
//! backend's level) and portable, and their selection by (kind, format, gradient). The builds
//! perform the same IEEE operations (no contraction into FMA), so their results are
//! bit-identical. The AVX-512 build runs the same loops sixteen lanes wide with 32 registers
//! (1.6-2.1x faster than the AVX2 build on a Xeon with AVX-512, BENCHMARKS.md).

use super::math::{FormatMarker, KindMarker, PairParams, block, iou_row, with_format, with_kind};
use crate::SimdLevel;
use crate::blocks::Up;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn block_avx2<
    K: KindMarker,
    F: FormatMarker,
    const G: bool,
    const M: bool,
    const X: bool,
    const A: bool,
>(
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    block::<K, F, G, M, X, A>(pred, target, grad, up, prm, losses)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
fn block_avx512<
    K: KindMarker,
    F: FormatMarker,
    const G: bool,
    const M: bool,
    const X: bool,
    const A: bool,
>(
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    block::<K, F, G, M, X, A>(pred, target, grad, up, prm, losses)
}

fn block_plain<
    K: KindMarker,
    F: FormatMarker,
    const G: bool,
    const M: bool,
    const X: bool,
    const A: bool,
>(
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    block::<K, F, G, M, X, A>(pred, target, grad, up, prm, losses)
}

fn block_dispatch<
    K: KindMarker,
    F: FormatMarker,
    const G: bool,
    const M: bool,
    const X: bool,
    const A: bool,
>(
    level: SimdLevel,
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    match level {
        SimdLevel::Avx512 => {
            // SAFETY: a backend's level is `Avx512` only when the CPU supports AVX-512
            // F/VL/DQ/BW, AVX2 and FMA (`CpuBackend::with_simd_level` falls back otherwise).
            return unsafe {
                block_avx512::<K, F, G, M, X, A>(pred, target, grad, up, prm, losses)
            };
        }
        SimdLevel::Avx2Fma => {
            // SAFETY: a backend's level is `Avx2Fma` only when the CPU supports AVX2 and FMA.
            return unsafe { block_avx2::<K, F, G, M, X, A>(pred, target, grad, up, prm, losses) };
        }
        SimdLevel::Scalar => {}
    }
    let _ = level;
    block_plain::<K, F, G, M, X, A>(pred, target, grad, up, prm, losses)
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

/// Which kernel of a (kind, format) runs: the plain kinds (the modifier code compiled out), the
/// options (focal, Focaler, mmdetection's CIoU, `M`; Wise-IoU v3's focus and the threshold
/// weight run in every kernel), those with Inner-IoU (`M` and `X`), alpha-IoU alone (`A`: the
/// plain kernel and the powers, without the other options' selections), or every option
/// (`M`, `X` and `A`: alpha-IoU with any other modifier). Within each, the options a call sets
/// are selected at run time (`PairParams`), and the detached weights run in a loop of their
/// own only where a call has one: no kernel per combination. The alpha kernels exist for the
/// kinds alpha-IoU is defined on (IoU, GIoU, DIoU, CIoU: `BoxLoss` validation refuses it
/// elsewhere); for the others `Alpha` and `InnerAlpha` select the `Inner` kernel, which has
/// every option they accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Options {
    /// No modifier.
    Plain,
    /// Focal, Focaler, mmdetection's CIoU.
    Some,
    /// Those and Inner-IoU.
    Inner,
    /// alpha-IoU and no other modifier but the threshold weight.
    Alpha,
    /// alpha-IoU with any of focal, Focaler, mmdetection's CIoU and Inner-IoU.
    InnerAlpha,
}

/// The block kernel of (`kind`, `format`, `grad`, options).
pub(super) fn select_block(
    kind: smoothloss_core::BoxLossKind,
    format: smoothloss_core::BoxFormat,
    grad: bool,
    options: Options,
) -> BlockFn {
    use smoothloss_core::BoxLossKind as B;
    let alpha_kind = matches!(kind, B::Iou | B::Giou | B::Diou | B::Ciou);
    if alpha_kind && matches!(options, Options::Alpha | Options::InnerAlpha) {
        let inner = options == Options::InnerAlpha;
        // Only the four kinds of alpha-IoU are instantiated with `A`.
        macro_rules! alpha {
            ($k:ty) => {
                with_format!(format, |F| match (grad, inner) {
                    (true, false) => block_dispatch::<$k, F, true, false, false, true>,
                    (false, false) => block_dispatch::<$k, F, false, false, false, true>,
                    (true, true) => block_dispatch::<$k, F, true, true, true, true>,
                    (false, true) => block_dispatch::<$k, F, false, true, true, true>,
                })
            };
        }
        return match kind {
            B::Iou => alpha!(super::math::Iou),
            B::Giou => alpha!(super::math::Giou),
            B::Diou => alpha!(super::math::Diou),
            _ => alpha!(super::math::Ciou),
        };
    }
    with_kind!(kind, |K| with_format!(format, |F| match (grad, options) {
        (true, Options::Plain) => block_dispatch::<K, F, true, false, false, false>,
        (false, Options::Plain) => block_dispatch::<K, F, false, false, false, false>,
        (true, Options::Some) => block_dispatch::<K, F, true, true, false, false>,
        (false, Options::Some) => block_dispatch::<K, F, false, true, false, false>,
        (true, _) => block_dispatch::<K, F, true, true, true, false>,
        (false, _) => block_dispatch::<K, F, false, true, true, false>,
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
    if level.avx2() {
        // SAFETY: `level.avx2()` only if the CPU has AVX2 and FMA.
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
