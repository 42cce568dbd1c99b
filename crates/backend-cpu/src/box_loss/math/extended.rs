//! mmdetection's Extended-IoU (`BOX-15`, kind `extended_iou`) in `f32` lanes: the signed
//! overlap `I` from translation-free per-axis terms, the smoothed `1 - I / (U + eps)`, and its
//! hand-derived gradient (ties of `min`/`max` split in half, as the reference).

use super::prim::{Axis, safe_recip};
use super::{FormatMarker, PairParams};
use crate::math::sel;
use smoothloss_core::BoxFormat;

/// One axis of the signed overlap, relative to `ex1 = min(p1, t1)`: `A = min(p2, t2) - ex1`,
/// `C = max(p1, t1) - ex1 = |p1 - t1|`, `B = min(C, A)` and `D = max(C, A)` (the reference's
/// `xmin - ex1`, `xmax - ex1`), with the derivative coefficients of `A` and `C` in the
/// prediction's `p1`, `p2` and the tie-splitting share `cb` of `C` in `B`.
#[derive(Clone, Copy)]
struct Span {
    a: f32,
    b: f32,
    c: f32,
    d: f32,
    /// `d min(p1, t1) / d p1`.
    sm1: f32,
    /// `d max(p1, t1) / d p1`.
    s1: f32,
    /// `d min(p2, t2) / d p2`.
    tm2: f32,
    /// `d B / d C` (`d B / d A = 1 - cb`; `D` the other way round).
    cb: f32,
}

#[inline(always)]
fn span<F: FormatMarker>(x: &Axis, p1: f32, p2: f32, t1: f32, t2: f32) -> Span {
    let a = if matches!(F::FORMAT, BoxFormat::Xyxy) {
        // Straight from the corners, one rounding (as the reference).
        sel(p2 < t2, p2, t2) - sel(p1 < t1, p1, t1)
    } else {
        sel(
            x.e1 < 0.0,
            sel(x.e2 < 0.0, x.w, x.t2p1),
            sel(x.e2 < 0.0, x.p2t1, x.wg),
        )
    };
    let c = x.e1.abs();
    let half = |lt: bool, eq: bool| sel(lt, 1.0, sel(eq, 0.5, 0.0));
    Span {
        a,
        b: sel(c < a, c, a),
        c,
        d: sel(c < a, a, c),
        sm1: half(x.e1 < 0.0, x.e1 == 0.0),
        s1: half(x.e1 > 0.0, x.e1 == 0.0),
        tm2: half(x.e2 < 0.0, x.e2 == 0.0),
        cb: half(c < a, c == a),
    }
}

/// The corner derivatives `(d/dp1, d/dp2)` of one axis, given the adjoints of its `A`, `B`,
/// `C`, `D` and of its own extent `w` (`aw`).
#[inline(always)]
fn push(s: &Span, aa: f32, ab: f32, ac: f32, ad: f32, aw: f32) -> (f32, f32) {
    let at_c = ac + s.cb * ab + (1.0 - s.cb) * ad;
    let at_a = aa + (1.0 - s.cb) * ab + s.cb * ad;
    (
        -at_a * s.sm1 + at_c * (s.s1 - s.sm1) - aw,
        at_a * s.tm2 + aw,
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
    // I = A_x A_y + B_x B_y - C_x D_y - D_x C_y: the overlap where the boxes overlap in both
    // axes, negative where they do not.
    let i = (sx.a * sy.a + sx.b * sy.b) - (sx.c * sy.d + sx.d * sy.c);
    let (wh, whg) = (ax.w * ay.w, ax.wg * ay.wg);
    let u = ((wh + whg) - i) + prm.eps;
    let ru = safe_recip(u);
    // l = 1 - I / U as (U - I) / U (exact for identical boxes); 1 where U = 0 (`safe_div`).
    let l = sel(u == 0.0, 1.0, (((wh - i) + (whg - i)) + prm.eps) * ru);
    let small = l < prm.smooth_point;
    let loss = sel(
        small,
        0.5 * l * l * prm.inv_smooth_point,
        l - 0.5 * prm.smooth_point,
    );
    if !G {
        return (loss, [0.0; 4]);
    }
    // dl = -(1 + q) / U dI + q / U d(w h), q = I / U (U depends on I and on w h).
    let dl = sel(small, l * prm.inv_smooth_point, 1.0);
    let q = i * ru;
    let a_i = -dl * (1.0 + q) * ru;
    let a_wh = dl * q * ru;
    let (gx1, gx2) = push(
        &sx,
        a_i * sy.a,
        a_i * sy.b,
        -a_i * sy.d,
        -a_i * sy.c,
        a_wh * ay.w,
    );
    let (gy1, gy2) = push(
        &sy,
        a_i * sx.a,
        a_i * sx.b,
        -a_i * sx.d,
        -a_i * sx.c,
        a_wh * ax.w,
    );
    (loss, [gx1, gy1, gx2, gy2])
}
