//! A tiny forward-mode dual number so that each box formula is written once and its exact
//! gradient with respect to the four predicted coordinates comes from the same code.
//!
//! This is not finite differencing: every operation applies its analytic derivative
//! (`d(a/b) = (da b - a db) / b^2`, ...), so the result is the analytic gradient of the formula
//! as written. The fast backends derive their gradients by hand and are checked against it.

use std::ops::{Add, Div, Mul, Neg, Sub};

/// Numbers the box formulas are generic over: `f64` (value only) and [`D4`].
pub trait Scalar:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// A constant (zero derivative).
    fn cst(v: f64) -> Self;
    /// The value.
    fn val(self) -> f64;
    /// Blend of two numbers' derivatives for ties in `min`/`max`: `(a + b) / 2`.
    fn half_sum(a: Self, b: Self) -> Self;
    /// `atan(w / h)`, extended to `h = 0` by `sign(w) * pi / 2` with derivative
    /// `(h dw - w dh) / (w^2 + h^2)`, and 0 (value and derivative) at `w = h = 0` (`BOX-11`).
    fn atan_ratio(w: Self, h: Self) -> Self;
    /// `f(self)` given its value `f` and derivative `df` at `self` (the chain rule).
    fn chain(self, f: f64, df: f64) -> Self;
}

impl Scalar for f64 {
    fn cst(v: f64) -> Self {
        v
    }
    fn val(self) -> f64 {
        self
    }
    fn half_sum(a: Self, _b: Self) -> Self {
        a
    }
    fn atan_ratio(w: Self, h: Self) -> Self {
        atan_ratio_value(w, h)
    }
    fn chain(self, f: f64, _df: f64) -> Self {
        f
    }
}

fn atan_ratio_value(w: f64, h: f64) -> f64 {
    if h != 0.0 {
        (w / h).atan()
    } else if w == 0.0 {
        0.0
    } else {
        w.signum() * std::f64::consts::FRAC_PI_2
    }
}

/// A value with its derivatives with respect to four inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct D4 {
    /// Value.
    pub v: f64,
    /// Partial derivatives.
    pub d: [f64; 4],
}

impl D4 {
    /// The `k`-th input variable with value `v`.
    pub fn var(v: f64, k: usize) -> Self {
        let mut d = [0.0; 4];
        d[k] = 1.0;
        Self { v, d }
    }

    fn map(self, v: f64, f: f64) -> Self {
        Self {
            v,
            d: self.d.map(|x| x * f),
        }
    }
}

impl Add for D4 {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            v: self.v + o.v,
            d: std::array::from_fn(|k| self.d[k] + o.d[k]),
        }
    }
}

impl Sub for D4 {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            v: self.v - o.v,
            d: std::array::from_fn(|k| self.d[k] - o.d[k]),
        }
    }
}

#[allow(clippy::suspicious_arithmetic_impl)] // the product rule adds
impl Mul for D4 {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        Self {
            v: self.v * o.v,
            d: std::array::from_fn(|k| self.d[k] * o.v + self.v * o.d[k]),
        }
    }
}

#[allow(clippy::suspicious_arithmetic_impl)] // the quotient rule
impl Div for D4 {
    type Output = Self;
    fn div(self, o: Self) -> Self {
        let q = self.v / o.v;
        Self {
            v: q,
            d: std::array::from_fn(|k| (self.d[k] - q * o.d[k]) / o.v),
        }
    }
}

impl Neg for D4 {
    type Output = Self;
    fn neg(self) -> Self {
        self.map(-self.v, -1.0)
    }
}

impl Scalar for D4 {
    fn cst(v: f64) -> Self {
        Self { v, d: [0.0; 4] }
    }
    fn val(self) -> f64 {
        self.v
    }
    fn half_sum(a: Self, b: Self) -> Self {
        Self {
            v: a.v,
            d: std::array::from_fn(|k| 0.5 * (a.d[k] + b.d[k])),
        }
    }
    fn atan_ratio(w: Self, h: Self) -> Self {
        let r2 = w.v * w.v + h.v * h.v;
        let v = atan_ratio_value(w.v, h.v);
        if r2 == 0.0 {
            return Self::cst(v);
        }
        Self {
            v,
            d: std::array::from_fn(|k| (h.v * w.d[k] - w.v * h.d[k]) / r2),
        }
    }
    fn chain(self, f: f64, df: f64) -> Self {
        self.map(f, df)
    }
}

