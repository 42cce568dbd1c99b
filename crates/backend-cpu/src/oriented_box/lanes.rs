//! ProbIoU eight pairs at a time (`OBB-1` .. `OBB-3`, `OBB-5`, `OBB-6`), the path of every call
//! without the CIoU option: the same `f64` arithmetic and hand-derived gradient as
//! [`super::math::probiou_pair`] (the determinant `Sa Sb - Sc^2` cancels for elongated, rotated
//! boxes, so it stays in `f64`), written without branches and with the polynomial
//! [`sincos_f64`], [`exp_nonpos_f64`], [`ln_f64`] instead of libm's calls, so that the loop over
//! the eight lanes vectorises (four `f64` lanes per AVX2 register). A lane whose numbers are not
//! all finite or whose angle exceeds `1e5` in magnitude (outside [`sincos_f64`]'s range) is
//! recomputed by the scalar path, so a pair's result depends on that pair alone. Compiled twice
//! (AVX2 + FMA and portable) from the same IEEE operations: the two give the same bits.

use super::math::{ObbParams, probiou_pair};
use crate::blocks::Up;
use crate::math::{exp_nonpos_f64, ln_f64, sel64, sincos_f64};

/// Pairs per chunk.
pub(crate) const CH: usize = 8;

/// Largest angle magnitude the lanes take (then [`sincos_f64`] holds its bound).
const ANGLE_MAX: f64 = 1e5;

/// Smallest `det / (Sa Sb)` the lanes take: the lanes' `sin`/`cos` err by up to `1e-15`
/// absolute, so `det` errs by about `2e-15 Sa Sb` against libm's; at this ratio that is a
/// relative `2e-8` of `det`, `1e-8` absolute in `0.5 ln(det ...)`.
const DET_MIN_RATIO: f64 = 1e-7;

const SQRT12_INV: f64 = 0.288_675_134_594_812_9;

/// `sqrt(w^2 / 12 + floor)` and its derivative in `w` (0 at `w = 0, floor = 0`).
#[inline(always)]
fn sd<const FL: bool>(w: f64, floor: f64) -> (f64, f64) {
    if FL {
        let r = (w * w / 12.0 + floor).sqrt();
        (r, w / (12.0 * r))
    } else {
        let sign = sel64(w > 0.0, 1.0, sel64(w < 0.0, -1.0, 0.0));
        (w.abs() * SQRT12_INV, sign * SQRT12_INV)
    }
}

