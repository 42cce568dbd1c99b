//! smoothloss: exact, fast training losses with fused gradients.
//!
//! This facade re-exports the loss types of [`smoothloss_core`] and a [`DefaultBackend`] chosen
//! by Cargo feature: the CPU backend with `cpu` (default), else the `f64` reference. Feature
//! `cuda` adds `CudaBackend` (created with `CudaBackend::new(ordinal)`, which returns
//! `LossError::Device` where no GPU is usable; it is never the default). Feature `ndarray`
//! adds `smoothloss::ndarray`, wrappers over ndarray 0.17 views that work with any backend
//! (`ndarray-016`: the same as `smoothloss::ndarray_016` for ndarray 0.16). Features `candle`
//! and `burn` add `smoothloss::candle` and `smoothloss::burn`, the losses on those
//! frameworks' tensors with autograd (`candle-cuda`: on candle's CUDA device too, linking
//! CUDA as candle does; use it instead of `cuda`, which loads CUDA at run time). All
//! optional features are off by default.
//!
//! ```
//! use smoothloss::prelude::*;
//! let backend = DefaultBackend::default();
//! let logits = [2.0_f32, 0.5, -1.0, 0.1, 0.2, 0.3];
//! let mut grad = [0.0_f32; 6];
//! let loss = backend.cross_entropy(
//!     &CrossEntropy::smooth_loss(0.1),
//!     Input::matrix(&logits, 2, 3).with_grad(&mut grad),
//!     &[0, 2],
//! )?;
//! assert!(loss.value() > 0.0);
//! # Ok::<(), LossError>(())
//! ```
#![warn(missing_docs)]

pub use smoothloss_core::*;

#[cfg(feature = "cpu")]
pub use smoothloss_cpu::CpuBackend;

#[cfg(any(feature = "cuda", feature = "cuda-linked"))]
pub use smoothloss_cuda::CudaBackend;

#[cfg(feature = "ndarray")]
#[doc = include_str!("ndarray.md")]
pub mod ndarray {
    use ::ndarray as nd;
    include!("ndarray_wrappers.rs");
}

/// The wrappers of [`smoothloss::ndarray`](mod@crate::ndarray), the same functions, for the
/// previous ndarray release, 0.16 (feature `ndarray-016`; `ndarray` is for 0.17).
#[cfg(feature = "ndarray-016")]
pub mod ndarray_016 {
    use ::ndarray_016 as nd;
    include!("ndarray_wrappers.rs");
}

/// smoothloss's losses as candle tensor functions with autograd (feature `candle`; the
/// `smoothloss-candle` crate).
#[cfg(feature = "candle")]
pub use smoothloss_candle as candle;

/// smoothloss's losses for burn's tensors and autodiff (feature `burn`; the `smoothloss-burn`
/// crate).
#[cfg(feature = "burn")]
pub use smoothloss_burn as burn;

/// The backend selected by Cargo features: the CPU backend when `cpu` is on (the default).
#[cfg(feature = "cpu")]
pub type DefaultBackend = smoothloss_cpu::CpuBackend;
/// The backend selected by Cargo features: without `cpu`, the `f64` reference (also with
/// `cuda` alone: a CUDA backend needs a device ordinal and may fail, so it is never a default).
#[cfg(not(feature = "cpu"))]
pub type DefaultBackend = smoothloss_core::ReferenceBackend;

/// Everything needed to call a loss.
pub mod prelude {
    pub use crate::DefaultBackend;
    pub use smoothloss_core::WiseIouState;
    pub use smoothloss_core::{
        Backend, BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CeTargets, CrossEntropy, Huber,
        Input, Linear, LinearCrossEntropy, Loss, LossError, Losses, Reduction, SigmoidFocal,
        SmoothL1, Upstream,
    };
    pub use smoothloss_core::{
        DflConvention, DistributionFocal, ProbIou, QualityFocal, Varifocal, VarifocalTargets,
        VarifocalWeight,
    };
}

/// The README's example, compiled and run as a doctest (`README.md`: a link to the
/// workspace README, packaged with the crate).
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
