//! Training steps of a linear classifier with SmoothLoss (label smoothing 0.1):
//! forward pass by hand, loss and its gradient over the logits in one fused call, backward
//! through the linear layer by hand, plain SGD update. The loss goes down step by step.
//!
//! ```text
//! cargo run -p smoothloss-examples --example classifier_step --release
//! ```

use smoothloss::prelude::*;
use smoothloss_spec::random::Rng;

const N: usize = 96; // samples
const D: usize = 4; // features
const C: usize = 3; // classes

/// A tiny deterministic generator (SplitMix64) so that the example needs no dependency.
/// Roughly normal (sum of four uniforms, centred and scaled).
fn normal(rng: &mut Rng) -> f64 {
    let s: f64 = (0..4).map(|_| rng.unit()).sum();
    (s - 2.0) * 3f64.sqrt()
}

fn main() -> Result<(), LossError> {
    // Three Gaussian blobs in 4-D; row-major x [N, D], targets in 0..C.
    let mut rng = Rng::new(7);
    let centres = [
        [2.0, 0.0, -1.0, 0.5],
        [-1.5, 1.5, 0.0, -0.5],
        [0.0, -2.0, 1.5, 0.0],
    ];
    let mut x = vec![0.0_f32; N * D];
    let mut targets = vec![0_i64; N];
    for i in 0..N {
        let class = i % C;
        targets[i] = class as i64;
        for j in 0..D {
            x[i * D + j] = (centres[class][j] + 0.8 * normal(&mut rng)) as f32;
        }
    }

    // The model: logits = x W^T + b, W [C, D], starting at zero.
    let mut w = [0.0_f32; C * D];
    let mut b = [0.0_f32; C];
    let lr = 0.5_f32;

    let backend = DefaultBackend::default();
    let loss_fn = CrossEntropy::smooth_loss(0.1); // = CrossEntropy::new().with_label_smoothing(0.1)
    let mut logits = vec![0.0_f32; N * C];
    let mut dlogits = vec![0.0_f32; N * C];
    let mut losses = Vec::new();

    println!(
        "linear classifier, {N} samples, {D} features, {C} classes, SmoothLoss(0.1), SGD lr {lr}"
    );
    for step in 0..10 {
        // Forward.
        for i in 0..N {
            for k in 0..C {
                let dot: f32 = (0..D).map(|j| x[i * D + j] * w[k * D + j]).sum();
                logits[i * C + k] = dot + b[k];
            }
        }
        // Loss and d(loss)/d(logits) in one fused call (mean over the batch).
        let loss = backend
            .cross_entropy(
                &loss_fn,
                Input::matrix(&logits, N, C).with_grad(&mut dlogits),
                &targets,
            )?
            .value();
        let correct = (0..N)
            .filter(|&i| {
                let row = &logits[i * C..(i + 1) * C];
                let best = (0..C).fold(0, |m, k| if row[k] > row[m] { k } else { m });
                best as i64 == targets[i]
            })
            .count();
        println!(
            "step {step:2}: loss {loss:.5}  train accuracy {:5.1}%",
            100.0 * correct as f64 / N as f64
        );
        losses.push(loss);

        // Backward through the linear layer: dW = dlogits^T x, db = column sums of dlogits.
        let mut dw = [0.0_f32; C * D];
        let mut db = [0.0_f32; C];
        for i in 0..N {
            for k in 0..C {
                let g = dlogits[i * C + k];
                db[k] += g;
                for j in 0..D {
                    dw[k * D + j] += g * x[i * D + j];
                }
            }
        }
        // SGD.
        for (p, g) in w.iter_mut().zip(&dw) {
            *p -= lr * g;
        }
        for (p, g) in b.iter_mut().zip(&db) {
            *p -= lr * g;
        }
    }

    let (first, last) = (losses[0], losses[losses.len() - 1]);
    println!("loss {first:.5} -> {last:.5}");
    assert!(
        losses.windows(2).all(|p| p[1] < p[0]),
        "the loss should fall at every step: {losses:?}"
    );
    Ok(())
}
