//! Box losses on the CPU: every kind in every box format, forward only or fused with the
//! backward pass, on `f32` pairs; and the pairwise `box_iou`. IoU, GIoU, DIoU, CIoU, EIoU,
//! SIoU, Wise-IoU, MPDIoU and Shape-IoU, with the focal and Focaler modifiers, run
//! hand-derived `f32` kernels (CIoU also in mmdetection's convention); Extended-IoU, Inner-IoU
//! and alpha-IoU the generic `f64` path (`generic.rs`).
//!
//! The per-pair math lives in `math.rs` (branchless `f32`, hand-derived gradient); it is
//! monomorphised per (kind, format, gradient) through zero-sized marker types, compiled twice
//! in `kernels.rs` (AVX2 + FMA or portable, by the backend's level), and run over fixed blocks
//! of pairs on the backend's rayon pool by `blocks.rs`. Loss sums accumulate in `f64` per
//! block in a fixed order, so the result does not depend on the number of threads.

use crate::blocks::{Up, drive};
use crate::{CpuBackend, run_pair};
use math::PairParams;
use rayon::prelude::*;
use smoothloss_core::backend::BoxLossOps;

use smoothloss_core::{
    BoxFormat, BoxLoss, BoxLossKind, CiouConvention, IouCall, Loss, PairCall, Result, Upstream,
};

mod generic;
mod kernels;
pub(crate) mod math;

/// Pairs per block of the deterministic parallel split (a multiple of the chunk size).
const BOX_BLOCK: usize = 8 * 1024;

/// The box loss over validated buffers of `n` pairs.
pub(crate) fn box_loss(
    backend: &CpuBackend,
    cfg: &BoxLoss,
    n: usize,
    pred: &[f32],
    target: &[f32],
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    // The hand-derived f32 kernels serve IoU, GIoU, DIoU, CIoU (both conventions), EIoU,
    // SIoU, Wise-IoU, MPDIoU and Shape-IoU with the focal and Focaler (without Inner)
    // modifiers; Extended-IoU, Inner-IoU and alpha-IoU take the generic path (`generic.rs`).
    let m = &cfg.options.modifiers;
    let fast = m.inner_ratio.is_none() && m.alpha_power.is_none();
    let ciou_mmdet =
        cfg.kind == BoxLossKind::Ciou && cfg.options.ciou == CiouConvention::Mmdetection;
    // The kernel with options (`M`): the modifiers, mmdetection's CIoU.
    let modifiers = m.focaler.is_some() || m.focal_gamma.is_some() || ciou_mmdet;
    let kernel = fast
        .then(|| kernels::select_block(cfg.kind, cfg.format, grad.is_some(), modifiers))
        .flatten();
    let Some(f) = kernel else {
        return generic(backend, cfg, n, pred, target, upstream, grad);
    };
    let (thr, wlow) = match cfg.threshold_weight {
        Some(tw) => (tw.threshold as f32, (1.0 - tw.alpha) as f32),
        None => (f32::NEG_INFINITY, 1.0),
    };
    let [fd, fu] = m.focaler.unwrap_or([0.0, 1.0]);
    let prm = PairParams {
        eps: (cfg.eps as f32).max(f32::from_bits(1)),
        thr,
        wlow,
        inv_diag: cfg
            .options
            .image_size
            .map_or(0.0, |[w, h]| (1.0 / (w * w + h * h)) as f32),
        foc_1d: (1.0 - fd) as f32,
        foc_u1: (fu - 1.0) as f32,
        foc_inv: (1.0 / (fu - fd)) as f32,
        focaler: m.focaler.is_some(),
        gamma: m.focal_gamma.unwrap_or(0.0) as f32,
        focal: m.focal_gamma.is_some(),
        ciou_mmdet,
        siou_paper: cfg.options.siou_paper_gamma,
        shape_scale: cfg.options.shape_scale as f32,
    };
    let level = backend.simd_level();
    drive(
        backend,
        n,
        BOX_BLOCK,
        4,
        cfg.reduction,
        upstream,
        grad,
        |r, up: Up<'_>, g, l| {
            f(
                level,
                &pred[4 * r.start..4 * r.end],
                &target[4 * r.start..4 * r.end],
                g,
                up,
                &prm,
                l,
            )
        },
    )
}

/// The box loss of a configuration without a hand-derived kernel: `generic.rs` per block.
fn generic(
    backend: &CpuBackend,
    cfg: &BoxLoss,
    n: usize,
    pred: &[f32],
    target: &[f32],
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    drive(
        backend,
        n,
        BOX_BLOCK,
        4,
        cfg.reduction,
        upstream,
        grad,
        |r, up: Up<'_>, g, l| {
            generic::block(
                cfg,
                &pred[4 * r.start..4 * r.end],
                &target[4 * r.start..4 * r.end],
                g,
                up,
                l,
            )
        },
    )
}

/// Pairwise IoU of `n` boxes against `m` boxes (validated, both non-zero) into `out`.
pub(crate) fn box_iou(
    backend: &CpuBackend,
    format: BoxFormat,
    (n, m): (usize, usize),
    boxes1: &[f32],
    boxes2: &[f32],
    out: &mut [f32],
) {
    let cols: [Vec<f32>; 4] =
        std::array::from_fn(|k| boxes2.chunks_exact(4).map(|b| b[k]).collect());
    let f = kernels::select_iou(format);
    let level = backend.simd_level();
    // Rows per task: about 64k outputs.
    let rows = (65_536 / m).max(1);
    if n <= rows {
        f(level, boxes1, &cols, out);
    } else {
        backend.install(|| {
            out.par_chunks_mut(rows * m)
                .zip(boxes1.par_chunks(rows * 4))
                .for_each(|(o, a)| f(level, a, &cols, o));
        });
    }
}

impl BoxLossOps<f32> for CpuBackend {
    fn run_box_loss(&self, call: PairCall<'_, BoxLoss, f32>) -> Result<Loss> {
        Ok(run_pair(self, call, box_loss))
    }

    fn run_box_iou(&self, call: IouCall<'_, f32>) -> Result<()> {
        let (plan, boxes1, boxes2, out) = call.into_parts();
        if plan.n > 0 && plan.m > 0 {
            box_iou(self, plan.format, (plan.n, plan.m), boxes1, boxes2, out);
        }
        Ok(())
    }
}
