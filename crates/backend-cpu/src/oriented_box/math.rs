//! ProbIoU of one oriented-box pair with its hand-derived gradient with respect to the first
//! box (`OBB-1` .. `OBB-4`), in `f64`: the determinant `D = Sa Sb - Sc^2` cancels badly for
//! elongated, rotated boxes, so the pair is widened once and the result rounded once. Checked
//! against the reference's dual numbers (`tests/oriented_box.rs`).

/// Parameters of a call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ObbParams {
    pub(crate) eps: f64,
    pub(crate) floor: f64,
    pub(crate) ciou: bool,
}

const SQRT12: f64 = 3.464_101_615_137_754_6;

/// `sqrt(w^2 / 12 + floor)` and its derivative in `w` (0 at `w = 0, floor = 0`).
#[inline(always)]
fn sd(w: f64, floor: f64) -> (f64, f64) {
    if floor == 0.0 {
        (
            w.abs() / SQRT12,
            if w == 0.0 { 0.0 } else { w.signum() / SQRT12 },
        )
    } else {
        let r = (w * w / 12.0 + floor).sqrt();
        (r, w / (12.0 * r))
    }
}

/// `atan(w / h)` extended to `h = 0` (`OBB-4`), and its partials in `w` and `h`.
#[inline(always)]
fn atan_ratio(w: f64, h: f64) -> (f64, f64, f64) {
    let v = if h != 0.0 {
        (w / h).atan()
    } else if w == 0.0 {
        0.0
    } else {
        w.signum() * std::f64::consts::FRAC_PI_2
    };
    let n = w * w + h * h;
    if n > 0.0 {
        (v, h / n, -w / n)
    } else {
        (v, 0.0, 0.0)
    }
}

struct Gauss {
    a: f64,
    b: f64,
    c: f64,
    big_a: f64,
    big_b: f64,
    co: f64,
    si: f64,
}

#[inline(always)]
fn gauss(w: f64, h: f64, r: f64, floor: f64) -> Gauss {
    let big_a = w * w / 12.0 + floor;
    let big_b = h * h / 12.0 + floor;
    let (si, co) = r.sin_cos();
    let (co2, si2) = (co * co, si * si);
    Gauss {
        a: big_a * co2 + big_b * si2,
        b: big_a * si2 + big_b * co2,
        c: (big_a - big_b) * co * si,
        big_a,
        big_b,
        co,
        si,
    }
}

/// `(1 - ProbIoU, ProbIoU)` of box `p` against box `t` and, with `G`, the gradient of the
/// first with respect to `p` (`OBB-5`). A non-finite number gives NaN everywhere.
#[inline(always)]
pub(crate) fn probiou_pair<const G: bool>(
    p: [f64; 5],
    t: [f64; 5],
    prm: &ObbParams,
) -> (f64, f64, [f64; 5]) {
    if !p.iter().chain(&t).all(|v| v.is_finite()) {
        return (f64::NAN, f64::NAN, [f64::NAN; 5]);
    }
    let eps = prm.eps;
    let g1 = gauss(p[2], p[3], p[4], prm.floor);
    let g2 = gauss(t[2], t[3], t[4], prm.floor);
    let (sa, sb, sc) = (g1.a + g2.a, g1.b + g2.b, g1.c + g2.c);
    let (dx, dy) = (p[0] - t[0], p[1] - t[1]);
    let det = sa * sb - sc * sc;
    let den = det + eps;
    // One division per denominator, multiplications after (f64 division is slow).
    let id = 1.0 / den;
    let t1 = (sa * dy * dy + sb * dx * dx) * id * 0.25;
    let t2 = -(sc * dx * dy) * id * 0.5;
    let (sw1, dsw1) = sd(p[2], prm.floor);
    let (sh1, dsh1) = sd(p[3], prm.floor);
    let (sw2, _) = sd(t[2], prm.floor);
    let (sh2, _) = sd(t[3], prm.floor);
    let q2 = sw2 * sh2;
    let q = sw1 * sh1 * q2;
    let qd = 4.0 * q + eps;
    let iq = 1.0 / qd;
    let big_r = det * iq + eps;
    let t3 = 0.5 * big_r.ln();
    let raw = t1 + t2 + t3;
    // Not clamped (NaN included: a NaN distance passes PyTorch's clamp and its NaN gradient
    // with it, as in the reference).
    let active = !(raw < eps || raw > 100.0);
    let bd = raw.clamp(eps, 100.0);
    let e = (-bd).exp();
    let hd = (1.0 - e + eps).sqrt();
    let iou = 1.0 - hd;
    let (mut loss, mut out_iou) = (hd, iou);
    // OBB-4: the CIoU term, alpha detached.
    let mut cw = (0.0, 0.0);
    if prm.ciou {
        let k = 4.0 / (std::f64::consts::PI * std::f64::consts::PI);
        let (a2, _, _) = atan_ratio(t[2], t[3]);
        let (a1, da1w, da1h) = atan_ratio(p[2], p[3]);
        let diff = a2 - a1;
        let v = k * diff * diff;
        let alpha = v / (v - iou + (1.0 + eps));
        out_iou = iou - alpha * v;
        loss = 1.0 - out_iou;
        // d(alpha v)/dw1 = alpha k 2 diff (-da1/dw1)
        let c = -alpha * k * 2.0 * diff;
        cw = (c * da1w, c * da1h);
    }
    let mut grad = [0.0; 5];
    if G {
        let gbd = if active { e / (2.0 * hd) } else { 0.0 };
        // t1, t2 over den
        let gi = gbd * id;
        let mut dsa = gi * 0.25 * dy * dy;
        let mut dsb = gi * 0.25 * dx * dx;
        let mut dsc = -gi * 0.5 * dx * dy;
        let ddx = gi * (0.5 * sb * dx - 0.5 * sc * dy);
        let ddy = gi * (0.5 * sa * dy - 0.5 * sc * dx);
        let dden = -gi * (t1 + t2);
        // t3
        let dr = gbd * 0.5 / big_r;
        let ddet = dden + dr * iq;
        let dq = -dr * det * 4.0 * iq * iq;
        dsa += ddet * sb;
        dsb += ddet * sa;
        dsc -= 2.0 * sc * ddet;
        // a1, b1, c1 -> A1, B1, angle
        let (co, si) = (g1.co, g1.si);
        let (co2, si2, cs) = (co * co, si * si, co * si);
        let d_a = dsa * co2 + dsb * si2 + dsc * cs;
        let d_b = dsa * si2 + dsb * co2 - dsc * cs;
        let dr1 = 2.0 * g1.c * (dsb - dsa) + dsc * (g1.big_a - g1.big_b) * (co2 - si2);
        grad[0] = ddx;
        grad[1] = ddy;
        grad[2] = d_a * p[2] / 6.0 + dq * q2 * sh1 * dsw1 + cw.0;
        grad[3] = d_b * p[3] / 6.0 + dq * q2 * sw1 * dsh1 + cw.1;
        grad[4] = dr1;
    }
    (loss, out_iou, grad)
}
