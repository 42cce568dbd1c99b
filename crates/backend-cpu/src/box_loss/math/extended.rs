//! mmdetection's Extended-IoU (`BOX-15`, kind `extended_iou`) in `f32` lanes: the signed
//! overlap `I` from translation-free per-axis terms, the smoothed `1 - I / (U + eps)`, and its
//! hand-derived gradient (ties of `min`/`max` split in half, as the reference).
//!
//! With, per axis, `A = min(p2, t2) - ex1`, `C = max(p1, t1) - ex1` (`ex1 = min(p1, t1)`), the
//! overlap `ov = A - C = min(p2, t2) - max(p1, t1)` (the intersection extent, one rounding) and
//! `sm = A + C`, the reference's four products collapse to `I = ov_x ov_y` (overlap in both
//! axes), `sm_x ov_y` / `ov_x sm_y` (in one) and `ov_x sm_y + sm_x ov_y` (in neither): the
//! same value without the cancellation of four products of the boxes' size that nearly cancel
//! for a thin overlap.

use super::prim::{Axis, excesses, extents_sel, safe_recip};
use super::{FormatMarker, PairParams};
use crate::math::sel;
use smoothloss_core::BoxFormat;

/// One axis: `ov`, `sm`, the share `w` of the overlapping case (1 overlap, 0 none, 1/2 at the
/// tie `ov = 0`, where the reference splits `min`/`max` in half) and the derivative
/// coefficients `d max(p1, t1) / d p1`, `d min(p1, t1) / d p1`, `d min(p2, t2) / d p2`.
#[derive(Clone, Copy)]
struct Span {
    ov: f32,
    sm: f32,
    w: f32,
    s1: f32,
    sm1: f32,
    tm2: f32,
}

#[inline(always)]
fn span<F: FormatMarker>(x: &Axis, p1: f32, p2: f32, t1: f32, t2: f32) -> Span {
    let (a, ov) = if matches!(F::FORMAT, BoxFormat::Xyxy) {
        // Straight from the corners, one rounding each (as the reference).
        let ix2 = sel(p2 < t2, p2, t2);
        (ix2 - sel(p1 < t1, p1, t1), ix2 - sel(p1 > t1, p1, t1))
    } else {
        (
            sel(
                x.e1 < 0.0,
                sel(x.e2 < 0.0, x.w, x.t2p1),
                sel(x.e2 < 0.0, x.p2t1, x.wg),
            ),
            extents_sel(x).0,
        )
    };
    let half = |lt: bool, eq: bool| sel(lt, 1.0, sel(eq, 0.5, 0.0));
    Span {
        ov,
        sm: a + x.e1.abs(),
        w: half(ov > 0.0, ov == 0.0),
        s1: half(x.e1 > 0.0, x.e1 == 0.0),
        sm1: half(x.e1 < 0.0, x.e1 == 0.0),
        tm2: half(x.e2 < 0.0, x.e2 == 0.0),
    }
}

/// `(d I / d p1, d I / d p2)` of one axis from `d I / d ov` and `d I / d sm`
/// (`d ov = d min(p2, t2) - d max(p1, t1)`, `d sm = d ov + 2 (d max(p1, t1) - d min(p1, t1))`).
#[inline(always)]
fn push(s: &Span, a_ov: f32, a_sm: f32) -> (f32, f32) {
    (
        -a_ov * s.s1 + a_sm * (s.s1 - 2.0 * s.sm1),
        (a_ov + a_sm) * s.tm2,
    )
}

/// Extended-IoU of one pair: the loss and, when `G`, its derivative with respect to the
/// prediction's corners `(x1, y1, x2, y2)`.
#[inline(always)]
pub(super) fn extended<F: FormatMarker, const G: bool>(
    ax: &Axis,
    ay: &Axis,
    p: [f32; 4],
    t: [f32; 4],
    prm: &PairParams,
) -> (f32, [f32; 4]) {
    let sx = span::<F>(ax, p[0], p[2], t[0], t[2]);
    let sy = span::<F>(ay, p[1], p[3], t[1], t[3]);
    let (ox, oy) = (sx.ov > 0.0, sy.ov > 0.0);
    // I = ov_x u_y + ov_y v_x (the four cases above; at a tie ov = 0 both agree).
    let u_y = sel(ox, sel(oy, sy.ov, 0.0), sy.sm);
    let v_x = sel(oy, 0.0, sx.sm);
    let i = sx.ov * u_y + sy.ov * v_x;
    let (wh, whg) = (ax.w * ay.w, ax.wg * ay.wg);
    let u = ((wh + whg) - i) + prm.eps;
    let ru = safe_recip(u);
    // l = 1 - I / U as (U - I) / U (exact for identical boxes); 1 where U = 0 (`safe_div`).
    // U - I - eps = w h + wg hg - 2 I, for boxes that overlap in both axes (I = ov_x ov_y, the
    // intersection) without cancellation (`excesses`).
    let um = sel(
        ox && oy,
        excesses(ax, ay, sx.ov, ay.w, ay.wg).0,
        (wh - i) + (whg - i),
    );
    let l = sel(u == 0.0, 1.0, (um + prm.eps) * ru);
    let small = l < prm.smooth_point;
    let loss = sel(
        small,
        0.5 * l * l * prm.inv_smooth_point,
        l - 0.5 * prm.smooth_point,
    );
    if !G {
        return (loss, [0.0; 4]);
    }
    // d I / d(ov, sm) per axis, the cases weighted by their shares (bilinear: the reference's
    // half-split ties are the average of the two cases).
    let (wx, wy) = (sx.w, sy.w);
    let a_ovx = wx * wy * sy.ov + (1.0 - wx) * sy.sm;
    let a_smx = (1.0 - wy) * sy.ov;
    let a_ovy = wx * wy * sx.ov + (1.0 - wy) * sx.sm;
    let a_smy = (1.0 - wx) * sx.ov;
    let (ix1, ix2) = push(&sx, a_ovx, a_smx);
    let (iy1, iy2) = push(&sy, a_ovy, a_smy);
    let ki = [ix1, iy1, ix2, iy2];
    let ka = [-ay.w, -ax.w, ay.w, ax.w];
    // dl = (q dWH - (1 + q) dI) / U with q = I / U (U depends on I and on w h), per
    // coordinate with dI and d(w h) formed apart, in the form that does not cancel: where
    // |q| <= 2 as written, 1 + q = (w h + wg hg + eps) / U formed without cancellation (it is
    // tiny where I is near -U); where |q| > 2 (U just above eps, as for identical inverted
    // boxes) as q (dWH - dI) - dI, whose difference is exact where dWH = dI.
    let dl = sel(small, l * prm.inv_smooth_point, 1.0);
    let q = i * ru;
    let s = dl * ru;
    let opq = ((wh + whg) + prm.eps) * ru;
    let big = q.abs() > 2.0;
    let g: [f32; 4] =
        std::array::from_fn(|k| s * sel(big, q * (ka[k] - ki[k]) - ki[k], q * ka[k] - opq * ki[k]));
    (loss, g)
}
