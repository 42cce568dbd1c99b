//! Reference box losses (`BOX-1` .. `BOX-12`) and pairwise IoU.

use super::dual::{D4, Scalar, max, min, safe_div};
use crate::box_loss::{BoxFormat, BoxLoss, BoxLossKind};
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

/// The loss of one aligned pair of corner boxes and its plain IoU (`BOX-2` .. `BOX-8`).
///
/// `p` is the prediction, `g` the target, both `(x1, y1, x2, y2)`.
pub fn pair_loss_xyxy<S: Scalar>(kind: BoxLossKind, p: [S; 4], g: [S; 4], eps: f64) -> (S, f64) {
    let e = S::cst(eps);
    let zero = S::cst(0.0);
    let one = S::cst(1.0);
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
        zero
    };
    let union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter;
    // BOX-3: IoU with eps in the denominator.
    let iou = safe_div(inter, union + e);
    let iou_val = iou.val();
    // Smallest enclosing box.
    let xc1 = min(x1, x1g);
    let yc1 = min(y1, y1g);
    let xc2 = max(x2, x2g);
    let yc2 = max(y2, y2g);
    let cw = xc2 - xc1;
    let ch = yc2 - yc1;
    let half = S::cst(0.5);
    // Centre distance squared and enclosing diagonal squared (BOX-5).
    let dx = half * (x1 + x2) - half * (x1g + x2g);
    let dy = half * (y1 + y2) - half * (y1g + y2g);
    let rho2 = dx * dx + dy * dy;
    let diag2 = cw * cw + ch * ch + e;
    let loss = match kind {
        BoxLossKind::Iou => one - iou,
        BoxLossKind::Giou => {
            // BOX-4: 1 - (IoU - (C - U) / (C + eps)).
            let area_c = cw * ch;
            one - (iou - safe_div(area_c - union, area_c + e))
        }
        BoxLossKind::Diou => one - iou + safe_div(rho2, diag2),
        BoxLossKind::Ciou => {
            // BOX-6: v = 4/pi^2 (atan(wg/hg) - atan(w/h))^2; alpha is a constant (no gradient).
            let diou = one - iou + safe_div(rho2, diag2);
            let dv = S::atan_ratio(x2g - x1g, y2g - y1g) - S::atan_ratio(x2 - x1, y2 - y1);
            let v = S::cst(4.0 / (std::f64::consts::PI * std::f64::consts::PI)) * dv * dv;
            let alpha_den = 1.0 - iou_val + v.val() + eps;
            let alpha = if alpha_den == 0.0 {
                0.0
            } else {
                v.val() / alpha_den
            };
            diou + S::cst(alpha) * v
        }
        BoxLossKind::Eiou => {
            // BOX-7: 1 - IoU + rho^2/c^2 + (w - wg)^2/(cw^2 + eps) + (h - hg)^2/(ch^2 + eps).
            let dw = (x2 - x1) - (x2g - x1g);
            let dh = (y2 - y1) - (y2g - y1g);
            one - iou
                + safe_div(rho2, diag2)
                + safe_div(dw * dw, cw * cw + e)
                + safe_div(dh * dh, ch * ch + e)
        }
    };
    (loss, iou_val)
}

/// The loss of one pair in `format`, its gradient with respect to the predicted box (in the
/// same layout) and its plain IoU. A non-finite coordinate gives NaN loss and gradient
/// (`BOX-12`).
pub fn box_pair_loss(
    kind: BoxLossKind,
    format: BoxFormat,
    pred: [f64; 4],
    target: [f64; 4],
    eps: f64,
) -> (f64, [f64; 4], f64) {
    if pred.iter().chain(target.iter()).any(|v| !v.is_finite()) {
        return (f64::NAN, [f64::NAN; 4], f64::NAN);
    }
    let p = to_xyxy(format, std::array::from_fn(|k| D4::var(pred[k], k)));
    let g = to_xyxy(format, target.map(D4::cst));
    let (loss, iou) = pair_loss_xyxy(kind, p, g, eps);
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
        let (l, g, iou) = box_pair_loss(cfg.kind, cfg.format, p, t, cfg.eps);
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
