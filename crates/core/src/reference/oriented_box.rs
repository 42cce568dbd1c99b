//! Reference ProbIoU of oriented boxes (`OBB-1` .. `OBB-7`): each formula written once, generic
//! over a forward-mode dual number with five tangents, so that the exact gradient with respect
//! to the predicted box `(cx, cy, w, h, angle)` comes from the same code as the value.

use crate::call::Loss;
use crate::oriented_box::{OBB_WIDTH, ProbIou, ProbIouPairwiseCall};
use crate::plan::{PairCall, Parts};
use std::ops::{Add, Div, Mul, Neg, Sub};

/// A value and its partial derivatives with respect to the five numbers of the predicted box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct D5 {
    /// Value.
    pub v: f64,
    /// Partial derivatives.
    pub d: [f64; 5],
}

impl D5 {
    /// A constant.
    pub fn cst(v: f64) -> Self {
        Self { v, d: [0.0; 5] }
    }

    /// Input `k` with value `v`.
    pub fn var(v: f64, k: usize) -> Self {
        let mut d = [0.0; 5];
        d[k] = 1.0;
        Self { v, d }
    }

    /// `f(v)` with derivative `df` (the chain rule).
    fn map(self, v: f64, df: f64) -> Self {
        Self {
            v,
            d: self.d.map(|x| x * df),
        }
    }

    fn sqrt(self) -> Self {
        let r = self.v.sqrt();
        self.map(r, 0.5 / r)
    }

    fn ln(self) -> Self {
        self.map(self.v.ln(), 1.0 / self.v)
    }

    fn exp(self) -> Self {
        let e = self.v.exp();
        self.map(e, e)
    }

    fn sin(self) -> Self {
        self.map(self.v.sin(), self.v.cos())
    }

    fn cos(self) -> Self {
        self.map(self.v.cos(), -self.v.sin())
    }

    /// `sqrt(w^2 / 12 + floor)`, with derivative `w / (12 sqrt(..))`, taken as 0 at `w = 0,
    /// floor = 0` (`OBB-2`'s exact determinant form).
    fn sd(w: Self, floor: f64) -> Self {
        let r = (w.v * w.v / 12.0 + floor).sqrt();
        w.map(r, if r == 0.0 { 0.0 } else { w.v / (12.0 * r) })
    }

    /// `atan(w / h)`, extended to `h = 0` by `sign(w) pi / 2` (0 at `w = h = 0`), derivative
    /// `(h dw - w dh) / (w^2 + h^2)` (0 at the origin) (`OBB-4`).
    fn atan_ratio(w: Self, h: Self) -> Self {
        let v = if h.v != 0.0 {
            (w.v / h.v).atan()
        } else if w.v == 0.0 {
            0.0
        } else {
            w.v.signum() * std::f64::consts::FRAC_PI_2
        };
        let n = w.v * w.v + h.v * h.v;
        let mut d = [0.0; 5];
        if n > 0.0 {
            for (k, dk) in d.iter_mut().enumerate() {
                *dk = (h.v * w.d[k] - w.v * h.d[k]) / n;
            }
        }
        Self { v, d }
    }

    /// `clamp(self, lo, hi)`, derivative passed where `lo <= v <= hi` (PyTorch's `clamp`).
    fn clamp(self, lo: f64, hi: f64) -> Self {
        if self.v < lo {
            Self::cst(lo)
        } else if self.v > hi {
            Self::cst(hi)
        } else {
            self
        }
    }
}

macro_rules! binop {
    ($tr:ident, $f:ident, |$a:ident, $b:ident| $v:expr, |$da:ident, $db:ident| $d:expr) => {
        impl $tr for D5 {
            type Output = D5;
            #[allow(clippy::suspicious_arithmetic_impl)]
            fn $f(self, o: D5) -> D5 {
                let ($a, $b) = (self.v, o.v);
                let mut d = [0.0; 5];
                for (k, dk) in d.iter_mut().enumerate() {
                    let ($da, $db) = (self.d[k], o.d[k]);
                    *dk = $d;
                }
                D5 { v: $v, d }
            }
        }
    };
}
binop!(Add, add, |a, b| a + b, |da, db| da + db);
binop!(Sub, sub, |a, b| a - b, |da, db| da - db);
binop!(Mul, mul, |a, b| a * b, |da, db| da * b + a * db);
binop!(Div, div, |a, b| a / b, |da, db| (da * b - a * db) / (b * b));

impl Neg for D5 {
    type Output = D5;
    fn neg(self) -> D5 {
        self.map(-self.v, -1.0)
    }
}

fn c(v: f64) -> D5 {
    D5::cst(v)
}

