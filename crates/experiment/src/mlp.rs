//! The network: `Linear(10, 10) -> ReLU -> Linear(10, 5)` with PyTorch's default
//! initialisation, its forward pass and its backward pass, written out with `nalgebra`.

use nalgebra::{DMatrix, DVector, RealField};

use crate::rng::Rng;

/// `Linear(FEATURES, HIDDEN) -> ReLU -> Linear(HIDDEN, CLASSES)`, weights stored as PyTorch
/// does (`out x in`). Also used to hold gradients and Adam moments.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp<T: RealField + Copy> {
    /// `fc1.weight`, `HIDDEN x FEATURES`.
    pub w1: DMatrix<T>,
    /// `fc1.bias`.
    pub b1: DVector<T>,
    /// `fc2.weight`, `CLASSES x HIDDEN`.
    pub w2: DMatrix<T>,
    /// `fc2.bias`.
    pub b2: DVector<T>,
}

/// Activations kept by the forward pass for the backward pass.
#[derive(Debug, Clone)]
pub struct Forward<T: RealField + Copy> {
    /// Pre-activations of the hidden layer, `HIDDEN x N`.
    pub a1: DMatrix<T>,
    /// `relu(a1)`.
    pub h: DMatrix<T>,
    /// Logits, `CLASSES x N` (= row-major `[N, CLASSES]`).
    pub z: DMatrix<T>,
}

fn add_bias<T: RealField + Copy>(m: &mut DMatrix<T>, b: &DVector<T>) {
    for mut col in m.column_iter_mut() {
        col += b;
    }
}

