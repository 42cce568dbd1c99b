//! smoothloss: exact, fast training losses with fused gradients.
//!
//! This facade re-exports the loss types of [`smoothloss_core`] and a [`DefaultBackend`] chosen
//! by Cargo feature: `cpu` (default) or `cuda`.
//!
//! ```
//! use smoothloss::prelude::*;
//! let logits = [2.0_f32, 0.5, -1.0, 0.1, 0.2, 0.3];
//! let targets = [0_i64, 2];
//! let mut grad = [0.0_f32; 6];
//! let backend = DefaultBackend::default();
//! let loss = backend
//!     .cross_entropy(&SmoothLoss::new(0.1), &logits, 2, 3, CeTargets::Classes(&targets),
//!         Upstream::ONE, Some(&mut grad))
//!     .unwrap();
//! assert!(loss[0] > 0.0);
//! ```
#![warn(missing_docs)]

pub use smoothloss_core::*;

#[cfg(feature = "cpu")]
pub use smoothloss_cpu::CpuBackend;

#[cfg(feature = "cuda")]
pub use smoothloss_cuda::CudaBackend;

/// The backend selected by Cargo features: the CPU backend when `cpu` is on, otherwise the
/// reference. With `cuda`, `CudaBackend` is exported too; it is created with
/// `CudaBackend::new(ordinal)`, which returns `LossError::Device` where no GPU is usable, so it
/// is not a `Default` backend.
#[cfg(feature = "cpu")]
pub type DefaultBackend = smoothloss_cpu::CpuBackend;
/// The backend selected by Cargo features: the CPU backend when `cpu` is on, otherwise the
/// reference.
#[cfg(not(feature = "cpu"))]
pub type DefaultBackend = smoothloss_core::ReferenceBackend;

/// Everything needed to call a loss.
pub mod prelude {
    pub use crate::DefaultBackend;
    pub use smoothloss_core::{
        Backend, BceWithLogits, BinaryOps, BoxFormat, BoxLoss, BoxLossKind, BoxLossOps, CeTargets,
        CrossEntropy, CrossEntropyOps, Huber, IouLoss, LossError, Reduction, RegressionOps,
        SigmoidFocal, SmoothL1, SmoothLoss, Upstream,
    };
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
