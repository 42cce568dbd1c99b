//! The box kinds and modifiers without a hand-derived `f32` kernel (Extended-IoU, Inner-IoU,
//! alpha-IoU; `BOX-15`, `BOX-20`, `BOX-22`): one
//! kernel for every (kind, modifier set), per pair in `f64` through the reference's formula
//! (`smoothloss_core::reference::box_pair_loss_cfg`, generic over the forward-mode dual
//! number), so the gradient is that formula's analytic gradient and the only `f32` rounding is
//! the final one of each output. About 10 to 40 times slower than the hand-derived kernels
//! (`math.rs`, chosen in `mod.rs`), see BENCHMARKS.md.

use crate::blocks::Up;
use smoothloss_core::BoxLoss;
use smoothloss_core::reference::box_pair_loss_cfg;

/// Runs one block of pairs of an extended configuration: returns the sum of the weighted
/// losses (eight lanes in a fixed order, so the result does not depend on the split), writes
/// the gradient and per-pair losses when asked.
pub(super) fn block(
    cfg: &BoxLoss,
    pred: &[f32],
    target: &[f32],
    mut grad: Option<&mut [f32]>,
    up: Up<'_>,
    mut losses: Option<&mut [f64]>,
) -> f64 {
    let mut acc = [0.0f64; 8];
    for (i, (p, t)) in pred.chunks_exact(4).zip(target.chunks_exact(4)).enumerate() {
        let p: [f64; 4] = std::array::from_fn(|k| f64::from(p[k]));
        let t: [f64; 4] = std::array::from_fn(|k| f64::from(t[k]));
        let (l, d, iou) = box_pair_loss_cfg(cfg, p, t);
        // BOX-9: the seed's piecewise-constant weight (no gradient through it).
        let w = match cfg.threshold_weight {
            Some(tw) if iou < tw.threshold => 1.0 - tw.alpha,
            _ => 1.0,
        };
        let wl = w * l;
        acc[i % 8] += wl;
        if let Some(out) = losses.as_deref_mut() {
            out[i] = wl;
        }
        if let Some(g) = grad.as_deref_mut() {
            let u = match up {
                Up::Scalar(s) => f64::from(s),
                Up::Per(u, s) => u[i] * s,
            };
            for k in 0..4 {
                g[4 * i + k] = (u * (w * d[k])) as f32;
            }
        }
    }
    crate::blocks::lanes_sum(&acc)
}
