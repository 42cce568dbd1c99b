//! Reference varifocal and quality focal losses (`QUAL-1` .. `QUAL-7`).

use super::binary::{bce_element, sigmoid};
use crate::call::{Io, Loss};
use crate::plan::{Call, Parts, Plan};
use crate::quality::{QflTargets, QualityFocal, Varifocal, VarifocalTargets, VarifocalWeight};
use crate::reduction::Upstream;

/// `(b^e, d(b^e)/db)` for `b >= 0`, the derivative taken as 0 where `e = 0` or `b = 0`
/// (PyTorch's `pow` backward gives 0 there for `e >= 1`).
fn pow_d(b: f64, e: f64) -> (f64, f64) {
    let v = b.powf(e);
    let d = if e == 0.0 || b == 0.0 {
        0.0
    } else {
        e * b.powf(e - 1.0)
    };
    (v, d)
}

/// One varifocal element: `(loss, dloss/dx)` for logit `x`, score `s`, label `l` (`QUAL-1` ..
/// `QUAL-3`). A non-finite logit gives NaN for both (`TOL-4`).
pub fn varifocal_element(
    x: f64,
    s: f64,
    l: f64,
    alpha: f64,
    gamma: f64,
    weight: VarifocalWeight,
) -> (f64, f64) {
    if !x.is_finite() {
        return (f64::NAN, f64::NAN);
    }
    let p = sigmoid(x);
    let dp = p * (1.0 - p);
    let (bce, dbce) = bce_element(x, s, 1.0);
    // QUAL-1 / QUAL-2: the focal weight and its derivative with respect to x.
    let (w, dw) = match weight {
        VarifocalWeight::Ultralytics => {
            let (pg, dpg) = pow_d(p, gamma);
            (alpha * pg * (1.0 - l) + s * l, alpha * dpg * dp * (1.0 - l))
        }
        VarifocalWeight::MmdetIouWeighted | VarifocalWeight::Mmdet if s > 0.0 => {
            let w = if weight == VarifocalWeight::MmdetIouWeighted {
                s
            } else {
                1.0
            };
            (w, 0.0)
        }
        _ => {
            let diff = p - s;
            let (pg, dpg) = pow_d(diff.abs(), gamma);
            (alpha * pg, alpha * dpg * diff.signum() * dp)
        }
    };
    // QUAL-3: BCE(x, s) * w, the weight not detached.
    (bce * w, dbce * w + bce * dw)
}

/// One quality focal element (`QUAL-5`, `QUAL-6`): the label's column scaled by
/// `|s - p|^beta` against score `s`, the others by `p^beta` against 0.
pub fn qfl_element(x: f64, positive: bool, s: f64, beta: f64) -> (f64, f64) {
    if !x.is_finite() {
        return (f64::NAN, f64::NAN);
    }
    let p = sigmoid(x);
    let dp = p * (1.0 - p);
    if positive {
        let (bce, dbce) = bce_element(x, s, 1.0);
        let diff = s - p;
        let (m, dm) = pow_d(diff.abs(), beta);
        // d|s - p|/dx = -sign(s - p) p (1 - p)
        (bce * m, dbce * m + bce * dm * (-diff.signum()) * dp)
    } else {
        let (bce, dbce) = bce_element(x, 0.0, 1.0);
        let (m, dm) = pow_d(p, beta);
        (bce * m, dbce * m + bce * dm * dp)
    }
}

/// The gradient factor of item `i` and the mean's denominator `den`.
fn factor<C: crate::plan::LossConfig>(
    plan: &Plan<'_, C>,
    up: &Upstream<'_>,
    den: f64,
    i: usize,
) -> f64 {
    let scale = if plan.reduction() == crate::Reduction::Mean {
        1.0 / den
    } else {
        1.0
    };
    plan.item_scale(up, scale, i)
}

/// Reference varifocal loss, element-wise, then the reduction (`QUAL-4`).
pub fn varifocal(call: Call<'_, Varifocal, f64, VarifocalTargets<'_, f64>>) -> Loss {
    let Parts {
        plan,
        io,
        with,
        upstream,
    } = call.into_parts();
    let cfg = plan.cfg;
    let den = cfg.mean_denominator(plan.items);
    let x = io.input();
    let mut losses = Vec::with_capacity(x.len());
    let mut g = Vec::with_capacity(x.len());
    for (i, &xi) in x.iter().enumerate() {
        let l = with.labels.and_then(|l| l.get(i)).copied().unwrap_or(0.0);
        let (v, d) = varifocal_element(xi, with.scores[i], l, cfg.alpha, cfg.gamma, cfg.weight);
        losses.push(v);
        g.push(factor(&plan, &upstream, den, i) * d);
    }
    write(io, &g);
    plan.reduce(losses, den)
}

/// Reference quality focal loss: one loss per row (the sum over its classes), then the
/// reduction (`QUAL-7`).
pub fn quality_focal(call: Call<'_, QualityFocal, f64, QflTargets<'_, f64>>) -> Loss {
    let Parts {
        plan,
        io,
        with,
        upstream,
    } = call.into_parts();
    let cfg = plan.cfg;
    let c = plan.width;
    let den = cfg.mean_denominator(plan.items);
    let x = io.input();
    let mut losses = Vec::with_capacity(plan.items);
    let mut g = vec![0.0; x.len()];
    for i in 0..plan.items {
        let f = factor(&plan, &upstream, den, i);
        let label = with.labels[i];
        let mut sum = 0.0;
        for j in 0..c {
            let (v, d) = qfl_element(x[i * c + j], label == j as i64, with.scores[i], cfg.beta);
            sum += v;
            g[i * c + j] = f * d;
        }
        losses.push(sum);
    }
    write(io, &g);
    plan.reduce(losses, den)
}

fn write(io: Io<'_, [f64]>, g: &[f64]) {
    if io.grad_dest().wanted() {
        io.write_grad_f64(g);
    }
}
