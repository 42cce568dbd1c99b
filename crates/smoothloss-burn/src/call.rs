//! The call shapes (cross-entropy; any loss on two aligned operands) on host data: what every
//! path of this crate runs, the custom backward and the fallback alike.

use burn_backend::{DType, TensorData};
use smoothloss_core::{
    CeTargets, CrossEntropy, DistributionFocal, Element, Input, Loss, LossError, Losses,
    PairLossCall, ReferenceBackend, Result,
};
use smoothloss_cpu::CpuBackend;
use std::sync::OnceLock;

/// The CPU backend on rayon's global pool.
pub(crate) fn cpu() -> &'static CpuBackend {
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

pub(crate) fn shape_error(what: &'static str, expected: &[usize], got: &[usize]) -> LossError {
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

/// The distribution focal loss over logits `[rows, bins]` and one target per row `[rows]`.
pub(crate) struct DflCall<'c>(pub &'c DistributionFocal);

impl Call for DflCall<'_> {
    fn items_have_width(&self) -> bool {
        true
    }
    fn check_shapes(&self, first: &[usize], second: &[usize], classes: bool) -> Result<()> {
        let rows = first.first().copied().unwrap_or(0);
        if classes || second != [rows] {
            return Err(shape_error("targets", &[rows], second));
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
            [r, b] => input.shaped(r, b),
            _ => input,
        };
        match second {
            SecondRef::Values(y) => backend.distribution_focal(self.0, input, y),
            SecondRef::Classes(_) => Err(LossError::InvalidParameter {
                name: "targets",
                value: f64::NAN,
                reason: "integer distribution targets (they are continuous distances)",
            }),
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

/// The first operand on the host, borrowed: `f32` through the CPU backend, `f64` through the
/// `f64` reference.
pub(crate) enum Floats<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Runs `call` on host data: `f64` data through the `f64` reference, everything else in
/// `f32` through the CPU backend (`f16` / `bf16` widened once). The data is the tensor's
/// own (read by `into_data`): backends whose storage this crate can borrow use
/// [`host_slices`] on it instead (no copy).
pub(crate) fn host<L: Call>(
    call: &L,
    x: TensorData,
    second: Second,
    want_grad: bool,
) -> Result<HostOut> {
    let conv = |e: burn_backend::DataError| LossError::Device(format!("burn data: {e:?}"));
    let dims = x.shape().to_vec();
    if x.dtype() == DType::F64 {
        let xs = x.as_slice::<f64>().map_err(conv)?;
        host_slices(call, Floats::F64(xs), &dims, second, want_grad)
    } else {
        let x = x.convert::<f32>();
        let xs = x.as_slice::<f32>().map_err(conv)?;
        host_slices(call, Floats::F32(xs), &dims, second, want_grad)
    }
}

/// Runs `call` on the first operand's elements `x` of shape `dims` (borrowed, not copied);
/// the loss values and the gradient come back as new data of `x`'s dtype (the gradient's
/// vector becomes the data without a copy).
pub(crate) fn host_slices<L: Call>(
    call: &L,
    x: Floats<'_>,
    dims: &[usize],
    second: Second,
    want_grad: bool,
) -> Result<HostOut> {
    let sdims = match &second {
        Second::Classes(c) => vec![c.len()],
        Second::Values(v) => v.shape().to_vec(),
    };
    // An empty input goes on to the front door, which reports it.
    if dims.iter().product::<usize>() != 0 {
        call.check_shapes(dims, &sdims, matches!(second, Second::Classes(_)))?;
    }
    match x {
        Floats::F64(xs) => typed(call, &ReferenceBackend, xs, dims, second, want_grad),
        Floats::F32(xs) => typed(call, cpu(), xs, dims, second, want_grad),
    }
}

fn typed<T: Element + burn_backend::Element, B: Losses<T>, L: Call>(
    call: &L,
    backend: &B,
    xs: &[T],
    dims: &[usize],
    second: Second,
    want_grad: bool,
) -> Result<HostOut> {
    let conv = |e: burn_backend::DataError| LossError::Device(format!("burn data: {e:?}"));
    let values_owned;
    let second = match second {
        Second::Classes(ref c) => SecondRef::Classes(c),
        Second::Values(v) => {
            values_owned = v.convert::<T>();
            SecondRef::Values(values_owned.as_slice::<T>().map_err(conv)?)
        }
    };
    // `vec!` of zeros is a fresh zeroed allocation (no pass over it here): the kernel writes
    // every element, and the vector then becomes the gradient's data without a copy.
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
