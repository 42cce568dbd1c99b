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
use burn_backend::{Backend, Scalar, Shape, TensorData, TensorMetadata};
use burn_dispatch::{DispatchKindConversion, DispatchTensor};
use burn_tensor::Tensor;

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
    let target: Shape = if s.width {
        let r = gshape.num_dims();
        gshape
            .iter()
            .enumerate()
            .map(|(i, &d)| if i + 1 == r { 1 } else { d })
            .collect()
    } else {
        gshape.clone()
    };
    B::float_mul(s.grad, B::float_reshape(up, target))
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

/// Records the loss values `values` with the kept gradient `grad` on `x`'s node, when `x` is an
/// `Autodiff<B, C>` tensor (else gives `x` back).
fn attach_as<B: Backend, C: CheckpointStrategy, const D: usize>(
    x: Tensor<D>,
    values: TensorData,
    grad: TensorData,
    width: bool,
    per_item: bool,
) -> Result<Tensor<1>, Unattached<D>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<B, C>>,
{
    let Ok(prim) = x.clone().try_into_primitive::<Autodiff<B, C>>() else {
        return Err(Box::new((x, values, grad)));
    };
    let device = prim.primitive().device();
    let (_, guard) = prim.into_parts();
    let values = B::float_from_data(values, &device);
    let grad = B::float_from_data(grad, &device);
    let out = match KeptGradient
        .prepare::<C>([guard])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            State {
                grad,
                width,
                per_item,
            },
            values,
        ),
        OpsKind::UnTracked(prep) => prep.finish(values),
    };
    Ok(Tensor::<1>::from_primitive::<Autodiff<B, C>>(out))
}

/// What [`attach`] gives back when `x` is not on the backend: the input, values, gradient.
pub(crate) type Unattached<const D: usize> = Box<(Tensor<D>, TensorData, TensorData)>;

/// [`attach_as`] for every checkpointing strategy.
pub(crate) fn attach<B: Backend, const D: usize>(
    x: Tensor<D>,
    values: TensorData,
    grad: TensorData,
    width: bool,
    per_item: bool,
) -> Result<Tensor<1>, Unattached<D>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<B, NoCheckpointing>>
        + DispatchKindConversion<Autodiff<B, BalancedCheckpointing>>,
{
    match attach_as::<B, NoCheckpointing, D>(x, values, grad, width, per_item) {
        Ok(t) => Ok(t),
        Err(back) => {
            let (x, v, g) = *back;
            attach_as::<B, BalancedCheckpointing, D>(x, v, g, width, per_item)
        }
    }
}
