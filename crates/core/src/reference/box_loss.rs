//! Reference box losses (`BOX-1` .. `BOX-23`) and pairwise IoU.

use std::f64::consts::PI;

use super::dual::{
    D4, Scalar, abs, asin, clamp, cos, detach, exp, max, min, pos_div, pow4, safe_div, spow, sqrt,
};
use crate::box_loss::{BoxFormat, BoxLoss, BoxLossKind, CiouConvention};
use crate::call::Loss;
use crate::plan::{IouCall, PairCall, Parts};

/// Converts a box in `format` to corners with generic numbers (`BOX-1`).
pub fn to_xyxy<S: Scalar>(format: BoxFormat, b: [S; 4]) -> [S; 4] {
    let half = S::cst(0.5);
    match format {
        BoxFormat::Xyxy => b,
        BoxFormat::Xywh => [b[0], b[1], b[0] + b[2], b[1] + b[3]],
        BoxFormat::Cxcywh => [
            b[0] - half * b[2],
            b[1] - half * b[3],
            b[0] + half * b[2],
            b[1] + half * b[3],
        ],
    }
}

/// The loss of one aligned pair of corner boxes and its plain IoU (`BOX-2` .. `BOX-8`) with
/// the torchvision conventions and no modifier.
///
/// `p` is the prediction, `g` the target, both `(x1, y1, x2, y2)`.
pub fn pair_loss_xyxy<S: Scalar>(kind: BoxLossKind, p: [S; 4], g: [S; 4], eps: f64) -> (S, f64) {
    let cfg = BoxLoss {
        kind,
        eps,
        ..BoxLoss::default()
    };
    pair_loss_cfg(&cfg, p, g)
}

/// `inter / (union + eps)` of two corner boxes with torchvision's mask (`BOX-2`, `BOX-3`),
/// and `union`.
fn iou_of<S: Scalar>(p: [S; 4], g: [S; 4], e: S) -> (S, S) {
    let [x1, y1, x2, y2] = p;
    let [x1g, y1g, x2g, y2g] = g;
    // BOX-2: intersection is 0 unless both overlaps are strictly positive (torchvision's mask).
    let xk1 = max(x1, x1g);
    let yk1 = max(y1, y1g);
    let xk2 = min(x2, x2g);
    let yk2 = min(y2, y2g);
    let inter = if yk2.val() > yk1.val() && xk2.val() > xk1.val() {
        (xk2 - xk1) * (yk2 - yk1)
    } else {
        S::cst(0.0)
    };
    let union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter;
    // BOX-3: IoU with eps in the denominator.
    (safe_div(inter, union + e), union)
}

