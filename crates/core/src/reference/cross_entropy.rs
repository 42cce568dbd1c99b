//! Reference cross-entropy (`CE-1` .. `CE-9`).

use crate::call::Loss;
use crate::cross_entropy::CeTargets;
use crate::plan::{CeCall, Parts};
use crate::reduction::Reduction;

/// Log-softmax of one row with the maximum subtracted (`CE-1`): returns `(log p, p)`.
///
/// A row containing NaN or `+inf` gives NaN everywhere; `-inf` logits are allowed (p = 0) as
/// long as one logit is finite.
pub fn log_softmax_row(z: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let m = if z.iter().any(|v| v.is_nan()) {
        f64::NAN
    } else {
        m
    };
    let s: f64 = z.iter().map(|&v| (v - m).exp()).sum();
    // (z - m) - ln S, not z - (m + ln S): the latter absorbs ln S into a huge m.
    let ln_s = s.ln();
    let logp: Vec<f64> = z.iter().map(|&v| (v - m) - ln_s).collect();
    let p: Vec<f64> = z.iter().map(|&v| (v - m).exp() / s).collect();
    (logp, p)
}

/// Reference cross-entropy over logits `[rows, classes]`.
pub fn cross_entropy(call: CeCall<'_, f64>) -> Loss {
    let Parts {
        plan,
        io,
        with: targets,
        upstream,
    } = call.into_parts();
    let cfg = plan.cfg;
    let (rows, classes) = (plan.rows(), plan.classes());
    let logits = io.input();
    let c = classes;
    let eps = cfg.label_smoothing;
    let w: Vec<f64> = (0..c).map(|j| cfg.weight(j)).collect();
    let w_sum: f64 = w.iter().sum();
    let mut losses = vec![0.0; rows];
    // d(loss_i)/d(z_ij) before the reduction and the upstream gradient.
    let mut row_grads = vec![0.0; rows * c];
    // Mean denominator: sum of target-class weights of kept rows (CE-7), or N for probabilities.
    let mut denom = 0.0;
    let mut out = io.grad_dest().wanted().then(|| vec![0.0; rows * classes]);
    let mut ignored = vec![false; rows];
    for i in 0..rows {
        let z = &logits[i * c..(i + 1) * c];
        let g = &mut row_grads[i * c..(i + 1) * c];
        match targets {
            CeTargets::Classes(t) => {
                let y = t[i];
                if cfg.ignore_index == Some(y) {
                    ignored[i] = true;
                    continue; // CE-5: loss 0, gradient 0, not counted in the mean.
                }
                let y = y as usize;
                let (logp, p) = log_softmax_row(z);
                let wy = w[y];
                denom += wy;
                // CE-2 / CE-4: weighted negative log-likelihood of the target class.
                let nll = -wy * logp[y];
                // CE-3: the uniform part of the smoothed target, weighted per class.
                // Without smoothing the term is absent (not 0 * inf for a -inf logit), as PyTorch.
                losses[i] = if eps == 0.0 {
                    nll
                } else {
                    let smooth: f64 = -(0..c).map(|j| w[j] * logp[j]).sum::<f64>();
                    (1.0 - eps) * nll + eps / c as f64 * smooth
                };
                // CE-8: d/dz_j = (1-eps) w_y (p_j - [j=y]) + eps/C (W p_j - w_j).
                for j in 0..c {
                    let hard = wy * (p[j] - if j == y { 1.0 } else { 0.0 });
                    let soft = w_sum * p[j] - w[j];
                    g[j] = (1.0 - eps) * hard + eps / c as f64 * soft;
                }
            }
            CeTargets::Probs(q) => {
                let q = &q[i * c..(i + 1) * c];
                let (logp, p) = log_softmax_row(z);
                denom += 1.0;
                // CE-6: smoothed distribution q' = (1-eps) q + eps/C.
                let qs: Vec<f64> = q
                    .iter()
                    .map(|&v| (1.0 - eps) * v + eps / c as f64)
                    .collect();
                losses[i] = -(0..c).map(|j| w[j] * qs[j] * logp[j]).sum::<f64>();
                // CE-9: d/dz_j = p_j sum_k w_k q'_k - w_j q'_j.
                let wq: f64 = (0..c).map(|k| w[k] * qs[k]).sum();
                for j in 0..c {
                    g[j] = p[j] * wq - w[j] * qs[j];
                }
            }
        }
    }
    // CE-7: reductions. All rows ignored under `mean` gives 0/0 = NaN, as PyTorch.
    let scale = if cfg.reduction == Reduction::Mean {
        1.0 / denom
    } else {
        1.0
    };
    if let Some(out) = out.as_deref_mut() {
        for i in 0..rows {
            if ignored[i] {
                // Exactly zero, even when the mean's denominator is 0 (PyTorch writes no
                // gradient for ignored rows).
                out[i * c..(i + 1) * c].fill(0.0);
                continue;
            }
            let u = plan.item_scale(&upstream, scale, i);
            for j in 0..c {
                out[i * c + j] = u * row_grads[i * c + j];
            }
        }
    }
    if let Some(g) = &out {
        io.write_grad_f64(g);
    }
    plan.reduce(losses, denom)
}
