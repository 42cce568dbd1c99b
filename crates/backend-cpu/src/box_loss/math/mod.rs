//! Branchless `f32` box math: the per-pair loss with its hand-derived (reverse-mode, written
//! out) gradient, the chunked kernels that the compiler vectorises over pairs, and the pairwise
//! IoU row. Kind and format are type parameters (zero-sized markers), so each (kind, format,
//! gradient) is its own monomorphised loop.
//!
//! # Accuracy
//!
//! * `atan` and its variants: see [`crate::math`].
//! * Per pair the loss is evaluated in `f32` from translation-free primitives (widths, heights
//!   and edge offsets taken straight from the inputs with one rounding each; in `xywh` and
//!   `cxcywh` the edges are formed in `f64` first, as the reference's corners, and the widths,
//!   heights and offsets are their differences, so ties, their signs and a size lost below a
//!   position's `f64` ulp are those of the reference), so the error is a few `f32` ulps of the
//!   loss and does not grow with the distance of the boxes from the origin. `1 - IoU` and the IoU gradient are written so that
//!   identical edges cancel exactly (the eps-driven gradient of identical boxes stays
//!   accurate). Coordinates must stay below about `1e18` in magnitude so that areas and squared
//!   extents do not overflow `f32`.
//!
//! # Gradient
//!
//! Written as the adjoint of the forward formulas (see `pair`): the adjoints of the widths,
//! heights, intersection and enclosing extents, centre offsets and `atan` terms are accumulated,
//! then pushed to the four corner coordinates of the prediction through `min`/`max` (ties split
//! the gradient in half as PyTorch's `torch.max(a, b)`), and finally through the format
//! conversion.

use crate::blocks::{CH, Up, accumulate, lanes_sum};
use crate::math::{atan_ratio_diff, exp_f32, exp_nonpos_f64, ln_f32, sel, sel64, zn};
pub(crate) use chunks::{block, iou_row};
use extended::extended;
pub(crate) use modifiers::IntPow;
use modifiers::{inner_omi, ispow, one_minus_ipow, one_minus_pow, spow};
use prim::{axis, excesses, expm1_f32, extents, omega, pow_pos, safe_recip, ties};

mod chunks;
mod extended;
mod modifiers;
mod prim;
#[cfg(test)]
mod tests;
use smoothloss_core::{BoxFormat, BoxLossKind};

/// A box loss kind as a zero-sized type (the kernels' type parameter).
pub(crate) trait KindMarker {
    /// The kind.
    const KIND: BoxLossKind;
}

/// A box format as a zero-sized type (the kernels' type parameter).
pub(crate) trait FormatMarker {
    /// The format.
    const FORMAT: BoxFormat;
}

macro_rules! markers {
    ($tr:ident, $c:ident, $ty:ident: $($name:ident),*) => {
        $(
            #[doc = concat!("Marker of `", stringify!($ty), "::", stringify!($name), "`.")]
            pub(crate) struct $name;
            impl $tr for $name {
                const $c: $ty = $ty::$name;
            }
        )*
    };
}
markers!(KindMarker, KIND, BoxLossKind: Iou, Giou, Diou, Ciou, Eiou, ExtendedIou, Wiou, Mpdiou, Siou, ShapeIou);
markers!(FormatMarker, FORMAT, BoxFormat: Xyxy, Xywh, Cxcywh);

/// The one run-time to type dispatch of the box format: evaluates `$body` with the type
/// alias `$f` bound to the marker of `$format`.
macro_rules! with_format {
    ($format:expr, |$f:ident| $body:expr) => {
        match $format {
            smoothloss_core::BoxFormat::Xyxy => {
                type $f = $crate::box_loss::math::Xyxy;
                $body
            }
            smoothloss_core::BoxFormat::Xywh => {
                type $f = $crate::box_loss::math::Xywh;
                $body
            }
            smoothloss_core::BoxFormat::Cxcywh => {
                type $f = $crate::box_loss::math::Cxcywh;
                $body
            }
        }
    };
}
pub(crate) use with_format;

