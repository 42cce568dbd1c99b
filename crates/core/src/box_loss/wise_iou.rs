//! Wise-IoU v3 (`BOX-24`, Tong et al. 2023, arXiv 2301.10051): Wise-IoU v1 scaled per pair by
//! the non-monotonic focusing coefficient `r = beta / (delta * alpha^(beta - delta))`,
//! `beta = L_IoU* / mean`, with a running mean of the IoU loss that the caller owns.
//!
//! The call is pure: the state goes in, is updated once from this batch (before use, as the
//! author's `WIoU_Scale`), and the new value is written back. It runs on any backend as two
//! ordinary box-loss calls (the plain IoU loss, forward only; then Wise-IoU v1 with the
//! detached `r` folded into a per-pair upstream gradient), so every backend's fast path
//! serves it, and the batch mean is summed here in pair order: bit-identical for any thread
//! count wherever the per-pair values are.

use crate::box_loss::{BoxLoss, BoxLossKind};
use crate::call::{Input, Loss};
use crate::element::Element;
use crate::error::{LossError, Result};
use crate::plan::{PairCall, Parts};
use crate::reduction::{Reduction, Upstream};

/// The running state of Wise-IoU v3, owned by the caller and updated by each call
/// ([`Losses::wise_iou_v3`](crate::Losses::wise_iou_v3)), with the focusing constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WiseIouState {
    /// The running mean of the IoU loss `1 - IoU` (the author's `iou_mean`, initially 1).
    pub mean: f64,
    /// The running mean's momentum `m` in `(0, 1)`: `mean <- (1 - m) mean + m batch_mean`.
    pub momentum: f64,
    /// The focusing constant `alpha` (> 1; the author's code's default 1.9).
    pub alpha: f64,
    /// The focusing constant `delta` (> 0; the author's code's default 3).
    pub delta: f64,
}

impl Default for WiseIouState {
    fn default() -> Self {
        Self::new()
    }
}

impl WiseIouState {
    /// The author's defaults: mean 1, the paper's momentum `1 - 0.5^(1/7000)` (a half-life of
    /// 7000 batches), alpha 1.9, delta 3.
    pub fn new() -> Self {
        Self {
            mean: 1.0,
            momentum: 1.0 - 0.5_f64.powf(1.0 / 7000.0),
            alpha: 1.9,
            delta: 3.0,
        }
    }

    /// Sets the momentum.
    pub fn with_momentum(mut self, m: f64) -> Self {
        self.momentum = m;
        self
    }

    /// Sets the focusing constants `alpha` and `delta`.
    pub fn with_focusing(mut self, alpha: f64, delta: f64) -> Self {
        self.alpha = alpha;
        self.delta = delta;
        self
    }

    /// Checks the state and its constants (`BOX-24`).
    pub fn check(&self) -> Result<()> {
        let bad = |name, value, reason| {
            Err(LossError::InvalidParameter {
                name,
                value,
                reason,
            })
        };
        if !(self.mean.is_finite() && self.mean > 0.0) {
            return bad(
                "wiou_mean",
                self.mean,
                "the running mean must be finite and > 0",
            );
        }
        if !(self.momentum > 0.0 && self.momentum < 1.0) {
            return bad("wiou_momentum", self.momentum, "must lie in (0, 1)");
        }
        if !(self.alpha.is_finite() && self.alpha > 1.0) {
            return bad("wiou_alpha", self.alpha, "must be finite and > 1");
        }
        if !(self.delta.is_finite() && self.delta > 0.0) {
            return bad("wiou_delta", self.delta, "must be finite and > 0");
        }
        Ok(())
    }

    /// The running mean after a batch whose finite IoU losses are `losses` (`BOX-24`): the
    /// pairs with a non-finite IoU loss are left out; a batch without any leaves it as it is.
    pub fn updated_mean(&self, losses: &[f64]) -> f64 {
        let (mut sum, mut count) = (0.0, 0usize);
        for &l in losses.iter().filter(|l| l.is_finite()) {
            sum += l;
            count += 1;
        }
        if count == 0 {
            return self.mean;
        }
        let batch = sum / count as f64;
        (1.0 - self.momentum) * self.mean + self.momentum * batch
    }

    /// Checks a Wise-IoU v3 call's kind (`wiou`: v3 scales Wise-IoU v1) and this state
    /// (`BOX-24`): the checks every backend's `wise_iou_v3` makes before any work.
    pub fn check_for(&self, cfg: &BoxLoss) -> Result<()> {
        if cfg.kind != BoxLossKind::Wiou {
            return Err(LossError::InvalidParameter {
                name: "kind",
                value: f64::NAN,
                reason: "Wise-IoU v3 scales Wise-IoU v1: the kind must be wiou",
            });
        }
        self.check()
    }

