//! The custom backward (`Autodiff<B>`): the forward's fused gradient is the state of the
//! recorded step, handed to autograd as it is when the upstream gradient is the scalar 1 and
//! scaled in one pass otherwise. For burn's dispatch tensors on a backend `B` this crate knows
//! (`flex`, burn's CPU backend, and the deprecated `ndarray`), the tensor is unwrapped to its `Autodiff<B>` primitive; anything else takes
//! the fallback of `lib.rs`.

use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::tensor::FloatTensor;
use burn_backend::{Backend, DType, Scalar, Shape, TensorMetadata};
use burn_dispatch::{DispatchKindConversion, DispatchTensor};
use burn_tensor::Tensor;
use smoothloss_core::{LossError, Result};

use crate::call::{Call, Floats, HostOut, Second, host_slices};

/// The recorded step.
#[derive(Debug)]
struct KeptGradient;

/// The step's state: the fused gradient and how an upstream gradient broadcasts onto it.
#[derive(Debug, Clone)]
struct State<B: Backend> {
    grad: FloatTensor<B>,
    /// Items have a width (cross-entropy rows, boxes): a per-item upstream `[items]` scales
    /// the last dimension's every value.
    width: bool,
    /// One loss value per item (`none`).
    per_item: bool,
}

/// The upstream gradient's value when it is one element.
fn scalar_of<B: Backend>(up: &FloatTensor<B>) -> Option<f64> {
    if up.shape().num_elements() != 1 {
        return None;
    }
    let data = burn_backend::try_read_sync(B::float_into_data(up.clone()))?.ok()?;
    data.convert::<f64>()
        .try_to_vec::<f64>()
        .ok()?
        .first()
        .copied()
}

/// `grad` scaled by `up`: no pass when `up` is the scalar 1.
fn scaled<B: Backend>(s: State<B>, up: FloatTensor<B>) -> FloatTensor<B> {
    let gshape = s.grad.shape();
    if !s.per_item {
        if let Some(v) = scalar_of::<B>(&up) {
            return if v == 1.0 {
                s.grad
            } else {
                B::float_mul_scalar(s.grad, Scalar::Float(v))
            };
        }
        let ones: Shape = gshape.iter().map(|_| 1usize).collect();
        return B::float_mul(s.grad, B::float_reshape(up, ones));
    }
    if !s.width {
        return B::float_mul(s.grad, B::float_reshape(up, gshape));
    }
    // Items with a width: the gradient seen as `[items, values per item]`.
    let items = up.shape().num_elements();
    let width = gshape.num_elements().checked_div(items).unwrap_or(0);
    let g = B::float_reshape(s.grad, Shape::from([items, width]));
    let g = B::float_mul(g, B::float_reshape(up, Shape::from([items, 1])));
    B::float_reshape(g, gshape)
}

impl<B: Backend> Backward<B, 1> for KeptGradient {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let up = grads.consume::<B>(&ops.node);
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<B>(node.id, scaled::<B>(ops.state, up));
        }
    }
}