impl<T: RealField + Copy> Mlp<T> {
    /// PyTorch's default `nn.Linear` initialisation: weights and biases uniform in
    /// `+-1/sqrt(fan_in)` (kaiming_uniform with a = sqrt(5) gives that bound for the weights).
    /// Draw order: fc1.weight (row-major), fc1.bias, fc2.weight, fc2.bias.
    pub fn init(seed: u64, n_in: usize, n_hidden: usize, n_out: usize) -> Self {
        let mut rng = Rng::new(seed);
        let mut linear = |fan_in: usize, fan_out: usize| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let w: Vec<T> = (0..fan_in * fan_out)
                .map(|_| nalgebra::convert(rng.range(-bound, bound)))
                .collect();
            let b: Vec<T> = (0..fan_out)
                .map(|_| nalgebra::convert(rng.range(-bound, bound)))
                .collect();
            (
                DMatrix::from_row_slice(fan_out, fan_in, &w),
                DVector::from_vec(b),
            )
        };
        let (w1, b1) = linear(n_in, n_hidden);
        let (w2, b2) = linear(n_hidden, n_out);
        Self { w1, b1, w2, b2 }
    }

    /// Zeros of the same shapes.
    pub fn zeros_like(&self) -> Self {
        Self {
            w1: DMatrix::zeros(self.w1.nrows(), self.w1.ncols()),
            b1: DVector::zeros(self.b1.len()),
            w2: DMatrix::zeros(self.w2.nrows(), self.w2.ncols()),
            b2: DVector::zeros(self.b2.len()),
        }
    }

    /// Forward pass over `x` (`n_in x N`, one sample per column).
    pub fn forward(&self, x: &DMatrix<T>) -> Forward<T> {
        let mut a1 = &self.w1 * x;
        add_bias(&mut a1, &self.b1);
        let h = a1.map(|v| if v > T::zero() { v } else { T::zero() });
        let mut z = &self.w2 * &h;
        add_bias(&mut z, &self.b2);
        Forward { a1, h, z }
    }

    /// Backward pass: gradients of the loss with respect to every parameter, given `dz`, the
    /// gradient with respect to the logits (`CLASSES x N`). ReLU's derivative at 0 is 0, as in
    /// PyTorch.
    pub fn backward(&self, x: &DMatrix<T>, fwd: &Forward<T>, dz: &DMatrix<T>) -> Self {
        let w2 = dz * fwd.h.transpose();
        let b2 = dz.column_sum();
        let dh = self.w2.transpose() * dz;
        let da1 = dh.zip_map(&fwd.a1, |g, a| if a > T::zero() { g } else { T::zero() });
        let w1 = &da1 * x.transpose();
        let b1 = da1.column_sum();
        Self { w1, b1, w2, b2 }
    }

    /// The parameters as flat slices, in PyTorch's `parameters()` order.
    pub fn slices_mut(&mut self) -> [&mut [T]; 4] {
        [
            self.w1.as_mut_slice(),
            self.b1.as_mut_slice(),
            self.w2.as_mut_slice(),
            self.b2.as_mut_slice(),
        ]
    }

    /// The parameters as flat slices, in PyTorch's `parameters()` order.
    pub fn slices(&self) -> [&[T]; 4] {
        [
            self.w1.as_slice(),
            self.b1.as_slice(),
            self.w2.as_slice(),
            self.b2.as_slice(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::rel_close;
    use crate::{CLASSES, FEATURES, HIDDEN};
    use smoothloss::ReferenceBackend;
    use smoothloss::prelude::*;

    /// Random inputs `FEATURES x n` and labels, in f64.
    fn random_batch(seed: u64, n: usize) -> (DMatrix<f64>, Vec<i64>) {
        let mut rng = Rng::new(seed);
        let x = DMatrix::from_fn(FEATURES, n, |_, _| rng.range(-2.0, 2.0));
        let y = (0..n)
            .map(|_| (rng.next_u64() % CLASSES as u64) as i64)
            .collect();
        (x, y)
    }

    /// Label-smoothed CE through the f64 reference backend.
    fn ce_loss(z: &DMatrix<f64>, y: &[i64], grad: Option<&mut [f64]>) -> f64 {
        ReferenceBackend
            .cross_entropy(
                &CrossEntropy::smooth_loss(0.1),
                Input::matrix(z.as_slice(), y.len(), CLASSES).with_optional_grad(grad),
                y,
            )
            .unwrap()
            .value()
    }

    #[test]
    fn mlp_backprop_matches_finite_differences() {
        let (x, y) = random_batch(7, 9);
        let model = Mlp::<f64>::init(3, FEATURES, HIDDEN, CLASSES);
        let fwd = model.forward(&x);
        let mut dz = DMatrix::<f64>::zeros(CLASSES, y.len());
        ce_loss(&fwd.z, &y, Some(dz.as_mut_slice()));
        let grads = model.backward(&x, &fwd, &dz);
        // No pre-activation sits on the ReLU kink, where finite differences are meaningless.
        assert!(fwd.a1.iter().all(|a| a.abs() > 1e-4));
        let h = 1e-6;
        let mut checked = 0;
        for k in 0..4 {
            let n = model.slices()[k].len();
            for i in 0..n {
                let mut plus = model.clone();
                plus.slices_mut()[k][i] += h;
                let mut minus = model.clone();
                minus.slices_mut()[k][i] -= h;
                let fd = (ce_loss(&plus.forward(&x).z, &y, None)
                    - ce_loss(&minus.forward(&x).z, &y, None))
                    / (2.0 * h);
                let an = grads.slices()[k][i];
                assert!(
                    rel_close(an, fd, 1e-6),
                    "param {k}[{i}]: analytic {an}, fd {fd}"
                );
                checked += 1;
            }
        }
        assert_eq!(
            checked,
            HIDDEN * FEATURES + HIDDEN + CLASSES * HIDDEN + CLASSES
        );
        // The gradient is not trivially zero.
        assert!(grads.w1.iter().any(|g| g.abs() > 1e-4));
    }

    #[test]
    fn init_is_pytorch_default_and_deterministic() {
        let a = Mlp::<f32>::init(42, FEATURES, HIDDEN, CLASSES);
        let b = Mlp::<f32>::init(42, FEATURES, HIDDEN, CLASSES);
        let c = Mlp::<f32>::init(43, FEATURES, HIDDEN, CLASSES);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let bound1 = 1.0 / (FEATURES as f32).sqrt();
        let bound2 = 1.0 / (HIDDEN as f32).sqrt();
        assert!(a.w1.iter().chain(a.b1.iter()).all(|v| v.abs() <= bound1));
        assert!(a.w2.iter().chain(a.b2.iter()).all(|v| v.abs() <= bound2));
        // Spread over the whole interval, not a constant.
        let max = a.w1.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.8 * bound1, "{max}");
    }
}