    /// The two box-loss calls of a Wise-IoU v3 call `cfg` (`BOX-24`), each per pair
    /// (reduction `none`): the plain IoU loss `1 - IoU` (`BOX-3`, forward only), then
    /// Wise-IoU v1 itself, whose per-pair upstream gradient carries the focusing coefficient.
    pub fn passes(cfg: &BoxLoss) -> [BoxLoss; 2] {
        let iou = BoxLoss {
            kind: BoxLossKind::Iou,
            threshold_weight: None,
            reduction: Reduction::None,
            options: Default::default(),
            ..*cfg
        };
        let v1 = BoxLoss {
            reduction: Reduction::None,
            ..*cfg
        };
        [iou, v1]
    }

    /// The running mean after a batch of IoU losses and each pair's focusing coefficient under
    /// it (`BOX-24`: the mean is updated before use): what a backend needs between the plain
    /// IoU pass and the Wise-IoU v1 pass. The state itself is not changed.
    pub fn focusing(&self, iou_losses: &[f64]) -> (f64, Vec<f64>) {
        let mean = self.updated_mean(iou_losses);
        let ln_alpha = self.alpha.ln();
        let r = iou_losses
            .iter()
            .map(|&l| focus_ln(ln_alpha, self.delta, l, mean))
            .collect();
        (mean, r)
    }

    /// The focusing coefficient `r = beta / (delta alpha^(beta - delta))` of an IoU loss
    /// under the running mean `mean` (`BOX-24`); 1 where the IoU loss is not finite.
    pub fn focus(&self, iou_loss: f64, mean: f64) -> f64 {
        focus_ln(self.alpha.ln(), self.delta, iou_loss, mean)
    }
}

/// [`WiseIouState::focus`] with `ln(alpha)` given: `alpha^(beta - delta)` as
/// `exp((beta - delta) ln alpha)`, a third of `powf`'s time per pair.
#[inline]
fn focus_ln(ln_alpha: f64, delta: f64, iou_loss: f64, mean: f64) -> f64 {
    if !iou_loss.is_finite() {
        return 1.0;
    }
    let beta = iou_loss / mean;
    beta / delta * ((delta - beta) * ln_alpha).exp()
}

/// Runs Wise-IoU v3 on `backend` (the body of
/// [`Losses::wise_iou_v3`](crate::Losses::wise_iou_v3)): every check, then the backend's
/// [`BoxLossOps::run_wise_iou_v3`](crate::backend::BoxLossOps::run_wise_iou_v3).
pub(crate) fn run<'a, T: Element, B: crate::Losses<T> + ?Sized>(
    backend: &B,
    cfg: &BoxLoss,
    state: &mut WiseIouState,
    pred: Input<'a, T>,
    target: &'a [T],
) -> Result<Loss> {
    state.check_for(cfg)?;
    // Every check of the call itself (shapes, upstream, eps, modifiers), before any work.
    let call = crate::backend::bind_pair(cfg, pred, target)?;
    backend.run_wise_iou_v3(call, state)
}

/// Wise-IoU v3 as two ordinary box-loss calls of `backend` (the default body of
/// [`BoxLossOps::run_wise_iou_v3`](crate::backend::BoxLossOps::run_wise_iou_v3)): the plain
/// IoU losses, forward only; then Wise-IoU v1 with the detached `r` folded into a per-pair
/// upstream gradient.
pub(crate) fn composed<T: Element, B: crate::backend::BoxLossOps<T> + ?Sized>(
    backend: &B,
    call: PairCall<'_, BoxLoss, T>,
    state: &mut WiseIouState,
) -> Result<Loss> {
    let Parts {
        plan,
        io,
        with: target,
        upstream,
    } = call.into_parts();
    let cfg = plan.cfg;
    let n = plan.items;
    let [iou_cfg, v1_cfg] = WiseIouState::passes(cfg);
    // Pass 1: the plain IoU losses L_IoU = 1 - IoU (BOX-3), forward only.
    let iou_losses = backend
        .run_box_loss(crate::backend::bind_pair(
            &iou_cfg,
            Input::new(io.input()),
            target,
        )?)?
        .into_values();
    // BOX-24: the running mean is updated before use (the author's WIoU_Scale).
    let (mean, r) = state.focusing(&iou_losses);
    // Pass 2: Wise-IoU v1 per pair, its gradient scaled by r_i times the caller's factor.
    let scale = plan.count_scale();
    let up: Vec<f64> = (0..n)
        .map(|i| r[i] * plan.item_scale(&upstream, scale, i))
        .collect();
    let v1 = backend
        .run_box_loss(crate::backend::bind_pair(
            &v1_cfg,
            Input {
                io,
                shape: None,
                upstream: Upstream::PerElement(&up),
            },
            target,
        )?)?
        .into_values();
    let losses: Vec<f64> = v1.iter().zip(&r).map(|(l, r)| r * l).collect();
    state.mean = mean;
    Ok(plan.reduce(losses, n as f64))
}
