//! Reductions and the upstream gradient.

use crate::error::{LossError, Result, check_len};

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

    /// Checks that the upstream gradient fits `count` loss values under `reduction`.
    pub fn validate(&self, reduction: Reduction, count: usize) -> Result<()> {
        match *self {
            Upstream::Scalar(s) if !s.is_finite() => Err(LossError::InvalidParameter {
                name: "upstream",
                value: s,
                reason: "must be finite",
            }),
            Upstream::Scalar(_) => Ok(()),
            Upstream::PerElement(u) => {
                if reduction != Reduction::None {
                    return Err(LossError::InvalidParameter {
                        name: "upstream",
                        value: u.len() as f64,
                        reason: "a per-element upstream gradient needs reduction `none`",
                    });
                }
                check_len("upstream", count, u.len())
            }
        }
    }

    /// The upstream gradient of loss value `i`.
    #[inline]
    pub fn at(&self, i: usize) -> f64 {
        match *self {
            Upstream::Scalar(s) => s,
            Upstream::PerElement(u) => u[i],
        }
    }
}

/// Reduces per-item losses (`Sum`, `Mean` over `count`, or `None`), in plain `f64` order.
pub fn reduce_values(values: Vec<f64>, reduction: Reduction) -> Vec<f64> {
    match reduction {
        Reduction::None => values,
        Reduction::Sum => vec![values.iter().sum()],
        Reduction::Mean => {
            let n = values.len() as f64;
            vec![values.iter().sum::<f64>() / n]
        }
    }
}
