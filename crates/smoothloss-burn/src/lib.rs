//! smoothloss's fused losses for [burn](https://burn.dev)'s tensors and autodiff.
//!
//! ```
//! use burn_tensor::{Device, Int, Tensor};
//! use smoothloss_burn::{CrossEntropy, cross_entropy};
//!
//! let device = Device::flex().autodiff();
//! let logits = Tensor::<2>::from_data([[2.0_f32, 0.5, -1.0], [0.1, 0.2, 0.3]], &device).require_grad();
//! let targets = Tensor::<1, Int>::from_data([0_i64, 2], &device);
//! let loss = cross_entropy(logits.clone(), targets, &CrossEntropy::smooth_loss(0.1))?;
//! let grads = loss.backward();
//! assert_eq!(logits.grad(&grads).unwrap().dims(), [2, 3]);
//! # Ok::<(), smoothloss_burn::LossError>(())
//! ```
//!
//! Each loss runs once in the forward, computing its value and its gradient together (one
//! fused pass of smoothloss's CPU backend for `f32`, the `f64` reference for `f64`, on the
//! tensors' data read to the host once). Then:
//!
//! - on an `Autodiff<Flex>` tensor (burn 0.22's CPU backend, feature `flex`, the default) or
//!   an `Autodiff<NdArray>` one (the deprecated ndarray backend, feature `ndarray`) the loss is recorded as a custom backward step whose state is the fused
//!   gradient: the backward hands it over as it is when the upstream gradient is the scalar 1
//!   (`loss.backward()`), or scales it in one pass;
//! - on any other autodiff tensor (CubeCL's CUDA / wgpu, LibTorch...) a fallback
//!   records the same kept gradient with burn's own ops (`v + sum(x * g) - sum(x.detach() * g)`,
//!   whose value is exactly `v` and whose gradient is `g` times the upstream), at the cost of
//!   two element-wise passes in the forward; the data still goes through the host (burn's
//!   CubeCL buffers are not cudarc `CudaSlice`s that smoothloss-cuda could run on);
//! - without autodiff (or when nothing is tracked) only the value is computed.
//!
//! Results are `Tensor<1>`: `[1]` for `mean` / `sum` (as burn's own losses), one value per
//! item under [`Reduction::None`] (rows, boxes, or every element flattened in row-major
//! order). Gradients flow to the first operand only; targets are constants. Errors are
//! smoothloss's typed [`LossError`], never a panic: shapes (`WrongShape` with both shapes),
//! targets out of range, bad parameters, empty inputs.
#![warn(missing_docs)]

mod autodiff;
mod call;
mod linear;
mod quality;

/// The burn tensor crate this crate is built against (0.22).
pub use burn_tensor;
use burn_tensor::{Int, Tensor, TensorData};
use call::{Call, CeCall, DflCall, HostOut, PairCall, Second};
pub use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, DflConvention, DistributionFocal,
    Huber, LinearCrossEntropy, LossError, PairLossCall, ProbIou, QualityFocal, Reduction,
    SigmoidFocal, SmoothL1, Varifocal, VarifocalWeight, WiseIouState,
};
use smoothloss_core::{LossConfig, Result};

/// A burn data error as smoothloss's.
fn data_err(e: impl std::fmt::Debug) -> LossError {
    LossError::Device(format!("burn tensor data: {e:?}"))
}

/// Runs `call` on `x` and records its kept gradient (see the [crate docs](crate)).
fn fused<L: Call, const D: usize>(
    call: &L,
    x: Tensor<D>,
    second: Second,
    per_item: bool,
) -> Result<Tensor<1>> {
    // The backends this crate records on: the call reads the tensor's own storage.
    #[cfg(feature = "flex")]
    let (x, second) = match autodiff::run::<burn_flex::Flex, L, D>(call, x, second, per_item)? {
        Ok(t) => return Ok(t),
        Err(back) => *back,
    };
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)] // burn 0.22 deprecates burn-ndarray for burn-flex; both are served
    let (x, second) = match autodiff::run::<burn_ndarray::NdArray, L, D>(call, x, second, per_item)?
    {
        Ok(t) => return Ok(t),
        Err(back) => *back,
    };
    let (device, dtype) = (x.device(), x.dtype());
    let tracked = x.is_tracked();
    let data = x.clone().try_into_data().map_err(data_err)?;
    let HostOut { values, grad } = call::host(call, data, second, tracked)?;
    let Some(grad) = grad else {
        return Ok(Tensor::<1>::from_data(values, (&device, dtype)));
    };
    Ok(fallback(x, values, grad, call.items_have_width(), per_item))
}

