//! smoothloss's fused losses as [candle](https://github.com/huggingface/candle) tensor
//! functions, in the style of `candle_nn::loss`, recorded for candle's autograd.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use smoothloss_candle::{CrossEntropy, cross_entropy};
//!
//! let logits = Var::new(&[[2.0_f32, 0.5, -1.0], [0.1, 0.2, 0.3]], &Device::Cpu)?;
//! let targets = Tensor::new(&[0_u32, 2], &Device::Cpu)?;
//! let loss = cross_entropy(&logits, &targets, &CrossEntropy::smooth_loss(0.1))?;
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&logits).unwrap().dims(), &[2, 3]);
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! Each loss runs once in the forward and computes its value and its gradient together (one
//! fused pass); the gradient is kept in the recorded op and handed to autograd by the backward
//! as it is when the upstream gradient is the scalar 1 (`loss.backward()`), or scaled by the
//! upstream gradient in one pass otherwise. When no input is tracked (no [`Var`] behind it)
//! the forward computes the value only.
//!
//! - Cross-entropy ([`cross_entropy`]): logits `[N, C]` with class indices `[N]` (`u32`, `i64`
//!   or `u8`) or probabilities `[N, C]`; every option of [`CrossEntropy`] (label smoothing,
//!   class weights, `ignore_index`, reductions).
//! - Fused linear cross-entropy ([`linear_cross_entropy`]): hidden states `[N, H]`, the
//!   classifier weight `[V, H]` and targets, without the `[N, V]` logits; gradients with
//!   respect to both `hidden` and `weight` (no bias: a candle op has at most three operands).
//! - Losses on two aligned operands of one shape ([`pair_loss`], and by name [`box_loss`],
//!   [`smooth_l1`], [`huber`], [`bce_with_logits`], [`sigmoid_focal`], [`probiou_loss`]);
//!   boxes are `[..., 4]`, oriented boxes `[..., 5]`.
//! - Distribution focal loss ([`distribution_focal`]): logits `[rows, bins]`, one distance
//!   target per row `[rows]`.
//! - Wise-IoU v3 ([`wise_iou_v3`]), stateful: the caller's [`WiseIouState`] goes in and
//!   comes back updated.
//! - The varifocal loss ([`varifocal`]: scores and, for ultralytics' weight, labels of the
//!   logits' shape) and the quality focal loss ([`quality_focal`]: logits `[rows, C]`, a label
//!   and a score per row).
//! - Pairwise IoU ([`box_iou`]) and pairwise ProbIoU ([`batch_probiou`]), forward only.
//!
//! Under [`Reduction::None`] the result has one value per item (row, box or element); else it
//! is a scalar. Gradients flow to the first operand only: targets (class indices,
//! probabilities, target boxes) are constants, as in PyTorch's `F.cross_entropy` with a
//! detached target.
//!
//! Devices and dtypes: on the CPU, `f32` runs the fused SIMD backend (`smoothloss-cpu`, rayon's
//! global pool as candle's own ops, so `RAYON_NUM_THREADS` applies) and `f64` the `f64`
//! reference; with feature `cuda`, candle's CUDA tensors run smoothloss-cuda's kernels on
//! candle's own stream, on candle's buffers (no host copy): cross-entropy in `f32`, `bf16` and
//! `f16`, the other losses in `f32` (Wise-IoU v3 alone moves its `N` IoU losses through the
//! host, where its running mean lives). Other dtypes give an error naming the supported ones.
//! Non-contiguous inputs are made contiguous once (`Tensor::contiguous`) before the call.
//!
//! Errors: shapes that do not fit are candle errors naming the loss; everything else is the
//! front door's [`LossError`](smoothloss_core::LossError) (bad parameters, targets out of
//! range, ...), wrapped in [`candle_core::Error::Wrapped`].
#![warn(missing_docs)]

mod fused;
mod host;
mod linear;
mod oriented_box;
mod quality;
mod wise_iou;

#[cfg(feature = "cuda")]
mod cuda;

/// The candle this crate is built against (0.11).
pub use candle_core;
use candle_core::{Result, Tensor};
pub use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, DflConvention, DistributionFocal,
    Huber, LinearCrossEntropy, PairLossCall, ProbIou, QualityFocal, Reduction, SigmoidFocal,
    SmoothL1, Varifocal, VarifocalWeight, WiseIouState,
};

#[cfg(doc)]
use candle_core::Var;

use fused::{CeCall, DflCall, Fused, PairCall};

/// Records `call` on `(a, b)`: the fused op when `a` is tracked, the value alone otherwise.
fn apply<L: fused::Call>(call: L, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    if a.track_op() {
        a.apply_op2(&b, Fused::new(call, true))
    } else {
        a.apply_op2_no_bwd(&b, &Fused::new(call, false))
    }
}