/// The loss of one pair of corner boxes under the whole configuration (kind, conventions,
/// modifiers; not the threshold weight) and its plain IoU (`BOX-2` .. `BOX-8`,
/// `BOX-14` .. `BOX-23`).
pub fn pair_loss_cfg<S: Scalar>(cfg: &BoxLoss, p: [S; 4], g: [S; 4]) -> (S, f64) {
    let kind = cfg.kind;
    let eps = cfg.eps;
    let opt = &cfg.options;
    let m = &opt.modifiers;
    let e = S::cst(eps);
    let one = S::cst(1.0);
    let half = S::cst(0.5);
    // BOX-22: alpha-IoU raises every term to `alpha` (identity without it).
    let pw = |x: S| match m.alpha_power {
        Some(a) => spow(x, a),
        None => x,
    };
    let [x1, y1, x2, y2] = p;
    let [x1g, y1g, x2g, y2g] = g;
    let (iou, union) = iou_of(p, g, e);
    let iou_val = iou.val();
    // Smallest enclosing box.
    let cw = max(x2, x2g) - min(x1, x1g);
    let ch = max(y2, y2g) - min(y1, y1g);
    // Centre distance squared and enclosing diagonal squared (BOX-5).
    let dx = half * (x1 + x2) - half * (x1g + x2g);
    let dy = half * (y1 + y2) - half * (y1g + y2g);
    let rho2 = dx * dx + dy * dy;
    let diag2 = cw * cw + ch * ch + e;
    let (w, h, wg, hg) = (x2 - x1, y2 - y1, x2g - x1g, y2g - y1g);
    let loss = match kind {
        BoxLossKind::Iou => one - pw(iou),
        BoxLossKind::Giou => {
            // BOX-4: 1 - (IoU - (C - U) / (C + eps)).
            let area_c = cw * ch;
            let q = safe_div(area_c - union, area_c + e);
            match m.alpha_power {
                None => one - (iou - q),
                Some(_) => one - pw(iou) + pw(q),
            }
        }
        BoxLossKind::Diou => one - pw(iou) + pw(safe_div(rho2, diag2)),
        BoxLossKind::Ciou => match opt.ciou {
            CiouConvention::Torchvision => {
                // BOX-6: v = 4/pi^2 (atan(wg/hg) - atan(w/h))^2; alpha is a constant.
                let dv = S::atan_ratio(wg, hg) - S::atan_ratio(w, h);
                let v = S::cst(4.0 / (PI * PI)) * dv * dv;
                let alpha_den = 1.0 - iou_val + v.val() + eps;
                let alpha = if alpha_den == 0.0 {
                    0.0
                } else {
                    v.val() / alpha_den
                };
                one - pw(iou) + pw(safe_div(rho2, diag2)) + pw(S::cst(alpha) * v)
            }
            CiouConvention::Mmdetection => {
                // BOX-14: heights + eps in the ratios, alpha gated by IoU > 0.5, no eps in
                // its denominator, the CIoU value clamped to [-1, 1].
                let dv = S::atan_ratio(wg, hg + e) - S::atan_ratio(w, h + e);
                let v = S::cst(4.0 / (PI * PI)) * dv * dv;
                let den = 1.0 - iou_val + v.val();
                let alpha = if iou_val > 0.5 && den != 0.0 {
                    v.val() / den
                } else {
                    0.0
                };
                let ciou = pw(iou) - (pw(safe_div(rho2, diag2)) + pw(S::cst(alpha) * v));
                one - clamp(ciou, -1.0, 1.0)
            }
        },
        BoxLossKind::Eiou => {
            // BOX-7: 1 - IoU + rho^2/c^2 + (w - wg)^2/(cw^2 + eps) + (h - hg)^2/(ch^2 + eps).
            let dw = w - wg;
            let dh = h - hg;
            one - iou
                + safe_div(rho2, diag2)
                + safe_div(dw * dw, cw * cw + e)
                + safe_div(dh * dh, ch * ch + e)
        }
        BoxLossKind::ExtendedIou => extended_iou(p, g, e, opt.smooth_point),
        BoxLossKind::Siou => siou(p, g, iou, e, opt.siou_paper_gamma),
        BoxLossKind::Wiou => {
            // BOX-17: R = exp(rho^2 / (cw^2 + ch^2)*), the denominator detached.
            let r = exp(safe_div(rho2, detach(cw * cw + ch * ch)));
            r * (one - iou)
        }
        BoxLossKind::Mpdiou => {
            // BOX-18: 1 - IoU + d1^2 / (W^2 + H^2) + d2^2 / (W^2 + H^2).
            let [iw, ih] = opt.image_size.unwrap_or([1.0, 1.0]);
            let diag = S::cst(iw * iw + ih * ih);
            let (a, b) = (x1 - x1g, y1 - y1g);
            let (c, d) = (x2 - x2g, y2 - y2g);
            one - iou + (a * a + b * b) / diag + (c * c + d * d) / diag
        }
        BoxLossKind::ShapeIou => {
            // BOX-19: the target's shape weights ww, hh (constants).
            let sc = opt.shape_scale;
            let (pwg, phg) = (wg.val().abs().powf(sc), hg.val().abs().powf(sc));
            let den = pwg + phg;
            let (ww, hh) = if den > 0.0 {
                (S::cst(2.0 * pwg / den), S::cst(2.0 * phg / den))
            } else {
                (one, one)
            };
            let distance = safe_div(hh * dx * dx + ww * dy * dy, diag2);
            let om_w = hh * pos_div(abs(w - wg), max(w, wg));
            let om_h = ww * pos_div(abs(h - hg), max(h, hg));
            let shape = pow4(one - exp(-om_w)) + pow4(one - exp(-om_h));
            one - iou + distance + half * shape
        }
    };
    // BOX-20, BOX-21: L + IoU - F(IoU'), IoU' the inner boxes' IoU, F the Focaler map.
    let loss = if m.inner_ratio.is_some() || m.focaler.is_some() {
        let term = match m.inner_ratio {
            Some(r) => {
                let scale = |b: [S; 4]| {
                    let (cx, cy) = (half * (b[0] + b[2]), half * (b[1] + b[3]));
                    let (hw, hh) = (
                        S::cst(0.5 * r) * (b[2] - b[0]),
                        S::cst(0.5 * r) * (b[3] - b[1]),
                    );
                    [cx - hw, cy - hh, cx + hw, cy + hh]
                };
                iou_of(scale(p), scale(g), e).0
            }
            None => iou,
        };
        let mapped = match m.focaler {
            Some([d, u]) => clamp((term - S::cst(d)) * S::cst(1.0 / (u - d)), 0.0, 1.0),
            None => term,
        };
        loss + iou - mapped
    } else {
        loss
    };
    // BOX-23: focal weight IoU^gamma, detached.
    let loss = match m.focal_gamma {
        Some(gm) => S::cst(iou_val.max(0.0).powf(gm)) * loss,
        None => loss,
    };
    (loss, iou_val)
}

