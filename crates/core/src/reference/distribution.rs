//! Reference distribution focal loss (`DFL-1` .. `DFL-4`).

use crate::call::Loss;
use crate::distribution::{DflConvention, DistributionFocal};
use crate::plan::{PairCall, Parts};

/// The left bin, the right bin's index and the two weights of a target (`DFL-1`): ultralytics
/// clamps to `[0, bins - 1 - 0.01]` and takes `wr = 1 - wl`; mmdetection takes the target as
/// it is (validated to `[0, bins - 1)`) and `wr = t - left`.
pub fn dfl_split(t: f64, bins: usize, convention: DflConvention) -> (usize, f64, f64) {
    match convention {
        DflConvention::Ultralytics => {
            let t = t.clamp(0.0, bins as f64 - 1.0 - 0.01);
            let left = t as usize; // t >= 0: truncation is the floor, as `.long()`
            let wl = (left + 1) as f64 - t;
            (left, wl, 1.0 - wl)
        }
        DflConvention::Mmdetection => {
            let left = t as usize;
            ((left), (left + 1) as f64 - t, t - left as f64)
        }
    }
}

/// One row's loss (`DFL-2`) and, into `grad` when given, `scale * d(loss)/dz` (`DFL-3`).
/// A row with a non-finite logit gives NaN (loss and its gradient row; `TOL-4`).
pub fn dfl_row(
    z: &[f64],
    t: f64,
    convention: DflConvention,
    scale: f64,
    grad: Option<&mut [f64]>,
) -> f64 {
    let (l, wl, wr) = dfl_split(t, z.len(), convention);
    if z.iter().any(|v| !v.is_finite()) {
        if let Some(g) = grad {
            g.fill(f64::NAN);
        }
        return f64::NAN;
    }
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let s: f64 = z.iter().map(|&v| (v - m).exp()).sum();
    let ls = s.ln();
    // -log p_j = ln s + (m - z_j) >= 0: no cancellation.
    let loss = wl * (ls + (m - z[l])) + wr * (ls + (m - z[l + 1]));
    if let Some(g) = grad {
        for (j, (gj, &zj)) in g.iter_mut().zip(z).enumerate() {
            let p = (zj - m).exp() / s;
            let mut d = (wl + wr) * p;
            if j == l {
                d -= wl;
            }
            if j == l + 1 {
                d -= wr;
            }
            *gj = scale * d;
        }
    }
    loss
}

/// Reference distribution focal loss: one item per box (ultralytics, the mean of its four
/// rows) or per row (mmdetection), then the reduction (`DFL-4`).
pub fn distribution_focal(call: PairCall<'_, DistributionFocal, f64>) -> Loss {
    let Parts {
        plan,
        io,
        with: targets,
        upstream,
    } = call.into_parts();
    let cfg = plan.cfg;
    let per = cfg.convention.rows_per_item();
    let bins = cfg.bins(&plan);
    let z = io.input();
    let wants = io.grad_dest().wanted();
    let mut g = vec![0.0; if wants { z.len() } else { 0 }];
    let scale = plan.count_scale();
    let mut losses = Vec::with_capacity(plan.items);
    for i in 0..plan.items {
        let f = plan.item_scale(&upstream, scale, i) / per as f64;
        let mut sum = 0.0;
        for k in 0..per {
            let r = i * per + k;
            let gr = wants.then(|| &mut g[r * bins..(r + 1) * bins]);
            sum += dfl_row(
                &z[r * bins..(r + 1) * bins],
                targets[r],
                cfg.convention,
                f,
                gr,
            );
        }
        losses.push(sum / per as f64);
    }
    if wants {
        io.write_grad_f64(&g);
    }
    plan.reduce(losses, plan.items as f64)
}
