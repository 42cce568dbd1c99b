//! Trains two small models with smoothloss's losses through candle's autograd and prints the
//! loss going down: an MLP classifier with label-smoothed cross-entropy (the seed's
//! `SmoothLoss(0.1)`), and a linear box regressor with the CIoU loss.
//!
//! `cargo run -p smoothloss-candle --release --example candle_train`

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, Optimizer, SGD, VarBuilder, VarMap, linear};
use smoothloss_candle::{BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, box_loss, cross_entropy};

fn main() -> Result<()> {
    let dev = Device::Cpu;
    // Classifier: 4 Gaussian blobs in 2-D, an MLP 2 -> 32 -> 4.
    let (n, k) = (256usize, 4usize);
    let mut xs = Vec::with_capacity(2 * n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % k;
        let angle = class as f32 * std::f32::consts::FRAC_PI_2;
        let jitter = ((i * 7919) % 100) as f32 / 100.0 - 0.5;
        xs.push(2.0 * angle.cos() + jitter);
        xs.push(2.0 * angle.sin() - jitter);
        ys.push(class as u32);
    }
    let x = Tensor::from_vec(xs, (n, 2), &dev)?;
    let y = Tensor::from_vec(ys, n, &dev)?;
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &dev);
    let (l1, l2): (Linear, Linear) = (linear(2, 32, vb.pp("l1"))?, linear(32, k, vb.pp("l2"))?);
    let mut sgd = SGD::new(vars.all_vars(), 0.5)?;
    let smooth = CrossEntropy::smooth_loss(0.1);
    for epoch in 0..=50 {
        let logits = l2.forward(&l1.forward(&x)?.relu()?)?;
        let loss = cross_entropy(&logits, &y, &smooth)?;
        if epoch % 10 == 0 {
            println!(
                "classifier epoch {epoch:2}: SmoothLoss(0.1) {:.4}",
                loss.to_scalar::<f32>()?
            );
        }
        sgd.backward_step(&loss)?;
    }
    // Box regressor: predict (cx, cy, w, h) from a feature vector with a linear layer.
    let m = 128usize;
    let feats: Vec<f32> = (0..m * 4)
        .map(|i| ((i * 2654435761usize) % 1000) as f32 / 1000.0)
        .collect();
    let feats = Tensor::from_vec(feats, (m, 4), &dev)?;
    // Targets: a fixed linear map of the features, with positive sizes.
    let map = Tensor::new(
        &[
            [4.0_f32, 0.0, 0.0, 0.0],
            [0.0, 4.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, 2.0],
        ],
        &dev,
    )?;
    let target = (feats.matmul(&map)?
        + Tensor::new(&[0.0_f32, 0.0, 1.0, 1.0], &dev)?
            .unsqueeze(0)?
            .broadcast_as((m, 4))?)?;
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &dev);
    let reg = linear(4, 4, vb.pp("reg"))?;
    let bias = Tensor::new(&[0.0_f32, 0.0, 1.0, 1.0], &dev)?
        .unsqueeze(0)?
        .broadcast_as((m, 4))?;
    let mut sgd = SGD::new(vars.all_vars(), 0.5)?;
    let ciou = BoxLoss::new(BoxLossKind::Ciou, BoxFormat::Cxcywh);
    for epoch in 0..=100 {
        let raw = reg.forward(&feats)?;
        let pred = (raw + &bias)?;
        let loss = box_loss(&pred, &target, &ciou)?;
        if epoch % 20 == 0 {
            println!(
                "box regressor epoch {epoch:3}: CIoU loss {:.4}",
                loss.to_scalar::<f32>()?
            );
        }
        sgd.backward_step(&loss)?;
    }
    Ok(())
}