/// The one run-time to type dispatch of the box loss kind: evaluates `$body` with the type
/// alias `$k` bound to the marker of `$kind`.
macro_rules! with_kind {
    ($kind:expr, |$k:ident| $body:expr) => {
        match $kind {
            smoothloss_core::BoxLossKind::Iou => {
                type $k = $crate::box_loss::math::Iou;
                $body
            }
            smoothloss_core::BoxLossKind::Giou => {
                type $k = $crate::box_loss::math::Giou;
                $body
            }
            smoothloss_core::BoxLossKind::Diou => {
                type $k = $crate::box_loss::math::Diou;
                $body
            }
            smoothloss_core::BoxLossKind::Ciou => {
                type $k = $crate::box_loss::math::Ciou;
                $body
            }
            smoothloss_core::BoxLossKind::Eiou => {
                type $k = $crate::box_loss::math::Eiou;
                $body
            }
            smoothloss_core::BoxLossKind::Wiou => {
                type $k = $crate::box_loss::math::Wiou;
                $body
            }
            smoothloss_core::BoxLossKind::Mpdiou => {
                type $k = $crate::box_loss::math::Mpdiou;
                $body
            }
            smoothloss_core::BoxLossKind::Siou => {
                type $k = $crate::box_loss::math::Siou;
                $body
            }
            smoothloss_core::BoxLossKind::ShapeIou => {
                type $k = $crate::box_loss::math::ShapeIou;
                $body
            }
            smoothloss_core::BoxLossKind::ExtendedIou => {
                type $k = $crate::box_loss::math::ExtendedIou;
                $body
            }
        }
    };
}
pub(crate) use with_kind;

/// Run-time parameters of the pair kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairParams {
    /// eps in f32 (at least the smallest positive subnormal).
    pub eps: f32,
    /// Threshold of the seed weight (`-inf` when there is none).
    pub thr: f32,
    /// Weight below the threshold (`1 - alpha`).
    pub wlow: f32,
    /// MPDIoU's `1 / (W^2 + H^2)` (`BOX-18`).
    pub inv_diag: f32,
    /// Focaler-IoU's `1 - d`, `u - 1` and `1 / (u - d)` (`BOX-21`), when `focaler`.
    pub foc_1d: f32,
    /// See `foc_1d`.
    pub foc_u1: f32,
    /// See `foc_1d`.
    pub foc_inv: f32,
    /// Focaler-IoU is on (kernels with options, `M`, only).
    pub focaler: bool,
    /// The focal weight's gamma (`BOX-23`), when `focal`.
    pub gamma: f32,
    /// The focal weight is on (kernels with options, `M`, only).
    pub focal: bool,
    /// mmdetection's CIoU convention (`BOX-14`; kernels with options, `M`, only).
    pub ciou_mmdet: bool,
    /// SIoU with the paper's sign of gamma (`BOX-16`).
    pub siou_paper: bool,
    /// Shape-IoU's `scale` (`BOX-19`).
    pub shape_scale: f32,
    /// Wise-IoU v3's focusing coefficient is on (`BOX-24`; every kernel, in `chunk`).
    pub focus: bool,
    /// Wise-IoU v3: `1 / mean`, `ln alpha`, `delta` and `1 / delta` (`BOX-24`), when `focus`.
    pub inv_mean: f32,
    /// See `inv_mean`.
    pub ln_alpha: f32,
    /// See `inv_mean`.
    pub delta: f32,
    /// See `inv_mean`.
    pub inv_delta: f32,
    /// Inner-IoU is on (`BOX-20`; kernels with options, `M`, only), with its `ratio`.
    pub inner: bool,
    /// See `inner`.
    pub inner_ratio: f32,
    /// alpha-IoU is on (`BOX-22`; the alpha kernels, `A`, only), with its power.
    pub alpha_on: bool,
    /// See `alpha_on`.
    pub alpha: f32,
    /// The power is an integer of `1..=8` (the kernels then run with `I`), and its
    /// [`IntPow`] (that of 1 otherwise).
    pub alpha_int: bool,
    /// See `alpha_int`.
    pub alpha_ipow: IntPow,
    /// Extended-IoU's `smooth_point` and its inverse (`BOX-15`).
    pub smooth_point: f32,
    /// See `smooth_point`.
    pub inv_smooth_point: f32,
}

