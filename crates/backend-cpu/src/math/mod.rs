//! The elementary `f32` functions of every loss family, one per contract, branchless
//! (selects compile to blends, so the loops that call them vectorise).
//!
//! There are two `exp`s because there are two contracts:
//!
//! * [`exp_f32`]: the whole `f32` range, built from separately rounded operations only (no
//!   fused multiply-add), so that the auto-vectorised element-wise kernels (binary losses) give
//!   the same bits in their portable and their AVX2 + FMA builds. Relative error `<= 3e-7` for
//!   results in the normal range; results below `2^-126` are correct to within `2^-149`
//!   absolute (gradual underflow), `exp(x) = 0` for `x < -104`, `+inf` for `x > 88.73`, NaN
//!   for NaN.
//! * [`exp_nonpos_f32`]: only `x <= 0` (the softmax arguments `z - max` of cross-entropy),
//!   cheaper (one-step reduction, degree-5 polynomial, seven fused multiply-adds), and with
//!   vector twins in `math::avx2` that give the same bits lane by lane. See its documentation
//!   for the bound.
//!
//! The others (tested against `f64` in `tests/elementwise.rs` and `tests/box_loss.rs`):
//!
//! * [`log1p_unit_f32`] (`log1p(e)` for `e` in `[0, 1]`): relative error `<= 3e-7`.
//! * [`ln_f32`] (`ln(x)` for `x > 0`, subnormals included): absolute error `<= 2e-7 * max(1,
//!   |ln x|)`.
//! * [`sincos_f64`], [`exp_nonpos_f64`], [`ln_f64`]: branchless `f64` functions for the
//!   kernels that keep `f64` arithmetic but must vectorise (ProbIoU), within `1e-15` of libm
//!   (`double.rs`, `tests/double_math.rs`).
//! * [`atan_f32`], [`atan_ratio_f32`]: `|err| <= 1.5e-7 + 1.2e-7 * |atan(x)|` for every `x`
//!   (exact `+-pi/2` up to `f32` rounding for `+-inf`, NaN for NaN); [`atan_ratio_diff`]:
//!   `|err| <= 4e-7 + 2e-7 * |diff|`.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
mod double;
pub use double::{exp_nonpos_f64, ln_f64, sincos_f64};

/// 0 for a finite `v`, NaN for an infinite or NaN one.
#[inline(always)]
pub(crate) fn zn(v: f32) -> f32 {
    v * 0.0
}

/// Selects `a` where `c` holds, else `b`, in `f64` (compiles to a blend).
#[inline(always)]
pub(crate) fn sel64(c: bool, a: f64, b: f64) -> f64 {
    if c { a } else { b }
}

/// Selects `a` where `c` holds, else `b` (compiles to a blend).
#[inline(always)]
pub(crate) fn sel(c: bool, a: f32, b: f32) -> f32 {
    if c { a } else { b }
}

/// `atan(a / b)` for `a, b >= 0` (the quotient may be `+inf`; `0 / 0` gives NaN): Cephes range
/// reduction to `|t| <= tan(pi / 8)` folded into one division, then a degree-9 odd polynomial.
#[inline(always)]
fn atan_reduced(a: f32, b: f32) -> f32 {
    // atan(a / b) for a, b >= 0 (a / b may be +inf or NaN), one division.
    // Reduction (Cephes atanf): t > tan(3pi/8): pi/2 + atan(-b/a);
    // t > tan(pi/8): pi/4 + atan((a - b) / (a + b)); else atan(a / b).
    const T3P8: f32 = 2.414_213_6;
    const TP8: f32 = 0.414_213_57;
    let big = a > T3P8 * b;
    let mid = a > TP8 * b;
    let num = sel(big, -b, sel(mid, a - b, a));
    let den = sel(big, a, sel(mid, a + b, b));
    let y0 = sel(
        big,
        std::f32::consts::FRAC_PI_2,
        sel(mid, std::f32::consts::FRAC_PI_4, 0.0),
    );
    let t = num / den;
    let z = t * t;
    let p =
        (((8.053_744_5e-2 * z - 1.387_768_6e-1) * z + 1.997_771_1e-1) * z - 3.333_295e-1) * z * t
            + t;
    y0 + p
}

/// Branchless single-precision `atan(x)` (Cephes reduction plus a degree-9 odd polynomial).
///
/// Error bound (tested against `f64::atan` over the whole `f32` range, including 0, tiny and
/// huge arguments): `|atan_f32(x) - atan(x)| <= 1.5e-7 + 1.2e-7 * |atan(x)|`; `atan_f32(+-inf)
/// = +-pi/2` (rounded to `f32`), NaN gives NaN.
#[inline(always)]
pub fn atan_f32(x: f32) -> f32 {
    let r = atan_reduced(x.abs(), 1.0);
    r.copysign(x)
}

