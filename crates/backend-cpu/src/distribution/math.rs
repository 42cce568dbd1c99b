//! One row of the distribution focal loss in `f32` (`DFL-1` .. `DFL-3`).

use crate::math::{exp_nonpos_f32, ln_f32};
use smoothloss_core::DflConvention;

/// The left bin and the two weights of target `t` (`DFL-1`), in `f64` as the reference (the
/// clamp bound `bins - 1 - 0.01` and the weights are then rounded once).
#[inline]
pub(crate) fn split(t: f32, bins: usize, conv: DflConvention) -> (usize, f32, f32) {
    let t = f64::from(t);
    match conv {
        DflConvention::Ultralytics => {
            let t = t.clamp(0.0, bins as f64 - 1.0 - 0.01);
            let l = t as usize;
            let wl = (l + 1) as f64 - t;
            (l, wl as f32, (1.0 - wl) as f32)
        }
        DflConvention::Mmdetection => {
            let l = t as usize;
            (l, ((l + 1) as f64 - t) as f32, (t - l as f64) as f32)
        }
    }
}

/// The loss of one row; writes `f * d(loss)/dz` into `grad` when given (`DFL-2`, `DFL-3`).
/// A non-finite logit gives NaN (loss and gradient row), as the reference.
#[inline]
pub(crate) fn dfl_row(
    z: &[f32],
    t: f32,
    conv: DflConvention,
    f: f32,
    grad: Option<&mut [f32]>,
) -> f32 {
    let (l, wl, wr) = split(t, z.len(), conv);
    let mut m = f32::NEG_INFINITY;
    let mut finite = true;
    for &v in z {
        m = m.max(v);
        finite &= v.is_finite();
    }
    if !finite {
        if let Some(g) = grad {
            g.fill(f32::NAN);
        }
        return f32::NAN;
    }
    let mut s = 0.0f32;
    for &v in z {
        s += exp_nonpos_f32(v - m);
    }
    let ls = ln_f32(s);
    let loss = wl * (ls + (m - z[l])) + wr * (ls + (m - z[l + 1]));
    if let Some(g) = grad {
        let a = (wl + wr) * f / s;
        for (gj, &zj) in g.iter_mut().zip(z) {
            *gj = a * exp_nonpos_f32(zj - m);
        }
        g[l] -= wl * f;
        g[l + 1] -= wr * f;
    }
    loss
}