/// Cross-entropy of `logits` `[N, C]` against class indices `[N]` (`u32`, `i64`, `u8`) or
/// probabilities `[N, C]` (the logits' dtype), as PyTorch's `F.cross_entropy` (`CE-*`).
/// A scalar for `mean` / `sum`, `[N]` for `none`.
///
/// `candle_nn::loss::cross_entropy(&logits, &targets)` is
/// `cross_entropy(&logits, &targets, &CrossEntropy::new())`.
#[doc(alias = "SmoothLoss")]
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, cfg: &CrossEntropy) -> Result<Tensor> {
    apply(CeCall(cfg.clone()), logits, targets)
}

/// The cross-entropy of `hidden [N, H] · weight^T` (`weight [V, H]`, candle_nn's `Linear`
/// layout, no bias) against class indices `[N]` or probabilities `[N, V]`, with every option
/// of `cfg.ce`, without materialising the `[N, V]` logits (`LCE-*`); gradients flow to
/// `hidden` and `weight`. A scalar for `mean` / `sum`, `[N]` for `none`. On the CPU `f32`
/// through the CPU backend and `f64` through the reference; on candle's CUDA device (feature
/// `cuda`) `f32`, `bf16` or `f16` with class targets.
///
/// Under `mean` / `sum` the forward computes the value and both gradients in one call; under
/// `none` the weight's gradient depends on the per-row upstream gradient, so the forward
/// computes the values alone and the backward runs the fused call once with it.
pub fn linear_cross_entropy(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &Tensor,
    cfg: &LinearCrossEntropy,
) -> Result<Tensor> {
    let (h, w, t) = (
        hidden.contiguous()?,
        weight.contiguous()?,
        targets.contiguous()?,
    );
    let want_grad = h.track_op() || w.track_op();
    let op = linear::LinearFused {
        cfg: cfg.clone(),
        want_grad,
        kept: std::sync::Mutex::new(None),
    };
    if want_grad {
        h.apply_op3(&w, &t, op)
    } else {
        h.apply_op3_no_bwd(&w, &t, &op)
    }
}

/// Any loss on two aligned operands of the same shape ([`PairLossCall`]: the box losses,
/// smooth L1, Huber, BCE with logits, sigmoid focal, and any loss that implements it). A
/// scalar for `mean` / `sum`; for `none` one value per element, or per box (`[..., 4]` gives
/// `[...]`).
pub fn pair_loss<C: PairLossCall>(pred: &Tensor, target: &Tensor, cfg: &C) -> Result<Tensor> {
    apply(PairCall(cfg.clone()), pred, target)
}

/// IoU-family box loss over aligned pairs `pred`, `target` `[..., 4]` in `cfg.format`
/// (`BOX-*`); the gradient flows to `pred`.
pub fn box_loss(pred: &Tensor, target: &Tensor, cfg: &BoxLoss) -> Result<Tensor> {
    pair_loss(pred, target, cfg)
}

/// Smooth L1 loss, element-wise (`REG-1`, `REG-2`; `F.smooth_l1_loss`).
pub fn smooth_l1(pred: &Tensor, target: &Tensor, cfg: &SmoothL1) -> Result<Tensor> {
    pair_loss(pred, target, cfg)
}

/// Huber loss, element-wise (`REG-3`, `REG-4`; `F.huber_loss`).
pub fn huber(pred: &Tensor, target: &Tensor, cfg: &Huber) -> Result<Tensor> {
    pair_loss(pred, target, cfg)
}

/// Binary cross-entropy with logits, element-wise (`BIN-1`, `BIN-2`), targets in `[0, 1]`;
/// finite for large logits (`candle_nn::loss::binary_cross_entropy_with_logit` is not).
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor, cfg: &BceWithLogits) -> Result<Tensor> {
    pair_loss(logits, targets, cfg)
}

/// Sigmoid focal loss, element-wise (`BIN-3`, `BIN-4`; `torchvision.ops.sigmoid_focal_loss`).
pub fn sigmoid_focal(logits: &Tensor, targets: &Tensor, cfg: &SigmoidFocal) -> Result<Tensor> {
    pair_loss(logits, targets, cfg)
}

/// Distribution focal loss (`DFL-*`) of logits `[rows, bins]` against one distance target per
/// row `[rows]` (the logits' dtype): ultralytics' `DFLoss(reg_max)` with
/// [`DistributionFocal::ultralytics`] (one loss per box of 4 rows, `[rows / 4]`), mmdetection's
/// with [`DistributionFocal::mmdetection`] (mean over rows). The gradient flows to the
/// logits. On CUDA this loss has no kernel yet (an error says so).
#[doc(alias = "DFLoss")]
pub fn distribution_focal(
    logits: &Tensor,
    targets: &Tensor,
    cfg: &DistributionFocal,
) -> Result<Tensor> {
    apply(DflCall(*cfg), logits, targets)
}

/// `1 - ProbIoU` of oriented boxes `pred`, `target` `[..., 5]` as `(cx, cy, w, h, angle)`
/// (`OBB-*`, ultralytics' `probiou`; CIoU variant with `cfg.ciou`); the gradient flows to
/// `pred`. On CUDA this loss has no kernel yet (an error says so).
pub fn probiou_loss(pred: &Tensor, target: &Tensor, cfg: &ProbIou) -> Result<Tensor> {
    pair_loss(pred, target, cfg)
}

