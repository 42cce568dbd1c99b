//! One candle op per call shape, generic over the loss: [`Fused`] runs the loss once in the
//! forward (value and gradient together), keeps the gradient, and hands it to autograd in the
//! backward: as it is when the upstream gradient is the scalar 1, scaled in one pass otherwise.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use smoothloss_core::{CrossEntropy, Element, Input, Loss, LossConfig, Losses, PairLossCall};

use crate::host;

/// The second operand of a call, on the host.
pub(crate) enum Second<'a, T> {
    /// Class indices (cross-entropy).
    Classes(&'a [i64]),
    /// Values of the first operand's dtype: probability targets, box or element targets.
    Values(&'a [T]),
}

/// What a call shape runs on candle's CUDA device (feature `cuda`); nothing without it.
#[cfg(feature = "cuda")]
pub(crate) use crate::cuda::CudaCall as DeviceCall;
/// What a call shape runs on candle's CUDA device (feature `cuda`); nothing without it.
#[cfg(not(feature = "cuda"))]
pub(crate) trait DeviceCall {}
#[cfg(not(feature = "cuda"))]
impl<T> DeviceCall for T {}

/// A loss call shape: how the candle shapes map onto the front door's, and the call itself.
pub(crate) trait Call: DeviceCall + Send + Sync + 'static {
    /// The op's name in candle's graph.
    fn name(&self) -> &'static str;
    /// Values per item of the first operand: the last dimension for cross-entropy (classes)
    /// and boxes (4), `None` for element-wise losses (every element is an item).
    fn item_width(&self) -> Option<usize>;
    /// Whether the loss returns one value per item (`none`).
    fn per_item(&self) -> bool;
    /// The dimensions of the per-item loss (`none`) for a first operand of dims `first`
    /// (checked): the first operand's without its last dimension when items have a width,
    /// else all of them.
    fn item_dims(&self, first: &[usize]) -> Vec<usize> {
        match self.item_width() {
            Some(_) => first[..first.len().saturating_sub(1)].to_vec(),
            None => first.to_vec(),
        }
    }
    /// Checks the operands' shapes against each other (before any data is read).
    fn check_shapes(&self, first: &[usize], second: &[usize], classes_second: bool) -> Result<()>;
    /// Runs the loss on host slices (`dims`: the first operand's shape, checked).
    fn run<T: Element, B: Losses<T>>(
        &self,
        backend: &B,
        input: Input<'_, T>,
        dims: &[usize],
        second: Second<'_, T>,
    ) -> smoothloss_core::Result<Loss>;
}

/// Cross-entropy over logits `[N, C]`, class indices `[N]` or probabilities `[N, C]`.
pub(crate) struct CeCall(pub CrossEntropy);

impl Call for CeCall {
    fn name(&self) -> &'static str {
        "smoothloss-cross_entropy"
    }
    fn item_width(&self) -> Option<usize> {
        Some(0) // the last dimension, whatever it is
    }
    fn per_item(&self) -> bool {
        self.0.reduction() == smoothloss_core::Reduction::None
    }
    fn check_shapes(&self, first: &[usize], second: &[usize], classes: bool) -> Result<()> {
        if first.len() != 2 {
            candle_core::bail!("smoothloss cross_entropy: logits must be [N, C], got {first:?}");
        }
        let want: &[usize] = if classes { &first[..1] } else { first };
        if second != want {
            candle_core::bail!(
                "smoothloss cross_entropy: targets must be {want:?} for logits {first:?}, got {second:?}"
            );
        }
        Ok(())
    }
    fn run<T: Element, B: Losses<T>>(
        &self,
        backend: &B,
        input: Input<'_, T>,
        dims: &[usize],
        second: Second<'_, T>,
    ) -> smoothloss_core::Result<Loss> {
        // `[N, C]` (checked by `check_shapes`).
        let input = match *dims {
            [n, c] => input.shaped(n, c),
            _ => input,
        };
        match second {
            Second::Classes(t) => backend.cross_entropy(&self.0, input, t),
            Second::Values(p) => {
                backend.cross_entropy(&self.0, input, smoothloss_core::CeTargets::Probs(p))
            }
        }
    }
}