/// The fallback for any autodiff backend: `v + sum(x * g) - sum(x.detach() * g)` (per item
/// under `none`): the value `v` exactly (the two sums are the same computation), the gradient
/// `g` times the upstream gradient through burn's own backward of the product.
fn fallback<const D: usize>(
    x: Tensor<D>,
    values: TensorData,
    grad: TensorData,
    width: bool,
    per_item: bool,
) -> Tensor<1> {
    let (device, dtype) = (x.device(), x.dtype());
    let n = values.shape().iter().product::<usize>();
    let v = Tensor::<1>::from_data(values, (&device, dtype));
    let g = Tensor::<D>::from_data(grad, (&device, dtype));
    let zero = x.clone().mul(g.clone()).sub(x.detach().mul(g));
    let lin: Tensor<1> = if !per_item {
        zero.sum()
    } else if width {
        // `[items, values per item]`: cross-entropy rows, boxes, or boxes of 4 DFL rows.
        let total = zero.shape().num_elements();
        let w = total.checked_div(n).unwrap_or(0);
        zero.reshape([n, w]).sum_dim(1).reshape([n])
    } else {
        zero.reshape([n])
    };
    v.add(lin)
}

/// The class indices of an `Int` tensor.
fn classes(t: Tensor<1, Int>) -> Result<Second> {
    let d = t.try_into_data().map_err(data_err)?.convert::<i64>();
    Ok(Second::Classes(d.try_to_vec::<i64>().map_err(data_err)?))
}

/// Cross-entropy of `logits` `[N, C]` against class indices `[N]`, as PyTorch's
/// `F.cross_entropy` (`CE-*`) with every option of [`CrossEntropy`]: `[1]` for `mean` / `sum`,
/// `[N]` for `none`. burn's `CrossEntropyLossConfig::new().init(&device).forward(logits,
/// targets)` is `cross_entropy(logits, targets, &CrossEntropy::new())`.
#[doc(alias = "SmoothLoss")]
pub fn cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    cfg: &CrossEntropy,
) -> Result<Tensor<1>> {
    let per_item = cfg.reduction() == Reduction::None;
    fused(&CeCall(cfg), logits, classes(targets)?, per_item)
}

/// Cross-entropy of `logits` `[N, C]` against target distributions `probs` `[N, C]` (`CE-6`).
pub fn cross_entropy_probs(
    logits: Tensor<2>,
    probs: Tensor<2>,
    cfg: &CrossEntropy,
) -> Result<Tensor<1>> {
    let per_item = cfg.reduction() == Reduction::None;
    let q = probs.try_into_data().map_err(data_err)?;
    fused(&CeCall(cfg), logits, Second::Values(q), per_item)
}

/// Any loss on two aligned operands of one shape ([`PairLossCall`]: the box losses, smooth
/// L1, Huber, BCE with logits, sigmoid focal, and any loss that implements it).
pub fn pair_loss<C: PairLossCall, const D: usize>(
    pred: Tensor<D>,
    target: Tensor<D>,
    cfg: &C,
) -> Result<Tensor<1>> {
    let per_item = cfg.reduction() == Reduction::None;
    let y = target.try_into_data().map_err(data_err)?;
    fused(&PairCall(cfg), pred, Second::Values(y), per_item)
}

/// IoU-family box loss over aligned pairs `[N, 4]` in `cfg.format` (`BOX-*`).
pub fn box_loss(pred: Tensor<2>, target: Tensor<2>, cfg: &BoxLoss) -> Result<Tensor<1>> {
    pair_loss(pred, target, cfg)
}

