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
//! - Pairwise IoU ([`box_iou`]), forward only.
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
//! `f16`, the other losses in `f32`. Other dtypes give an error naming the supported ones.
//! Non-contiguous inputs are made contiguous once (`Tensor::contiguous`) before the call.
//!
//! Errors: shapes that do not fit are candle errors naming the loss; everything else is the
//! front door's [`LossError`](smoothloss_core::LossError) (bad parameters, targets out of
//! range, ...), wrapped in [`candle_core::Error::Wrapped`].
#![warn(missing_docs)]

mod fused;
mod host;
mod linear;

#[cfg(feature = "cuda")]
mod cuda;

/// The candle this crate is built against (0.11).
pub use candle_core;
use candle_core::{Result, Tensor};
pub use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, DflConvention, DistributionFocal,
    Huber, LinearCrossEntropy, PairLossCall, ProbIou, Reduction, SigmoidFocal, SmoothL1,
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
/// `hidden` and `weight`. A scalar for `mean` / `sum`, `[N]` for `none`; CPU only (`f32`
/// through the CPU backend, `f64` through the reference).
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

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
