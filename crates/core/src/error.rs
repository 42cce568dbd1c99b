//! The one error type every smoothloss call returns.

use thiserror::Error;

/// Why a loss call was refused. Every backend returns the same variant for the same bad input,
/// because validation lives in this crate: each configuration's `plan` checks parameters and
/// shapes once, before any backend runs.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum LossError {
    /// A buffer's length does not match the shape the call implies: element counts (an array
    /// with the expected count in another shape is [`LossError::WrongShape`]).
    #[error("{}", shape_mismatch(what, *expected, *got))]
    ShapeMismatch {
        /// Which argument.
        what: &'static str,
        /// The number of elements the other arguments imply.
        expected: usize,
        /// The number of elements passed.
        got: usize,
    },
    /// An array has another shape than the call implies, with as many elements (a transposed
    /// `[C, N]` gradient of `[N, C]` logits): both shapes, from the ndarray wrappers, where
    /// element counts alone would read "expected 24, got 24".
    #[error("shape mismatch for `{what}`: expected shape {expected:?}, got {got:?}")]
    WrongShape {
        /// Which argument.
        what: &'static str,
        /// The shape the other arguments imply.
        expected: Vec<usize>,
        /// The shape passed.
        got: Vec<usize>,
    },
    /// A dimension that must be positive is zero (for example C = 0 classes).
    #[error("`{what}` is empty: {detail}")]
    EmptyInput {
        /// Which argument.
        what: &'static str,
        /// What is required.
        detail: &'static str,
    },
    /// A class index outside `0..classes` that is not the ignore index.
    #[error("target {target} at row {row} is out of range for {classes} classes")]
    TargetOutOfRange {
        /// Row of the offending target.
        row: usize,
        /// The target value.
        target: i64,
        /// Number of classes C.
        classes: usize,
    },
    /// A parameter outside its domain (label smoothing outside [0, 1], negative beta, ...).
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Offending value (as f64; NaN shows as NaN).
        value: f64,
        /// The domain it must lie in.
        reason: &'static str,
    },
    /// The call needs a shape the input does not carry (for example probability targets
    /// without the logits' `[rows, classes]`).
    #[error("`{what}` needs a shape: {detail}")]
    MissingShape {
        /// Which argument.
        what: &'static str,
        /// What to pass.
        detail: &'static str,
    },
    /// A tensor that must be laid out contiguously (row-major) is not.
    #[error("`{what}` must be contiguous in row-major order (standard layout)")]
    NonContiguous {
        /// Which argument.
        what: &'static str,
    },
    /// The backend cannot run this configuration (reported, never silently skipped).
    #[error("unsupported by backend `{backend}`: {what}")]
    Unsupported {
        /// Backend name.
        backend: String,
        /// What is not supported.
        what: String,
    },
    /// A size computed from the shapes (`rows * classes`, `N * M`) does not fit in `usize`, or
    /// an output of that size cannot be allocated.
    #[error(
        "`{what}` of {a} x {b} elements is too large (its size overflows usize or cannot be allocated)"
    )]
    TooLarge {
        /// Which argument.
        what: &'static str,
        /// First factor.
        a: usize,
        /// Second factor.
        b: usize,
    },
    /// A collective (all-reduce across ranks) failed, or another rank refused the call
    /// (`vocab_parallel`).
    #[error("collective error: {0}")]
    Collective(String),
    /// A device (GPU) is not available or a device call failed.
    #[error("device error: {0}")]
    Device(String),
}

/// Shorthand for `Result<T, LossError>`.
pub type Result<T> = std::result::Result<T, LossError>;

/// Checks `got == expected` for a named buffer.
pub fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(LossError::ShapeMismatch {
            what,
            expected,
            got,
        })
    }
}

/// `a * b`, or [`LossError::TooLarge`] when the product overflows `usize`.
pub fn checked_size(what: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(LossError::TooLarge { what, a, b })
}

/// The message of [`LossError::ShapeMismatch`]: element counts, or, when they agree (an array
/// of the right size in another shape), that the shape differs.
fn shape_mismatch(what: &str, expected: usize, got: usize) -> String {
    if expected == got {
        format!(
            "shape mismatch for `{what}`: it has the expected {expected} elements but in another \
             shape (transposed or reshaped?)"
        )
    } else {
        format!("shape mismatch for `{what}`: expected {expected} elements, got {got}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_do_not_contradict_themselves() {
        let same = LossError::ShapeMismatch {
            what: "grad",
            expected: 24,
            got: 24,
        };
        let msg = same.to_string();
        assert!(!msg.contains("expected 24 elements, got 24"), "{msg}");
        assert!(msg.contains("another shape"), "{msg}");
        let shape = LossError::WrongShape {
            what: "grad",
            expected: vec![4, 6],
            got: vec![6, 4],
        };
        assert_eq!(
            shape.to_string(),
            "shape mismatch for `grad`: expected shape [4, 6], got [6, 4]"
        );
        let e = checked_size("logits", usize::MAX, 2).unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("18446744073709551615 elements"), "{msg}");
        assert!(
            msg.contains("18446744073709551615 x 2 elements is too large"),
            "{msg}"
        );
        assert_eq!(checked_size("logits", 3, 4), Ok(12));
    }
}