/// `atan(w / h)` extended to `h = 0` as the reference (`BOX-11`): `sign(w) * pi / 2` for
/// `h = 0, w != 0` and 0 for `w = h = 0`. One division, no rounding of `w / h` before the
/// polynomial. Same error bound as [`atan_f32`].
#[inline(always)]
pub fn atan_ratio_f32(w: f32, h: f32) -> f32 {
    let r = atan_reduced(w.abs(), h.abs());
    // Sign of w / h, with h = -0 treated as +0 (the reference uses sign(w) when h == 0).
    let s = sel(h < 0.0, -w, w);
    let r = sel(w == 0.0 && h == 0.0, 0.0, r);
    r.copysign(s)
}

/// `atan2(y, x)` in `(-pi, pi]` from one reduced `atan` (0 for `x = y = 0`).
#[inline(always)]
fn atan2_f32(y: f32, x: f32) -> f32 {
    let r = atan_reduced(y.abs(), x.abs());
    let r = sel(x < 0.0, std::f32::consts::PI - r, r);
    let r = sel(x == 0.0 && y == 0.0, 0.0, r);
    r.copysign(y)
}

/// `atan_ratio(wg, hg) - atan_ratio(w, h)` (the CIoU angle difference, `BOX-6`, `BOX-11`) with
/// one `atan`: each `(h, w)` is folded into the right half-plane (`atan(w / h)` is its angle;
/// `h = 0` gives `sign(w) pi / 2`, the zero vector angle 0), and the difference of the two
/// angles is `atan2(cross, dot)`, exact up to rounding because both angles lie in
/// `[-pi/2, pi/2]` (the one ambiguous case, opposite vertical vectors, is resolved by sign).
#[inline(always)]
pub fn atan_ratio_diff(w: f32, h: f32, wg: f32, hg: f32) -> f32 {
    let fold = |w: f32, h: f32| {
        let zero = w == 0.0 && h == 0.0;
        let neg = h < 0.0;
        (
            sel(zero, 1.0, sel(neg, -h, h)),
            sel(zero, 0.0, sel(neg, -w, w)),
        )
    };
    let (hp, wp) = fold(w, h);
    let (hq, wq) = fold(wg, hg);
    let cross = hp * wq - wp * hq;
    let dot = hp * hq + wp * wq;
    let d = atan2_f32(cross, dot);
    // Opposite vectors (both on the vertical axis): the difference is +-pi by the sign of wq.
    let opposite = cross == 0.0 && dot < 0.0;
    sel(
        opposite,
        sel(wq < 0.0, -std::f32::consts::PI, std::f32::consts::PI),
        d,
    )
}

/// Branchless single-precision `exp(x)` (Cephes polynomial, two-step scaling for gradual
/// underflow). See the module documentation for the error bound.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: round to nearest integer.
    let xc = sel(x > 88.73, 88.73, sel(x < -104.0, -104.0, x));
    let shifted = xc * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = xc - n * C1 - n * C2;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * z
        + r
        + 1.0;
    // n as an integer from the low mantissa bits of `shifted` (exact: |n| <= 151 and the ulp
    // of `shifted` is 1), not `n as i32`, whose saturating conversion does not vectorise
    // (NaN gives garbage bits here, but `p` is NaN then and so is `y`).
    let ni = (shifted.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let n1 = ni >> 1;
    let n2 = ni.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) as u32) << 23);
    let s2 = f32::from_bits((n2.wrapping_add(127) as u32) << 23);
    let y = p * s1 * s2;
    let y = sel(x > 88.73, f32::INFINITY, sel(x < -104.0, 0.0, y));
    // NaN in, NaN out (comparisons above are false for NaN; xc is NaN then, so is y).
    y
}

/// `log1p(e)` for `e` in `[0, 1]` via `2 atanh(e / (2 + e))`: accurate for tiny `e`.
#[inline(always)]
pub fn log1p_unit_f32(e: f32) -> f32 {
    let r = 1.0 / (2.0 + e);
    let s = e * r;
    let s2 = (2.0 * e) * r; // 2 s without underflow for tiny e
    let z = s * s;
    // 2 s (1 + z/3 + z^2/5 + ... + z^7/15); |z| <= 1/9.
    let p = ((((((z * (1.0 / 15.0) + 1.0 / 13.0) * z + 1.0 / 11.0) * z + 1.0 / 9.0) * z
        + 1.0 / 7.0)
        * z
        + 1.0 / 5.0)
        * z
        + 1.0 / 3.0)
        * z;
    s2 + s2 * p
}