/// mmdetection's `eiou_loss` (Extended-IoU, `BOX-15`): a signed overlap that keeps a gradient
/// for disjoint boxes, `l = 1 - I / (U + eps)`, smoothed below `smooth_point`.
fn extended_iou<S: Scalar>(p: [S; 4], g: [S; 4], e: S, sp: f64) -> S {
    let [px1, py1, px2, py2] = p;
    let [tx1, ty1, tx2, ty2] = g;
    let ex1 = min(px1, tx1);
    let ey1 = min(py1, ty1);
    let ix1 = max(px1, tx1);
    let iy1 = max(py1, ty1);
    let ix2 = min(px2, tx2);
    let iy2 = min(py2, ty2);
    let xmin = min(ix1, ix2);
    let ymin = min(iy1, iy2);
    let xmax = max(ix1, ix2);
    let ymax = max(iy1, iy2);
    let inter = (ix2 - ex1) * (iy2 - ey1) + (xmin - ex1) * (ymin - ey1)
        - (ix1 - ex1) * (ymax - ey1)
        - (xmax - ex1) * (iy1 - ey1);
    let union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter + e;
    let l = S::cst(1.0) - safe_div(inter, union);
    if l.val() < sp {
        S::cst(0.5 / sp) * l * l
    } else {
        l - S::cst(0.5 * sp)
    }
}

/// mmdetection's `siou_loss` (`BOX-16`): `1 - clamp(IoU - (Delta + Omega) / 2, -1, 1)`.
fn siou<S: Scalar>(p: [S; 4], g: [S; 4], iou: S, e: S, paper_gamma: bool) -> S {
    let one = S::cst(1.0);
    let two = S::cst(2.0);
    let half = S::cst(0.5);
    let [x1, y1, x2, y2] = p;
    let [x1g, y1g, x2g, y2g] = g;
    let eps = e.val();
    // The enclosing size clamped at eps (mmdetection's `clamp(min=eps)`).
    let cw = clamp(max(x2, x2g) - min(x1, x1g), eps, f64::INFINITY);
    let ch = clamp(max(y2, y2g) - min(y1, y1g), eps, f64::INFINITY);
    let (w1, h1) = (x2 - x1, y2 - y1 + e);
    let (w2, h2) = (x2g - x1g, y2g - y1g + e);
    // Angle cost: Lambda = cos(2 asin(sin_alpha) - pi/2) on the smaller of the two sines.
    let s_cw = (x1g + x2g - x1 - x2) * half + e;
    let s_ch = (y1g + y2g - y1 - y2) * half + e;
    let sigma = sqrt(s_cw * s_cw + s_ch * s_ch);
    let sin1 = safe_div(abs(s_cw), sigma);
    let sin2 = safe_div(abs(s_ch), sigma);
    let sin_alpha = if sin1.val() > std::f64::consts::FRAC_1_SQRT_2 {
        sin2
    } else {
        sin1
    };
    let angle = cos(two * asin(sin_alpha) - S::cst(std::f64::consts::FRAC_PI_2));
    // Distance cost.
    let rx = s_cw / cw;
    let ry = s_ch / ch;
    let gamma = if paper_gamma {
        angle - two
    } else {
        two - angle
    };
    let distance = two - exp(gamma * rx * rx) - exp(gamma * ry * ry);
    // Shape cost, theta = 4.
    let om_w = pos_div(abs(w1 - w2), max(w1, w2));
    let om_h = pos_div(abs(h1 - h2), max(h1, h2));
    let shape = pow4(one - exp(-om_w)) + pow4(one - exp(-om_h));
    one - clamp(iou - half * (distance + shape), -1.0, 1.0)
}