/// Smooth L1, element-wise (`REG-1`, `REG-2`).
pub fn smooth_l1<const D: usize>(
    pred: Tensor<D>,
    target: Tensor<D>,
    cfg: &SmoothL1,
) -> Result<Tensor<1>> {
    pair_loss(pred, target, cfg)
}

/// Huber, element-wise (`REG-3`, `REG-4`).
pub fn huber<const D: usize>(pred: Tensor<D>, target: Tensor<D>, cfg: &Huber) -> Result<Tensor<1>> {
    pair_loss(pred, target, cfg)
}

/// BCE with logits, element-wise (`BIN-1`, `BIN-2`), targets in `[0, 1]`.
pub fn bce_with_logits<const D: usize>(
    logits: Tensor<D>,
    targets: Tensor<D>,
    cfg: &BceWithLogits,
) -> Result<Tensor<1>> {
    pair_loss(logits, targets, cfg)
}

/// Sigmoid focal loss, element-wise (`BIN-3`, `BIN-4`).
pub fn sigmoid_focal<const D: usize>(
    logits: Tensor<D>,
    targets: Tensor<D>,
    cfg: &SigmoidFocal,
) -> Result<Tensor<1>> {
    pair_loss(logits, targets, cfg)
}

/// Distribution focal loss (`DFL-*`) of logits `[rows, bins]` against one distance target per
/// row `[rows]`: ultralytics' `DFLoss(reg_max)` with [`DistributionFocal::ultralytics`] (one
/// loss per box of 4 rows, `[rows / 4]`), mmdetection's with
/// [`DistributionFocal::mmdetection`] (mean over rows).
#[doc(alias = "DFLoss")]
pub fn distribution_focal(
    logits: Tensor<2>,
    targets: Tensor<1>,
    cfg: &DistributionFocal,
) -> Result<Tensor<1>> {
    let per_item = cfg.reduction == Reduction::None;
    let y = targets.try_into_data().map_err(data_err)?;
    fused(&DflCall(cfg), logits, Second::Values(y), per_item)
}

/// `1 - ProbIoU` of oriented boxes `[N, 5]` as `(cx, cy, w, h, angle)` (`OBB-*`, ultralytics'
/// `probiou`).
pub fn probiou_loss(pred: Tensor<2>, target: Tensor<2>, cfg: &ProbIou) -> Result<Tensor<1>> {
    pair_loss(pred, target, cfg)
}

/// Pairwise IoU `[N, M]` of `[N, 4]` and `[M, 4]` boxes (`BOX-13`), not differentiable.
#[doc(alias = "bbox_iou")]
pub fn box_iou(boxes1: Tensor<2>, boxes2: Tensor<2>, format: BoxFormat) -> Result<Tensor<2>> {
    use smoothloss_core::Losses;
    let (device, dtype) = (boxes1.device(), boxes1.dtype());
    let (n, m) = (boxes1.dims()[0], boxes2.dims()[0]);
    let a = boxes1.try_into_data().map_err(data_err)?;
    let b = boxes2.try_into_data().map_err(data_err)?;
    for (what, d) in [("boxes1", &a), ("boxes2", &b)] {
        if d.shape()[1] != 4 && d.shape()[0] != 0 {
            return Err(LossError::WrongShape {
                what,
                expected: vec![d.shape()[0], 4],
                got: d.shape().to_vec(),
            });
        }
    }
    let total = smoothloss_core::error::checked_size("iou", n, m)?;
    let mut out = vec![0.0_f64; total];
    let a = a.convert::<f64>();
    let b = b.convert::<f64>();
    smoothloss_core::ReferenceBackend.box_iou(
        format,
        a.as_slice::<f64>().map_err(data_err)?,
        b.as_slice::<f64>().map_err(data_err)?,
        &mut out,
    )?;
    Ok(Tensor::<2>::from_data(
        TensorData::new(out, [n, m]),
        (&device, dtype),
    ))
}

/// The data of a float tensor as `f64` values.
fn f64_values<const D: usize>(t: Tensor<D>) -> Result<Vec<f64>> {
    let d = t.try_into_data().map_err(data_err)?.convert::<f64>();
    d.try_to_vec::<f64>().map_err(data_err)
}

