//! Box losses on the CPU: IoU, GIoU, DIoU, CIoU and EIoU in every box format, forward only or
//! fused with the backward pass, on `f32` pairs; and the pairwise `box_iou`.
//!
//! The per-pair math lives in [`crate::box_math`] (branchless `f32`, hand-derived gradient);
//! here it is monomorphised per (kind, format, gradient), compiled twice (AVX2 + FMA chosen at
//! run time, and a portable build), and run over fixed blocks of pairs on the backend's rayon
//! pool. Loss sums accumulate in `f64` per block in a fixed order, so the result does not
//! depend on the number of threads.

use crate::{CpuBackend, split_io};
use crate::box_math::{
    F_CXCYWH, F_XYWH, F_XYXY, K_CIOU, K_DIOU, K_EIOU, K_GIOU, K_IOU, PairParams, Up, block, iou_row,
};
use crate::elementwise::run_blocks;
use rayon::prelude::*;
use smoothloss_core::backend::BoxLossOps;
use smoothloss_core::{
    BoxFormat, BoxLoss, BoxLossKind, IouCall, Loss, PairCall, Parts, Reduction, Result, Upstream,
};

/// Pairs per block of the deterministic parallel split (a multiple of the chunk size).
const BOX_BLOCK: usize = 8 * 1024;

static FORCE_PORTABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Testing hook: `true` makes the box and element-wise kernels take the portable build even
/// on a CPU with AVX2 + FMA (results are bit-identical either way: the same IEEE operations,
/// no contraction into FMA). Process-wide.
#[doc(hidden)]
pub fn force_portable_kernels(on: bool) {
    FORCE_PORTABLE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the AVX2 + FMA build may run: the CPU has both (cached by the standard library)
/// and [`force_portable_kernels`] is off.
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !FORCE_PORTABLE.load(std::sync::atomic::Ordering::Relaxed)
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2<const K: u8, const F: u8, const G: bool>(
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    block::<K, F, G>(pred, target, grad, up, prm, losses)
}

fn block_plain<const K: u8, const F: u8, const G: bool>(
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    block::<K, F, G>(pred, target, grad, up, prm, losses)
}

fn block_dispatch<const K: u8, const F: u8, const G: bool>(
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        return unsafe { block_avx2::<K, F, G>(pred, target, grad, up, prm, losses) };
    }
    block_plain::<K, F, G>(pred, target, grad, up, prm, losses)
}

type BlockFn =
    fn(&[f32], &[f32], Option<&mut [f32]>, Up<'_>, &PairParams, Option<&mut [f64]>) -> f64;

fn select_block(kind: BoxLossKind, format: BoxFormat, grad: bool) -> BlockFn {
    macro_rules! by_format {
        ($k:expr) => {
            match (format, grad) {
                (BoxFormat::Xyxy, false) => block_dispatch::<{ $k }, F_XYXY, false>,
                (BoxFormat::Xyxy, true) => block_dispatch::<{ $k }, F_XYXY, true>,
                (BoxFormat::Xywh, false) => block_dispatch::<{ $k }, F_XYWH, false>,
                (BoxFormat::Xywh, true) => block_dispatch::<{ $k }, F_XYWH, true>,
                (BoxFormat::Cxcywh, false) => block_dispatch::<{ $k }, F_CXCYWH, false>,
                (BoxFormat::Cxcywh, true) => block_dispatch::<{ $k }, F_CXCYWH, true>,
            }
        };
    }
    match kind {
        BoxLossKind::Iou => by_format!(K_IOU),
        BoxLossKind::Giou => by_format!(K_GIOU),
        BoxLossKind::Diou => by_format!(K_DIOU),
        BoxLossKind::Ciou => by_format!(K_CIOU),
        BoxLossKind::Eiou => by_format!(K_EIOU),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn iou_rows_avx2<const F: u8>(a: &[f32], cols: &[Vec<f32>; 4], out: &mut [f32]) {
    iou_rows_plain::<F>(a, cols, out)
}

#[inline(always)]
fn iou_rows_plain<const F: u8>(a: &[f32], cols: &[Vec<f32>; 4], out: &mut [f32]) {
    let m = cols[0].len();
    for (b, row) in a.chunks_exact(4).zip(out.chunks_exact_mut(m)) {
        iou_row::<F>([b[0], b[1], b[2], b[3]], cols, row);
    }
}

fn iou_rows<const F: u8>(a: &[f32], cols: &[Vec<f32>; 4], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        return unsafe { iou_rows_avx2::<F>(a, cols, out) };
    }
    iou_rows_plain::<F>(a, cols, out)
}

impl BoxLossOps<f32> for CpuBackend {
    fn run_box_loss(&self, call: PairCall<'_, BoxLoss, f32>) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with: target,
            upstream,
        } = call.into_parts();
        let (cfg, n) = (plan.cfg, plan.items);
        let (pred, grad) = split_io(io);
        let pred = &pred[..];
        let (thr, wlow) = match cfg.threshold_weight {
            Some(tw) => (tw.threshold as f32, (1.0 - tw.alpha) as f32),
            None => (f32::NEG_INFINITY, 1.0),
        };
        let prm = PairParams {
            eps: (cfg.eps as f32).max(f32::from_bits(1)),
            thr,
            wlow,
        };
        let scale = match cfg.reduction {
            Reduction::Mean => 1.0 / n as f64,
            _ => 1.0,
        };
        let want_grad = grad.is_some();
        let f = select_block(cfg.kind, cfg.format, want_grad);
        let mut per_pair = (cfg.reduction == Reduction::None).then(|| vec![0.0f64; n]);
        let total = run_blocks(
            self,
            n,
            BOX_BLOCK,
            4,
            grad,
            per_pair.as_deref_mut(),
            |r, g, l| {
                let up = match upstream {
                    Upstream::PerElement(u) => Up::Per(&u[r.clone()], scale),
                    Upstream::Scalar(s) => Up::Scalar((s * scale) as f32),
                };
                f(
                    &pred[4 * r.start..4 * r.end],
                    &target[4 * r.start..4 * r.end],
                    g,
                    up,
                    &prm,
                    l,
                )
            },
        );
        Ok(match cfg.reduction {
            Reduction::None => Loss::PerItem(per_pair.unwrap_or_default()),
            Reduction::Sum => Loss::Reduced(total),
            Reduction::Mean => Loss::Reduced(total / n as f64),
        })
    }

    fn run_box_iou(&self, call: IouCall<'_, f32>) -> Result<()> {
        let (plan, boxes1, boxes2, out) = call.into_parts();
        let (format, n, m) = (plan.format, plan.n, plan.m);
        if n == 0 || m == 0 {
            return Ok(());
        }
        let cols: [Vec<f32>; 4] =
            std::array::from_fn(|k| boxes2.chunks_exact(4).map(|b| b[k]).collect());
        let f: fn(&[f32], &[Vec<f32>; 4], &mut [f32]) = match format {
            BoxFormat::Xyxy => iou_rows::<F_XYXY>,
            BoxFormat::Xywh => iou_rows::<F_XYWH>,
            BoxFormat::Cxcywh => iou_rows::<F_CXCYWH>,
        };
        // Rows per task: about 64k outputs.
        let rows = (65_536 / m).max(1);
        if n <= rows {
            f(boxes1, &cols, out);
        } else {
            self.install(|| {
                out.par_chunks_mut(rows * m)
                    .zip(boxes1.par_chunks(rows * 4))
                    .for_each(|(o, a)| f(a, &cols, o));
            });
        }
        Ok(())
    }
}
