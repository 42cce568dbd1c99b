//! Reductions and the upstream gradient.

/// How per-row (or per-element, per-pair) losses are combined, as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Reduction {
    /// One loss value per row / element / pair.
    None,
    /// The mean (for weighted cross-entropy: divided by the sum of the target-class weights).
    #[default]
    Mean,
    /// The sum.
    Sum,
}

impl Reduction {
    /// Parses `none`, `mean` or `sum`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "mean" => Some(Self::Mean),
            "sum" => Some(Self::Sum),
            _ => None,
        }
    }

    /// The PyTorch name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Mean => "mean",
            Self::Sum => "sum",
        }
    }
}

/// The gradient of the caller's objective with respect to the returned loss values.
///
/// Gradients written by a loss call are `upstream * d(loss)/d(input)`. With reduction `mean` or
/// `sum` only [`Upstream::Scalar`] is meaningful; with `none`, [`Upstream::PerElement`] gives one
/// value per returned loss (row, element or pair) and a scalar is broadcast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Upstream<'a> {
    /// The same upstream gradient for every loss value (1.0 is `loss.sum().backward()`).
    Scalar(f64),
    /// One upstream gradient per loss value (reduction `none` only).
    PerElement(&'a [f64]),
}

impl Default for Upstream<'_> {
    fn default() -> Self {
        Self::ONE
    }
}

impl Upstream<'_> {
    /// An upstream gradient of one.
    pub const ONE: Upstream<'static> = Upstream::Scalar(1.0);

    /// The upstream gradient of loss value `i`.
    #[inline]
    pub fn at(&self, i: usize) -> f64 {
        match *self {
            Upstream::Scalar(s) => s,
            Upstream::PerElement(u) => u[i],
        }
    }
}
