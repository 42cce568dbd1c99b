//! Per-element math of the varifocal and quality focal losses: `(loss, dloss/dx)`, branchless
//! `f32` (`QUAL-1` .. `QUAL-3`, `QUAL-5`, `QUAL-6`).

use crate::binary::math::{bce_el, sigmoid_parts};
use crate::math::{exp_f32, ln_f32, sel};

/// `b^e` for `b >= 0` (`0^e = 0` for `e > 0`, 1 for `e = 0`; `e = 2` exactly as `b b`).
#[inline(always)]
fn pow_f32(b: f32, e: f32) -> f32 {
    if e == 2.0 {
        b * b
    } else if e == 0.0 {
        1.0
    } else {
        sel(b == 0.0, 0.0, exp_f32(e * ln_f32(b)))
    }
}

/// The focal power `P` of a gamma (a const generic of the kernels, so that the common `gamma =
/// 2` is a product in the vectorised loop): 0 for `gamma = 0`, 2 for `gamma = 2`, else 1
/// (`exp(gamma ln b)`).
pub(crate) fn power_of(gamma: f64) -> u8 {
    if gamma == 0.0 {
        0
    } else if gamma == 2.0 {
        2
    } else {
        1
    }
}

/// `b^gamma` for the power `P` of [`power_of`].
#[inline(always)]
fn pow_p<const P: u8>(b: f32, gamma: f32) -> f32 {
    match P {
        0 => 1.0,
        2 => b * b,
        _ => sel(b == 0.0, 0.0, exp_f32(gamma * ln_f32(b))),
    }
}

/// One varifocal element with weight `K` (`VarifocalWeight::code`) and power `P`: logit `x`,
/// score `s`, label `l` (ultralytics; 1 for the others). `d(p^gamma)/dx = gamma p^gamma
/// (1 - p)`, so no `p^(gamma - 1)` is formed. A non-finite logit gives NaN.
#[inline(always)]
pub(crate) fn vfl_el<const K: u8, const P: u8>(
    x: f32,
    s: f32,
    l: f32,
    alpha: f32,
    gamma: f32,
) -> (f32, f32) {
    let (p, q, _) = sigmoid_parts(x);
    let (bce, dbce) = bce_el(x, s, 1.0);
    let pg = pow_p::<P>(p, gamma);
    let dneg = alpha * gamma * pg * q;
    let (w, dw) = match K {
        0 => (alpha * pg * (1.0 - l) + s * l, dneg * (1.0 - l)),
        _ => {
            let pos = s > 0.0;
            let wpos = if K == 1 { s } else { 1.0 };
            (sel(pos, wpos, alpha * pg), sel(pos, 0.0, dneg))
        }
    };
    let fin = x.is_finite();
    (
        sel(fin, bce * w, f32::NAN),
        sel(fin, dbce * w + bce * dw, f32::NAN),
    )
}

/// One quality focal element: the label's column (`positive`, score `s`) or another
/// (`QUAL-5`, `QUAL-6`); `two` when `beta = 2`.
#[inline(always)]
pub(crate) fn qfl_el(x: f32, positive: bool, s: f32, beta: f32, two: bool) -> (f32, f32) {
    let (p, q, _) = sigmoid_parts(x);
    let y = if positive { s } else { 0.0 };
    let (bce, dbce) = bce_el(x, y, 1.0);
    // |y - p| without cancellation for y = 0 (p itself) and y = 1 (q).
    let diff = sel(y == 0.0, p, sel(y == 1.0, q, (y - p).abs()));
    let m = if two {
        diff * diff
    } else {
        pow_f32(diff, beta)
    };
    // d|y - p|/dx = sign(p - y) p q; d(diff^beta) = beta diff^(beta - 1) d(diff), taken as 0
    // at diff = 0 (as the reference): beta m (sign p q / diff).
    let sign = sel(p > y, 1.0, sel(p < y, -1.0, 0.0));
    let dm = sel(
        diff == 0.0 || beta == 0.0,
        0.0,
        beta * m * (sign * p * q / diff),
    );
    let fin = x.is_finite();
    (
        sel(fin, bce * m, f32::NAN),
        sel(fin, dbce * m + bce * dm, f32::NAN),
    )
}
