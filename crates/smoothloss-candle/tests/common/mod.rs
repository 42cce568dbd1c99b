//! Shared helpers of the candle adapter's tests: random data and comparisons.
#![allow(dead_code)]

use candle_core::{Result, Tensor};

/// A small deterministic generator (xorshift): uniform values in `[lo, hi)`.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn uniform(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| lo + (hi - lo) * self.next_f64()).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_f64() * n as f64) as usize).min(n - 1)
    }
}

/// Every element of `a` and `b` within `atol + rtol |b|` (flattened, f64).
pub fn assert_close(what: &str, a: &Tensor, b: &Tensor, atol: f64, rtol: f64) -> Result<()> {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a = a
        .flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1::<f64>()?;
    let b = b
        .flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1::<f64>()?;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}[{i}]: {x} vs {y} (diff {})",
            (x - y).abs()
        );
    }
    Ok(())
}

/// `TOL-2` (`spec/formulas/tolerance.md`, `Tolerance::F32` of the spec crate): an `f32` result
/// against the `f64` reference on the same rounded inputs, element-wise within
/// `1e-7 + 4e-6 |want| + 4e-7 max |want|`. Restated here so that these tests build against
/// the dependencies the adapter's other tests use (the spec crate as a dev-dependency changes
/// the features of candle's own dependencies, a rebuild of candle).
pub fn check_f32(what: &str, got: &[f64], want: &[f64]) {
    check_within(what, got, want, [1e-7, 4e-6, 4e-7]);
}

/// Every entry within `abs + rel |want| + scaled max |want|` (`[abs, rel, scaled]`: a spec
/// tolerance such as `TOL-2` or `LCE-6`'s `f32` bound, `2e-7, 4e-6, 4e-7`).
pub fn check_within(what: &str, got: &[f64], want: &[f64], [abs, rel, scaled]: [f64; 3]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0_f64, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = abs + rel * w.abs() + scaled * scale;
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w} (tol {tol})");
    }
}
