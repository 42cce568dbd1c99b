//! The fused linear cross-entropy through the candle adapter: value and both gradients
//! (`hidden`, `weight`) equal to candle's own autograd of `cross_entropy(hidden.matmul(W^T))`
//! written with candle's tensor ops, in f64 at 1e-9 over every option (smoothing, class
//! weights, ignore_index, each reduction, upstream not 1, chunks smaller than N); f32 against
//! the f64 reference at the spec's tolerance.

mod common;

use candle_core::{D, DType, Device, Result, Tensor, Var};
use common::{Rng, assert_close};
use smoothloss_candle::{CrossEntropy, LinearCrossEntropy, Reduction, linear_cross_entropy};
use smoothloss_core::{Linear, Losses, ReferenceBackend};

const CPU: Device = Device::Cpu;

/// PyTorch's `F.cross_entropy` written with candle ops (log-softmax, target weights built on
/// the host from the targets).
fn ce_native(z: &Tensor, y: &[i64], cfg: &CrossEntropy) -> Result<Tensor> {
    let (n, c) = z.dims2()?;
    let logp = candle_nn::ops::log_softmax(z, D::Minus1)?;
    let w: Vec<f64> = (0..c).map(|j| cfg.weight(j)).collect();
    let eps = cfg.label_smoothing;
    let (mut m, mut denom) = (vec![0.0; n * c], 0.0);
    for (i, &t) in y.iter().enumerate() {
        if cfg.ignore_index == Some(t) {
            continue;
        }
        let t = t as usize;
        denom += w[t];
        for j in 0..c {
            m[i * c + j] = w[j] * eps / c as f64;
        }
        m[i * c + t] += w[t] * (1.0 - eps);
    }
    let rows = logp
        .mul(&Tensor::from_vec(m, (n, c), &CPU)?)?
        .sum(D::Minus1)?
        .neg()?;
    match cfg.reduction {
        Reduction::None => Ok(rows),
        Reduction::Sum => rows.sum_all(),
        Reduction::Mean => rows.sum_all()? / denom,
    }
}

fn configs(v: usize) -> Vec<CrossEntropy> {
    let w: Vec<f64> = (0..v).map(|j| 0.25 + j as f64 / v as f64).collect();
    let mut out = Vec::new();
    for r in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        out.push(CrossEntropy::new().with_reduction(r));
        out.push(CrossEntropy::smooth_loss(0.1).with_reduction(r));
        out.push(
            CrossEntropy::smooth_loss(0.2)
                .with_class_weights(w.clone())
                .with_ignore_index(Some(1))
                .with_reduction(r),
        );
    }
    out
}