/// One pair: returns the weighted loss, `c * weight * d(loss)/d(pred)` in format `F`, and
/// `[IoU, 1 - IoU]` for the detached weights (`chunk`) (the weight here is the seed's threshold weight),
/// and, for SIoU without `EXACT`, whether the pair must be computed again with `EXACT` (its
/// distance cost in `f64`). A non-finite coordinate gives NaN everywhere.
#[inline(always)]
pub(crate) fn pair<
    K: KindMarker,
    F: FormatMarker,
    const G: bool,
    const M: bool,
    const X: bool,
    const A: bool,
    const I: bool,
    const EXACT: bool,
>(
    p: [f32; 4],
    t: [f32; 4],
    c: f32,
    dv_pre: f32,
    shape_pre: [f32; 2],
    prm: &PairParams,
) -> (f32, [f32; 4], [f32; 2], bool) {
    let eps = prm.eps;
    // SIoU without `EXACT`: the loss cancelled too far for its f32 distance cost (below).
    let mut redo = false;
    let ax = axis::<F>(p[0], p[2], t[0], t[2]);
    let ay = axis::<F>(p[1], p[3], t[1], t[3]);
    let (iw, cw) = extents::<F>(&ax, p[0], p[2], t[0], t[2]);
    let (ih, ch) = extents::<F>(&ay, p[1], p[3], t[1], t[3]);
    let (w, h, wg, hg) = (ax.w, ay.w, ax.wg, ay.wg);
    let mask = iw > 0.0 && ih > 0.0;
    let inter = sel(mask, iw * ih, 0.0);
    let union = w * h + wg * hg - inter;
    let du = union + eps;
    let rd = safe_recip(du);
    let iou = inter * rd;
    // 1 - iou without cancellation: exact for identical boxes (union - inter = 0), exactly 1
    // where there is no intersection (or the denominator is 0, iou = 0 then).
    let has = mask && du != 0.0;
    // union - inter and (GIoU) enclosing - union of overlapping boxes without cancellation.
    let (u_excess, c_excess) = excesses(&ax, &ay, iw, h, hg);
    let if_mask = (sel(has, u_excess + eps, 1.0), sel(has, du, 1.0));
    let omi = sel(has, if_mask.0 * rd, 1.0);

    // Adjoints (d loss / d quantity).
    // GIoU: rc and the multiple m of d(enclosing area) added per coordinate (see `Giou`).
    let mut a_union = 0.0f32;
    let mut m_cw = 0.0f32;
    let mut m_ch = 0.0f32;
    let mut r_c = 0.0f32;
    let mut a_w = 0.0f32;
    let mut a_h = 0.0f32;
    let mut a_cw = 0.0f32;
    let mut a_ch = 0.0f32;
    let mut a_dx = 0.0f32;
    let mut a_dy = 0.0f32;
    // Wise-IoU, Focaler: the factor of the IoU term's gradient; MPDIoU: corner adjoints.
    let mut c_iou = 1.0f32;
    let mut a_c = [0.0f32; 4];
    // GIoU with alpha-IoU: the factor of the enclosing term's gradient.
    let mut c_q = 1.0f32;
    // BOX-22 (kinds iou, giou, diou, ciou; the alpha kernels, `A`): 1 - IoU^a and its factor
    // on the IoU term's gradient, selected by `alpha_on` (`omi` and 1 without it). The lean
    // alpha kernel (`A` without `M`) runs only for calls with a power, so it is on there.
    let alpha_kind = A
        && matches!(
            K::KIND,
            BoxLossKind::Iou | BoxLossKind::Giou | BoxLossKind::Diou | BoxLossKind::Ciou
        );
    let alpha_on = if M { prm.alpha_on } else { true };
    let (omi_a, c_a) = if alpha_kind {
        let (v, d) = if I {
            one_minus_ipow(omi, &prm.alpha_ipow)
        } else {
            one_minus_pow(omi, prm.alpha)
        };
        (sel(alpha_on, v, omi), sel(alpha_on, d, 1.0))
    } else {
        (omi, 1.0)
    };
    // spow(x, a) of a penalty term and its factor, or (x, 1) without alpha-IoU.
    let powered = |x: f32| {
        if alpha_kind {
            let (v, d) = if I {
                ispow(x, &prm.alpha_ipow)
            } else {
                spow(x, prm.alpha)
            };
            (sel(alpha_on, v, x), sel(alpha_on, d, 1.0))
        } else {
            (x, 1.0)
        }
    };

    let loss = match K::KIND {
        BoxLossKind::Iou => {
            c_iou = c_a;
            omi_a
        }
        BoxLossKind::ExtendedIou => {
            // BOX-15: no plain IoU term; the corner adjoints straight from `extended`.
            let (l, d) = extended::<F, G>(&ax, &ay, p, t, prm);
            a_c = d;
            l
        }
        BoxLossKind::Wiou => {
            // BOX-17: R = exp(rho^2 / D) with D = cw^2 + ch^2 detached: dR = R d(rho^2) / D.
            let (dx, dy) = (ax.d, ay.d);
            let rdd = safe_recip(cw * cw + ch * ch);
            let r = exp_f32((dx * dx + dy * dy) * rdd);
            if G {
                let s = 2.0 * r * omi * rdd;
                a_dx = s * dx;
                a_dy = s * dy;
                c_iou = r;
            }
            r * omi
        }
        BoxLossKind::Siou => {
            // BOX-16, with s_cw = eps - dx, s_ch = eps - dy: on either branch of the angle
            // cost, Lambda = cos(2 asin(sin_alpha) - pi/2) = 2 |s_cw s_ch| / (s_cw^2 + s_ch^2).
            let (a, b) = (eps - ax.d, eps - ay.d);
            let s2 = a * a + b * b;
            let rs2 = safe_recip(s2);
            let lam = 2.0 * (a * b).abs() * rs2;
            let (cwc, chc) = (sel(cw < eps, eps, cw), sel(ch < eps, eps, ch));
            let (rcw, rch) = (1.0 / cwc, 1.0 / chc);
            let sg = sel(prm.siou_paper, -1.0, 1.0);
            let gam = sg * (2.0 - lam);
            let (omw, dwo) = omega(w, wg);
            let (omh, dho) = omega(h + eps, hg + eps);
            // 1 - e^-om as -expm1(-om): accurate for a small shape difference too.
            let (qw, qh) = (-expm1_f32(-omw), -expm1_f32(-omh));
            let (qw2, qh2) = (qw * qw, qh * qh);
            let shape = qw2 * qw2 + qh2 * qh2;
            // 1 - clamp(IoU - (Delta + Omega) / 2, -1, 1) without cancellation: the clamp
            // holds the loss in [0, 2], with no gradient outside.
            let (px, py, ex, ey, un);
            if EXACT {
                // The distance cost Delta = 2 - e^(gam px) - e^(gam py) in f64 from the f64
                // centre offsets and enclosing extents: where IoU = 0 the loss
                // 1 + (Delta + Omega) / 2 cancels to a small value (Delta near -2 for far
                // boxes), so the f32 roundings of the offsets, px, py and the exponentials
                // (~1e-7 each) would stay in it (issue 14's fuzz seed 202: 1.9184e-2 for
                // 1.91844e-2, 1.8x TOL-2; regression `siou_far_boxes_distance_cost_in_f64`).
                // `-(expm1 + expm1)` is formed as `(1 - ex) + (1 - ey)`, exact in f64 to far
                // below f32.
                let e64 = f64::from(eps);
                let (a64, b64) = (e64 - ax.d64, e64 - ay.d64);
                let (cw64, ch64) = (
                    sel64(ax.cw64 < e64, e64, ax.cw64),
                    sel64(ay.cw64 < e64, e64, ay.cw64),
                );
                let lam64 = {
                    let s2 = a64 * a64 + b64 * b64;
                    sel64(s2 == 0.0, 0.0, 2.0 * (a64 * b64).abs() / s2)
                };
                let gam64 = f64::from(sg) * (2.0 - lam64);
                // One division for both ratios (the product of two f32-range extents cannot
                // overflow f64).
                let rcc = 1.0 / (cw64 * ch64);
                let (rx64, ry64) = (a64 * ch64 * rcc, b64 * cw64 * rcc);
                let (px64, py64) = (rx64 * rx64, ry64 * ry64);
                // e^t as 1 / e^-t for t > 0 (exp_nonpos_f64 is for t <= 0), one division for
                // both (a product that underflows gives inf, where both are beyond f32 anyway).
                let (tx, ty) = (gam64 * px64, gam64 * py64);
                let (nx, ny) = (tx <= 0.0, ty <= 0.0);
                let ux = exp_nonpos_f64(sel64(nx, tx, -tx));
                let uy = exp_nonpos_f64(sel64(ny, ty, -ty));
                let ruu = 1.0 / (ux * uy);
                let (ex64, ey64) = (sel64(nx, ux, uy * ruu), sel64(ny, uy, ux * ruu));
                let dist64 = (1.0 - ex64) + (1.0 - ey64);
                (px, py) = (px64 as f32, py64 as f32);
                (ex, ey) = (ex64 as f32, ey64 as f32);
                un = (f64::from(omi) + 0.5 * (f64::from(shape) + dist64)) as f32;
            } else {
                // The f32 distance cost, Delta = -(expm1 + expm1) (no cancellation of numbers
                // near 1 for close boxes). Its roundings (~1e-7 of each term) stay in the loss
                // `1 - IoU + (Omega + Delta) / 2`: harmless while the loss is at least a quarter
                // of its terms' magnitude, which holds for overlapping and moderately distant
                // boxes. Otherwise (IoU = 0 and Delta near -2, issue 14's fuzz seed 202, or the
                // loss near the clamp's ends) the chunk recomputes the pair with `EXACT`.
                (px, py) = (a * rcw * (a * rcw), b * rch * (b * rch));
                let (mx, my) = (expm1_f32(gam * px), expm1_f32(gam * py));
                (ex, ey) = (mx + 1.0, my + 1.0);
                un = omi + 0.5 * (shape - (mx + my));
                let terms = omi + 0.5 * (shape + (mx + my).abs());
                redo = !(terms <= 4.0 * un && un <= 1.99);
            }
            let inside = (0.0..=2.0).contains(&un);
            if G {
                // Outside the clamp every adjoint is 0 (selected, not multiplied: the terms
                // may be infinite there, as exp overflows for inverted boxes).
                let k = |v: f32| sel(inside, v, 0.0);
                let a_lam = 0.5 * sg * (ex * px + ey * py);
                let (a_px, a_py) = (-0.5 * gam * ex, -0.5 * gam * ey);
                let r4 = rs2 * rs2;
                let sa = sel(a > 0.0, 1.0, sel(a < 0.0, -1.0, 0.0));
                let sb = sel(b > 0.0, 1.0, sel(b < 0.0, -1.0, 0.0));
                let dl_a = 2.0 * b.abs() * sa * (b * b - a * a) * r4;
                let dl_b = 2.0 * a.abs() * sb * (a * a - b * b) * r4;
                let g_a = a_lam * dl_a + a_px * 2.0 * a * rcw * rcw;
                let g_b = a_lam * dl_b + a_py * 2.0 * b * rch * rch;
                a_dx = k(-g_a);
                a_dy = k(-g_b);
                a_cw = k(sel(cw >= eps, -a_px * 2.0 * px * rcw, 0.0));
                a_ch = k(sel(ch >= eps, -a_py * 2.0 * py * rch, 0.0));
                a_w = k(2.0 * qw2 * qw * (1.0 - qw) * dwo);
                a_h = k(2.0 * qh2 * qh * (1.0 - qh) * dho);
                c_iou = k(1.0);
            }
            sel(un < 0.0, 0.0, sel(un > 2.0, 2.0, un))
        }
        BoxLossKind::ShapeIou => {
            // BOX-19: the target's shape weights are constants (from `chunk`).
            let [ww, hh] = shape_pre;
            let (dx, dy) = (ax.d, ay.d);
            let rg = safe_recip(cw * cw + ch * ch + eps);
            let distance = (hh * dx * dx + ww * dy * dy) * rg;
            let (omw, dwo) = omega(w, wg);
            let (omh, dho) = omega(h, hg);
            let (omw, omh) = (hh * omw, ww * omh);
            let (qw, qh) = (-expm1_f32(-omw), -expm1_f32(-omh));
            let (qw2, qh2) = (qw * qw, qh * qh);
            if G {
                let a_diag = -distance * rg;
                a_cw = 2.0 * cw * a_diag;
                a_ch = 2.0 * ch * a_diag;
                a_dx = 2.0 * hh * dx * rg;
                a_dy = 2.0 * ww * dy * rg;
                a_w = 2.0 * qw2 * qw * (1.0 - qw) * hh * dwo;
                a_h = 2.0 * qh2 * qh * (1.0 - qh) * ww * dho;
            }
            omi + distance + 0.5 * (qw2 * qw2 + qh2 * qh2)
        }
        BoxLossKind::Mpdiou => {
            // BOX-18: the corner offsets e1 = p1 - t1, e2 = p2 - t2 (one rounding each).
            let q = prm.inv_diag;
            if G {
                a_c = [
                    2.0 * ax.e1 * q,
                    2.0 * ay.e1 * q,
                    2.0 * ax.e2 * q,
                    2.0 * ay.e2 * q,
                ];
            }
            omi + (ax.e1 * ax.e1 + ay.e1 * ay.e1) * q + (ax.e2 * ax.e2 + ay.e2 * ay.e2) * q
        }
        BoxLossKind::Giou => {
            let area_c = cw * ch;
            let rc = safe_recip(area_c + eps);
            let q = sel(mask, c_excess, area_c - union) * rc;
            if G {
                // d q = rc ((1 - q) dC - dU), with 1 - q = m + r for m = 1 (r = -q) or, where
                // q is near -1 (inverted boxes, union near twice the enclosing area), m = 2
                // (r = -(2 C - U + eps) rc): `rc (m dC - dU)` is formed per coordinate in
                // `giou_part` (it cancels exactly for identical boxes, before the small IoU
                // term is added), then the remainder `r rc dC`.
                let near = q < -0.5;
                let m = sel(near, 2.0, 1.0);
                (m_cw, m_ch) = (m * cw, m * ch);
                let r = sel(near, -(((area_c + area_c) - union) + eps) * rc, -q);
                a_union = rc;
                // r rc / m (an exact halving where m = 2): times m dC below.
                r_c = r * rc * sel(near, 0.5, 1.0);
            }
            if alpha_kind {
                let (qa, dq) = powered(q);
                c_q = dq;
                c_iou = c_a;
                sel(alpha_on, omi_a + qa, omi + q)
            } else {
                omi + q
            }
        }
        _ => {
            let (dx, dy) = (ax.d, ay.d);
            let rho2 = dx * dx + dy * dy;
            let rg = safe_recip(cw * cw + ch * ch + eps);
            let r = rho2 * rg;
            // BOX-22: spow(r, a) on DIoU and CIoU, its factor on r's adjoints.
            let (r_t, c_r) = powered(r);
            if G {
                let a_diag = -r * rg;
                a_cw = 2.0 * cw * a_diag;
                a_ch = 2.0 * ch * a_diag;
                a_dx = 2.0 * dx * rg;
                a_dy = 2.0 * dy * rg;
                if alpha_kind {
                    (a_cw, a_ch, a_dx, a_dy) = (a_cw * c_r, a_ch * c_r, a_dx * c_r, a_dy * c_r);
                    c_iou = c_a;
                }
            }
            let diou = omi_a + r_t;
            match K::KIND {
                BoxLossKind::Diou => diou,
                BoxLossKind::Ciou => {
                    const K4PI2: f32 = (4.0 / (std::f64::consts::PI * std::f64::consts::PI)) as f32;
                    // mmdetection's convention (BOX-14) is selected, not branched on (uniform
                    // over a call), so that the chunk loop stays vectorisable: heights + eps
                    // in the ratios (in `chunk`), alpha gated by IoU > 0.5 and without eps,
                    // the CIoU value clamped, the loss held in [0, 2] with no gradient outside
                    // (selected: the terms may be large there).
                    let mm = M && prm.ciou_mmdet;
                    // Precomputed by `chunk` in a separate loop (short dependency chains).
                    let dv = dv_pre;
                    let v = K4PI2 * dv * dv;
                    // alpha = v / (1 - iou + v + eps) with 1 - iou = n / du written as
                    // v du / (n + (v + eps) du): this division does not wait for 1 / du.
                    let (n_omi, d_omi) = if_mask;
                    let alpha_den =
                        n_omi + (if M { v + sel(mm, 0.0, eps) } else { v + eps }) * d_omi;
                    let gate = if M {
                        mm && (iou <= 0.5 || iou.is_nan())
                    } else {
                        false
                    };
                    let alpha = sel(alpha_den == 0.0 || gate, 0.0, v * d_omi / alpha_den);
                    // BOX-22: spow(alpha v, a), its factor on the angle term's gradient.
                    let (av, c_v) = powered(alpha * v);
                    let un = diou + av;
                    let inside = !mm || (0.0..=2.0).contains(&un);
                    if G {
                        // d(alpha v)/d(at) with alpha constant.
                        let a_at = -2.0 * alpha * K4PI2 * dv * c_v;
                        let hp = if M { h + sel(mm, eps, 0.0) } else { h };
                        let s = a_at * safe_recip(w * w + hp * hp);
                        a_w += s * hp;
                        a_h -= s * w;
                        if M {
                            let k = |v: f32| sel(inside, v, 0.0);
                            a_w = k(a_w);
                            a_h = k(a_h);
                            a_cw = k(a_cw);
                            a_ch = k(a_ch);
                            a_dx = k(a_dx);
                            a_dy = k(a_dy);
                            c_iou = k(c_iou);
                        }
                    }
                    if M {
                        sel(mm, sel(un < 0.0, 0.0, sel(un > 2.0, 2.0, un)), un)
                    } else {
                        un
                    }
                }
                _ => {
                    // EIoU.
                    let dw = w - wg;
                    let dh = h - hg;
                    let r3 = safe_recip(cw * cw + eps);
                    let r4 = safe_recip(ch * ch + eps);
                    let t3 = dw * dw * r3;
                    let t4 = dh * dh * r4;
                    if G {
                        a_w += 2.0 * dw * r3;
                        a_h += 2.0 * dh * r4;
                        a_cw -= 2.0 * cw * t3 * r3;
                        a_ch -= 2.0 * ch * t4 * r4;
                    }
                    diou + t3 + t4
                }
            }
        }
    };

    // BOX-20, BOX-21: L + IoU - F(IoU') with IoU' the inner boxes' IoU (Inner) or the plain
    // IoU, F the Focaler map (or the identity). Written with `1 - IoU' = om` (exact for
    // identical boxes): L + (G - omi) with G = 1 - F(IoU'), dG/d(om) = F' (1 without Focaler).
    // The options are selected, not branched on (uniform over a call), so that the chunk loop
    // stays vectorisable. `c_in` is the factor of the inner IoU's gradient.
    let mut loss = loss;
    let mut c_in = 0.0f32;
    let mut g_in = [0.0f32; 4];
    if M {
        let om = if !X || matches!(K::KIND, BoxLossKind::ExtendedIou) {
            omi
        } else {
            let (o, g) = inner_omi::<G>(&ax, &ay, prm.inner_ratio, eps);
            g_in = g;
            sel(prm.inner, o, omi)
        };
        // t = ((1 - d) - om) / (u - d), 1 - F = ((u - 1) + om) / (u - d) inside [d, u].
        let t = (prm.foc_1d - om) * prm.foc_inv;
        let one_minus_f = sel(
            t < 0.0,
            1.0,
            sel(t > 1.0, 0.0, (prm.foc_u1 + om) * prm.foc_inv),
        );
        let fp = sel((0.0..=1.0).contains(&t), prm.foc_inv, 0.0);
        let (g_val, g_der) = (sel(prm.focaler, one_minus_f, om), sel(prm.focaler, fp, 1.0));
        let on = prm.focaler || prm.inner;
        loss = sel(on, loss + (g_val - omi), loss);
        // The IoU term's factor: -1 for `- omi`, + G' where G is a function of the plain IoU.
        c_iou = sel(on, c_iou + (sel(prm.inner, 0.0, g_der) - 1.0), c_iou);
        if X {
            c_in = sel(on && prm.inner, g_der, 0.0);
        }
    }
    // Seed threshold weight (no gradient) and the NaN rule for non-finite coordinates.
    let wt = sel(iou < prm.thr, prm.wlow, 1.0);
    // Every coordinate enters exactly one edge offset, so a non-finite coordinate makes their
    // sum non-finite (coordinates are assumed below ~1e37 so that the finite sum cannot
    // overflow).
    let bad = zn((ax.e1 + ax.e2) + (ay.e1 + ay.e2));
    // BOX-23, BOX-24: the detached focal / Wise-IoU v3 weight is applied by `chunk` in a
    // loop of its own, only in calls that have one (`detached_weight`), from these two values.
    let q = [iou, omi + bad];
    let loss = wt * loss + bad;
    if !G {
        return (loss, [0.0; 4], q, redo);
    }

    // Through iou = inter / (union + eps), union = w h + wg hg - inter: for a coordinate with
    // d(inter) = kI and d(w h) = kA, d(-iou) = -rd ((2 kI - kA) + (1 - iou) (kA - kI)), written
    // so that identical edges (2 kI = kA) cancel exactly; GIoU adds rc (m kC - (kA - kI))
    // (kC: d(enclosing area)) first, so that its exact cancellation for identical boxes does
    // not swallow the small IoU term.
    let (sx1, tx2) = ties(&ax);
    let (sy1, ty2) = ties(&ay);
    let ki = [
        sel(mask, -sx1 * ih, 0.0),
        sel(mask, -sy1 * iw, 0.0),
        sel(mask, tx2 * ih, 0.0),
        sel(mask, ty2 * iw, 0.0),
    ];
    let ka = [-h, -w, h, w];
    // m d(enclosing area) per coordinate (GIoU only; exact, m is 1 or 2).
    let kc = [
        -m_ch * (1.0 - sx1),
        -m_cw * (1.0 - sy1),
        m_ch * (1.0 - tx2),
        m_cw * (1.0 - ty2),
    ];
    let giou_part: [f32; 4] = std::array::from_fn(|k| {
        let du = ka[k] - ki[k];
        let iou_part = -rd * ((2.0 * ki[k] - ka[k]) + omi * du);
        if matches!(K::KIND, BoxLossKind::Giou) {
            let g = (a_union * (kc[k] - du) + iou_part) + r_c * kc[k];
            if M || alpha_kind {
                // With alpha-IoU the two terms apart: c_q dq + c_iou d(1 - IoU).
                let dq = a_union * (kc[k] - du) + r_c * kc[k];
                sel(
                    alpha_on,
                    c_q * dq + c_iou * iou_part,
                    g + (c_iou - 1.0) * iou_part,
                )
            } else {
                g
            }
        } else if matches!(K::KIND, BoxLossKind::ExtendedIou) {
            a_c[k]
        } else if matches!(K::KIND, BoxLossKind::Mpdiou) {
            c_iou * iou_part + a_c[k]
        } else if M || alpha_kind || matches!(K::KIND, BoxLossKind::Wiou | BoxLossKind::Siou) {
            c_iou * iou_part
        } else {
            // The plain kinds: exactly the IoU term (no `+ 0.0`, which would turn -0 into +0).
            iou_part
        }
    });

    // The rest, to the corners: w = x2 - x1, cw = max(x2, t2) - min(x1, t1),
    // d = (x1 + x2) / 2 - const.
    let [gx1, gy1, gx2, gy2] = if matches!(K::KIND, BoxLossKind::Giou | BoxLossKind::ExtendedIou) {
        // GIoU, Extended-IoU: every term is in `giou_part`.
        giou_part
    } else {
        [
            giou_part[0] - a_w - a_cw * (1.0 - sx1) + 0.5 * a_dx,
            giou_part[1] - a_h - a_ch * (1.0 - sy1) + 0.5 * a_dy,
            giou_part[2] + a_w + a_cw * (1.0 - tx2) + 0.5 * a_dx,
            giou_part[3] + a_h + a_ch * (1.0 - ty2) + 0.5 * a_dy,
        ]
    };
    // Inner-IoU's term (0 without it).
    let [gx1, gy1, gx2, gy2] = if X {
        [
            gx1 + c_in * g_in[0],
            gy1 + c_in * g_in[1],
            gx2 + c_in * g_in[2],
            gy2 + c_in * g_in[3],
        ]
    } else {
        [gx1, gy1, gx2, gy2]
    };
    let g = match F::FORMAT {
        BoxFormat::Xyxy => [gx1, gy1, gx2, gy2],
        BoxFormat::Xywh => [gx1 + gx2, gy1 + gy2, gx2, gy2],
        _ => [gx1 + gx2, gy1 + gy2, 0.5 * (gx2 - gx1), 0.5 * (gy2 - gy1)],
    };
    let s = c * wt;
    (loss, g.map(|v| v * s + bad), q, redo)
}
