//! Reference smooth L1 and Huber (`REG-1` .. `REG-5`).

use crate::error::Result;
use crate::reduction::{Reduction, Upstream};
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
fn elementwise(
    pred: &[f64],
    target: &[f64],
    reduction: Reduction,
    upstream: Upstream<'_>,
    grad: Option<&mut [f64]>,
    f: impl Fn(f64) -> (f64, f64),
) -> Vec<f64> {
    let n = pred.len();
    let (losses, dl): (Vec<f64>, Vec<f64>) =
        pred.iter().zip(target).map(|(&p, &t)| f(p - t)).unzip();
    let scale = if reduction == Reduction::Mean {
        1.0 / n as f64
    } else {
        1.0
    };
    if let Some(out) = grad {
        for i in 0..n {
            let u = if reduction == Reduction::None {
                upstream.at(i)
            } else {
                upstream.at(0)
            };
            out[i] = u * scale * dl[i];
        }
    }
    crate::reduction::reduce_values(losses, reduction)
}

/// Reference smooth L1: `0.5 d^2 / beta` where `|d| < beta`, else `|d| - 0.5 beta` (`REG-1`);
/// gradient `d / beta` or `sign(d)` (`REG-2`); `beta = 0` is L1 with gradient `sign(d)`.
pub fn smooth_l1(
    cfg: &SmoothL1,
    pred: &[f64],
    target: &[f64],
    upstream: Upstream<'_>,
    grad: Option<&mut [f64]>,
) -> Result<Vec<f64>> {
    cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
    let beta = cfg.beta;
    Ok(elementwise(
        pred,
        target,
        cfg.reduction,
        upstream,
        grad,
        |d| {
            let z = d.abs();
            if z < beta {
                (0.5 * d * d / beta, d / beta)
            } else {
                (z - 0.5 * beta, sign(d))
            }
        },
    ))
}

/// Reference Huber: `0.5 d^2` where `|d| < delta`, else `delta (|d| - 0.5 delta)` (`REG-3`);
/// gradient `d` or `delta sign(d)` (`REG-4`).
pub fn huber(
    cfg: &Huber,
    pred: &[f64],
    target: &[f64],
    upstream: Upstream<'_>,
    grad: Option<&mut [f64]>,
) -> Result<Vec<f64>> {
    cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
    let delta = cfg.delta;
    Ok(elementwise(
        pred,
        target,
        cfg.reduction,
        upstream,
        grad,
        |d| {
            let z = d.abs();
            if z < delta {
                (0.5 * d * d, d)
            } else {
                (delta * (z - 0.5 * delta), delta * sign(d))
            }
        },
    ))
}