/// Varifocal loss, element-wise (`QUAL-1` .. `QUAL-4`) over `logits` of any shape against
/// `scores` (the logits' shape, in `[0, 1]`) and, for ultralytics' weight
/// ([`VarifocalWeight::Ultralytics`]), the one-hot `labels` (the same shape); mmdetection's
/// weights take no labels (`None`). `[1]` for `mean` / `sum`, every element (row-major) for
/// `none`; the gradient flows to the logits, through the weight too (not detached, as in
/// both sources).
#[doc(alias = "VarifocalLoss")]
pub fn varifocal<const D: usize>(
    logits: Tensor<D>,
    scores: Tensor<D>,
    labels: Option<Tensor<D>>,
    cfg: &Varifocal,
) -> Result<Tensor<1>> {
    let labels = match labels {
        Some(l) => {
            if l.dims() != logits.dims() {
                return Err(LossError::WrongShape {
                    what: "labels",
                    expected: logits.dims().to_vec(),
                    got: l.dims().to_vec(),
                });
            }
            Some(f64_values(l)?)
        }
        None => None,
    };
    let per_item = cfg.reduction == Reduction::None;
    let s = scores.try_into_data().map_err(data_err)?;
    let call = quality::VarifocalCall { cfg, labels };
    fused(&call, logits, Second::Values(s), per_item)
}

/// Quality focal loss (`QUAL-5` .. `QUAL-7`, mmdetection's `quality_focal_loss`) of logits
/// `[rows, C]` against a label per row `[rows]` (in `[0, C]`: `C` is the background) and a
/// quality score per row `[rows]` (in `[0, 1]`): `[1]` for `mean` / `sum`, `[rows]` for
/// `none`; the gradient flows to the logits.
#[doc(alias = "QualityFocalLoss")]
pub fn quality_focal(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    scores: Tensor<1>,
    cfg: &QualityFocal,
) -> Result<Tensor<1>> {
    let per_item = cfg.reduction == Reduction::None;
    let call = quality::QflCall {
        cfg,
        scores: f64_values(scores)?,
    };
    fused(&call, logits, classes(labels)?, per_item)
}

/// Wise-IoU v3 over aligned pairs `[N, 4]` (`BOX-24`, `cfg.kind` must be
/// [`BoxLossKind::Wiou`]): Wise-IoU v1 times each pair's detached focusing coefficient, read
/// from `state`'s running mean of the IoU loss, which this batch updates before use (as the
/// author's `WIoU_Scale`). `state` is written back when the call succeeds and left as it was
/// on an error. The gradient flows to `pred`.
pub fn wise_iou_v3(
    pred: Tensor<2>,
    target: Tensor<2>,
    cfg: &BoxLoss,
    state: &mut WiseIouState,
) -> Result<Tensor<1>> {
    let per_item = cfg.reduction == Reduction::None;
    let y = target.try_into_data().map_err(data_err)?;
    let call = quality::WiseIouCall {
        cfg,
        state: std::cell::Cell::new(*state),
    };
    let out = fused(&call, pred, Second::Values(y), per_item)?;
    *state = call.state.get();
    Ok(out)
}

/// The fused linear cross-entropy (`LCE-*`) of `hidden [N, H] · weight^T` (`weight [V, H]`,
/// no bias) against class indices `[N]`, with every option of `cfg.ce`, without the `[N, V]`
/// logits: `[1]` for `mean` / `sum`, `[N]` for `none`. Gradients flow to `hidden` and
/// `weight`, recorded with burn's own ops on any autodiff backend (the value exactly the fused
/// one); `none` with a tracked `weight` is refused (`InvalidParameter`): its gradient depends
/// on the per-row upstream. `f64` through the reference, every other dtype in `f32` through
/// the CPU backend.
pub fn linear_cross_entropy(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    targets: Tensor<1, Int>,
    cfg: &LinearCrossEntropy,
) -> Result<Tensor<1>> {
    linear::linear_cross_entropy(hidden, weight, targets, cfg)
}

