//! The call shapes (cross-entropy; any loss on two aligned operands) on host data: what every
//! path of this crate runs, the custom backward and the fallback alike.

use burn_backend::{DType, TensorData};
use smoothloss_core::{
    CeTargets, CrossEntropy, Element, Input, Loss, LossError, Losses, PairLossCall,
    ReferenceBackend, Result,
};
use smoothloss_cpu::CpuBackend;
use std::sync::OnceLock;

/// The CPU backend on rayon's global pool.
fn cpu() -> &'static CpuBackend {
    static CPU: OnceLock<CpuBackend> = OnceLock::new();
    CPU.get_or_init(CpuBackend::new)
}

/// The second operand on the host.
pub(crate) enum Second {
    /// Class indices.
    Classes(Vec<i64>),
    /// Float values (probabilities, targets), any float dtype (converted to the first's).
    Values(TensorData),
}

/// A loss call shape.
pub(crate) trait Call {
    /// Values per item when items have a width (the last dimension: classes, 4 for boxes).
    fn items_have_width(&self) -> bool;
    /// Checks the operands' shapes (before any data is read).
    fn check_shapes(&self, first: &[usize], second: &[usize], classes: bool) -> Result<()>;
    /// Runs the loss on host slices.
    fn run<T: Element, B: Losses<T>>(
        &self,
        backend: &B,
        input: Input<'_, T>,
        dims: &[usize],
        second: SecondRef<'_, T>,
    ) -> Result<Loss>;
}

/// A borrowed [`Second`] in the first operand's element type.
pub(crate) enum SecondRef<'a, T> {
    Classes(&'a [i64]),
    Values(&'a [T]),
}

fn shape_error(what: &'static str, expected: &[usize], got: &[usize]) -> LossError {
    LossError::WrongShape {
        what,
        expected: expected.to_vec(),
        got: got.to_vec(),
    }
}

/// Cross-entropy over logits `[N, C]`.
pub(crate) struct CeCall<'c>(pub &'c CrossEntropy);

impl Call for CeCall<'_> {
    fn items_have_width(&self) -> bool {
        true
    }
    fn check_shapes(&self, first: &[usize], second: &[usize], classes: bool) -> Result<()> {
        let want: &[usize] = if classes {
            first.get(..1).unwrap_or(first)
        } else {
            first
        };
        if second != want {
            return Err(shape_error(
                if classes { "targets" } else { "target_probs" },
                want,
                second,
            ));
        }
        Ok(())
    }
    fn run<T: Element, B: Losses<T>>(
        &self,
        backend: &B,
        input: Input<'_, T>,
        dims: &[usize],
        second: SecondRef<'_, T>,
    ) -> Result<Loss> {
        let input = match *dims {
            [n, c] => input.shaped(n, c),
            _ => input,
        };
        match second {
            SecondRef::Classes(t) => backend.cross_entropy(self.0, input, t),
            SecondRef::Values(p) => backend.cross_entropy(self.0, input, CeTargets::Probs(p)),
        }
    }
}

/// Any loss on two aligned operands of one shape.
pub(crate) struct PairCall<'c, C>(pub &'c C);

impl<C: PairLossCall> Call for PairCall<'_, C> {
    fn items_have_width(&self) -> bool {
        C::ITEM_WIDTH > 1
    }
    fn check_shapes(&self, first: &[usize], second: &[usize], _classes: bool) -> Result<()> {
        if first != second {
            return Err(shape_error("target", first, second));
        }
        if C::ITEM_WIDTH > 1 && first.last() != Some(&C::ITEM_WIDTH) {
            let mut want = first.to_vec();
            if let Some(l) = want.last_mut() {
                *l = C::ITEM_WIDTH;
            }
            return Err(shape_error("pred", &want, first));
        }
        Ok(())
    }
    fn run<T: Element, B: Losses<T>>(
        &self,
        backend: &B,
        input: Input<'_, T>,
        _dims: &[usize],
        second: SecondRef<'_, T>,
    ) -> Result<Loss> {
        match second {
            SecondRef::Values(y) => self.0.call(backend, input, y),
            SecondRef::Classes(_) => Err(LossError::InvalidParameter {
                name: "target",
                value: f64::NAN,
                reason: "an integer target for a loss on two float operands",
            }),
        }
    }
}

/// What a host call returns: the loss values (`[1]` or one per item) and the gradient (the
/// first operand's shape), both in the first operand's float dtype (`f64` for `f64` data,
/// `f32` otherwise).
pub(crate) struct HostOut {
    pub values: TensorData,
    pub grad: Option<TensorData>,
}

/// Runs `call` on host data: `f64` data through the `f64` reference, everything else in
/// `f32` through the CPU backend (`f16` / `bf16` widened once).
pub(crate) fn host<L: Call>(
    call: &L,
    x: TensorData,
    second: Second,
    want_grad: bool,
) -> Result<HostOut> {
    let dims = x.shape().to_vec();
    let sdims = match &second {
        Second::Classes(c) => vec![c.len()],
        Second::Values(v) => v.shape().to_vec(),
    };
    // An empty input goes on to the front door, which reports it.
    if dims.iter().product::<usize>() != 0 {
        call.check_shapes(&dims, &sdims, matches!(second, Second::Classes(_)))?;
    }
    if x.dtype() == DType::F64 {
        typed::<f64, _, _>(call, &ReferenceBackend, x, &dims, second, want_grad)
    } else {
        typed::<f32, _, _>(call, cpu(), x.convert::<f32>(), &dims, second, want_grad)
    }
}

fn typed<T: Element + burn_backend::Element, B: Losses<T>, L: Call>(
    call: &L,
    backend: &B,
    x: TensorData,
    dims: &[usize],
    second: Second,
    want_grad: bool,
) -> Result<HostOut> {
    let conv = |e: burn_backend::DataError| LossError::Device(format!("burn data: {e:?}"));
    let xs = x.as_slice::<T>().map_err(conv)?;
    let values_owned;
    let second = match &second {
        Second::Classes(c) => SecondRef::Classes(c),
        Second::Values(v) => {
            values_owned = v.clone().convert::<T>();
            SecondRef::Values(values_owned.as_slice::<T>().map_err(conv)?)
        }
    };
    let mut grad = if want_grad {
        vec![T::from_f64(0.0); xs.len()]
    } else {
        Vec::new()
    };
    let input = Input::new(xs);
    let input = if want_grad {
        input.with_grad(&mut grad)
    } else {
        input
    };
    let loss = call.run(backend, input, dims, second)?;
    let values: Vec<T> = loss.values().iter().map(|&v| T::from_f64(v)).collect();
    let n = values.len();
    Ok(HostOut {
        values: TensorData::new(values, [n]),
        grad: want_grad.then(|| TensorData::new(grad, dims.to_vec())),
    })
}
