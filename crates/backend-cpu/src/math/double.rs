//! Branchless `f64` `sin`/`cos`, `exp` (of `x <= 0`) and `ln`, for kernels that keep their
//! arithmetic in `f64` (ProbIoU, whose determinant cancels in `f32`) but must vectorise: libm's
//! calls do not. Built from separately rounded operations only (no fused multiply-add), so the
//! portable and the AVX2 + FMA builds of a kernel give the same bits. Bounds, tested against
//! libm in `tests/simd_math.rs`:
//!
//! * [`sincos_f64`]: `|x| <= 1e5`: absolute error `<= 1e-15` on both; outside, not defined
//!   (callers route those lanes to libm);
//! * [`exp_nonpos_f64`]: `-700 <= x <= 0`: relative error `<= 1e-15` (`x < -700` gives
//!   `exp(-700)`, callers clamp first);
//! * [`ln_f64`]: normal `x > 0`: absolute error `<= 1e-15 * max(1, |ln x|)`.

use super::sel64;

/// `pi / 2` in two parts (fdlibm's `pio2_1`, 33 bits, and `pio2_1t`): `k pio2_1` is exact for
/// `|k| < 2^20`.
const PIO2_HI: f64 = 1.570_796_326_734_125_6;
const PIO2_LO: f64 = 6.077_100_506_506_192e-11;
/// `1.5 * 2^52`: adding it rounds to the nearest integer, held in the low bits.
const MAGIC: f64 = 6_755_399_441_055_744.0;
/// `ln 2` in two parts (fdlibm's `ln2_hi`, `ln2_lo`): `k LN2_HI` is exact for `|k| < 2^20`.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;

/// `(sin x, cos x)` for `|x| <= 1e5` (Cody-Waite reduction by `pi / 2`, Taylor polynomials of
/// degree 15 and 16 on `|r| <= pi / 4`).
#[inline(always)]
pub fn sincos_f64(x: f64) -> (f64, f64) {
    let j = x * std::f64::consts::FRAC_2_PI + MAGIC;
    let k = j - MAGIC;
    let q = j.to_bits() & 3;
    let r = (x - k * PIO2_HI) - k * PIO2_LO;
    let z = r * r;
    // sin r = r (1 - z/3! + z^2/5! - ...), cos r = 1 - z/2! + z^2/4! - ...
    let sp = 1.0
        + z * (-1.0 / 6.0
            + z * (1.0 / 120.0
                + z * (-1.0 / 5040.0
                    + z * (1.0 / 362_880.0
                        + z * (-1.0 / 39_916_800.0
                            + z * (1.0 / 6_227_020_800.0 + z * (-1.0 / 1_307_674_368_000.0)))))));
    let cp = 1.0
        + z * (-0.5
            + z * (1.0 / 24.0
                + z * (-1.0 / 720.0
                    + z * (1.0 / 40_320.0
                        + z * (-1.0 / 3_628_800.0
                            + z * (1.0 / 479_001_600.0
                                + z * (-1.0 / 87_178_291_200.0
                                    + z * (1.0 / 20_922_789_888_000.0))))))));
    let s = r * sp;
    let c = cp;
    let odd = q & 1 == 1;
    let (s1, c1) = (sel64(odd, c, s), sel64(odd, -s, c));
    let neg = q & 2 == 2;
    (sel64(neg, -s1, s1), sel64(neg, -c1, c1))
}

/// `exp(x)` for `-700 <= x <= 0` (reduction by `ln 2` in two parts, Taylor polynomial of degree
/// 12 on `|r| <= ln 2 / 2`, `2^k` built in the exponent bits). NaN gives NaN.
#[inline(always)]
pub fn exp_nonpos_f64(x: f64) -> f64 {
    let xc = sel64(x < -700.0, -700.0, x);
    let j = xc * std::f64::consts::LOG2_E + MAGIC;
    let k = j - MAGIC;
    let ki = (j.to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64);
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 479_001_600.0;
    for c in [
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let scale = f64::from_bits(((ki + 1023) as u64) << 52);
    p * scale
}

/// `ln(x)` for a normal `x > 0` (exponent split, mantissa `m` in `[sqrt(1/2), sqrt(2))`,
/// `2 atanh((m - 1) / (m + 1))` to degree 17; `m - 1` is exact). Defined for finite normal
/// `x > 0` only (callers pass such values; others give meaningless finite numbers or NaN).
#[inline(always)]
pub fn ln_f64(x: f64) -> f64 {
    let bits = x.to_bits();
    // The biased exponent as a float without an integer conversion (none in AVX2 for 64 bits).
    let e0 =
        f64::from_bits((bits >> 52) | 0x4330_0000_0000_0000) - (4_503_599_627_370_496.0 + 1023.0);
    let m0 = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m0 > std::f64::consts::SQRT_2;
    let m = sel64(big, 0.5 * m0, m0);
    let e = e0 + sel64(big, 1.0, 0.0);
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let mut p = 1.0 / 17.0;
    for c in [
        1.0 / 15.0,
        1.0 / 13.0,
        1.0 / 11.0,
        1.0 / 9.0,
        1.0 / 7.0,
        1.0 / 5.0,
        1.0 / 3.0,
    ] {
        p = p * z + c;
    }
    let lm = 2.0 * s + 2.0 * s * (z * p);
    e * LN2_LO + lm + e * LN2_HI
}
