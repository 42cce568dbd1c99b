//! The composable modifiers' pieces in `f32` lanes: Inner-IoU's auxiliary boxes (`BOX-20`) and
//! alpha-IoU's powers (`BOX-22`). `pair` (in `mod.rs`) composes them with every kind, selected
//! at run time by `PairParams` in the kernels with options, so there is no kernel per
//! combination.

use super::prim::{Axis, excesses, extents_sel, safe_recip, ties};
use crate::math::{exp_f32, ln_f32, ln_finish, ln_reduce, ln_series, sel};

/// Inner-IoU's auxiliary axis (`BOX-20`): both centres kept, both extents times `ratio`,
/// formed from the translation-free primitives (so the inner offsets of identical boxes are
/// exactly 0, as the plain ones).
#[inline(always)]
fn scaled(a: &Axis, ratio: f32) -> Axis {
    let (w, wg) = (ratio * a.w, ratio * a.wg);
    // w - wg as e2 - e1 (the small offsets, no cancellation of two rounded extents).
    let (half_diff, half_sum) = (0.5 * (ratio * (a.e2 - a.e1)), 0.5 * (w + wg));
    Axis {
        w,
        wg,
        e1: a.d - half_diff,
        e2: a.d + half_diff,
        p2t1: a.d + half_sum,
        t2p1: half_sum - a.d,
        d: a.d,
        d64: a.d64,
        cw64: a.cw64,
    }
}

/// `1 - IoU_inner` of the auxiliary boxes (`BOX-20`; `BOX-3` with eps in the union, written as
/// `pair`'s `omi`: exact for identical boxes), and when `G` its derivative with respect to the
/// prediction's corners `(x1, y1, x2, y2)` (ties split in half, as the reference's `max`/`min`).
#[inline(always)]
pub(super) fn inner_omi<const G: bool>(
    ax: &Axis,
    ay: &Axis,
    ratio: f32,
    eps: f32,
) -> (f32, [f32; 4]) {
    let (ix, iy) = (scaled(ax, ratio), scaled(ay, ratio));
    let (iw, _) = extents_sel(&ix);
    let (ih, _) = extents_sel(&iy);
    let mask = iw > 0.0 && ih > 0.0;
    let inter = sel(mask, iw * ih, 0.0);
    let union = ix.w * iy.w + ix.wg * iy.wg - inter;
    let du = union + eps;
    let rd = safe_recip(du);
    let has = mask && du != 0.0;
    let omi = sel(has, (excesses(&ix, &iy, iw, iy.w, iy.wg).0 + eps) * rd, 1.0);
    if !G {
        return (omi, [0.0; 4]);
    }
    let (sx1, tx2) = ties(&ix);
    let (sy1, ty2) = ties(&iy);
    let ki = [
        sel(mask, -sx1 * ih, 0.0),
        sel(mask, -sy1 * iw, 0.0),
        sel(mask, tx2 * ih, 0.0),
        sel(mask, ty2 * iw, 0.0),
    ];
    let ka = [-iy.w, -ix.w, iy.w, ix.w];
    let g: [f32; 4] =
        std::array::from_fn(|k| -rd * ((2.0 * ki[k] - ka[k]) + omi * (ka[k] - ki[k])));
    // The auxiliary corners x1' = a x1 + b x2, x2' = b x1 + a x2 with a = (1 + ratio) / 2,
    // b = (1 - ratio) / 2 (the same in y).
    let (a, b) = (0.5 * (1.0 + ratio), 0.5 * (1.0 - ratio));
    (
        omi,
        [
            a * g[0] + b * g[2],
            a * g[1] + b * g[3],
            b * g[0] + a * g[2],
            b * g[1] + a * g[3],
        ],
    )
}

/// `exp(t)`, flushed to 0 below `e^-87` (about `1.6e-38`) before the exponential is formed, so
/// that no subnormal is computed: subnormal results cost microcode assists on x86, and these
/// powers (a small distance ratio cubed, an IoU of 0) reach them often; the values flushed are
/// far below every tolerance of the losses they enter.
#[inline(always)]
fn exp_flush(t: f32) -> f32 {
    let tiny = t < -87.0;
    sel(tiny, 0.0, exp_f32(sel(tiny, 0.0, t)))
}

/// alpha-IoU's IoU term (`BOX-22`) from `u = 1 - IoU`: `1 - spow(IoU, a)` without
/// cancellation where IoU is near 1 (`-expm1(a log1p(-u))`, both written out in `f32`), and its
/// derivative in `u`, `a |IoU|^(a - 1)` (0 where IoU = 0).
#[inline(always)]
pub(super) fn one_minus_pow(u: f32, a: f32) -> (f32, f32) {
    let x = 1.0 - u;
    // ln(IoU): for u < 1/4 as 2 atanh(-u / (2 - u)) (|s| < 1/7, the series of `ln_f32`), which
    // keeps the relative accuracy of a small u; beyond, ln |1 - u| (1 - u has at most one
    // rounding there, exact for u >= 1/2).
    let small = u < 0.25;
    let l = ln_iou(u, x.abs(), small);
    let t = a * l;
    // -expm1(t) for -ln(2)/2 < t <= 0: `exp_f32`'s polynomial without its leading 1 (its
    // reduced argument is t itself there); 1 - sign(x) e^t beyond (no cancellation).
    let q = (((((1.987_569_1e-4 * t + 1.398_199_9e-3) * t + 8.333_452e-3) * t + 4.166_579_6e-2)
        * t
        + 1.666_666_5e-1)
        * t
        + 0.5)
        * (t * t)
        + t;
    let e = exp_flush(t);
    let v = sel(small && t > -0.346_573_6, -q, 1.0 - sel(x < 0.0, -e, e));
    // a |x|^(a - 1) as a |x|^a / |x| (one division instead of a second exp).
    let d = sel(x == 0.0, 0.0, a * e / x.abs());
    (v, d)
}