/// One pair without branches: `(1 - ProbIoU, ProbIoU, gradient of the first, scalar?)`, the
/// last true where the lane must be recomputed by the scalar path.
#[inline(always)]
fn pair<const G: bool, const FL: bool>(
    p: [f64; 5],
    t: [f64; 5],
    eps: f64,
    floor: f64,
) -> (f64, f64, [f64; 5], bool) {
    let fin = p.iter().chain(&t).fold(0.0, |a, v| a + v * 0.0) == 0.0;
    // (`fin` false for NaN, so the comparisons below see numbers.)
    let scalar = !fin || p[4].abs() > ANGLE_MAX || t[4].abs() > ANGLE_MAX;
    let (si1, co1) = sincos_f64(p[4]);
    let (si2, co2) = sincos_f64(t[4]);
    let big_a1 = p[2] * p[2] * (1.0 / 12.0) + floor;
    let big_b1 = p[3] * p[3] * (1.0 / 12.0) + floor;
    let big_a2 = t[2] * t[2] * (1.0 / 12.0) + floor;
    let big_b2 = t[3] * t[3] * (1.0 / 12.0) + floor;
    let (c1s, s1s, cs1) = (co1 * co1, si1 * si1, co1 * si1);
    let (c2s, s2s, cs2) = (co2 * co2, si2 * si2, co2 * si2);
    let (a1, b1, c1) = (
        big_a1 * c1s + big_b1 * s1s,
        big_a1 * s1s + big_b1 * c1s,
        (big_a1 - big_b1) * cs1,
    );
    let (a2, b2, c2) = (
        big_a2 * c2s + big_b2 * s2s,
        big_a2 * s2s + big_b2 * c2s,
        (big_a2 - big_b2) * cs2,
    );
    let (sa, sb, sc) = (a1 + a2, b1 + b2, c1 + c2);
    let (dx, dy) = (p[0] - t[0], p[1] - t[1]);
    let det = sa * sb - sc * sc;
    let den = det + eps;
    let id = 1.0 / den;
    let t1 = (sa * dy * dy + sb * dx * dx) * id * 0.25;
    let t2 = -(sc * dx * dy) * id * 0.5;
    let (sw1, dsw1) = sd::<FL>(p[2], floor);
    let (sh1, dsh1) = sd::<FL>(p[3], floor);
    let (sw2, _) = sd::<FL>(t[2], floor);
    let (sh2, _) = sd::<FL>(t[3], floor);
    let q2 = sw2 * sh2;
    let q = sw1 * sh1 * q2;
    let iq = 1.0 / (4.0 * q + eps);
    let big_r = det * iq + eps;
    // The determinant as written cancels for two nearly singular (thin, aligned) boxes: there
    // its rounding decides the result (the reference's `ln` of a rounded, possibly negative,
    // number may be NaN), and the lanes' `sin`/`cos` round differently from libm's. Such a lane
    // takes the scalar path (libm, as the reference), as does an argument outside `ln_f64`'s
    // domain (not a positive, finite, normal number).
    let conditioned =
        det > DET_MIN_RATIO * (sa * sb) && (f64::MIN_POSITIVE..=f64::MAX).contains(&big_r);
    let scalar = scalar || !conditioned;
    let t3 = 0.5 * ln_f64(big_r);
    let raw = t1 + t2 + t3;
    let active = !(raw < eps || raw > 100.0);
    let bd = sel64(raw < eps, eps, sel64(raw > 100.0, 100.0, raw));
    let e = exp_nonpos_f64(-bd);
    let hd = (1.0 - e + eps).sqrt();
    let mut grad = [0.0; 5];
    if G {
        let gbd = sel64(active, e / (2.0 * hd), 0.0);
        let gi = gbd * id;
        let mut dsa = gi * 0.25 * dy * dy;
        let mut dsb = gi * 0.25 * dx * dx;
        let mut dsc = -gi * 0.5 * dx * dy;
        let ddx = gi * (0.5 * sb * dx - 0.5 * sc * dy);
        let ddy = gi * (0.5 * sa * dy - 0.5 * sc * dx);
        let dden = -gi * (t1 + t2);
        let dr = gbd * 0.5 / big_r;
        let ddet = dden + dr * iq;
        let dq = -dr * det * 4.0 * iq * iq;
        dsa += ddet * sb;
        dsb += ddet * sa;
        dsc -= 2.0 * sc * ddet;
        let d_a = dsa * c1s + dsb * s1s + dsc * cs1;
        let d_b = dsa * s1s + dsb * c1s - dsc * cs1;
        let dr1 = 2.0 * c1 * (dsb - dsa) + dsc * (big_a1 - big_b1) * (c1s - s1s);
        grad = [
            ddx,
            ddy,
            d_a * p[2] * (1.0 / 6.0) + dq * q2 * sh1 * dsw1,
            d_b * p[3] * (1.0 / 6.0) + dq * q2 * sw1 * dsh1,
            dr1,
        ];
    }
    (hd, 1.0 - hd, grad, scalar)
}

/// One chunk's results.
pub(crate) struct Chunk {
    /// `1 - ProbIoU` per lane.
    pub(crate) loss: [f64; CH],
    /// ProbIoU per lane.
    pub(crate) iou: [f64; CH],
    /// The gradient, component-major: `grad[k][j]` is component `k` of lane `j`.
    pub(crate) grad: [[f64; CH]; 5],
}

