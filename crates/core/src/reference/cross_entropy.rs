//! Reference cross-entropy (`CE-1` .. `CE-15`).
//!
//! The per-row pieces are public so that a caller running the cross-entropy on chunks of rows
//! (a fused linear cross-entropy) or combining vocabulary shards can evaluate the same
//! formulas: [`softcap_row`] (`CE-10`), [`log_softmax_row`] and [`row_lse`] (`CE-1`, `CE-14`).

use crate::call::Loss;
use crate::cross_entropy::{CeOutput, CeRowOutputs, CeTargets};
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

/// The log-sum-exp of one row, `m + ln sum_j exp(z_j - m)` (`CE-14`), `m` the row's maximum:
/// NaN for a row holding NaN or `+inf`, or only `-inf` (`CE-1`).
pub fn row_lse(z: &[f64]) -> f64 {
    if z.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = z.iter().map(|&v| (v - m).exp()).sum();
    m + s.ln()
}

/// The logit softcap of one row (`CE-10`): `(cap tanh(z_j / cap), 1 - tanh^2(z_j / cap))`,
/// the capped logits and their derivatives with respect to the raw logits. `+-inf` logits
/// become `+-cap` with derivative 0; NaN stays NaN.
pub fn softcap_row(z: &[f64], cap: f64) -> (Vec<f64>, Vec<f64>) {
    let t: Vec<f64> = z.iter().map(|&v| (v / cap).tanh()).collect();
    let capped = t.iter().map(|&t| cap * t).collect();
    let d = t.iter().map(|&t| 1.0 - t * t).collect();
    (capped, d)
}

/// Reference cross-entropy over logits `[rows, classes]`.
pub fn cross_entropy(call: CeCall<'_, f64>) -> Loss {
    cross_entropy_rows(call, CeRowOutputs::new()).loss
}

/// Reference cross-entropy with every option (`CE-1` .. `CE-15`): the loss, the z-loss apart,
/// and the per-row outputs `rows` asks for (their lengths checked by the front door).
pub fn cross_entropy_rows(call: CeCall<'_, f64>, mut rows_out: CeRowOutputs<'_, f64>) -> CeOutput {
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
    let mut z_losses = vec![0.0; rows];
    for i in 0..rows {
        let raw = &logits[i * c..(i + 1) * c];
        let g = &mut row_grads[i * c..(i + 1) * c];
        if let CeTargets::Classes(t) = targets
            && cfg.ignore_index == Some(t[i])
        {
            ignored[i] = true;
            if let Some(l) = rows_out.lse.as_deref_mut() {
                l[i] = 0.0;
            }
            if let Some(h) = rows_out.hit.as_deref_mut() {
                h[i] = false;
            }
            continue; // CE-5: loss 0, gradient 0, not counted in the mean; lse 0, no hit.
        }
        // CE-10: the softcap before everything else; `dcap` is d z' / d z.
        let capped = cfg.softcap.map(|cap| softcap_row(raw, cap));
        let z: &[f64] = capped.as_ref().map_or(raw, |(zc, _)| zc);
        let lse = row_lse(z);
        if let Some(l) = rows_out.lse.as_deref_mut() {
            l[i] = lse;
        }
        match targets {
            CeTargets::Classes(t) => {
                let y = t[i] as usize;
                if let Some(h) = rows_out.hit.as_deref_mut() {
                    // CE-14: the target is (one of) the row's maxima; NaN rows never hit.
                    h[i] = !lse.is_nan() && z.iter().all(|&v| v <= z[y]);
                }
                let (logp, p) = log_softmax_row(z);
                let wy = w[y];
                // CE-12: with row weights each kept row adds r_i w_y.
                denom += if cfg.row_weights.is_some() {
                    cfg.row_weight(i) * wy
                } else {
                    wy
                };
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
                denom += if cfg.row_weights.is_some() {
                    cfg.row_weight(i)
                } else {
                    1.0
                };
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
        // CE-11: z-loss `s lse^2`, gradient `2 s lse p_j` (absent, not `0 * NaN`, when s = 0).
        if cfg.z_loss != 0.0 {
            let zl = cfg.z_loss * lse * lse;
            losses[i] += zl;
            z_losses[i] = zl;
            let (_, p) = log_softmax_row(z);
            for j in 0..c {
                g[j] += 2.0 * cfg.z_loss * lse * p[j];
            }
        }
        // CE-10: the chain rule through the softcap.
        if let Some((_, d)) = &capped {
            for j in 0..c {
                g[j] *= d[j];
            }
        }
        // CE-12: the row weight multiplies the row's loss (z-loss included) and gradient.
        if cfg.row_weights.is_some() {
            let r = cfg.row_weight(i);
            losses[i] *= r;
            z_losses[i] *= r;
            for v in g.iter_mut() {
                *v *= r;
            }
        }
    }
    // CE-7 / CE-13: reductions. All rows ignored under `mean` gives 0/0 = NaN, as PyTorch; a
    // given denominator replaces the batch's own.
    let denom = cfg.denominator.unwrap_or(denom);
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
    CeOutput {
        loss: plan.reduce(losses, denom),
        z_loss: plan.reduce(z_losses, denom),
    }
}