/// Natural logarithm for `x > 0` (subnormals included); `ln 0 = -inf`, NaN for NaN or negative.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let (ef, f) = ln_reduce(x);
    ln_finish(x, ef, ln_series(f / (2.0 + f)))
}

/// [`ln_f32`]'s reduction `x = 2^ef m`, `m` in `[sqrt(1/2), sqrt(2))` (subnormals scaled by
/// `2^23` first): `(ef, m - 1)`.
#[inline(always)]
pub(crate) fn ln_reduce(x: f32) -> (f32, f32) {
    let tiny = x < f32::MIN_POSITIVE;
    let xs = sel(tiny, x * 8_388_608.0, x); // 2^23
    let bits = xs.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    m = sel(big, 0.5 * m, m);
    e += i32::from(big);
    let ef = e as f32 - sel(tiny, 23.0, 0.0);
    (ef, m - 1.0)
}

/// `2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + s^6/7 + s^8/9)` for `|s| < 0.18` ([`ln_f32`]'s
/// `ln m` with `s = (m - 1) / (m + 1)`).
#[inline(always)]
pub(crate) fn ln_series(s: f32) -> f32 {
    let z = s * s;
    let p = (((z * (1.0 / 9.0) + 1.0 / 7.0) * z + 1.0 / 5.0) * z + 1.0 / 3.0) * z;
    2.0 * s + 2.0 * s * p
}

/// [`ln_f32`] from its reduction: `ef ln 2 + lm` (two-part `ln 2`) and the special values of
/// `x` (`ln 0 = -inf`, `ln inf = inf`, NaN for NaN or negative).
#[inline(always)]
pub(crate) fn ln_finish(x: f32, ef: f32, lm: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let r = ef * LN2_LO + lm + ef * LN2_HI;
    let r = sel(x == 0.0, f32::NEG_INFINITY, r);
    let r = sel(x == f32::INFINITY, f32::INFINITY, r);
    sel(x >= 0.0, r, f32::NAN)
}

pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
/// `ln 2` rounded to `f32` (the one-step reduction of [`exp_nonpos_f32`]).
pub(crate) const LN2_F32: f32 = std::f32::consts::LN_2;
// Degree-5 polynomial `1 + Q1 r + ... + Q5 r^5` for `exp(r)` on `|r| <= ln 2 / 2`, fitted for
// the smallest maximum relative error (9.2e-8 with exact coefficients) with `p(0) = 1` kept.
pub(crate) const Q1: f32 = 0.999_999_7;
pub(crate) const Q2: f32 = 0.499_991_48;
pub(crate) const Q3: f32 = 0.166_676_39;
pub(crate) const Q4: f32 = 0.041_898_16;
pub(crate) const Q5: f32 = 0.008_290_272;
/// Below this argument [`exp_nonpos_f32`] returns 0.
pub const EXP_NONPOS_FLUSH: f32 = -87.0;

/// `exp(x)` for `x <= 0` (the softmax kernel's arguments `z - max`), cheaper than [`exp_f32`]:
/// no clamps, a one-step reduction `r = x - k ln 2` with `ln 2` rounded to `f32`, a degree-5
/// polynomial in Horner form and `2^k` added into the exponent bits: seven fused multiply-adds
/// in all, the cost that bounds the cross-entropy kernel.
///
/// Bound (tested in `tests/simd_math.rs` over every 29th `f32` of `[-87, 0]`): relative error at
/// most **4e-7** for `-87 <= x <= 0` (measured 3.8e-7, about 4.7 ulp, near -87, where the
/// rounding of `ln 2` times `k = 125` dominates; at most **2.5 ulp** on `[-10, 0]`, measured
/// 2.1), exactly 1 at 0; `x < -87` (including `-inf`) gives exactly 0, an absolute error below
/// `1.7e-38` (`exp(-87)`); NaN gives NaN. Positive `x` is outside the contract. The
/// cross-entropy tolerance (`TOL-2`, relative 4e-6) leaves a factor of ten over this bound.
#[inline]
pub fn exp_nonpos_f32(x: f32) -> f32 {
    if x < EXP_NONPOS_FLUSH {
        return 0.0;
    }
    let j = x.mul_add(LOG2E, ROUND_MAGIC);
    let kf = j - ROUND_MAGIC;
    let r = kf.mul_add(-LN2_F32, x);
    let mut p = Q5;
    p = p.mul_add(r, Q4);
    p = p.mul_add(r, Q3);
    p = p.mul_add(r, Q2);
    p = p.mul_add(r, Q1);
    p = p.mul_add(r, 1.0);
    let k = j.to_bits() << 23;
    f32::from_bits(p.to_bits().wrapping_add(k))
}