/// `CH` pairs from `p`, `t` (`5 CH` numbers each, row-major): the lanes' results, the scalar
/// path's for the lanes it must take.
#[inline(always)]
pub(crate) fn chunk<const G: bool, const FL: bool>(
    p: &[f32; 5 * CH],
    t: &[f32; 5 * CH],
    prm: &ObbParams,
) -> Chunk {
    let mut out = Chunk {
        loss: [0.0; CH],
        iou: [0.0; CH],
        grad: [[0.0; CH]; 5],
    };
    let mut scalar = [false; CH];
    for j in 0..CH {
        let pj: [f64; 5] = std::array::from_fn(|k| f64::from(p[5 * j + k]));
        let tj: [f64; 5] = std::array::from_fn(|k| f64::from(t[5 * j + k]));
        let (l, i, g, s) = pair::<G, FL>(pj, tj, prm.eps, prm.floor);
        out.loss[j] = l;
        out.iou[j] = i;
        for (k, gk) in g.into_iter().enumerate() {
            out.grad[k][j] = gk;
        }
        scalar[j] = s;
    }
    for (j, _) in scalar.iter().enumerate().filter(|(_, s)| **s) {
        let pj: [f64; 5] = std::array::from_fn(|k| f64::from(p[5 * j + k]));
        let tj: [f64; 5] = std::array::from_fn(|k| f64::from(t[5 * j + k]));
        let (l, i, g) = probiou_pair::<G>(pj, tj, prm);
        out.loss[j] = l;
        out.iou[j] = i;
        for (k, gk) in g.into_iter().enumerate() {
            out.grad[k][j] = gk;
        }
    }
    out
}

/// A benign pair for the padding lanes of a partial chunk.
const PAD: [f32; 5] = [0.0, 0.0, 1.0, 1.0, 0.0];

/// One block of `pred.len() / 5` pairs (`1 - ProbIoU`): writes `f * gradient` (as `f32`) and
/// the per-pair losses (rounded to `f32`, as every `f32` backend's), returns their sum in pair
/// order.
#[inline(always)]
pub(crate) fn block<const G: bool, const FL: bool>(
    pred: &[f32],
    target: &[f32],
    prm: &ObbParams,
    up: Up<'_>,
    mut grad: Option<&mut [f32]>,
    mut losses: Option<&mut [f64]>,
) -> f64 {
    let n = pred.len() / 5;
    let mut total = 0.0;
    let mut off = 0;
    while off < n {
        let r = (n - off).min(CH);
        let mut p = [0.0f32; 5 * CH];
        let mut t = [0.0f32; 5 * CH];
        for j in r..CH {
            p[5 * j..5 * j + 5].copy_from_slice(&PAD);
            t[5 * j..5 * j + 5].copy_from_slice(&PAD);
        }
        p[..5 * r].copy_from_slice(&pred[5 * off..5 * (off + r)]);
        t[..5 * r].copy_from_slice(&target[5 * off..5 * (off + r)]);
        let c = chunk::<G, FL>(&p, &t, prm);
        for j in 0..r {
            let k = off + j;
            if G && let Some(g) = grad.as_deref_mut() {
                let f = match up {
                    Up::Scalar(s) => f64::from(s),
                    Up::Per(u, s) => u[k] * s,
                };
                for (m, gm) in g[5 * k..5 * k + 5].iter_mut().enumerate() {
                    *gm = (f * c.grad[m][j]) as f32;
                }
            }
            let loss = f64::from(c.loss[j] as f32);
            if let Some(l) = losses.as_deref_mut() {
                l[k] = loss;
            }
            total += loss;
        }
        off += r;
    }
    total
}

/// ProbIoU of `a` against each box of `b` (`OBB-6`, `floor = 0`) into `out`.
#[inline(always)]
pub(crate) fn row(a: &[f32; 5], b: &[f32], prm: &ObbParams, out: &mut [f32]) {
    let m = out.len();
    let mut p = [0.0f32; 5 * CH];
    for j in 0..CH {
        p[5 * j..5 * j + 5].copy_from_slice(a);
    }
    let mut off = 0;
    while off < m {
        let r = (m - off).min(CH);
        let mut t = [0.0f32; 5 * CH];
        for j in r..CH {
            t[5 * j..5 * j + 5].copy_from_slice(&PAD);
        }
        t[..5 * r].copy_from_slice(&b[5 * off..5 * (off + r)]);
        let c = chunk::<false, false>(&p, &t, prm);
        for (o, v) in out[off..off + r].iter_mut().zip(&c.iou) {
            *o = *v as f32;
        }
        off += r;
    }
}
