//! The one error type every smoothloss call returns.

use thiserror::Error;

/// Why a loss call was refused. Every backend returns the same variant for the same bad input,
/// because validation lives in this crate: each configuration's `plan` checks parameters and
/// shapes once, before any backend runs.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum LossError {
    /// A buffer's length does not match the shape the call implies.
    #[error("shape mismatch for `{what}`: expected {expected} elements, got {got}")]
    ShapeMismatch {
        /// Which argument.
        what: &'static str,
        /// The number of elements the other arguments imply.
        expected: usize,
        /// The number of elements passed.
        got: usize,
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

/// `a * b` or a shape error when the product overflows `usize`.
pub fn checked_size(what: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(LossError::ShapeMismatch {
        what,
        expected: usize::MAX,
        got: 0,
    })
}
