//! `TOL-2`'s softcap terms (`spec/formulas/tolerance.md`): the `f32` backends hold the capped
//! logits `z' = cap tanh(z / cap)` of `CE-10` in `f32`, each within `delta = 3 * 2^-23 |z'|`
//! ([`Tolerance::F32_CAPPED_LOGIT`](crate::Tolerance::F32_CAPPED_LOGIT)), and even correctly
//! rounded ones move the softmax. This module gives, for each loss value and gradient entry of
//! a call, how far it may move per unit of that relative error (its *sensitivity*); the
//! tolerance multiplies it by `capped_logit`.
//!
//! With `D_i = max_k |z'_ik|` (every capped logit moves by at most `rel * D_i`), a row's
//! log-sum-exp moves by at most `rel D_i` and each probability by at most `2 p_j rel D_i`, so
//! - a gradient entry `c_i (A_i p_j - ...) dz'_j/dz_j` moves by `c_i A'_i dz'_j/dz_j 2 p_j D_i`,
//!   `A_i` the gradient's `A` of `CE-1` / `CE-9` (class targets: `(1 - eps) w_y + eps W / C`,
//!   probability targets: `sum_k w_k q'_k`), `A'_i = A_i + 2 |s| (|lse_i| + 1/2)` with a z-loss
//!   `s`, `c_i` the row's factor (upstream, row weight, `1 / denominator` for `mean`);
//! - a row's loss `sum_j a_j (lse - z'_j) + s lse^2` moves by `r_i (2 A_i + 2 |s| |lse_i|) D_i`
//!   (`r_i` the row weight), summed over rows for `sum` and divided by the denominator for
//!   `mean`.
//!
//! Ignored rows, rows with a NaN logit, a `mean` with denominator 0 and calls without a
//! softcap have no such term.

use crate::cases::{LossCall, Targets};
use smoothloss_core::{CeTargets, Reduction, Upstream};

/// `(loss, grad)` sensitivities of `call` under `upstream`: one per loss value and one per
/// gradient entry; both empty unless `call` is a cross-entropy with a softcap.
pub fn sensitivities(call: &LossCall, upstream: Upstream<'_>) -> (Vec<f64>, Vec<f64>) {
    let LossCall::CrossEntropy {
        cfg,
        logits,
        rows,
        classes,
        targets,
    } = call
    else {
        return (Vec::new(), Vec::new());
    };
    let Some(cap) = cfg.softcap else {
        return (Vec::new(), Vec::new());
    };
    let (n, c) = (*rows, *classes);
    if c == 0 || logits.len() != n * c {
        return (Vec::new(), Vec::new());
    }
    let eps = cfg.label_smoothing;
    let w: Vec<f64> = (0..c).map(|j| cfg.weight(j).abs()).collect();
    let w_sum: f64 = w.iter().sum();
    let ce_targets = match targets {
        Targets::Classes(t) => CeTargets::Classes(t),
        Targets::Probs(q) => CeTargets::Probs(&q[..]),
    };
    let mean = cfg.reduction == Reduction::Mean;
    let denom = if mean {
        cfg.reduction_denominator(&ce_targets, n).abs()
    } else {
        1.0
    };
    // A `mean` over nothing (denominator 0) gives non-finite expected values, matched exactly.
    if !(denom.is_finite() && denom > 0.0) {
        return (Vec::new(), Vec::new());
    }
    let s = cfg.z_loss.abs();
    let mut row_loss = vec![0.0; n];
    let mut grad = vec![0.0; n * c];
    for i in 0..n {
        let q_row = match targets {
            Targets::Classes(t) => {
                let y = t.get(i).copied().unwrap_or(-1);
                if cfg.ignore_index == Some(y) || y < 0 || y as usize >= c {
                    continue;
                }
                None
            }
            Targets::Probs(q) => q.get(i * c..(i + 1) * c),
        };
        let zc: Vec<f64> = logits[i * c..(i + 1) * c]
            .iter()
            .map(|&v| cap * (v / cap).tanh())
            .collect();
        if zc.iter().any(|v| v.is_nan()) {
            continue;
        }
        let d = zc.iter().fold(0.0_f64, |a, v| a.max(v.abs()));
        let m = zc.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v));
        let e: Vec<f64> = zc.iter().map(|&v| (v - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        let lse = (m + sum.ln()).abs();
        let a = match (targets, q_row) {
            (Targets::Classes(t), _) => {
                (1.0 - eps).abs() * w[t[i] as usize] + eps.abs() * w_sum / c as f64
            }
            (_, Some(q)) => (0..c)
                .map(|k| w[k] * ((1.0 - eps) * q[k] + eps / c as f64).abs())
                .sum(),
            (_, None) => continue,
        };
        let r = cfg.row_weight(i).abs();
        row_loss[i] = r * (2.0 * a + 2.0 * s * lse) * d;
        let u = match upstream {
            Upstream::Scalar(u) => u.abs(),
            Upstream::PerElement(u) => u.get(i).map_or(1.0, |v| v.abs()),
        };
        let ci = u * r / denom;
        let a_grad = a + 2.0 * s * (lse + 0.5);
        for j in 0..c {
            let t = (logits[i * c + j] / cap).tanh();
            grad[i * c + j] = ci * a_grad * (1.0 - t * t) * 2.0 * e[j] / sum * d;
        }
    }
    let loss = if cfg.reduction == Reduction::None {
        row_loss
    } else {
        vec![row_loss.iter().sum::<f64>() / denom]
    };
    (loss, grad)
}
