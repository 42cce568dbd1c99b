//! Per-element math of BCE with logits and the sigmoid focal loss: `(loss, dloss/dx)`,
//! branchless `f32` with the polynomial `exp` / `log1p` / `ln` of [`crate::math`].

use crate::math::{exp_f32, ln_f32, log1p_unit_f32, sel};

/// `(p, q, L)` = `(sigmoid(x), 1 - sigmoid(x), log1p(exp(-|x|)))`, each accurate.
#[inline(always)]
pub(crate) fn sigmoid_parts(x: f32) -> (f32, f32, f32) {
    let e = exp_f32(-x.abs());
    let r = 1.0 / (1.0 + e);
    let er = e * r;
    let pos = x >= 0.0;
    (sel(pos, r, er), sel(pos, er, r), log1p_unit_f32(e))
}

/// BCE with logits of one element with positive weight `pw` (`BIN-1`, `BIN-2`), rewritten
/// without cancellation: `loss = pw y softplus(-x) + (1 - y) softplus(x)
/// = [x >= 0 ? (1 - y) x : -pw y x] + (pw y + 1 - y) L` (a zero coefficient contributes 0),
/// `dloss/dx = p (1 - y) - pw y q`.
#[inline(always)]
pub(crate) fn bce_el(x: f32, y: f32, pw: f32) -> (f32, f32) {
    let (p, q, lg) = sigmoid_parts(x);
    // A zero coefficient gives 0 even for an infinite logit (the reference's rule).
    let (cn, cp) = (1.0 - y, pw * y);
    let lin = sel(
        x >= 0.0,
        sel(cn == 0.0, 0.0, cn * x),
        sel(cp == 0.0, 0.0, -cp * x),
    );
    let cl = cp + cn;
    let loss = lin + sel(cl == 0.0, 0.0, cl * lg);
    let d = p * (1.0 - y) - pw * y * q;
    (loss, d)
}

/// How the focal modulator `(1 - p_t)^gamma` is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Power {
    /// `gamma = 0`: the modulator is 1.
    Zero,
    /// `gamma = 1`: `1 - p_t`.
    One,
    /// `gamma = 2`: `(1 - p_t)^2`.
    Two,
    /// Any other `gamma`: `exp(gamma ln(1 - p_t))`.
    General,
}

impl Power {
    /// The power used for `gamma`.
    pub(crate) fn of(gamma: f64) -> Power {
        if gamma == 0.0 {
            Power::Zero
        } else if gamma == 1.0 {
            Power::One
        } else if gamma == 2.0 {
            Power::Two
        } else {
            Power::General
        }
    }
}

/// A [`Power`] as a zero-sized type (the focal kernel's type parameter).
pub(crate) trait PowerMarker {
    /// The power.
    const POWER: Power;
}

/// Marker of [`Power::Zero`].
pub(crate) struct GammaZero;
/// Marker of [`Power::One`].
pub(crate) struct GammaOne;
/// Marker of [`Power::Two`].
pub(crate) struct GammaTwo;
/// Marker of [`Power::General`].
pub(crate) struct GammaGeneral;

impl PowerMarker for GammaZero {
    const POWER: Power = Power::Zero;
}
impl PowerMarker for GammaOne {
    const POWER: Power = Power::One;
}
impl PowerMarker for GammaTwo {
    const POWER: Power = Power::Two;
}
impl PowerMarker for GammaGeneral {
    const POWER: Power = Power::General;
}

/// Sigmoid focal loss of one element (`BIN-3`, `BIN-4`); `alpha < 0` disables the alpha
/// weighting, `alpha_c` is `1 - alpha` rounded once from `f64` (an `f32` `1 - alpha` loses
/// the relative precision of the negatives' weight when `alpha` is near 1). `P` selects the
/// power: gamma 0, 1, 2 or general (`exp(gamma ln(1 - p_t))`).
#[inline(always)]
pub(crate) fn focal_el<P: PowerMarker>(
    x: f32,
    y: f32,
    alpha: f32,
    alpha_c: f32,
    gamma: f32,
) -> (f32, f32) {
    let (p, q, lg) = sigmoid_parts(x);
    let ce = sel(
        x >= 0.0,
        sel(y == 1.0, 0.0, (1.0 - y) * x),
        sel(y == 0.0, 0.0, -y * x),
    ) + lg;
    let dce = p * (1.0 - y) - y * q;
    // 1 - p_t = q y + p (1 - y), computed without cancellation.
    let one_m = q * y + p * (1.0 - y);
    let modulator = match P::POWER {
        Power::Zero => 1.0,
        Power::One => one_m,
        Power::Two => one_m * one_m,
        _ => sel(one_m == 0.0, 0.0, exp_f32(gamma * ln_f32(one_m))),
    };
    // d(1 - p_t)/dx = -(2y - 1) p q; d(one_m^gamma) = gamma one_m^(gamma - 1) d(one_m), taken
    // as 0 where gamma = 0 or one_m = 0 (as the reference).
    let dm = -(2.0 * y - 1.0) * p * q;
    let dmod = match P::POWER {
        Power::Zero => 0.0,
        Power::One => dm,
        Power::Two => 2.0 * one_m * dm,
        // `dm / one_m` (at most 1 in magnitude), not `modulator / one_m`: the latter overflows
        // for a subnormal `one_m` and gamma below about 0.15 (`one_m^(gamma - 1)` > f32::MAX).
        _ => sel(one_m == 0.0, 0.0, gamma * modulator * (dm / one_m)),
    };
    let mut loss = ce * modulator;
    // A zero `dmod` contributes 0 even for an infinite `ce` (`x = +inf, y = 0`): the limit.
    // `ce` is infinite only there (finite for every finite x), and `dmod` is 0 there, so
    // clamping `ce` to f32::MAX gives that 0 and changes nothing else (a NaN logit makes `dce`
    // NaN, so `d` stays NaN).
    let mut d = dce * modulator + ce.min(f32::MAX) * dmod;
    let at = sel(alpha >= 0.0, alpha * y + alpha_c * (1.0 - y), 1.0);
    loss *= at;
    d *= at;
    (loss, d)
}
