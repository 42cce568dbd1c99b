//! Cross-entropy through the candle adapter against candle's own autograd of the same loss
//! written with candle's tensor ops (f64, 1e-9), against `candle_nn::loss::cross_entropy`, and
//! against the f64 reference in f32.

mod common;

use candle_core::{D, DType, Device, Result, Tensor, Var};
use common::{Rng, assert_close};
use smoothloss_candle::{CrossEntropy, Reduction, cross_entropy};

const CPU: Device = Device::Cpu;

/// PyTorch's `F.cross_entropy` written with candle ops (log-softmax, masks built on the host
/// from the targets), differentiated by candle's autograd.
fn ce_native(z: &Tensor, y: &[i64], cfg: &CrossEntropy) -> Result<Tensor> {
    let (n, c) = z.dims2()?;
    let logp = candle_nn::ops::log_softmax(z, D::Minus1)?;
    let w: Vec<f64> = (0..c).map(|j| cfg.weight(j)).collect();
    let eps = cfg.label_smoothing;
    let (mut hard, mut soft, mut denom) = (vec![0.0; n * c], vec![0.0; n * c], 0.0);
    for (i, &t) in y.iter().enumerate() {
        if cfg.ignore_index == Some(t) {
            continue;
        }
        let t = t as usize;
        hard[i * c + t] = w[t] * (1.0 - eps);
        denom += w[t];
        for j in 0..c {
            soft[i * c + j] = w[j] * eps / c as f64;
        }
    }
    let m = Tensor::from_vec(hard, (n, c), &CPU)?.add(&Tensor::from_vec(soft, (n, c), &CPU)?)?;
    let rows = logp.mul(&m)?.sum(D::Minus1)?.neg()?;
    match cfg.reduction {
        Reduction::None => Ok(rows),
        Reduction::Sum => rows.sum_all(),
        Reduction::Mean => rows.sum_all()? / denom,
    }
}

/// Probability targets: `-sum_j w_j q'_ij log p_ij`, `q' = (1 - eps) q + eps / C`, mean over N.
fn ce_probs_native(z: &Tensor, q: &Tensor, cfg: &CrossEntropy) -> Result<Tensor> {
    let (n, c) = z.dims2()?;
    let logp = candle_nn::ops::log_softmax(z, D::Minus1)?;
    let eps = cfg.label_smoothing;
    let w = Tensor::from_vec(
        (0..c).map(|j| cfg.weight(j)).collect::<Vec<_>>(),
        (1, c),
        &CPU,
    )?;
    let qs = ((q * (1.0 - eps))? + eps / c as f64)?;
    let rows = logp.mul(&qs)?.broadcast_mul(&w)?.sum(D::Minus1)?.neg()?;
    match cfg.reduction {
        Reduction::None => Ok(rows),
        Reduction::Sum => rows.sum_all(),
        Reduction::Mean => rows.sum_all()? / n as f64,
    }
}