/// Pairwise IoU of `boxes1` `[N, 4]` and `boxes2` `[M, 4]` in `format` (`BOX-13`,
/// `torchvision.ops.box_iou`): `[N, M]`, not differentiable (no gradient is recorded).
#[doc(alias = "bbox_iou")]
pub fn box_iou(boxes1: &Tensor, boxes2: &Tensor, format: BoxFormat) -> Result<Tensor> {
    let (a, b) = (boxes1.contiguous()?, boxes2.contiguous()?);
    a.apply_op2_no_bwd(&b, &fused::Iou(format))
}

/// Wise-IoU v3 over aligned pairs `pred`, `target` `[..., 4]` (`BOX-24`, `cfg.kind` must be
/// [`BoxLossKind::Wiou`]): Wise-IoU v1 times each pair's detached focusing coefficient, read
/// from `state`'s running mean of the IoU loss, which this batch updates before use (as the
/// author's `WIoU_Scale`). `state` is written back when the forward succeeds and left as it
/// was on an error. The gradient flows to `pred`.
pub fn wise_iou_v3(
    pred: &Tensor,
    target: &Tensor,
    cfg: &BoxLoss,
    state: &mut WiseIouState,
) -> Result<Tensor> {
    let (a, b) = (pred.contiguous()?, target.contiguous()?);
    let shared = std::sync::Arc::new(std::sync::Mutex::new(*state));
    let op = wise_iou::WiseIouOp {
        cfg: *cfg,
        state: shared.clone(),
        want_grad: a.track_op(),
        grad: std::sync::Mutex::new(None),
    };
    let out = if a.track_op() {
        a.apply_op2(&b, op)?
    } else {
        a.apply_op2_no_bwd(&b, &op)?
    };
    *state = *shared.lock().unwrap_or_else(|p| p.into_inner());
    Ok(out)
}

/// Records a quality loss on `logits` and the other operands (two or three in all).
fn quality_op(
    loss: quality::Quality,
    logits: &Tensor,
    rest: [Option<&Tensor>; 2],
) -> Result<Tensor> {
    let x = logits.contiguous()?;
    let track = x.track_op();
    let op = quality::QualityOp::new(loss, track);
    match rest {
        [Some(b), Some(c)] => {
            let (b, c) = (b.contiguous()?, c.contiguous()?);
            if track {
                x.apply_op3(&b, &c, op)
            } else {
                x.apply_op3_no_bwd(&b, &c, &op)
            }
        }
        [Some(b), None] | [None, Some(b)] => {
            let b = b.contiguous()?;
            if track {
                x.apply_op2(&b, op)
            } else {
                x.apply_op2_no_bwd(&b, &op)
            }
        }
        [None, None] => candle_core::bail!("smoothloss: a quality loss needs its targets"),
    }
}

/// Varifocal loss, element-wise (`QUAL-1` .. `QUAL-4`) over `logits` of any shape against
/// `scores` (the logits' shape and dtype, in `[0, 1]`) and, for ultralytics' weight
/// ([`VarifocalWeight::Ultralytics`]), the one-hot `labels` (the same shape and dtype);
/// mmdetection's weights take no labels (`None`). A scalar for `mean` / `sum`, the logits'
/// shape for `none`; the gradient flows to the logits (through the weight too, not detached,
/// as in both sources).
#[doc(alias = "VarifocalLoss")]
pub fn varifocal(
    logits: &Tensor,
    scores: &Tensor,
    labels: Option<&Tensor>,
    cfg: &Varifocal,
) -> Result<Tensor> {
    quality_op(
        quality::Quality::Varifocal(*cfg),
        logits,
        [Some(scores), labels],
    )
}

/// Quality focal loss (`QUAL-5` .. `QUAL-7`, mmdetection's `quality_focal_loss`) of logits
/// `[rows, C]` against a label per row `[rows]` (`u32`, `i64` or `u8`, in `[0, C]`: `C` is the
/// background) and a quality score per row `[rows]` (the logits' dtype, in `[0, 1]`). A scalar
/// for `mean` / `sum`, `[rows]` for `none`; the gradient flows to the logits.
#[doc(alias = "QualityFocalLoss")]
pub fn quality_focal(
    logits: &Tensor,
    labels: &Tensor,
    scores: &Tensor,
    cfg: &QualityFocal,
) -> Result<Tensor> {
    quality_op(
        quality::Quality::Focal(*cfg),
        logits,
        [Some(labels), Some(scores)],
    )
}

/// Pairwise ProbIoU of oriented boxes `boxes1` `[N, 5]` and `boxes2` `[M, 5]` as
/// `(cx, cy, w, h, angle)` (`OBB-6`, ultralytics' `batch_probiou(obb1, obb2, eps)`): `[N, M]`,
/// not differentiable (no gradient is recorded).
pub fn batch_probiou(boxes1: &Tensor, boxes2: &Tensor, eps: f64) -> Result<Tensor> {
    let (a, b) = (boxes1.contiguous()?, boxes2.contiguous()?);
    a.apply_op2_no_bwd(&b, &oriented_box::BatchProbIou(eps))
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