/// Any loss on two aligned operands of the same shape ([`PairLossCall`]).
pub(crate) struct PairCall<C>(pub C);

impl<C: PairLossCall> Call for PairCall<C> {
    fn name(&self) -> &'static str {
        C::OP.name()
    }
    fn item_width(&self) -> Option<usize> {
        (C::ITEM_WIDTH > 1).then_some(C::ITEM_WIDTH)
    }
    fn per_item(&self) -> bool {
        self.0.reduction() == smoothloss_core::Reduction::None
    }
    fn check_shapes(&self, first: &[usize], second: &[usize], classes: bool) -> Result<()> {
        let name = C::OP.name();
        if classes {
            candle_core::bail!("smoothloss {name}: the target must be a float tensor");
        }
        if first != second {
            candle_core::bail!(
                "smoothloss {name}: target shape {second:?} differs from the input's {first:?}"
            );
        }
        if C::ITEM_WIDTH > 1 && first.last() != Some(&C::ITEM_WIDTH) {
            candle_core::bail!(
                "smoothloss {name}: the last dimension must be {}, got {first:?}",
                C::ITEM_WIDTH
            );
        }
        Ok(())
    }
    fn run<T: Element, B: Losses<T>>(
        &self,
        backend: &B,
        input: Input<'_, T>,
        dims: &[usize],
        second: Second<'_, T>,
    ) -> smoothloss_core::Result<Loss> {
        let _ = dims; // flat: the front door reads `[N]` or `[N, 4]` from the lengths
        match second {
            Second::Values(y) => self.0.call(backend, input, y),
            Second::Classes(_) => unreachable_classes(),
        }
    }
}

/// Class targets are refused by [`PairCall::check_shapes`] before any call.
fn unreachable_classes() -> smoothloss_core::Result<Loss> {
    Err(smoothloss_core::LossError::InvalidParameter {
        name: "target",
        value: f64::NAN,
        reason: "an integer target for a loss on two float operands",
    })
}

/// The shape of the loss tensor: a scalar, or the items' dimensions under `none`.
pub(crate) fn out_shape<L: Call>(call: &L, first: &[usize]) -> Shape {
    if !call.per_item() {
        return Shape::from(());
    }
    Shape::from(call.item_dims(first))
}

/// The distribution focal loss over logits `[rows, bins]` and one distance target per row
/// `[rows]` (`DFL-*`): one loss per box (ultralytics: 4 rows) or per row (mmdetection).
pub(crate) struct DflCall(pub smoothloss_core::DistributionFocal);

impl Call for DflCall {
    fn name(&self) -> &'static str {
        "smoothloss-distribution_focal"
    }
    fn item_width(&self) -> Option<usize> {
        Some(0) // `bins * rows_per_item` values per item
    }
    fn per_item(&self) -> bool {
        self.0.reduction == smoothloss_core::Reduction::None
    }
    fn item_dims(&self, first: &[usize]) -> Vec<usize> {
        vec![first[0] / self.0.convention.rows_per_item()]
    }
    fn check_shapes(&self, first: &[usize], second: &[usize], classes: bool) -> Result<()> {
        if classes {
            candle_core::bail!("smoothloss distribution_focal: the targets must be a float tensor");
        }
        let [rows, _] = *first else {
            candle_core::bail!(
                "smoothloss distribution_focal: logits must be [rows, bins], got {first:?}"
            );
        };
        if second != [rows] {
            candle_core::bail!(
                "smoothloss distribution_focal: targets must be [{rows}] for logits {first:?}, got {second:?}"
            );
        }
        let per = self.0.convention.rows_per_item();
        if !rows.is_multiple_of(per) {
            candle_core::bail!(
                "smoothloss distribution_focal: {rows} rows are not whole boxes of {per} rows"
            );
        }
        Ok(())
    }
    fn run<T: Element, B: Losses<T>>(
        &self,
        backend: &B,
        input: Input<'_, T>,
        dims: &[usize],
        second: Second<'_, T>,
    ) -> smoothloss_core::Result<Loss> {
        let input = match *dims {
            [r, b] => input.shaped(r, b),
            _ => input,
        };
        match second {
            Second::Values(y) => backend.distribution_focal(&self.0, input, y),
            Second::Classes(_) => unreachable_classes(),
        }
    }
}

