//! One rank of the vocab-parallel cross-entropy (`VP-2` .. `VP-4`), in `f64`: the row
//! statistics of the local slice, two all-reduces (maximum, then the sums), the loss of the
//! whole vocabulary, the local gradient.

use crate::call::{Io, Loss};
use crate::cross_entropy::{CePlan, CeTargets};
use crate::element::Element;
use crate::error::Result;
use crate::reduction::Reduction;
use crate::vocab_parallel::{Collective, ReduceOp, VocabShard};

/// Runs one rank's part of a validated vocab-parallel call (`width` local classes).
pub(crate) fn rank_cross_entropy<T: Element, C: Collective + ?Sized>(
    comm: &C,
    plan: &CePlan<'_>,
    shard: VocabShard<'_, T>,
    width: usize,
    targets: CeTargets<'_, T>,
) -> Result<Loss> {
    let cfg = plan.cfg;
    let (n, c, off) = (shard.rows, shard.vocab, shard.offset);
    let eps = cfg.label_smoothing;
    let w: Vec<f64> = (off..off + width).map(|j| cfg.weight(j)).collect();
    let w_sum: f64 = (0..c).map(|j| cfg.weight(j)).sum();
    let z = shard.io.input();
    let zf = |i: usize, j: usize| z[i * width + j].to_f64();
    let ignored =
        |i: usize| matches!(targets, CeTargets::Classes(t) if cfg.ignore_index == Some(t[i]));
    // VP-2: the row maximum over the whole vocabulary (NaN propagates: CE-1).
    let mut m: Vec<f64> = (0..n)
        .map(|i| {
            (0..width).fold(f64::NEG_INFINITY, |a, j| {
                let v = zf(i, j);
                if a.is_nan() || v.is_nan() {
                    f64::NAN
                } else {
                    a.max(v)
                }
            })
        })
        .collect();
    comm.all_reduce_f64(ReduceOp::Max, &mut m)?;
    // VP-3: the sums of the whole vocabulary, one all-reduce of five per row:
    // s = sum exp(z - M), sw = sum w (z - M), t = z_y - M (on the target's rank),
    // a = sum w q', b = sum w q' (z - M) (probability targets).
    let mut sums = vec![0.0; 5 * n];
    for i in 0..n {
        if ignored(i) {
            continue;
        }
        let mi = m[i];
        let (mut s, mut sw, mut t, mut a, mut b) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for j in 0..width {
            let d = zf(i, j) - mi;
            s += d.exp();
            match targets {
                CeTargets::Classes(y) => {
                    if eps != 0.0 {
                        sw += w[j] * d;
                    }
                    if y[i] as u64 == (off + j) as u64 {
                        t = d;
                    }
                }
                CeTargets::Probs(q) => {
                    let qs = (1.0 - eps) * q[i * width + j].to_f64() + eps / c as f64;
                    a += w[j] * qs;
                    b += w[j] * qs * d;
                }
            }
        }
        sums[5 * i..5 * i + 5].copy_from_slice(&[s, sw, t, a, b]);
    }
    comm.all_reduce_f64(ReduceOp::Sum, &mut sums)?;
    // VP-4: the loss of each row and the mean's denominator, the same on every rank.
    let mut losses = vec![0.0; n];
    for i in 0..n {
        if ignored(i) {
            continue;
        }
        let [s, sw, t, a, b] = [0, 1, 2, 3, 4].map(|k| sums[5 * i + k]);
        let ln_s = s.ln();
        losses[i] = match targets {
            CeTargets::Classes(y) => {
                let nll = -cfg.weight(y[i] as usize) * (t - ln_s);
                if eps == 0.0 {
                    nll
                } else {
                    (1.0 - eps) * nll + eps / c as f64 * -(sw - w_sum * ln_s)
                }
            }
            CeTargets::Probs(_) => -(b - a * ln_s),
        };
    }
    let denom = cfg.mean_denominator(&targets, n);
    let scale = if cfg.reduction == Reduction::Mean {
        1.0 / denom
    } else {
        1.0
    };
    // The local gradient: CE-8 / CE-9 with the global M, S, A.
    let upstream = shard.upstream;
    // The logits apart from the gradient buffer; `None` in place (each entry read before it is
    // overwritten).
    let (input, grad): (Option<&[T]>, Option<&mut [T]>) = match shard.io {
        Io::Read(_) => (None, None),
        Io::Separate { input, grad } => (Some(input), Some(grad)),
        Io::InPlace(x) => (None, Some(x)),
    };
    if let Some(g) = grad {
        for i in 0..n {
            let row = &mut g[i * width..(i + 1) * width];
            if ignored(i) {
                row.fill(T::from_f64(0.0));
                continue;
            }
            let u = plan.item_scale(&upstream, scale, i);
            let (mi, s, a) = (m[i], sums[5 * i], sums[5 * i + 3]);
            for j in 0..width {
                let zij = input.map_or(row[j], |x| x[i * width + j]).to_f64();
                let p = (zij - mi).exp() / s;
                let d = match targets {
                    CeTargets::Classes(y) => {
                        let wy = cfg.weight(y[i] as usize);
                        let hard = wy
                            * (p - if y[i] as u64 == (off + j) as u64 {
                                1.0
                            } else {
                                0.0
                            });
                        (1.0 - eps) * hard + eps / c as f64 * (w_sum * p - w[j])
                    }
                    CeTargets::Probs(q) => {
                        let qs = (1.0 - eps) * q[i * width + j].to_f64() + eps / c as f64;
                        p * a - w[j] * qs
                    }
                };
                row[j] = T::from_f64(u * d);
            }
        }
    }
    Ok(plan.reduce(losses, denom))
}