/// `max(a, b)`; on a tie each side receives half the gradient, as PyTorch's `torch.max(a, b)`.
pub fn max<S: Scalar>(a: S, b: S) -> S {
    if a.val() > b.val() {
        a
    } else if b.val() > a.val() {
        b
    } else {
        S::half_sum(a, b)
    }
}

/// `min(a, b)`; ties as [`max`].
pub fn min<S: Scalar>(a: S, b: S) -> S {
    if a.val() < b.val() {
        a
    } else if b.val() < a.val() {
        b
    } else {
        S::half_sum(a, b)
    }
}

/// `a / b`, or 0 (with zero derivative) where `b == 0` exactly (`BOX-11`).
pub fn safe_div<S: Scalar>(a: S, b: S) -> S {
    if b.val() == 0.0 { S::cst(0.0) } else { a / b }
}

/// `a / b` where `b > 0`, else 0: the shape ratios `|x - y| / max(x, y)` of SIoU and
/// Shape-IoU, which for degenerate boxes (both sizes <= 0) would make `exp(-ratio)` overflow.
pub fn pos_div<S: Scalar>(a: S, b: S) -> S {
    if b.val() > 0.0 { a / b } else { S::cst(0.0) }
}

/// The value without its derivatives (PyTorch's `detach`, `torch.no_grad`).
pub fn detach<S: Scalar>(x: S) -> S {
    S::cst(x.val())
}

/// `sqrt(x)`; derivative `1 / (2 sqrt(x))`, taken as 0 at `x = 0` (the formulas only take
/// square roots of sums of squares that are positive there).
pub fn sqrt<S: Scalar>(x: S) -> S {
    let r = x.val().sqrt();
    x.chain(r, if r > 0.0 { 0.5 / r } else { 0.0 })
}

/// `exp(x)`.
pub fn exp<S: Scalar>(x: S) -> S {
    let e = x.val().exp();
    x.chain(e, e)
}

/// `|x|`; derivative `sign(x)`, 0 at 0 (PyTorch's `abs`).
pub fn abs<S: Scalar>(x: S) -> S {
    let v = x.val();
    let s = if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    };
    x.chain(v.abs(), s)
}

/// `asin(x)` on `[-1, 1]`; derivative `1 / sqrt(1 - x^2)`, 0 at `|x| = 1`.
pub fn asin<S: Scalar>(x: S) -> S {
    let v = x.val();
    let q = 1.0 - v * v;
    x.chain(v.asin(), if q > 0.0 { 1.0 / q.sqrt() } else { 0.0 })
}

/// `cos(x)`.
pub fn cos<S: Scalar>(x: S) -> S {
    let v = x.val();
    x.chain(v.cos(), -v.sin())
}

/// `x^4` as PyTorch's `pow(x, 4)`.
pub fn pow4<S: Scalar>(x: S) -> S {
    let x2 = x * x;
    x2 * x2
}

/// The signed power `sign(x) |x|^a` (`a > 0`): `x^a` for `x >= 0`; derivative
/// `a |x|^(a - 1)`, 0 at `x = 0` (the power of a term that vanishes there).
pub fn spow<S: Scalar>(x: S, a: f64) -> S {
    let v = x.val();
    if v == 0.0 {
        return x.chain(0.0, 0.0);
    }
    let m = v.abs().powf(a);
    x.chain(v.signum() * m, a * m / v.abs())
}

/// `clamp(x, lo, hi)` with PyTorch's gradient: passed through where `lo <= x <= hi`, else 0.
pub fn clamp<S: Scalar>(x: S, lo: f64, hi: f64) -> S {
    let v = x.val();
    if v < lo {
        S::cst(lo)
    } else if v > hi {
        S::cst(hi)
    } else {
        x
    }
}