/// A backend whose float primitive lends its host data: the fused call reads the tensor's own
/// storage where the backend allows it (flex: a borrowed slice, no copy), else its data.
pub(crate) trait HostRead: Backend {
    /// Runs `f` on `t`'s elements in row-major order (`f32`, or `f64` for `f64` tensors).
    fn read<R>(t: &FloatTensor<Self>, f: impl FnOnce(Floats<'_>) -> Result<R>) -> Result<R>;
}

/// Runs `f` on a copy of `t`'s data (`into_data`): what a backend without borrowable storage
/// does.
fn read_copied<B: Backend, R>(
    t: &FloatTensor<B>,
    f: impl FnOnce(Floats<'_>) -> Result<R>,
) -> Result<R> {
    let data = burn_backend::try_read_sync(B::float_into_data(t.clone()))
        .ok_or_else(|| LossError::Device("burn tensor data: not readable synchronously".into()))?
        .map_err(|e| LossError::Device(format!("burn tensor data: {e:?}")))?;
    let conv = |e: burn_backend::DataError| LossError::Device(format!("burn data: {e:?}"));
    if data.dtype() == DType::F64 {
        f(Floats::F64(data.as_slice::<f64>().map_err(conv)?))
    } else {
        let data = data.convert::<f32>();
        f(Floats::F32(data.as_slice::<f32>().map_err(conv)?))
    }
}

#[cfg(feature = "flex")]
impl HostRead for burn_flex::Flex {
    fn read<R>(t: &FloatTensor<Self>, f: impl FnOnce(Floats<'_>) -> Result<R>) -> Result<R> {
        // Contiguous f32 / f64 (what a training step has): the storage itself.
        match t.dtype() {
            DType::F32 => {
                if let Some(xs) = t.as_slice::<f32>() {
                    return f(Floats::F32(xs));
                }
            }
            DType::F64 => {
                if let Some(xs) = t.as_slice::<f64>() {
                    return f(Floats::F64(xs));
                }
            }
            _ => {}
        }
        read_copied::<Self, R>(t, f)
    }
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)] // burn 0.22 deprecates burn-ndarray for burn-flex; both are served
impl HostRead for burn_ndarray::NdArray {
    fn read<R>(t: &FloatTensor<Self>, f: impl FnOnce(Floats<'_>) -> Result<R>) -> Result<R> {
        read_copied::<Self, R>(t, f)
    }
}

/// What [`run`] gives back when `x` is not an `Autodiff<B>` tensor: the input and the second
/// operand, untouched.
pub(crate) type Unattached<const D: usize> = Box<(Tensor<D>, Second)>;

/// Runs `call` on `x`'s own storage and records the loss values with the kept gradient on
/// `x`'s node, when `x` is an `Autodiff<B, C>` tensor (else gives `x` back).
fn run_as<B: HostRead, C: CheckpointStrategy, L: Call, const D: usize>(
    call: &L,
    x: Tensor<D>,
    second: Second,
    per_item: bool,
) -> Result<std::result::Result<Tensor<1>, Unattached<D>>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<B, C>>,
{
    let Ok(prim) = x.clone().try_into_primitive::<Autodiff<B, C>>() else {
        return Ok(Err(Box::new((x, second))));
    };
    let dims = x.dims();
    let (p, guard) = prim.into_parts();
    let device = p.device();
    let kind = KeptGradient
        .prepare::<C>([guard])
        .compute_bound()
        .stateful();
    let tracked = matches!(kind, OpsKind::Tracked(_));
    let HostOut { values, grad } = B::read(&p, |xs| host_slices(call, xs, &dims, second, tracked))?;
    let values = B::float_from_data(values, &device);
    let out = match (kind, grad) {
        (OpsKind::Tracked(prep), Some(grad)) => prep.finish(
            State {
                grad: B::float_from_data(grad, &device),
                width: call.items_have_width(),
                per_item,
            },
            values,
        ),
        (OpsKind::UnTracked(prep), _) => prep.finish(values),
        // `host_slices` with `want_grad` always gives a gradient.
        (OpsKind::Tracked(_), None) => {
            return Err(LossError::Device("the fused call gave no gradient".into()));
        }
    };
    Ok(Ok(Tensor::<1>::from_primitive::<Autodiff<B, C>>(out)))
}

/// [`run_as`] for every checkpointing strategy.
pub(crate) fn run<B: HostRead, L: Call, const D: usize>(
    call: &L,
    x: Tensor<D>,
    second: Second,
    per_item: bool,
) -> Result<std::result::Result<Tensor<1>, Unattached<D>>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<B, NoCheckpointing>>
        + DispatchKindConversion<Autodiff<B, BalancedCheckpointing>>,
{
    match run_as::<B, NoCheckpointing, L, D>(call, x, second, per_item)? {
        Ok(t) => Ok(Ok(t)),
        Err(back) => {
            let (x, second) = *back;
            run_as::<B, BalancedCheckpointing, L, D>(call, x, second, per_item)
        }
    }
}