#[test]
fn linear_cross_entropy_matches_candle_autograd_in_f64_over_every_option() -> Result<()> {
    let (n, h, v) = (9, 6, 11);
    let mut rng = Rng::new(61);
    for (k, ce) in configs(v).iter().enumerate() {
        // Chunks of 4 rows: several chunks and a ragged last one.
        let cfg = LinearCrossEntropy::new(ce.clone()).with_chunk_rows(4);
        let hs = rng.uniform(n * h, -1.0, 1.0);
        let ws = rng.uniform(v * h, -1.0, 1.0);
        let mut y: Vec<i64> = (0..n).map(|_| rng.below(v) as i64).collect();
        y[0] = 1; // an ignored row where ignore_index is 1
        let up = rng.uniform(n, 0.1, 2.0);
        for scaled in [false, true] {
            let (h1, w1) = (
                Var::from_vec(hs.clone(), (n, h), &CPU)?,
                Var::from_vec(ws.clone(), (v, h), &CPU)?,
            );
            let (h2, w2) = (
                Var::from_vec(hs.clone(), (n, h), &CPU)?,
                Var::from_vec(ws.clone(), (v, h), &CPU)?,
            );
            let t = Tensor::new(y.as_slice(), &CPU)?;
            let ours = linear_cross_entropy(&h1, &w1, &t, &cfg)?;
            let native = ce_native(&h2.matmul(&w2.t()?)?, &y, ce)?;
            let what = format!("cfg {k} scaled {scaled}");
            assert_close(&format!("{what} value"), &ours, &native, 1e-12, 1e-10)?;
            let objective = |l: &Tensor| -> Result<Tensor> {
                match (l.rank(), scaled) {
                    (0, false) => Ok(l.clone()),
                    (0, true) => l * 0.75,
                    (_, false) => l.sum_all(),
                    (_, true) => l.mul(&Tensor::from_vec(up.clone(), n, &CPU)?)?.sum_all(),
                }
            };
            let g1 = objective(&ours)?.backward()?;
            let g2 = objective(&native)?.backward()?;
            for (name, a, b) in [("hidden", &h1, &h2), ("weight", &w1, &w2)] {
                let ga = g1.get(a).unwrap();
                assert!(
                    ga.abs()?.sum_all()?.to_scalar::<f64>()? > 0.0,
                    "{what} {name}"
                );
                assert_close(
                    &format!("{what} d{name}"),
                    ga,
                    g2.get(b).unwrap(),
                    1e-9,
                    1e-9,
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn linear_cross_entropy_f32_and_errors() -> Result<()> {
    let (n, h, v) = (33, 16, 40);
    let mut rng = Rng::new(62);
    let to32 = |x: Vec<f64>| -> Vec<f32> { x.iter().map(|&a| a as f32).collect() };
    let hs = to32(rng.uniform(n * h, -1.0, 1.0));
    let ws = to32(rng.uniform(v * h, -1.0, 1.0));
    let y: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    let cfg = LinearCrossEntropy::new(CrossEntropy::smooth_loss(0.1));
    let (hv, wv) = (
        Var::from_vec(hs.clone(), (n, h), &CPU)?,
        Var::from_vec(ws.clone(), (v, h), &CPU)?,
    );
    let loss = linear_cross_entropy(&hv, &wv, &Tensor::new(y.as_slice(), &CPU)?, &cfg)?;
    assert_eq!(loss.dtype(), DType::F32);
    let g = loss.backward()?;
    let (h64, w64): (Vec<f64>, Vec<f64>) = (
        hs.iter().map(|&a| a.into()).collect(),
        ws.iter().map(|&a| a.into()).collect(),
    );
    let y64: Vec<i64> = y.iter().map(|&a| a.into()).collect();
    let (mut dh, mut dw) = (vec![0.0; n * h], vec![0.0; v * h]);
    let want = ReferenceBackend
        .linear_cross_entropy(
            &cfg,
            Linear::new(&h64, &w64, h).with_grads(&mut dh, &mut dw),
            &y64,
        )
        .unwrap();
    let got = f64::from(loss.to_scalar::<f32>()?);
    assert!(
        (got - want.value()).abs() <= 1e-5 * want.value(),
        "{got} vs {}",
        want.value()
    );
    assert_close(
        "f32 dhidden",
        g.get(&hv).unwrap(),
        &Tensor::from_vec(dh, (n, h), &CPU)?,
        1e-6,
        1e-4,
    )?;
    assert_close(
        "f32 dweight",
        g.get(&wv).unwrap(),
        &Tensor::from_vec(dw, (v, h), &CPU)?,
        1e-6,
        1e-4,
    )?;
    // Without a tracked operand: the value alone, the same.
    let plain = linear_cross_entropy(
        &Tensor::from_vec(hs.clone(), (n, h), &CPU)?,
        &Tensor::from_vec(ws.clone(), (v, h), &CPU)?,
        &Tensor::new(y.as_slice(), &CPU)?,
        &cfg,
    )?;
    assert_eq!(plain.to_scalar::<f32>()?, loss.to_scalar::<f32>()?);
    // Errors: H differs, targets of another length, a target out of range (typed, wrapped).
    let bad_w = Tensor::zeros((v, h + 1), DType::F32, &CPU)?;
    let t = Tensor::new(y.as_slice(), &CPU)?;
    let e = linear_cross_entropy(&hv, &bad_w, &t, &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("differ in H"), "{e}");
    let e = linear_cross_entropy(&hv, &wv, &t.narrow(0, 0, 5)?, &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("targets must be"), "{e}");
    let mut far = y.clone();
    far[3] = v as u32 + 7;
    let e = linear_cross_entropy(&hv, &wv, &Tensor::new(far.as_slice(), &CPU)?, &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("target"), "{e}");
    Ok(())
}
