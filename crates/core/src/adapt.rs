//! What a framework adapter (candle, burn) needs to wrap a loss once per call shape rather than
//! once per loss: every loss on two aligned inputs ([`PairLoss`]) is callable through one
//! generic method ([`PairLossCall::call`]), and says how its inputs are laid out
//! ([`PairLossCall::ITEM_WIDTH`]: 1 for element-wise losses, 4 for boxes, 5 for oriented
//! boxes). A new pair loss joins every adapter with one `impl` here.

use crate::backend::Losses;
use crate::binary::{BceWithLogits, SigmoidFocal};
use crate::box_loss::BoxLoss;
use crate::call::{Input, Loss};
use crate::element::Element;
use crate::error::Result;
use crate::oriented_box::ProbIou;
use crate::plan::PairLoss;
use crate::regression::{Huber, SmoothL1};

/// A loss on two aligned inputs with its front-door method, for generic callers.
///
/// ```
/// use smoothloss_core::{Huber, Input, PairLossCall, ReferenceBackend, Reduction};
/// fn run<C: PairLossCall>(cfg: &C, x: &[f64], y: &[f64]) -> f64 {
///     cfg.call(&ReferenceBackend, Input::new(x), y).unwrap().value()
/// }
/// let h = Huber { delta: 1.0, reduction: Reduction::Sum };
/// assert_eq!(run(&h, &[3.0], &[0.0]), 2.5);
/// ```
pub trait PairLossCall: PairLoss + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Values per item: 1 for element-wise losses (one loss per element under `none`), 4 for
    /// box losses (one loss per box under `none`), 5 for oriented boxes `(cx, cy, w, h,
    /// angle)`.
    const ITEM_WIDTH: usize;

    /// Calls the loss's front-door method on `backend` ([`Losses::box_loss`], ...).
    fn call<'a, T: Element, B: Losses<T> + ?Sized>(
        &self,
        backend: &B,
        input: Input<'a, T>,
        second: &'a [T],
    ) -> Result<Loss>;
}

macro_rules! pair_loss_call {
    ($($cfg:ty => $method:ident, $width:expr;)*) => {$(
        impl PairLossCall for $cfg {
            const ITEM_WIDTH: usize = $width;
            fn call<'a, T: Element, B: Losses<T> + ?Sized>(
                &self,
                backend: &B,
                input: Input<'a, T>,
                second: &'a [T],
            ) -> Result<Loss> {
                backend.$method(self, input, second)
            }
        }
    )*};
}

pair_loss_call! {
    BoxLoss => box_loss, 4;
    SmoothL1 => smooth_l1, 1;
    Huber => huber, 1;
    BceWithLogits => bce_with_logits, 1;
    SigmoidFocal => sigmoid_focal, 1;
    ProbIou => probiou_loss, 5;
}
