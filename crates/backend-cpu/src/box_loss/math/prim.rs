//! The per-axis primitives of the box kernels: translation-free extents and edge offsets
//! (`Axis`), the intersection and enclosing extents, the tie-splitting derivative
//! coefficients, and the small helpers (`omega`, `pow_pos`, `safe_recip`).

use super::FormatMarker;
use crate::math::{exp_f32, ln_f32, sel, sel64};
use smoothloss_core::BoxFormat;

/// `exp(x) - 1` without the cancellation of `exp_f32(x) - 1.0` near 0: the reduction and the
/// polynomial of [`exp_f32`] (one polynomial), and where the reduction's integer `n` is 0
/// (`|x| < ln(2) / 2`) the polynomial without its leading 1 (the reduced argument is `x`
/// itself there, so the result keeps the relative accuracy of a small `x`); beyond,
/// `2^n e^r - 1`, which does not cancel there (`e^x >= 1.41` or `<= 0.71`).
///
/// Bound (tested in `math/tests.rs` against `f64::exp_m1` over every 97th `f32` of
/// `[-104, 88.7]`, subnormals included): relative error at most 4e-7 (about 3.4 ulp). `+inf` above 88.73, `-1` below -104, NaN gives NaN.
#[inline(always)]
pub(crate) fn expm1_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: round to nearest integer.
    let xc = sel(x > 88.73, 88.73, sel(x < -104.0, -104.0, x));
    let shifted = xc * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = xc - n * C1 - n * C2;
    let z = r * r;
    // exp_f32's polynomial without its leading 1: e^r - 1.
    let q = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * z
        + r;
    // 2^n in two factors (gradual underflow), from the low mantissa bits of `shifted` as
    // `exp_f32` (NaN gives garbage bits here, but `q` is NaN then and so is the result).
    let ni = (shifted.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let n1 = ni >> 1;
    let n2 = ni.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) as u32) << 23);
    let s2 = f32::from_bits((n2.wrapping_add(127) as u32) << 23);
    let y = (q + 1.0) * s1 * s2 - 1.0;
    let y = sel(n == 0.0, q, y);
    sel(x > 88.73, f32::INFINITY, sel(x < -104.0, -1.0, y))
}

/// `|x - y| / max(x, y)` (0 where the max is <= 0: degenerate boxes, as the reference's `pos_div`) and its derivative in `x`, ties of the max
/// split in half and `d|0| = 0` (the reference's conventions).
#[inline(always)]
pub(super) fn omega(x: f32, y: f32) -> (f32, f32) {
    let m = sel(x > y, x, y);
    let rm = sel(m > 0.0, safe_recip(m), 0.0);
    let d = x - y;
    let num = d.abs();
    let dm = sel(x > y, 1.0, sel(x == y, 0.5, 0.0));
    let sg = sel(d > 0.0, 1.0, sel(d < 0.0, -1.0, 0.0));
    (num * rm, (sg * m - num * dm) * rm * rm)
}

/// `x^s` for `x >= 0` (`0^0 = 1`), through the `f32` `exp` and `ln`.
#[inline(always)]
pub(super) fn pow_pos(x: f32, s: f32) -> f32 {
    sel(x > 0.0, exp_f32(s * ln_f32(x)), sel(s == 0.0, 1.0, 0.0))
}

/// Per-axis primitives: extent of the prediction and the target, the two edge offsets
/// `e1 = p1 - t1`, `e2 = p2 - t2`, the candidates `p2 - t1`, `t2 - p1`, and the centre offset.
#[derive(Clone, Copy)]
pub(super) struct Axis {
    pub(super) w: f32,
    pub(super) wg: f32,
    pub(super) e1: f32,
    pub(super) e2: f32,
    pub(super) p2t1: f32,
    pub(super) t2p1: f32,
    pub(super) d: f32,
    /// The centre offset and the enclosing extent in `f64` from the `f64` corners (SIoU's
    /// distance cost, `BOX-16`, which cancels where IoU = 0; unused, so dropped, elsewhere).
    pub(super) d64: f64,
    /// See `d64`.
    pub(super) cw64: f64,
}

