//! What a loss call carries: the input with its shape and where its gradient goes
//! ([`Input`], built on [`Io`]), and what it returns ([`Loss`]).

use crate::reduction::Upstream;
use std::fmt;

/// An input buffer and where the gradient with respect to it goes, for any storage `S` (`[T]`
/// for host slices; a backend's own buffer type, such as a CUDA device slice, otherwise).
#[derive(Debug)]
pub enum Io<'a, S: ?Sized> {
    /// Read only: the call computes the loss value and no gradient.
    Read(&'a S),
    /// Read `input`, write `upstream * d(loss)/d(input)` into `grad` (the input's length).
    Separate {
        /// The input.
        input: &'a S,
        /// The gradient's destination.
        grad: &'a mut S,
    },
    /// Read the buffer, then overwrite it with the gradient (Liger-Kernel's in-place
    /// cross-entropy; saves a buffer of the input's size).
    InPlace(&'a mut S),
}

/// Where a call writes its gradient, without the buffers: what a plan records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GradDest {
    /// No gradient.
    None,
    /// A separate buffer of this many elements.
    Separate(usize),
    /// Over the input.
    InPlace,
}

impl GradDest {
    /// Whether a gradient is written at all.
    pub fn wanted(self) -> bool {
        self != GradDest::None
    }
}

impl<'a, T> Io<'a, [T]> {
    /// The input values (for [`Io::InPlace`], before the call overwrites them).
    pub fn input(&self) -> &[T] {
        match self {
            Io::Read(x) => x,
            Io::Separate { input, .. } => input,
            Io::InPlace(x) => x,
        }
    }

    /// The gradient destination, without the buffer.
    pub fn grad_dest(&self) -> GradDest {
        match self {
            Io::Read(_) => GradDest::None,
            Io::Separate { grad, .. } => GradDest::Separate(grad.len()),
            Io::InPlace(_) => GradDest::InPlace,
        }
    }
}

impl<T: crate::element::Element> Io<'_, [T]> {
    /// Writes `grad` (in `f64`, the input's length) into the gradient destination, rounded to
    /// `T`; nothing for [`Io::Read`].
    pub fn write_grad_f64(self, grad: &[f64]) {
        let dst: &mut [T] = match self {
            Io::Read(_) => return,
            Io::Separate { grad, .. } => grad,
            Io::InPlace(x) => x,
        };
        for (d, s) in dst.iter_mut().zip(grad) {
            *d = T::from_f64(*s);
        }
    }
}

/// The first input of a loss call on host slices: the data, its shape, where the gradient goes
/// and the upstream gradient it is scaled by.
///
/// ```
/// use smoothloss_core::{Input, Upstream};
/// let z = [1.0_f32, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let mut g = [0.0_f32; 6];
/// let forward_only = Input::matrix(&z, 2, 3);             // logits [2, 3], no gradient
/// let with_grad = Input::matrix(&z, 2, 3).with_grad(&mut g); // gradient into `g`
/// let flat: Input<'_, f32> = (&z[..]).into();             // element-wise losses, boxes
/// # let _ = (forward_only, with_grad, flat);
/// let mut z2 = z;
/// let in_place = Input::in_place(&mut z2).shaped(2, 3).with_upstream(Upstream::Scalar(0.5));
/// # let _ = in_place;
/// ```
#[derive(Debug)]
pub struct Input<'a, T> {
    /// The buffer(s).
    pub io: Io<'a, [T]>,
    /// `[rows, cols]` when the data is a matrix; `None` for flat data (its layout then follows
    /// from the loss: `[N]` element-wise, `[N, 4]` boxes).
    pub shape: Option<[usize; 2]>,
    /// The gradient of the caller's objective with respect to the returned loss values.
    pub upstream: Upstream<'a>,
}

impl<'a, T> Input<'a, T> {
    /// Flat data, forward only.
    pub fn new(data: &'a [T]) -> Self {
        Self {
            io: Io::Read(data),
            shape: None,
            upstream: Upstream::ONE,
        }
    }

    /// A row-major matrix `[rows, cols]` (logits `[N, C]`), forward only.
    pub fn matrix(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(data).shaped(rows, cols)
    }

    /// The gradient is written over `data` once the loss has read it.
    pub fn in_place(data: &'a mut [T]) -> Self {
        Self {
            io: Io::InPlace(data),
            shape: None,
            upstream: Upstream::ONE,
        }
    }

