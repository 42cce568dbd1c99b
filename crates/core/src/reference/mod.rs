//! Pure `f64` reference implementations: plain loops, one formula per step, each tagged with the
//! formula ID of `spec/formulas/*.md`. They are the executable spec that every backend is
//! checked against; speed is not a goal here.
//!
//! Each function validates its input (the same `validate` the backends call), returns the loss
//! values (one for `mean`/`sum`, one per row / element / pair for `none`) and, when `grad` is
//! given, writes `upstream * d(loss)/d(input)` into it.

pub mod binary;
pub mod box_loss;
pub mod cross_entropy;
pub mod dual;
pub mod regression;

pub use binary::{bce_with_logits, sigmoid_focal};
pub use box_loss::{box_iou, box_loss, box_pair_loss};
pub use cross_entropy::cross_entropy;
pub use regression::{huber, smooth_l1};