#[inline(always)]
pub(super) fn axis<F: FormatMarker>(p0: f32, p2: f32, t0: f32, t2: f32) -> Axis {
    match F::FORMAT {
        BoxFormat::Xyxy => {
            let e1 = p0 - t0;
            let e2 = p2 - t2;
            let (p0d, p2d, t0d, t2d) = (f64::from(p0), f64::from(p2), f64::from(t0), f64::from(t2));
            Axis {
                d64: 0.5 * ((p0d - t0d) + (p2d - t2d)),
                cw64: sel64(p2d > t2d, p2d, t2d) - sel64(p0d < t0d, p0d, t0d),
                w: p2 - p0,
                wg: t2 - t0,
                e1,
                e2,
                p2t1: p2 - t0,
                t2p1: t2 - p0,
                d: 0.5 * (e1 + e2),
            }
        }
        _ => {
            // (x, w) or (cx, w): the edges in f64 as the reference's corners (exact unless the
            // size is far below the position's ulp), so the offsets and their signs (ties) are
            // those of the reference, rounded once to f32.
            let (p0d, p2d, t0d, t2d) = (f64::from(p0), f64::from(p2), f64::from(t0), f64::from(t2));
            let (p1, p2e, t1, t2e, d) = if matches!(F::FORMAT, BoxFormat::Xywh) {
                let (pe, te) = (p0d + p2d, t0d + t2d);
                (p0d, pe, t0d, te, 0.5 * ((p0d + pe) - (t0d + te)))
            } else {
                (
                    p0d - 0.5 * p2d,
                    p0d + 0.5 * p2d,
                    t0d - 0.5 * t2d,
                    t0d + 0.5 * t2d,
                    p0d - t0d,
                )
            };
            // The extents are the f64 corner differences as in the reference (a size far
            // below the position's ulp is lost there, as in the reference's corners).
            Axis {
                d64: d,
                cw64: sel64(p2e > t2e, p2e, t2e) - sel64(p1 < t1, p1, t1),
                w: (p2e - p1) as f32,
                wg: (t2e - t1) as f32,
                e1: (p1 - t1) as f32,
                e2: (p2e - t2e) as f32,
                p2t1: (p2e - t1) as f32,
                t2p1: (t2e - p1) as f32,
                d: d as f32,
            }
        }
    }
}

/// Intersection extent `min(p2, t2) - max(p1, t1)` and enclosing extent
/// `max(p2, t2) - min(p1, t1)`: in `xyxy` straight from the corners (as the reference, one
/// rounding), otherwise picked from the single-rounding candidates by the edge offsets.
#[inline(always)]
pub(super) fn extents<F: FormatMarker>(a: &Axis, p0: f32, p2: f32, t0: f32, t2: f32) -> (f32, f32) {
    if matches!(F::FORMAT, BoxFormat::Xyxy) {
        let iw = sel(p2 < t2, p2, t2) - sel(p0 > t0, p0, t0);
        let cw = sel(p2 > t2, p2, t2) - sel(p0 < t0, p0, t0);
        return (iw, cw);
    }
    extents_sel(a)
}

/// [`extents`] picked from the single-rounding candidates by the edge offsets (any format).
#[inline(always)]
pub(super) fn extents_sel(a: &Axis) -> (f32, f32) {
    let iw = sel(
        a.e1 >= 0.0,
        sel(a.e2 > 0.0, a.t2p1, a.w),
        sel(a.e2 > 0.0, a.wg, a.p2t1),
    );
    let cw = sel(
        a.e1 > 0.0,
        sel(a.e2 < 0.0, a.wg, a.p2t1),
        sel(a.e2 < 0.0, a.t2p1, a.w),
    );
    (iw, cw)
}

/// The parts of the prediction's and of the target's extent outside their intersection, for
/// overlapping extents: `w - iw = max(e2, 0) + max(-e1, 0)` and `wg - iw = max(-e2, 0) +
/// max(e1, 0)`, from the single-rounding edge offsets (no cancellation of `w - iw` for close
/// edges; each part exact where its offsets are).
#[inline(always)]
pub(super) fn outside(a: &Axis) -> (f32, f32) {
    let pos = |v: f32| sel(v > 0.0, v, 0.0);
    (pos(a.e2) + pos(-a.e1), pos(-a.e2) + pos(a.e1))
}

/// For two overlapping boxes with intersection extents `iw`, `ih` and heights `h`, `hg`:
/// `union - inter = w h + wg hg - 2 iw ih` as `(ox h + iw oy) + (ox' hg + iw oy')` (the parts
/// outside the intersection from [`outside`]), and `enclosing - union = ox oy' + ox' oy`, both
/// sums of non-negative products: formed from the areas they are differences of numbers of
/// the boxes' area, which cancel for close boxes to an absolute error of a few ulps of the
/// area (issue 14's fuzz seed 202: an SIoU loss of `1.28e-3` off by `3e-7`).
#[inline(always)]
pub(super) fn excesses(ax: &Axis, ay: &Axis, iw: f32, h: f32, hg: f32) -> (f32, f32) {
    let (oxp, oxt) = outside(ax);
    let (oyp, oyt) = outside(ay);
    (
        (oxp * h + iw * oyp) + (oxt * hg + iw * oyt),
        oxp * oyt + oxt * oyp,
    )
}

/// `1 / d`, or 0 where `d == 0` (the reference's `safe_div` with the numerator applied later).
#[inline(always)]
pub(super) fn safe_recip(d: f32) -> f32 {
    sel(d == 0.0, 0.0, 1.0 / d)
}

/// Tie-splitting derivative coefficients: `d max(p1, t1) / d p1` and `d min(p2, t2) / d p2`.
#[inline(always)]
pub(super) fn ties(a: &Axis) -> (f32, f32) {
    let s1 = sel(a.e1 > 0.0, 1.0, sel(a.e1 == 0.0, 0.5, 0.0));
    let t2 = sel(a.e2 < 0.0, 1.0, sel(a.e2 == 0.0, 0.5, 0.0));
    (s1, t2)
}
