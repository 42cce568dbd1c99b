//! Core of smoothloss: loss configurations, the backend traits, the error type and the pure
//! `f64` reference implementations that serve as the executable spec.
//!
//! Every loss is described once here (its configuration type validates the parameters and the
//! shapes) and computed by a backend. A backend implements the small per-family traits in
//! [`backend`]; their default methods call the [`reference`](mod@reference) implementation, so a new backend
//! works at once and overrides what it can do faster (the burn pattern).
//!
//! Formula IDs such as `CE-4` refer to `spec/formulas/*.md` in the repository.
#![warn(missing_docs)]

pub mod backend;
pub mod binary;
pub mod box_loss;
pub mod cross_entropy;
pub mod element;
pub mod op;
pub mod error;
pub mod reduction;
pub mod reference;
pub mod regression;

pub use backend::{
    Backend, BinaryOps, BoxLossOps, CrossEntropyOps, ReferenceBackend, RegressionOps,
};
pub use binary::{BceWithLogits, SigmoidFocal};
pub use box_loss::{BoxFormat, BoxLoss, BoxLossKind, IouLoss, ThresholdWeight};
pub use cross_entropy::{CeTargets, CrossEntropy, SmoothLoss};
pub use element::Element;
pub use op::{Family, Op, kernel_name};
pub use error::{LossError, Result};
pub use reduction::{Reduction, Upstream};
pub use regression::{Huber, SmoothL1};