    /// Declares the shape `[rows, cols]`.
    pub fn shaped(mut self, rows: usize, cols: usize) -> Self {
        self.shape = Some([rows, cols]);
        self
    }

    /// Writes the gradient into `grad` (the input's length). On an in-place input the gradient
    /// goes into `grad` instead and the input is left as it is.
    pub fn with_grad(self, grad: &'a mut [T]) -> Self {
        let input: &'a [T] = match self.io {
            Io::Read(x) => x,
            Io::Separate { input, .. } => input,
            Io::InPlace(x) => x,
        };
        Self {
            io: Io::Separate { input, grad },
            ..self
        }
    }

    /// [`Input::with_grad`] when `grad` is given, else the input unchanged.
    pub fn with_optional_grad(self, grad: Option<&'a mut [T]>) -> Self {
        match grad {
            Some(g) => self.with_grad(g),
            None => self,
        }
    }

    /// Scales the gradient by an upstream gradient (default 1: `loss.sum().backward()`).
    pub fn with_upstream(mut self, upstream: Upstream<'a>) -> Self {
        self.upstream = upstream;
        self
    }
}

impl<'a, T> From<&'a [T]> for Input<'a, T> {
    fn from(data: &'a [T]) -> Self {
        Self::new(data)
    }
}

impl<'a, T, const N: usize> From<&'a [T; N]> for Input<'a, T> {
    fn from(data: &'a [T; N]) -> Self {
        Self::new(data)
    }
}

impl<'a, T> From<&'a Vec<T>> for Input<'a, T> {
    fn from(data: &'a Vec<T>) -> Self {
        Self::new(data)
    }
}

/// The value of a loss call: one number for `mean` / `sum`, one per row, element or pair for
/// `none`.
#[derive(Debug, Clone, PartialEq)]
pub enum Loss {
    /// The reduced loss (`mean` or `sum`).
    Reduced(f64),
    /// One loss per item (`none`).
    PerItem(Vec<f64>),
}

impl Loss {
    /// The reduced value; for `none`, the sum of the per-item values (the objective whose
    /// gradient a call with a scalar upstream of 1 writes).
    pub fn value(&self) -> f64 {
        match self {
            Loss::Reduced(v) => *v,
            Loss::PerItem(v) => v.iter().sum(),
        }
    }

    /// The per-item values (`none`), or `None` for a reduced loss.
    pub fn per_item(&self) -> Option<&[f64]> {
        match self {
            Loss::Reduced(_) => None,
            Loss::PerItem(v) => Some(v),
        }
    }

    /// Every value: one for a reduced loss, else one per item.
    pub fn values(&self) -> &[f64] {
        match self {
            Loss::Reduced(v) => std::slice::from_ref(v),
            Loss::PerItem(v) => v,
        }
    }

    /// [`Loss::values`] as an owned vector.
    pub fn into_values(self) -> Vec<f64> {
        match self {
            Loss::Reduced(v) => vec![v],
            Loss::PerItem(v) => v,
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::Reduced(v) => write!(f, "{v}"),
            Loss::PerItem(v) => write!(f, "{v:?}"),
        }
    }
}

impl PartialEq<f64> for Loss {
    fn eq(&self, other: &f64) -> bool {
        matches!(self, Loss::Reduced(v) if v == other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_grad_on_an_in_place_input_leaves_the_input_alone() {
        let mut z = [1.0f32, 2.0];
        let mut g = [0.0f32; 2];
        let i = Input::in_place(&mut z).with_grad(&mut g);
        assert_eq!(i.io.grad_dest(), GradDest::Separate(2));
        assert_eq!(i.io.input(), &[1.0, 2.0]);
    }

    #[test]
    fn loss_accessors() {
        let r = Loss::Reduced(2.5);
        assert_eq!(r.value(), 2.5);
        assert_eq!(r.values(), &[2.5]);
        assert!(r.per_item().is_none());
        assert_eq!(r, 2.5);
        let p = Loss::PerItem(vec![1.0, 2.0]);
        assert_eq!(p.value(), 3.0);
        assert_eq!(p.per_item(), Some(&[1.0, 2.0][..]));
        assert_ne!(p, 3.0);
        assert_eq!(p.clone().into_values(), vec![1.0, 2.0]);
        assert_eq!(format!("{r} {p}"), "2.5 [1.0, 2.0]");
    }
}
