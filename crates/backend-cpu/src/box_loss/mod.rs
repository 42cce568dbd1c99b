//! Box losses on the CPU: every kind in every box format, forward only or fused with the
//! backward pass, on `f32` pairs; and the pairwise `box_iou`. Every kind (IoU, GIoU, DIoU,
//! CIoU in both conventions, EIoU, Extended-IoU, SIoU, Wise-IoU v1 and v3, MPDIoU, Shape-IoU)
//! and every modifier (Inner, Focaler, alpha, focal, the threshold weight) runs hand-derived
//! `f32` kernels; the modifiers are composed at run time inside one kernel per kind.
//!
//! The per-pair math lives in `math/` (branchless `f32`, hand-derived gradient); it is
//! monomorphised per (kind, format, gradient) through zero-sized marker types, compiled twice
//! in `kernels.rs` (AVX2 + FMA or portable, by the backend's level), and run over fixed blocks
//! of pairs on the backend's rayon pool by `blocks.rs`. Loss sums accumulate in `f64` per
//! block in a fixed order, so the result does not depend on the number of threads.

use crate::blocks::{Up, drive};
use crate::{CpuBackend, loss_of, run_pair, split_io};
use math::{IntPow, PairParams};
use rayon::prelude::*;
use smoothloss_core::backend::BoxLossOps;

use smoothloss_core::{
    BoxFormat, BoxLoss, BoxLossKind, CiouConvention, IouCall, Loss, PairCall, Parts, Reduction,
    Result, Upstream, WiseIouState,
};

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
    focused(backend, cfg, None, n, pred, target, upstream, grad)
}

/// Wise-IoU v3's focusing coefficient in a kernel (`BOX-24`): the updated running mean and the
/// focusing constants.
#[derive(Debug, Clone, Copy)]
struct Focus {
    mean: f64,
    ln_alpha: f64,
    delta: f64,
}

/// [`box_loss`], each pair's loss and gradient times Wise-IoU v3's focusing coefficient when
/// `focus` is given.
#[allow(clippy::too_many_arguments)]
fn focused(
    backend: &CpuBackend,
    cfg: &BoxLoss,
    focus: Option<Focus>,
    n: usize,
    pred: &[f32],
    target: &[f32],
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    // Every kind has hand-derived f32 kernels: the plain one, the one with the cheap options
    // and those with Inner-IoU and / or alpha-IoU (`kernels::Options`), which compose at run time.
    let m = &cfg.options.modifiers;
    let ciou_mmdet =
        cfg.kind == BoxLossKind::Ciou && cfg.options.ciou == CiouConvention::Mmdetection;
    let some = m.focaler.is_some() || m.focal_gamma.is_some() || ciou_mmdet;
    let options = if m.alpha_power.is_some() && (m.inner_ratio.is_some() || some) {
        kernels::Options::InnerAlpha
    } else if m.inner_ratio.is_some() {
        kernels::Options::Inner
    } else if m.alpha_power.is_some() {
        kernels::Options::Alpha
    } else if some {
        kernels::Options::Some
    } else {
        kernels::Options::Plain
    };
    let f = kernels::select_block(cfg.kind, cfg.format, grad.is_some(), options);
    let (thr, wlow) = match cfg.threshold_weight {
        Some(tw) => (tw.threshold as f32, (1.0 - tw.alpha) as f32),
        None => (f32::NEG_INFINITY, 1.0),
    };
    let [fd, fu] = m.focaler.unwrap_or([0.0, 1.0]);
    let fc = focus.unwrap_or(Focus {
        mean: 1.0,
        ln_alpha: 0.0,
        delta: 1.0,
    });
    // Integer powers of alpha-IoU are multiplied out (`IntPow`); others take the ln/exp path.
    let ipow = m.alpha_power.and_then(IntPow::of);
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
        focus: focus.is_some(),
        inv_mean: (1.0 / fc.mean) as f32,
        ln_alpha: fc.ln_alpha as f32,
        delta: fc.delta as f32,
        inv_delta: (1.0 / fc.delta) as f32,
        inner: m.inner_ratio.is_some(),
        inner_ratio: m.inner_ratio.unwrap_or(1.0) as f32,
        alpha_on: m.alpha_power.is_some(),
        alpha: m.alpha_power.unwrap_or(1.0) as f32,
        alpha_int: ipow.is_some(),
        alpha_ipow: ipow.unwrap_or_else(IntPow::one),
        smooth_point: cfg.options.smooth_point as f32,
        inv_smooth_point: (1.0 / cfg.options.smooth_point) as f32,
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

/// Wise-IoU v3 fused (`BOX-24`): pass 1 the plain IoU losses (forward only, the `f32` IoU
/// kernel) summed in `f64` in the kernels' fixed order (so the running mean does not depend on
/// the thread count); pass 2 the Wise-IoU v1 kernel (the plain one unless other options are
/// set) with each pair's focusing coefficient computed in the kernel from its own `1 - IoU`
/// (the same `f32` value as pass 1's) and applied as a detached weight. Neither pass allocates per pair (unless a pair is not
/// finite).
fn wise_iou_v3(
    backend: &CpuBackend,
    call: PairCall<'_, BoxLoss, f32>,
    state: &mut WiseIouState,
) -> Loss {
    let Parts {
        plan,
        io,
        with: target,
        upstream,
    } = call.into_parts();
    let cfg = plan.cfg;
    let n = plan.items;
    let (input, grad) = split_io(io);
    let iou_cfg = BoxLoss {
        kind: BoxLossKind::Iou,
        threshold_weight: None,
        reduction: Reduction::Sum,
        options: Default::default(),
        ..*cfg
    };
    // The sum of the IoU losses in the kernels' fixed order (blocks of pairs, eight lanes
    // each): finite exactly when every pair's is (each lies in [0, 2]); otherwise the pairs
    // with a non-finite loss are left out, from the per-pair values.
    let sum = box_loss(backend, &iou_cfg, n, &input, target, Upstream::ONE, None)[0];
    let mean = if sum.is_finite() {
        (1.0 - state.momentum) * state.mean + state.momentum * (sum / n as f64)
    } else {
        let per_pair = BoxLoss {
            reduction: Reduction::None,
            ..iou_cfg
        };
        state.updated_mean(&box_loss(
            backend,
            &per_pair,
            n,
            &input,
            target,
            Upstream::ONE,
            None,
        ))
    };
    let focus = Focus {
        mean,
        ln_alpha: state.alpha.ln(),
        delta: state.delta,
    };
    let values = focused(backend, cfg, Some(focus), n, &input, target, upstream, grad);
    state.mean = mean;
    loss_of(plan.reduction(), values)
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

    fn run_wise_iou_v3(
        &self,
        call: PairCall<'_, BoxLoss, f32>,
        state: &mut WiseIouState,
    ) -> Result<Loss> {
        Ok(wise_iou_v3(self, call, state))
    }

    fn run_box_iou(&self, call: IouCall<'_, f32>) -> Result<()> {
        let (plan, boxes1, boxes2, out) = call.into_parts();
        if plan.n > 0 && plan.m > 0 {
            box_iou(self, plan.format, (plan.n, plan.m), boxes1, boxes2, out);
        }
        Ok(())
    }
}