/// The recorded op: the loss, and the gradient its forward computed (kept for the backward).
pub(crate) struct Fused<L> {
    pub(crate) call: L,
    /// Whether the forward computes the gradient (some input is tracked).
    pub(crate) want_grad: bool,
    pub(crate) grad: Mutex<Option<Tensor>>,
}

impl<L: Call> Fused<L> {
    pub(crate) fn new(call: L, want_grad: bool) -> Self {
        Self {
            call,
            want_grad,
            grad: Mutex::new(None),
        }
    }

    /// Keeps the forward's gradient for the backward.
    pub(crate) fn keep(&self, grad: Option<Tensor>) {
        keep(&self.grad, grad);
    }
}

/// Stores what a forward computed for the backward (every op's kept gradient), when there is
/// one; a poisoned lock is taken over (the slot holds plain data).
pub(crate) fn keep<G>(slot: &std::sync::Mutex<Option<G>>, value: Option<G>) {
    if let Some(v) = value {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    }
}

/// The gradient with respect to the first operand: the kept one when `grad_res` is the scalar
/// 1 (no pass over it), else scaled by `grad_res` in one broadcast multiplication (a scalar, or
/// one value per item under `none`: the kept gradient seen as `[items, values per item]`).
pub(crate) fn scaled(kept: Tensor, grad_res: &Tensor, items_have_width: bool) -> Result<Tensor> {
    let kept = if kept.dtype() == grad_res.dtype() {
        kept
    } else {
        kept.to_dtype(grad_res.dtype())?
    };
    if grad_res.rank() == 0 {
        if grad_res
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?
            == 1.0
        {
            return Ok(kept);
        }
        return kept.broadcast_mul(grad_res);
    }
    if items_have_width {
        let items = grad_res.elem_count();
        let width = kept.elem_count().checked_div(items).unwrap_or(0);
        kept.reshape((items, width))?
            .broadcast_mul(&grad_res.reshape((items, 1))?)?
            .reshape(kept.shape())
    } else {
        kept.mul(grad_res)
    }
}

impl<L: Call> CustomOp2 for Fused<L> {
    fn name(&self) -> &'static str {
        self.call.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (out, grad) = host::forward(&self.call, s1, l1, s2, l2, self.want_grad)?;
        self.keep(grad);
        Ok((out, out_shape(&self.call, l1.dims())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (out, grad) = crate::cuda::forward(&self.call, s1, l1, s2, l2, self.want_grad)?;
        self.keep(grad);
        Ok((out, out_shape(&self.call, l1.dims())))
    }

    fn bwd(
        &self,
        _arg1: &Tensor,
        _arg2: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let kept = self.grad.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(kept) = kept else {
            candle_core::bail!(
                "smoothloss {}: no gradient was kept in the forward",
                self.call.name()
            );
        };
        let g = scaled(kept, grad_res, self.call.item_width().is_some())?;
        // Targets are constants: smoothloss differentiates the first operand only.
        Ok((Some(g), None))
    }
}

/// Pairwise IoU `[N, M]` of `[N, 4]` and `[M, 4]` boxes (forward only).
pub(crate) struct Iou(pub smoothloss_core::BoxFormat);

/// `(N, M)` of a pairwise IoU.
pub(crate) fn iou_dims(a: &[usize], b: &[usize]) -> Result<(usize, usize)> {
    match (a, b) {
        ([n, 4], [m, 4]) => Ok((*n, *m)),
        _ => candle_core::bail!(
            "smoothloss box_iou: boxes must be [N, 4] and [M, 4], got {a:?} and {b:?}"
        ),
    }
}

impl CustomOp2 for Iou {
    fn name(&self) -> &'static str {
        "smoothloss-box_iou"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, m) = iou_dims(l1.dims(), l2.dims())?;
        let out = host::box_iou(self.0, s1, l1, s2, l2, n * m)?;
        Ok((out, Shape::from((n, m))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, m) = iou_dims(l1.dims(), l2.dims())?;
        let out = crate::cuda::box_iou(self.0, s1, l1, s2, l2, n * m)?;
        Ok((out, Shape::from((n, m))))
    }
}
