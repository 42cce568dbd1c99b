//! Core of smoothloss: loss configurations, the backend traits, the error type and the pure
//! `f64` reference implementations that serve as the executable spec.
//!
//! Every loss is defined once ([`op`]: name, family, formula prefix, kernel names, codes) and
//! validated once: its configuration turns the shapes of a call into a [`Plan`] (the front
//! door, [`Losses`]), and a backend runs the plan. A backend implements the small per-family
//! traits in [`backend`]; their default methods call the [`reference`](mod@reference)
//! implementation, so a new backend works at once and overrides what it can do faster (the
//! burn pattern).
//!
//! ```
//! use smoothloss_core::{BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, Input, Losses, ReferenceBackend};
//! let b = ReferenceBackend;
//! let logits = [2.0_f32, 0.5, -1.0, 0.1, 0.2, 0.3];
//! let mut grad = [0.0_f32; 6];
//! let loss = b.cross_entropy(&CrossEntropy::smooth_loss(0.1), Input::matrix(&logits, 2, 3).with_grad(&mut grad), &[0, 2])?;
//! assert!(loss.value() > 0.0);
//! let ciou = BoxLoss::new(BoxLossKind::Ciou, BoxFormat::Cxcywh);
//! let l = b.box_loss(&ciou, &[10.0_f32, 10.0, 4.0, 6.0], &[11.0, 9.0, 5.0, 5.0])?.value();
//! assert!(l > 0.0);
//! # Ok::<(), smoothloss_core::LossError>(())
//! ```
//!
//! Formula IDs such as `CE-4` refer to `spec/formulas/*.md` in the repository.
#![warn(missing_docs)]

pub mod adapt;
pub mod backend;
pub mod binary;
pub mod box_loss;
pub mod buffers;
pub mod call;
pub mod cross_entropy;
pub mod distribution;
pub mod element;
pub mod error;
pub mod linear_cross_entropy;
pub mod op;
pub mod oriented_box;
pub mod plan;
pub mod quality;
pub mod reduction;
pub mod reference;
pub mod regression;
pub mod vocab_parallel;

pub use adapt::PairLossCall;
pub use backend::{
    Backend, BinaryOps, BoxLossOps, CrossEntropyOps, DistributionOps, Losses, OrientedBoxOps,
    QualityOps, ReferenceBackend, RegressionOps,
};
pub use binary::{BceWithLogits, SigmoidFocal};
pub use box_loss::{
    BoxFormat, BoxIouPlan, BoxLoss, BoxLossKind, BoxModifiers, BoxOptions, BoxPlan, CiouConvention,
    ThresholdWeight, WiseIouState,
};
pub use buffers::BufferLosses;
pub use call::{GradDest, Input, Io, Loss};
pub use cross_entropy::{CeOutput, CePlan, CeRowOutputs, CeTargets, CeTargetsShape, CrossEntropy};
pub use distribution::{DflConvention, DistributionFocal};
pub use element::Element;
pub use error::{LossError, Result};
pub use linear_cross_entropy::{
    ChunkDims, ChunkGemm, LceCall, LcePlan, Linear, LinearCrossEntropy, LinearCrossEntropyOps,
    LinearGrads,
};
pub use op::{Family, Op, kernel_name};
pub use oriented_box::{ProbIou, ProbIouPairwiseCall, ProbIouPairwisePlan};
pub use plan::{Call, CeCall, Extent, IouCall, LossConfig, PairCall, Parts, Plan, UpstreamShape};
pub use quality::{QflTargets, QualityFocal, Varifocal, VarifocalTargets, VarifocalWeight};
pub use reduction::{Reduction, Upstream};
pub use regression::{Huber, SmoothL1};
