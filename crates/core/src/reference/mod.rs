//! Pure `f64` reference implementations: plain loops, one formula per step, each tagged with the
//! formula ID of `spec/formulas/*.md`. They are the executable spec that every backend is
//! checked against; speed is not a goal here.
//!
//! Each function takes a validated [`Call`](crate::plan::Call) (the front door made its plan),
//! returns the [`Loss`](crate::Loss) and, when the call wants a gradient, writes
//! `upstream * d(loss)/d(input)` where the call says (a separate buffer or over the input).

pub mod binary;
pub mod box_loss;
pub mod cross_entropy;
pub mod dual;
pub mod linear_cross_entropy;
pub mod regression;
pub mod vocab_parallel;

pub use binary::{bce_with_logits, sigmoid_focal};
pub use box_loss::{box_iou, box_loss, box_pair_loss};
pub use cross_entropy::cross_entropy;
pub use linear_cross_entropy::linear_cross_entropy;
pub use regression::{huber, smooth_l1};