fn configs(c: usize) -> Vec<CrossEntropy> {
    let w: Vec<f64> = (0..c).map(|j| 0.25 + j as f64 / c as f64).collect();
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

/// The scalar objective and upstream: `loss * 0.75` (reduced) or `sum(loss * u)` (`none`).
fn objective(loss: &Tensor, upstream: Option<&Tensor>) -> Result<Tensor> {
    match (loss.rank(), upstream) {
        (0, None) => Ok(loss.clone()),
        (0, Some(_)) => loss * 0.75,
        (_, None) => loss.sum_all(),
        (_, Some(u)) => loss.mul(u)?.sum_all(),
    }
}

#[test]
fn class_targets_match_candle_autograd_in_f64_over_every_option() -> Result<()> {
    let (n, c) = (7, 5);
    let mut rng = Rng::new(1);
    for (k, cfg) in configs(c).iter().enumerate() {
        let z = Var::from_vec(rng.uniform(n * c, -3.0, 3.0), (n, c), &CPU)?;
        let y: Vec<i64> = (0..n).map(|_| rng.below(c) as i64).collect();
        let u = Tensor::from_vec(rng.uniform(n, 0.1, 2.0), n, &CPU)?;
        for upstream in [None, Some(&u)] {
            let ours = cross_entropy(&z, &Tensor::new(y.as_slice(), &CPU)?, cfg)?;
            let want = ce_native(&z, &y, cfg)?;
            assert_close(&format!("cfg {k} value"), &ours, &want, 1e-12, 1e-12)?;
            let g1 = objective(&ours, upstream)?.backward()?;
            let g2 = objective(&want, upstream)?.backward()?;
            let (g1, g2) = (g1.get(&z).unwrap(), g2.get(&z).unwrap());
            assert_close(
                &format!("cfg {k} grad (up {})", upstream.is_some()),
                g1,
                g2,
                1e-9,
                1e-9,
            )?;
        }
    }
    Ok(())
}

#[test]
fn probability_targets_match_candle_autograd_in_f64() -> Result<()> {
    let (n, c) = (6, 4);
    let mut rng = Rng::new(2);
    for (k, cfg) in configs(c).iter().enumerate() {
        let cfg = cfg.clone().with_ignore_index(None);
        let z = Var::from_vec(rng.uniform(n * c, -2.0, 2.0), (n, c), &CPU)?;
        let q = candle_nn::ops::softmax(
            &Tensor::from_vec(rng.uniform(n * c, -1.0, 1.0), (n, c), &CPU)?,
            1,
        )?;
        let ours = cross_entropy(&z, &q, &cfg)?;
        let want = ce_probs_native(&z, &q, &cfg)?;
        assert_close(&format!("cfg {k} value"), &ours, &want, 1e-12, 1e-12)?;
        let g1 = objective(&ours, None)?.backward()?;
        let g2 = objective(&want, None)?.backward()?;
        assert_close(
            &format!("cfg {k} grad"),
            g1.get(&z).unwrap(),
            g2.get(&z).unwrap(),
            1e-9,
            1e-9,
        )?;
    }
    Ok(())
}

#[test]
fn plain_ce_matches_candle_nn_and_u32_equals_i64() -> Result<()> {
    let (n, c) = (16, 10);
    let mut rng = Rng::new(3);
    let z = Var::from_vec(rng.uniform(n * c, -4.0, 4.0), (n, c), &CPU)?;
    let y: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
    let y32 = Tensor::new(y.as_slice(), &CPU)?;
    let y64 = y32.to_dtype(DType::I64)?;
    let ours = cross_entropy(&z, &y32, &CrossEntropy::new())?;
    let theirs = candle_nn::loss::cross_entropy(&z, &y32)?;
    assert_close("value", &ours, &theirs, 1e-12, 1e-12)?;
    let (g1, g2) = (ours.backward()?, theirs.backward()?);
    assert_close(
        "grad",
        g1.get(&z).unwrap(),
        g2.get(&z).unwrap(),
        1e-12,
        1e-9,
    )?;
    let other = cross_entropy(&z, &y64, &CrossEntropy::new())?;
    assert_eq!(other.to_scalar::<f64>()?, ours.to_scalar::<f64>()?);
    Ok(())
}

#[test]
fn f32_matches_the_f64_reference_and_the_kept_gradient_is_the_fused_one() -> Result<()> {
    use smoothloss_core::{Input, Losses, ReferenceBackend};
    let (n, c) = (9, 33);
    let mut rng = Rng::new(4);
    let x = rng.uniform(n * c, -5.0, 5.0);
    let y: Vec<i64> = (0..n).map(|_| rng.below(c) as i64).collect();
    let cfg = CrossEntropy::smooth_loss(0.1);
    let z = Var::from_vec(
        x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        (n, c),
        &CPU,
    )?;
    let loss = cross_entropy(&z, &Tensor::new(y.as_slice(), &CPU)?, &cfg)?;
    let g = loss.backward()?;
    let g = g.get(&z).unwrap();
    // The f64 reference on the same (f32-rounded) logits.
    let x32: Vec<f64> = x.iter().map(|&v| v as f32 as f64).collect();
    let mut g64 = vec![0.0; n * c];
    let want = ReferenceBackend
        .cross_entropy(&cfg, Input::matrix(&x32, n, c).with_grad(&mut g64), &y)
        .unwrap();
    assert!(
        (f64::from(loss.to_scalar::<f32>()?) - want.value()).abs() <= 2e-6 * want.value().abs()
    );
    assert_close(
        "grad vs f64",
        g,
        &Tensor::from_vec(g64, (n, c), &CPU)?,
        1e-7,
        1e-5,
    )?;
    // The backward hands over the forward's gradient as it is (upstream 1): bit-identical to
    // the CPU backend's fused call with a gradient buffer.
    let xf: Vec<f32> = z.flatten_all()?.to_vec1()?;
    let mut gf = vec![0.0_f32; n * c];
    smoothloss_cpu::CpuBackend::new()
        .cross_entropy(&cfg, Input::matrix(&xf, n, c).with_grad(&mut gf), &y)
        .unwrap();
    assert_eq!(g.flatten_all()?.to_vec1::<f32>()?, gf);
    Ok(())
}

#[test]
fn non_contiguous_logits_are_made_contiguous() -> Result<()> {
    let mut rng = Rng::new(5);
    let zt = Var::from_vec(rng.uniform(20, -1.0, 1.0), (5, 4), &CPU)?; // [C, N]
    let z = zt.t()?; // [N = 4, C = 5], strided
    assert!(!z.is_contiguous());
    let y = Tensor::new(&[0_u32, 4, 2, 1], &CPU)?;
    let cfg = CrossEntropy::smooth_loss(0.1);
    let ours = cross_entropy(&z, &y, &cfg)?;
    let want = ce_native(&z, &[0, 4, 2, 1], &cfg)?;
    assert_close("value", &ours, &want, 1e-12, 1e-12)?;
    let (g1, g2) = (ours.backward()?, want.backward()?);
    assert_close(
        "grad",
        g1.get(&zt).unwrap(),
        g2.get(&zt).unwrap(),
        1e-12,
        1e-9,
    )?;
    Ok(())
}

#[test]
fn errors_are_clear_and_nothing_panics() -> Result<()> {
    let z = Tensor::zeros((3, 4), DType::F32, &CPU)?;
    let msg = |r: Result<Tensor>| r.unwrap_err().to_string();
    let cfg = CrossEntropy::new();
    // Shapes.
    let m = msg(cross_entropy(&z, &Tensor::new(&[0_u32, 1], &CPU)?, &cfg));
    assert!(m.contains("targets must be [3]"), "{m}");
    let m = msg(cross_entropy(
        &z.flatten_all()?,
        &Tensor::new(&[0_u32], &CPU)?,
        &cfg,
    ));
    assert!(m.contains("[N, C]"), "{m}");
    // The front door's errors: a target out of range, a bad parameter.
    let m = msg(cross_entropy(&z, &Tensor::new(&[0_i64, 9, 1], &CPU)?, &cfg));
    assert!(m.contains("9"), "{m}");
    let m = msg(cross_entropy(
        &z,
        &Tensor::new(&[0_u32, 1, 2], &CPU)?,
        &CrossEntropy::smooth_loss(2.0),
    ));
    assert!(m.contains("label_smoothing"), "{m}");
    // Unsupported dtypes name the supported ones.
    let m = msg(cross_entropy(
        &z.to_dtype(DType::BF16)?,
        &Tensor::new(&[0_u32, 1, 2], &CPU)?,
        &cfg,
    ));
    assert!(m.contains("f32 and f64"), "{m}");
    let m = msg(cross_entropy(
        &z,
        &Tensor::new(&[0.0_f32, 1.0, 2.0], &CPU)?,
        &cfg,
    ));
    assert!(m.contains("targets must be [3, 4]"), "{m}");
    // Empty batch: the front door's EmptyInput.
    let e = Tensor::zeros((0, 4), DType::F32, &CPU)?;
    let m = msg(cross_entropy(
        &e,
        &Tensor::zeros(0, DType::U32, &CPU)?,
        &cfg,
    ));
    assert!(m.contains("row"), "{m}");
    Ok(())
}

#[test]
fn untracked_inputs_compute_the_value_only_and_equal_the_tracked_value() -> Result<()> {
    let mut rng = Rng::new(6);
    let x = rng.uniform(12, -1.0, 1.0);
    let y = Tensor::new(&[1_u32, 0, 2, 2], &CPU)?;
    let cfg = CrossEntropy::smooth_loss(0.3);
    let plain = cross_entropy(&Tensor::from_vec(x.clone(), (4, 3), &CPU)?, &y, &cfg)?;
    let v = Var::from_vec(x, (4, 3), &CPU)?;
    let tracked = cross_entropy(&v, &y, &cfg)?;
    assert!(!plain.track_op());
    assert!(tracked.track_op());
    assert_eq!(plain.to_scalar::<f64>()?, tracked.to_scalar::<f64>()?);
    Ok(())
}
