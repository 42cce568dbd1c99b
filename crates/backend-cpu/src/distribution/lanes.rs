//! Distribution focal loss eight rows at a time (`DFL-1` .. `DFL-3`): a row of `bins` logits is
//! a small softmax, too short for the vector width to pay inside one row (horizontal maxima and
//! sums per row), so eight rows are transposed into `[bins][8]` scratch and every step (max,
//! finiteness, exponentials, their sum, `ln`, the gradient) runs lane = row, vectorised by the
//! compiler. The per-row scalar work (the target split in `f64`, the two target bins) is eight
//! scalar steps per group. A partial group is padded with zero rows, so a row's arithmetic does
//! not depend on its position: the same bits for any thread count, and for the AVX2 + FMA and
//! the portable builds (separately rounded operations only, [`exp_f32`], [`ln_f32`]).

use super::math::split;
use crate::math::{exp_f32, ln_f32};
use smoothloss_core::DflConvention;

/// Rows per group (the lanes).
pub(crate) const L: usize = 8;

/// The transposed logits and exponentials of one group, reused across groups.
pub(crate) struct Scratch {
    z: Vec<[f32; L]>,
    e: Vec<[f32; L]>,
}

impl Scratch {
    pub(crate) fn new(bins: usize) -> Self {
        Self {
            z: vec![[0.0; L]; bins],
            e: vec![[0.0; L]; bins],
        }
    }
}

/// One group of `t.len() <= 8` rows: logits `z` (`t.len() * bins`, row-major), targets `t`,
/// per-row upstream factors `f`. Writes each row's loss into `loss` and, when given, `f * d(loss)
/// / dz` into `grad` (same layout as `z`). A row with a non-finite logit has loss NaN and a NaN
/// gradient row, as the reference (`TOL-4`).
#[inline(always)]
pub(crate) fn group(
    z: &[f32],
    t: &[f32],
    f: &[f32; L],
    conv: DflConvention,
    sc: &mut Scratch,
    grad: Option<&mut [f32]>,
    loss: &mut [f32; L],
) {
    let nr = t.len();
    let bins = sc.z.len();
    for (k, row) in z.chunks_exact(bins).enumerate() {
        for (zj, &v) in sc.z.iter_mut().zip(row) {
            zj[k] = v;
        }
    }
    for zj in sc.z.iter_mut() {
        zj[nr..].fill(0.0);
    }
    // Max and finiteness (`v * 0` is 0 for a finite `v`, NaN otherwise).
    let mut m = [f32::NEG_INFINITY; L];
    let mut bad = [0.0f32; L];
    for zj in &sc.z {
        for k in 0..L {
            m[k] = if zj[k] > m[k] { zj[k] } else { m[k] };
            bad[k] += zj[k] * 0.0;
        }
    }
    for (zj, ej) in sc.z.iter().zip(sc.e.iter_mut()) {
        for k in 0..L {
            ej[k] = zj[k] - m[k];
        }
    }
    // One flat loop for the exponentials (`bins * 8` of them): the loop vectoriser takes it,
    // where the eight lanes of a row step alone stay scalar (`exp_f32`'s conversions).
    for v in sc.e.as_flattened_mut() {
        *v = exp_f32(*v);
    }
    let mut s = [0.0f32; L];
    for ej in &sc.e {
        for k in 0..L {
            s[k] += ej[k];
        }
    }
    let ls = s.map(ln_f32);
    // DFL-1, DFL-2: the two target bins, row by row.
    let mut side = [(0usize, 0.0f32, 0.0f32); L];
    for k in 0..nr {
        let (l, wl, wr) = split(t[k], bins, conv);
        side[k] = (l, wl, wr);
        let (zl, zr) = (sc.z[l][k], sc.z[l + 1][k]);
        loss[k] = wl * (ls[k] + (m[k] - zl)) + wr * (ls[k] + (m[k] - zr));
    }
    let Some(g) = grad else {
        for k in 0..nr {
            if bad[k] != 0.0 {
                loss[k] = f32::NAN;
            }
        }
        return;
    };
    // DFL-3: f (softmax - the two weights at their bins).
    let mut a = [0.0f32; L];
    for k in 0..nr {
        let (_, wl, wr) = side[k];
        a[k] = (wl + wr) * f[k] / s[k];
    }
    for ej in sc.e.iter_mut() {
        for k in 0..L {
            ej[k] *= a[k];
        }
    }
    for (k, row) in g.chunks_exact_mut(bins).enumerate() {
        if bad[k] != 0.0 {
            row.fill(f32::NAN);
            loss[k] = f32::NAN;
            continue;
        }
        for (gj, ej) in row.iter_mut().zip(&sc.e) {
            *gj = ej[k];
        }
        let (l, wl, wr) = side[k];
        row[l] -= wl * f[k];
        row[l + 1] -= wr * f[k];
    }
}
