//! Adam as PyTorch implements it, over the parameters of an [`Mlp`].

use crate::mlp::Mlp;

/// Adam as `torch.optim.Adam` (single-tensor path, no weight decay, no amsgrad):
/// `m = lerp(m, g, 1 - b1)`, `v = b2 v + (1 - b2) g^2`,
/// `p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
#[derive(Debug, Clone)]
pub struct Adam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: i32,
    m: Mlp<f32>,
    v: Mlp<f32>,
}

impl Adam {
    /// Adam with PyTorch's defaults (betas 0.9 / 0.999, eps 1e-8) and learning rate `lr`.
    pub fn new(params: &Mlp<f32>, lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: params.zeros_like(),
            v: params.zeros_like(),
        }
    }

    /// One update of `params` with gradients `grads`.
    pub fn step(&mut self, params: &mut Mlp<f32>, grads: &Mlp<f32>) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step);
        let bc2_sqrt = (1.0 - self.beta2.powi(self.step)).sqrt();
        let step_size = (self.lr / bc1) as f32;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let (bc2_sqrt, eps) = (bc2_sqrt as f32, self.eps as f32);
        let ps = params.slices_mut();
        let gs = grads.slices();
        let ms = self.m.slices_mut();
        let vs = self.v.slices_mut();
        for (((p, g), m), v) in ps.into_iter().zip(gs).zip(ms).zip(vs) {
            for i in 0..p.len() {
                m[i] += (g[i] - m[i]) * (1.0 - b1);
                v[i] = v[i] * b2 + (1.0 - b2) * g[i] * g[i];
                let denom = v[i].sqrt() / bc2_sqrt + eps;
                p[i] -= step_size * m[i] / denom;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::{CLASSES, FEATURES, HIDDEN};

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        // With bias correction, PyTorch's first Adam step is lr * g / (|g| + eps).
        let mut p = Mlp::<f32>::init(1, FEATURES, HIDDEN, CLASSES);
        let before = p.clone();
        let mut g = p.zeros_like();
        let mut rng = Rng::new(2);
        for s in g.slices_mut() {
            for v in s.iter_mut() {
                *v = rng.range(-1.0, 1.0) as f32;
            }
        }
        let mut adam = Adam::new(&p, 0.01);
        adam.step(&mut p, &g);
        for k in 0..4 {
            for ((a, b), gi) in p.slices()[k]
                .iter()
                .zip(before.slices()[k])
                .zip(g.slices()[k])
            {
                let want = b - 0.01 * gi.signum();
                assert!((a - want).abs() < 1e-6, "{a} vs {want}");
            }
        }
        // Second step with the same gradient: still lr (m and v both stationary).
        let mid = p.clone();
        adam.step(&mut p, &g);
        let moved = (p.w1[(0, 0)] - mid.w1[(0, 0)]).abs();
        assert!((moved - 0.01).abs() < 1e-5, "{moved}");
    }
}