/// `ln x` for `x = |1 - u|`: `2 atanh(-u / (2 - u))` where `small` (`u < 1/4`) and `ln_f32(x)`
/// beyond, bit for bit, with one division and one series for both: the two share the form
/// `2 atanh(num / den)` (`ln_f32` reduces `x` to `2^e m` and takes `num / den = (m - 1) / (m + 1)`),
/// so the operands are selected before the division instead of both results after it.
#[inline(always)]
pub(super) fn ln_iou(u: f32, x: f32, small: bool) -> f32 {
    let (ef, f) = ln_reduce(x);
    let lm = ln_series(sel(small, -u, f) / sel(small, 2.0 - u, 2.0 + f));
    sel(small, lm, ln_finish(x, ef, lm))
}

/// alpha-IoU's power of a penalty term (`BOX-22`): `sign(x) |x|^a` and its derivative
/// `a |x|^(a - 1)`, both 0 at `x = 0`.
#[inline(always)]
pub(super) fn spow(x: f32, a: f32) -> (f32, f32) {
    let l = ln_f32(x.abs());
    let m = exp_flush(a * l);
    let v = sel(x == 0.0, 0.0, sel(x < 0.0, -m, m));
    let d = sel(x == 0.0, 0.0, a * m / x.abs());
    (v, d)
}

/// The integer powers of alpha-IoU (`BOX-22` with `a = n`, an integer in `1..=8`: the paper's
/// default 3 among them), by multiplication instead of `exp(a ln x)`: a few products where the
/// general path takes a `ln`, an `exp` and a division, and at least as accurate (each product
/// rounds once). The exponent is the same in every lane, so the selections below are uniform.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntPow {
    /// `n`.
    pub n: f32,
    /// The bits of `n - 1` (`0..=7`).
    pub bits: [bool; 3],
    /// `2^(-126 / n)`: below it `|x|^n` would be subnormal, and is flushed to 0 (as
    /// [`exp_flush`] flushes the general path), so that no subnormal is formed.
    pub tiny: f32,
}

impl IntPow {
    /// The integer power of `a`, if it is one of `1..=8`.
    pub(crate) fn of(a: f64) -> Option<Self> {
        let n = a as i32;
        (f64::from(n) == a && (1..=8).contains(&n)).then(|| {
            let k = n - 1;
            IntPow {
                n: n as f32,
                bits: [k & 1 != 0, k & 2 != 0, k & 4 != 0],
                tiny: (-126.0 / a).exp2() as f32,
            }
        })
    }

    /// The power 1 (what the kernels carry when the power is not an integer, unused there).
    pub(crate) fn one() -> Self {
        IntPow {
            n: 1.0,
            bits: [false; 3],
            tiny: f32::MIN_POSITIVE,
        }
    }

    /// `|x|^(n - 1)` of `|x| >= 0` (binary powering over the three bits of `n - 1`).
    #[inline(always)]
    fn pow_n1(&self, x: f32) -> f32 {
        let x2 = x * x;
        let r = sel(self.bits[0], x, 1.0);
        let r = sel(self.bits[1], r * x2, r);
        sel(self.bits[2], r * (x2 * x2), r)
    }
}

/// [`one_minus_pow`] for an integer power: `1 - x^n = u (1 + x + ... + x^(n-1))` for
/// `x = 1 - u >= 0` (no cancellation: every term is positive), `1 + |x|^n` below 0.
#[inline(always)]
pub(super) fn one_minus_ipow(u: f32, ip: &IntPow) -> (f32, f32) {
    let x = 1.0 - u;
    let xa = x.abs();
    let xf = sel(xa < ip.tiny, 0.0, xa);
    let p = ip.pow_n1(xf);
    // The geometric sum by Horner's rule, its length n selected per step.
    let mut g = 1.0f32;
    for k in 1..8 {
        g = sel((k as f32) < ip.n, g * x + 1.0, g);
    }
    let v = sel(x < 0.0, 1.0 + p * xf, u * g);
    let d = sel(x == 0.0, 0.0, ip.n * p);
    (v, d)
}

/// [`spow`] for an integer power: `sign(x) |x|^n` and `n |x|^(n - 1)`, both 0 at `x = 0`.
#[inline(always)]
pub(super) fn ispow(x: f32, ip: &IntPow) -> (f32, f32) {
    let xa = x.abs();
    let xf = sel(xa < ip.tiny, 0.0, xa);
    let p = ip.pow_n1(xf);
    let m = p * xf;
    let v = sel(x == 0.0, 0.0, sel(x < 0.0, -m, m));
    let d = sel(x == 0.0, 0.0, ip.n * p);
    (v, d)
}