/// The loss of one pair in `format`, its gradient with respect to the predicted box (in the
/// same layout) and its plain IoU, torchvision conventions, no modifier. A non-finite
/// coordinate gives NaN loss and gradient (`BOX-12`).
pub fn box_pair_loss(
    kind: BoxLossKind,
    format: BoxFormat,
    pred: [f64; 4],
    target: [f64; 4],
    eps: f64,
) -> (f64, [f64; 4], f64) {
    let cfg = BoxLoss {
        kind,
        format,
        eps,
        ..BoxLoss::default()
    };
    box_pair_loss_cfg(&cfg, pred, target)
}

/// [`box_pair_loss`] under a whole configuration (kind, conventions and modifiers; the
/// threshold weight is applied by the caller). A non-finite coordinate gives NaN loss and
/// gradient (`BOX-12`).
pub fn box_pair_loss_cfg(cfg: &BoxLoss, pred: [f64; 4], target: [f64; 4]) -> (f64, [f64; 4], f64) {
    if pred.iter().chain(target.iter()).any(|v| !v.is_finite()) {
        return (f64::NAN, [f64::NAN; 4], f64::NAN);
    }
    let p = to_xyxy(cfg.format, std::array::from_fn(|k| D4::var(pred[k], k)));
    let g = to_xyxy(cfg.format, target.map(D4::cst));
    let (loss, iou) = pair_loss_cfg(cfg, p, g);
    (loss.v, loss.d, iou)
}

/// Reference box loss over aligned pairs `pred`, `target` `[N, 4]`.
pub fn box_loss(call: PairCall<'_, BoxLoss, f64>) -> Loss {
    let Parts {
        plan,
        io,
        with: target,
        upstream,
    } = call.into_parts();
    let cfg = plan.cfg;
    let n = plan.items;
    let pred = io.input();
    let mut losses = Vec::with_capacity(n);
    let mut grads = Vec::with_capacity(n);
    for i in 0..n {
        let p: [f64; 4] = std::array::from_fn(|k| pred[4 * i + k]);
        let t: [f64; 4] = std::array::from_fn(|k| target[4 * i + k]);
        let (l, g, iou) = box_pair_loss_cfg(cfg, p, t);
        // BOX-9: the seed's piecewise-constant weight (no gradient through it).
        let w = match cfg.threshold_weight {
            Some(tw) if iou < tw.threshold => 1.0 - tw.alpha,
            _ => 1.0,
        };
        losses.push(w * l);
        grads.push(g.map(|d| w * d));
    }
    // BOX-10: reductions over pairs.
    let scale = plan.count_scale();
    if io.grad_dest().wanted() {
        let mut out = vec![0.0; 4 * n];
        for (i, g) in grads.iter().enumerate() {
            let u = plan.item_scale(&upstream, scale, i);
            for k in 0..4 {
                out[4 * i + k] = u * g[k];
            }
        }
        io.write_grad_f64(&out);
    }
    plan.reduce(losses, n as f64)
}

/// Pairwise IoU `[N, M]` row-major (`BOX-13`), as `torchvision.ops.box_iou`: intersection with
/// widths clamped at 0, no eps; a pair whose union is not positive gets IoU 0.
pub fn box_iou(call: IouCall<'_, f64>) {
    let (plan, boxes1, boxes2, out) = call.into_parts();
    let (format, n, m) = (plan.format, plan.n, plan.m);
    for i in 0..n {
        let a = format.to_xyxy(std::array::from_fn(|k| boxes1[4 * i + k]));
        let area_a = (a[2] - a[0]) * (a[3] - a[1]);
        for j in 0..m {
            let b = format.to_xyxy(std::array::from_fn(|k| boxes2[4 * j + k]));
            let area_b = (b[2] - b[0]) * (b[3] - b[1]);
            let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
            let inter = w * h;
            let union = area_a + area_b - inter;
            out[i * m + j] = if union > 0.0 {
                inter / union
            } else if union.is_nan() {
                f64::NAN
            } else {
                0.0
            };
        }
    }
}
