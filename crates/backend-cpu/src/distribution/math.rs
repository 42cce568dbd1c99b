//! One row of the distribution focal loss in `f32` (`DFL-1` .. `DFL-3`), with the FMA-free
//! [`exp_f32`] so that the AVX2 + FMA and the portable builds of `mod.rs` give the same bits
//! (an explicit `mul_add` outside an FMA build is a slow library call).

use crate::math::{exp_f32, ln_f32};
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
/// `e` is scratch of the row's length (the exponentials, computed once). A non-finite logit
/// gives NaN (loss and gradient row), as the reference.
#[inline(always)]
pub(crate) fn dfl_row(
    z: &[f32],
    e: &mut [f32],
    t: f32,
    conv: DflConvention,
    f: f32,
    grad: Option<&mut [f32]>,
) -> f32 {
    let (l, wl, wr) = split(t, z.len(), conv);
    // Max, finiteness and the exponentials' sum in eight lanes of a fixed order, so that the
    // loops vectorise (a sequential f32 reduction does not).
    let mut mx = [f32::NEG_INFINITY; 8];
    let mut bad = [0.0f32; 8];
    let mut chunks = z.chunks_exact(8);
    for c in &mut chunks {
        for j in 0..8 {
            mx[j] = mx[j].max(c[j]);
            // 0 for a finite value, NaN for a non-finite one (inf * 0, NaN * 0).
            bad[j] += c[j] * 0.0;
        }
    }
    for (j, &v) in chunks.remainder().iter().enumerate() {
        mx[j] = mx[j].max(v);
        bad[j] += v * 0.0;
    }
    let m = mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if bad.iter().any(|b| *b != 0.0) {
        if let Some(g) = grad {
            g.fill(f32::NAN);
        }
        return f32::NAN;
    }
    for (ej, &v) in e.iter_mut().zip(z) {
        *ej = exp_f32(v - m);
    }
    let mut acc = [0.0f32; 8];
    let mut chunks = e.chunks_exact(8);
    for c in &mut chunks {
        for j in 0..8 {
            acc[j] += c[j];
        }
    }
    for (j, &v) in chunks.remainder().iter().enumerate() {
        acc[j] += v;
    }
    let s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    let ls = ln_f32(s);
    let loss = wl * (ls + (m - z[l])) + wr * (ls + (m - z[l + 1]));
    if let Some(g) = grad {
        let a = (wl + wr) * f / s;
        for (gj, &ej) in g.iter_mut().zip(e.iter()) {
            *gj = a * ej;
        }
        g[l] -= wl * f;
        g[l + 1] -= wr * f;
    }
    loss
}
