//! A small MLP trained a few SGD steps with the adapter's cross-entropy and, from the same
//! initial weights, with `candle_nn::loss::cross_entropy`: the same losses and weights at every
//! step (f64, 1e-9); and with label smoothing against candle's autograd of the smoothed loss
//! written with tensor ops.

mod common;

use candle_core::{D, Device, Module, Result, Tensor, Var};
use candle_nn::{Linear, Optimizer, SGD};
use common::Rng;
use smoothloss_candle::{CrossEntropy, cross_entropy};

const CPU: Device = Device::Cpu;

struct Mlp {
    vars: Vec<Var>,
}

impl Mlp {
    fn new(rng: &mut Rng, sizes: [usize; 3]) -> Result<Self> {
        let mut vars = Vec::new();
        for w in sizes.windows(2) {
            let scale = 1.0 / (w[0] as f64).sqrt();
            vars.push(Var::from_vec(
                rng.uniform(w[0] * w[1], -scale, scale),
                (w[1], w[0]),
                &CPU,
            )?);
            vars.push(Var::from_vec(rng.uniform(w[1], -scale, scale), w[1], &CPU)?);
        }
        Ok(Self { vars })
    }

    fn copy(&self) -> Result<Self> {
        let vars = self
            .vars
            .iter()
            .map(|v| Var::from_tensor(&v.as_tensor().copy()?))
            .collect::<Result<_>>()?;
        Ok(Self { vars })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let l1 = Linear::new(
            self.vars[0].as_tensor().clone(),
            Some(self.vars[1].as_tensor().clone()),
        );
        let l2 = Linear::new(
            self.vars[2].as_tensor().clone(),
            Some(self.vars[3].as_tensor().clone()),
        );
        l2.forward(&l1.forward(x)?.tanh()?)
    }
}

/// Label-smoothed CE with candle ops: `-(1 - eps) log p_y - eps / C sum_j log p_j`, mean.
fn smoothed_native(z: &Tensor, y: &Tensor, eps: f64) -> Result<Tensor> {
    let c = z.dim(D::Minus1)? as f64;
    let logp = candle_nn::ops::log_softmax(z, D::Minus1)?;
    let nll = logp.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?;
    let all = logp.sum(D::Minus1)?;
    ((nll * (1.0 - eps))? + (all * (eps / c))?)?
        .neg()?
        .mean_all()
}

fn train(
    loss_fn: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>,
    net: &Mlp,
    x: &Tensor,
    y: &Tensor,
) -> Result<Vec<f64>> {
    let mut sgd = SGD::new(net.vars.clone(), 0.5)?;
    let mut losses = Vec::new();
    for _ in 0..8 {
        let loss = loss_fn(&net.forward(x)?, y)?;
        losses.push(loss.to_scalar::<f64>()?);
        sgd.backward_step(&loss)?;
    }
    Ok(losses)
}

#[test]
fn mlp_training_matches_candle_nn_cross_entropy() -> Result<()> {
    let mut rng = Rng::new(21);
    let (n, d, h, c) = (32, 6, 16, 4);
    let x = Tensor::from_vec(rng.uniform(n * d, -1.0, 1.0), (n, d), &CPU)?;
    let y = Tensor::from_vec((0..n).map(|i| (i % c) as u32).collect::<Vec<_>>(), n, &CPU)?;
    let a = Mlp::new(&mut rng, [d, h, c])?;
    let b = a.copy()?;
    let ours = train(
        &|z, y| cross_entropy(z, y, &CrossEntropy::new()),
        &a,
        &x,
        &y,
    )?;
    let theirs = train(&|z, y| candle_nn::loss::cross_entropy(z, y), &b, &x, &y)?;
    assert!(ours.last() < ours.first(), "the loss goes down: {ours:?}");
    for (s, (p, q)) in ours.iter().zip(&theirs).enumerate() {
        assert!((p - q).abs() <= 1e-9, "step {s}: {p} vs {q}");
    }
    for (va, vb) in a.vars.iter().zip(&b.vars) {
        let diff = (va.as_tensor() - vb.as_tensor())?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert!(diff <= 1e-9, "weights differ by {diff}");
    }
    Ok(())
}

#[test]
fn mlp_training_with_label_smoothing_matches_candle_autograd() -> Result<()> {
    let mut rng = Rng::new(22);
    let (n, d, h, c) = (24, 5, 12, 3);
    let x = Tensor::from_vec(rng.uniform(n * d, -1.0, 1.0), (n, d), &CPU)?;
    let y = Tensor::from_vec(
        (0..n).map(|i| ((i * 7) % c) as u32).collect::<Vec<_>>(),
        n,
        &CPU,
    )?;
    let a = Mlp::new(&mut rng, [d, h, c])?;
    let b = a.copy()?;
    let ours = train(
        &|z, y| cross_entropy(z, y, &CrossEntropy::smooth_loss(0.1)),
        &a,
        &x,
        &y,
    )?;
    let theirs = train(&|z, y| smoothed_native(z, y, 0.1), &b, &x, &y)?;
    for (s, (p, q)) in ours.iter().zip(&theirs).enumerate() {
        assert!((p - q).abs() <= 1e-9, "step {s}: {p} vs {q}");
    }
    Ok(())
}