/// The Gaussian of a box (`OBB-1`): `(a, b, c)` of its covariance `[[a, c], [c, b]]` and
/// `sqrt(det) = sqrt(w^2/12 + floor) sqrt(h^2/12 + floor)`.
fn gaussian(b: &[D5; 5], floor: f64) -> (D5, D5, D5, D5) {
    let big_a = b[2] * b[2] / c(12.0) + c(floor);
    let big_b = b[3] * b[3] / c(12.0) + c(floor);
    let (co, si) = (b[4].cos(), b[4].sin());
    let (co2, si2) = (co * co, si * si);
    let a = big_a * co2 + big_b * si2;
    let bb = big_a * si2 + big_b * co2;
    let cc = (big_a - big_b) * co * si;
    (a, bb, cc, D5::sd(b[2], floor) * D5::sd(b[3], floor))
}

/// `(1 - ProbIoU, ProbIoU)` of `pred` against `target` (`OBB-2`, `OBB-3`, and `OBB-4` with
/// `ciou`), as dual numbers in the prediction's five numbers. Any non-finite number in either
/// box gives NaN (`TOL-4`).
pub fn probiou_pair(pred: [f64; 5], target: [f64; 5], cfg: &ProbIou) -> (D5, f64) {
    if pred.iter().chain(&target).any(|v| !v.is_finite()) {
        let nan = D5 {
            v: f64::NAN,
            d: [f64::NAN; 5],
        };
        return (nan, f64::NAN);
    }
    let eps = cfg.eps;
    let p: [D5; 5] = std::array::from_fn(|k| D5::var(pred[k], k));
    let t: [D5; 5] = target.map(D5::cst);
    let (a1, b1, c1, g1) = gaussian(&p, cfg.floor);
    let (a2, b2, c2, g2) = gaussian(&t, cfg.floor);
    // OBB-2: the Bhattacharyya distance's three terms, as ultralytics writes them.
    let (sa, sb, sc) = (a1 + a2, b1 + b2, c1 + c2);
    let (dx, dy) = (p[0] - t[0], p[1] - t[1]);
    let det = sa * sb - sc * sc;
    let den = det + c(eps);
    let t1 = (sa * dy * dy + sb * dx * dx) / den * c(0.25);
    let t2 = (sc * (t[0] - p[0]) * dy) / den * c(0.5);
    let t3 = (det / (c(4.0) * g1 * g2 + c(eps)) + c(eps)).ln() * c(0.5);
    // OBB-3: clamped distance, Hellinger distance, ProbIoU.
    let bd = (t1 + t2 + t3).clamp(eps, 100.0);
    let hd = (c(1.0) - (-bd).exp() + c(eps)).sqrt();
    let iou = c(1.0) - hd;
    if !cfg.ciou {
        return (hd, iou.v);
    }
    // OBB-4: ultralytics' CIoU aspect term, its alpha detached; pred is `obb1`.
    let k = 4.0 / (std::f64::consts::PI * std::f64::consts::PI);
    let diff = D5::atan_ratio(t[2], t[3]) - D5::atan_ratio(p[2], p[3]);
    let v = c(k) * diff * diff;
    let alpha = v.v / (v.v - iou.v + (1.0 + eps));
    let ciou = iou - v * c(alpha);
    (c(1.0) - ciou, ciou.v)
}

/// Reference `1 - ProbIoU` over aligned pairs with its gradient with respect to `pred`
/// (`OBB-5`).
pub fn probiou_loss(call: PairCall<'_, ProbIou, f64>) -> Loss {
    let Parts {
        plan,
        io,
        with: target,
        upstream,
    } = call.into_parts();
    let x = io.input();
    let scale = plan.count_scale();
    let mut losses = Vec::with_capacity(plan.items);
    let mut g = vec![0.0; x.len()];
    for i in 0..plan.items {
        let r = i * OBB_WIDTH..(i + 1) * OBB_WIDTH;
        let pb: [f64; 5] = std::array::from_fn(|k| x[r.start + k]);
        let tb: [f64; 5] = std::array::from_fn(|k| target[r.start + k]);
        let (l, _) = probiou_pair(pb, tb, plan.cfg);
        let f = plan.item_scale(&upstream, scale, i);
        for k in 0..OBB_WIDTH {
            g[r.start + k] = f * l.d[k];
        }
        losses.push(l.v);
    }
    if io.grad_dest().wanted() {
        io.write_grad_f64(&g);
    }
    plan.reduce(losses, plan.items as f64)
}

/// Reference pairwise ProbIoU `[n, m]` (`OBB-6`, ultralytics `batch_probiou`).
pub fn batch_probiou(call: ProbIouPairwiseCall<'_, f64>) {
    let (plan, b1, b2, out) = call.into_parts();
    let cfg = ProbIou::new().with_eps(plan.eps);
    for i in 0..plan.n {
        let a: [f64; 5] = std::array::from_fn(|k| b1[i * 5 + k]);
        for j in 0..plan.m {
            let b: [f64; 5] = std::array::from_fn(|k| b2[j * 5 + k]);
            out[i * plan.m + j] = probiou_pair(a, b, &cfg).1;
        }
    }
}
