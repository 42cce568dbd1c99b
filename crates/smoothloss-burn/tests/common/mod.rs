//! Shared helpers of the burn adapter's newer tests: the device, random data, comparisons.
#![allow(dead_code)]

use burn_tensor::{DType, Device, Tensor, TensorData};

pub fn dev() -> Device {
    Device::flex().autodiff()
}

/// A small deterministic generator (xorshift): uniform values in `[lo, hi)`.
pub struct Rng(pub u64);

impl Rng {
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

pub fn f64_tensor<const D: usize>(v: Vec<f64>, shape: [usize; D]) -> Tensor<D> {
    Tensor::<D>::from_data(TensorData::new(v, shape), (&dev(), DType::F64))
}

pub fn f32_tensor<const D: usize>(v: &[f64], shape: [usize; D]) -> Tensor<D> {
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::<D>::from_data(TensorData::new(v, shape), (&dev(), DType::F32))
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

pub fn assert_close(what: &str, a: &[f64], b: &[f64], atol: f64, rtol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}[{i}]: {x} vs {y} (diff {})",
            (x - y).abs()
        );
    }
}

/// The gradient of `x` in `grads`, as `f64` values.
pub fn grad_of<const D: usize>(x: &Tensor<D>, grads: &burn_tensor::Gradients) -> Vec<f64> {
    to_vec(x.grad(grads).expect("a gradient"))
}

/// `loss * 0.75` (reduced) or `sum(loss * u)` (per item) when `scaled`, else `sum(loss)`.
pub fn objective(loss: Tensor<1>, up: &[f64], scaled: bool) -> Tensor<1> {
    let n = loss.dims()[0];
    match (scaled, n == up.len()) {
        (false, _) => loss.sum(),
        (true, true) => loss.mul(f64_tensor(up.to_vec(), [n])).sum(),
        (true, false) => loss.mul_scalar(0.75).sum(),
    }
}

/// `TOL-2` (`spec/formulas/tolerance.md`, `Tolerance::F32` of the spec crate): an `f32` result
/// against the `f64` reference on the same rounded inputs, element-wise within
/// `abs + rel |want| + scaled max |want|` with `(abs, rel, scaled)` = `(1e-7, 4e-6, 4e-7)`
/// (`F32`) or `(2e-7, 4e-6, 4e-7)` (`LCE_F32`). Restated here so that these tests build
/// against the dependencies the adapter's other tests use (the spec crate as a dev-dependency
/// changes the features of burn's own dependencies, a rebuild of burn).
pub fn check_tol(what: &str, got: &[f64], want: &[f64], abs: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0_f64, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = abs + 4e-6 * w.abs() + 4e-7 * scale;
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w} (tol {tol})");
    }
}

/// [`check_tol`] with `Tolerance::F32`'s figures.
pub fn check_f32(what: &str, got: &[f64], want: &[f64]) {
    check_tol(what, got, want, 1e-7);
}