/// Pairwise ProbIoU `[N, M]` of oriented boxes `[N, 5]` and `[M, 5]` as `(cx, cy, w, h,
/// angle)` (`OBB-6`, ultralytics' `batch_probiou(obb1, obb2, eps)`), not differentiable;
/// computed by the `f64` reference, returned in `boxes1`'s dtype.
pub fn batch_probiou(boxes1: Tensor<2>, boxes2: Tensor<2>, eps: f64) -> Result<Tensor<2>> {
    use smoothloss_core::Losses;
    let (device, dtype) = (boxes1.device(), boxes1.dtype());
    let ([n, k1], [m, k2]) = (boxes1.dims(), boxes2.dims());
    for (what, rows, k) in [("boxes1", n, k1), ("boxes2", m, k2)] {
        if k != 5 {
            return Err(LossError::WrongShape {
                what,
                expected: vec![rows, 5],
                got: vec![rows, k],
            });
        }
    }
    let total = smoothloss_core::error::checked_size("probiou", n, m)?;
    let (a, b) = (f64_values(boxes1)?, f64_values(boxes2)?);
    let mut out = vec![0.0_f64; total];
    smoothloss_core::ReferenceBackend.batch_probiou(eps, &a, &b, &mut out)?;
    Ok(Tensor::<2>::from_data(
        TensorData::new(out, [n, m]),
        (&device, dtype),
    ))
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;
    use burn_tensor::Device;

    /// An `Autodiff<Flex>` tensor takes the custom backward (not the fallback); a tensor
    /// without autodiff does not.
    #[test]
    fn flex_autodiff_tensors_take_the_custom_backward() {
        let run = |d: &Device| {
            let z = Tensor::<2>::zeros([2, 2], d);
            let cfg = CrossEntropy::new();
            autodiff::run::<burn_flex::Flex, _, 2>(
                &CeCall(&cfg),
                z,
                Second::Classes(vec![0, 1]),
                false,
            )
            .unwrap()
            .is_ok()
        };
        assert!(run(&Device::flex().autodiff()));
        assert!(!run(&Device::flex()));
    }

    /// The fallback (burn's own ops over the kept gradient) and the custom backward give the
    /// same values and gradients, reduced and per item, upstream 1 and not 1.
    #[test]
    fn the_fallback_matches_the_custom_backward() {
        let device = Device::flex().autodiff();
        let x = vec![0.5_f64, -1.0, 2.0, 0.1, 0.2, 0.3, 1.5, -0.5, 0.0];
        let y = vec![2_i64, 0, 1];
        let v = |t: Tensor<1>| t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap();
        fn g(z: &Tensor<2>, gr: &burn_tensor::Gradients) -> Vec<f64> {
            let t = z.grad(gr).unwrap().into_data();
            t.convert::<f64>().try_to_vec::<f64>().unwrap()
        }
        for reduction in [Reduction::Mean, Reduction::None] {
            for scale in [1.0, 0.25] {
                let cfg = CrossEntropy::smooth_loss(0.1).with_reduction(reduction);
                let per_item = reduction == Reduction::None;
                let make = || {
                    let d = TensorData::new(x.clone(), [3, 3]);
                    Tensor::<2>::from_data(d, (&device, burn_tensor::DType::F64)).require_grad()
                };
                let (z1, z2) = (make(), make());
                let t = Tensor::<1, Int>::from_data(TensorData::new(y.clone(), [3]), &device);
                let custom = cross_entropy(z1.clone(), t, &cfg).unwrap();
                let data = z2.clone().into_data();
                let out =
                    call::host(&CeCall(&cfg), data, Second::Classes(y.clone()), true).unwrap();
                let fb = fallback(z2.clone(), out.values, out.grad.unwrap(), true, per_item);
                assert_eq!(v(custom.clone()), v(fb.clone()));
                let g1 = custom.mul_scalar(scale).sum().backward();
                let g2 = fb.mul_scalar(scale).sum().backward();
                let (a, b) = (g(&z1, &g1), g(&z2, &g2));
                assert!(a.iter().any(|&p| p != 0.0));
                for (p, q) in a.iter().zip(&b) {
                    assert!(
                        (p - q).abs() <= 1e-15,
                        "{reduction:?} x{scale}: {a:?} vs {b:?}"
                    );
                }
            }
        }
    }
}
