//! Reference smooth L1 and Huber (`REG-1` .. `REG-5`).

use crate::call::Loss;
use crate::plan::{LossConfig, PairCall, Parts};
use crate::regression::{Huber, SmoothL1};

/// PyTorch's sign: -1, 0 or 1 (NaN stays NaN).
fn sign(d: f64) -> f64 {
    if d > 0.0 {
        1.0
    } else if d < 0.0 {
        -1.0
    } else {
        d * 0.0
    }
}

/// Shared loop: `f(d) -> (loss, dloss/dd)` on `d = pred - target`, then the reduction (`REG-5`).
fn elementwise<C: LossConfig>(
    call: PairCall<'_, C, f64>,
    f: impl Fn(&C, f64) -> (f64, f64),
) -> Loss {
    let Parts {
        plan,
        io,
        with: target,
        upstream,
    } = call.into_parts();
    let pred = io.input();
    let n = pred.len();
    let (losses, dl): (Vec<f64>, Vec<f64>) = pred
        .iter()
        .zip(target)
        .map(|(&p, &t)| f(plan.cfg, p - t))
        .unzip();
    let scale = plan.count_scale();
    if io.grad_dest().wanted() {
        let g: Vec<f64> = (0..n)
            .map(|i| plan.item_scale(&upstream, scale, i) * dl[i])
            .collect();
        io.write_grad_f64(&g);
    }
    plan.reduce(losses, n as f64)
}

/// Reference smooth L1: `0.5 d^2 / beta` where `|d| < beta`, else `|d| - 0.5 beta` (`REG-1`);
/// gradient `d / beta` or `sign(d)` (`REG-2`); `beta = 0` is L1 with gradient `sign(d)`.
pub fn smooth_l1(call: PairCall<'_, SmoothL1, f64>) -> Loss {
    elementwise(call, |cfg, d| {
        let beta = cfg.beta;
        let z = d.abs();
        if z < beta {
            (0.5 * d * d / beta, d / beta)
        } else {
            (z - 0.5 * beta, sign(d))
        }
    })
}

/// Reference Huber: `0.5 d^2` where `|d| < delta`, else `delta (|d| - 0.5 delta)` (`REG-3`);
/// gradient `d` or `delta sign(d)` (`REG-4`).
pub fn huber(call: PairCall<'_, Huber, f64>) -> Loss {
    elementwise(call, |cfg, d| {
        let delta = cfg.delta;
        let z = d.abs();
        if z < delta {
            (0.5 * d * d, d)
        } else {
            (delta * (z - 0.5 * delta), delta * sign(d))
        }
    })
}
