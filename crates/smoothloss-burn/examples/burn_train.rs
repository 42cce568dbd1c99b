//! Trains an MLP classifier with label-smoothed cross-entropy (the seed's `SmoothLoss(0.1)`)
//! through burn's autodiff on the flex CPU backend, with a plain SGD step written with burn's
//! tensor ops, and prints the loss going down.
//!
//! `cargo run -p smoothloss-burn --release --example burn_train`

use burn_tensor::{Device, Distribution, Int, Tensor, TensorData, activation::relu};
use smoothloss_burn::{CrossEntropy, cross_entropy};

fn main() -> Result<(), smoothloss_burn::LossError> {
    let device = Device::flex().autodiff();
    let (n, k, h) = (256usize, 4usize, 32usize);
    let mut xs = Vec::with_capacity(2 * n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % k;
        let angle = class as f32 * std::f32::consts::FRAC_PI_2;
        let jitter = ((i * 7919) % 100) as f32 / 100.0 - 0.5;
        xs.push(2.0 * angle.cos() + jitter);
        xs.push(2.0 * angle.sin() - jitter);
        ys.push(class as i64);
    }
    let x = Tensor::<2>::from_data(TensorData::new(xs, [n, 2]), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(ys, [n]), &device);
    let init =
        |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Uniform(-0.5, 0.5), &device);
    let (mut w1, mut w2) = (init([2, h]), init([h, k]));
    let smooth = CrossEntropy::smooth_loss(0.1);
    for epoch in 0..=50 {
        let (a, b) = (w1.clone().require_grad(), w2.clone().require_grad());
        let logits = relu(x.clone().matmul(a.clone())).matmul(b.clone());
        let loss = cross_entropy(logits, y.clone(), &smooth)?;
        if epoch % 10 == 0 {
            println!(
                "epoch {epoch:2}: SmoothLoss(0.1) {:.4}",
                loss.clone().into_scalar::<f32>()
            );
        }
        let grads = loss.backward();
        let step = |w: Tensor<2>, t: &Tensor<2>| {
            let g = t.grad(&grads).expect("a gradient");
            w.inner().sub(g.mul_scalar(0.5)).autodiff()
        };
        (w1, w2) = (step(w1, &a), step(w2, &b));
    }
    Ok(())
}
