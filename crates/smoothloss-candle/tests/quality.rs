//! The varifocal loss (`QUAL-1` .. `QUAL-4`) and the quality focal loss (`QUAL-5` .. `QUAL-7`)
//! through the candle adapter: values and gradients equal to candle's own autograd of
//! ultralytics' `VarifocalLoss` / mmdetection's `varifocal_loss` and `quality_focal_loss`
//! written with candle's tensor ops (f64 at 1e-9, every weight and reduction, `avg_factor`,
//! upstream 1 and not 1); f32 against the f64 reference at the spec's tolerance (`TOL-2`).

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use common::{Rng, assert_close, check_f32};
use smoothloss_candle::*;
use smoothloss_core::{Input, Losses, ReferenceBackend};

const CPU: Device = Device::Cpu;

/// `BCE(x, s)` with logits, element-wise, as PyTorch's
/// `binary_cross_entropy_with_logits(reduction='none')`: `max(x, 0) - x s + log(1 + e^-|x|)`.
fn bce(x: &Tensor, s: &Tensor) -> Result<Tensor> {
    let soft = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (x.relu()? - x.mul(s)?)? + soft
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// ultralytics `VarifocalLoss` / mmdetection `varifocal_loss`, element-wise (`QUAL-1` ..
/// `QUAL-3`), the weight not detached.
fn varifocal_native(
    x: &Tensor,
    s: &Tensor,
    label: Option<&Tensor>,
    cfg: &Varifocal,
) -> Result<Tensor> {
    let p = sigmoid(x)?;
    let w = match cfg.weight {
        VarifocalWeight::Ultralytics => {
            let l = label.expect("labels");
            let neg = (p.powf(cfg.gamma)? * cfg.alpha)?.mul(&l.affine(-1.0, 1.0)?)?;
            (neg + s.mul(l)?)?
        }
        weight => {
            // mmdetection: `target * (target > 0) + alpha * |p - target|^gamma * (target <= 0)`
            // (`iou_weighted`), or 1 in place of `target` for positives.
            let pos = s.gt(0.0)?.to_dtype(s.dtype())?;
            let focal = ((p - s)?.abs()?.powf(cfg.gamma)? * cfg.alpha)?;
            let positive = match weight {
                VarifocalWeight::MmdetIouWeighted => s.mul(&pos)?,
                _ => pos.clone(),
            };
            (positive + focal.mul(&pos.affine(-1.0, 1.0)?)?)?
        }
    };
    bce(x, s)?.mul(&w)
}

/// mmdetection `quality_focal_loss` per row (`QUAL-5`, `QUAL-6`): the label's column against
/// the score scaled by `|s - p|^beta`, the others against 0 scaled by `p^beta`, summed.
fn qfl_native(x: &Tensor, labels: &[i64], scores: &Tensor, beta: f64) -> Result<Tensor> {
    let (rows, c) = x.dims2()?;
    let mut onehot = vec![0.0_f64; rows * c];
    for (i, &l) in labels.iter().enumerate() {
        if (l as usize) < c {
            onehot[i * c + l as usize] = 1.0;
        }
    }
    let m = Tensor::from_vec(onehot, (rows, c), &CPU)?;
    let p = sigmoid(x)?;
    let s = scores
        .reshape((rows, 1))?
        .broadcast_as((rows, c))?
        .contiguous()?;
    let pos = bce(x, &s)?.mul(&(s.sub(&p))?.abs()?.powf(beta)?)?;
    let neg = bce(x, &x.zeros_like()?)?.mul(&p.powf(beta)?)?;
    (pos.mul(&m)? + neg.mul(&m.affine(-1.0, 1.0)?)?)?.sum(1)
}

/// The reduction of per-item losses `l` (`QUAL-4` / `QUAL-7`).
fn reduce(l: Tensor, r: Reduction, avg: Option<f64>) -> Result<Tensor> {
    match r {
        Reduction::Mean => match avg {
            Some(a) => l.sum_all()? / a,
            None => l.mean_all(),
        },
        Reduction::Sum => l.sum_all(),
        Reduction::None => Ok(l),
    }
}

/// `loss` scaled: the sum of the items times `up` (`none`) or times 0.75 (else), when `scaled`.
fn objective(l: &Tensor, r: Reduction, up: &Tensor, scaled: bool) -> Result<Tensor> {
    match (r, scaled) {
        (Reduction::None, false) => l.sum_all(),
        (Reduction::None, true) => l.mul(up)?.sum_all(),
        (_, false) => Ok(l.clone()),
        (_, true) => l * 0.75,
    }
}

#[test]
fn varifocal_matches_candle_autograd_of_both_sources() -> Result<()> {
    let mut rng = Rng::new(71);
    let (q, c) = (6, 5);
    let z = rng.uniform(q * c, -4.0, 4.0);
    // Scores: zero for most elements (negatives), IoU-like in (0, 1] for the labelled ones.
    let mut s = vec![0.0; q * c];
    let mut label = vec![0.0; q * c];
    for i in 0..q {
        let j = rng.below(c);
        label[i * c + j] = 1.0;
        s[i * c + j] = 0.05 + 0.95 * rng.next_f64();
    }
    let up = Tensor::from_vec(rng.uniform(q * c, 0.2, 1.5), (q, c), &CPU)?;
    let st = Tensor::from_vec(s.clone(), (q, c), &CPU)?;
    let lt = Tensor::from_vec(label.clone(), (q, c), &CPU)?;
    let bases = [
        Varifocal::ultralytics(),
        Varifocal::mmdetection(),
        Varifocal {
            weight: VarifocalWeight::Mmdet,
            ..Varifocal::mmdetection()
        },
        Varifocal::mmdetection().with_alpha_gamma(0.25, 1.5),
    ];
    for base in bases {
        let labels = (base.weight == VarifocalWeight::Ultralytics).then_some(&lt);
        for (reduction, avg) in [
            (Reduction::Mean, None),
            (Reduction::Mean, Some(3.5)),
            (Reduction::Sum, None),
            (Reduction::None, None),
        ] {
            for scaled in [false, true] {
                let cfg = Varifocal {
                    reduction,
                    avg_factor: avg,
                    ..base
                };
                let v1 = Var::from_vec(z.clone(), (q, c), &CPU)?;
                let v2 = Var::from_vec(z.clone(), (q, c), &CPU)?;
                let ours = varifocal(&v1, &st, labels, &cfg)?;
                let native = reduce(varifocal_native(&v2, &st, labels, &cfg)?, reduction, avg)?;
                let what = format!("{:?} {reduction:?} avg {avg:?} scaled {scaled}", cfg.weight);
                assert_close(&format!("{what} value"), &ours, &native, 1e-12, 1e-9)?;
                let g1 = objective(&ours, reduction, &up, scaled)?.backward()?;
                let g2 = objective(&native, reduction, &up, scaled)?.backward()?;
                let (a, b) = (g1.get(&v1).unwrap(), g2.get(&v2).unwrap());
                assert!(
                    a.abs()?.max_all()?.to_scalar::<f64>()? > 0.0,
                    "{what}: zero grad"
                );
                assert_close(&format!("{what} grad"), a, b, 1e-9, 1e-9)?;
            }
        }
    }
    Ok(())
}

#[test]
fn quality_focal_matches_candle_autograd_of_mmdetection() -> Result<()> {
    let mut rng = Rng::new(72);
    let (rows, c) = (9, 4);
    let z = rng.uniform(rows * c, -4.0, 4.0);
    // Labels over every class and the background (`c`), scores in [0, 1].
    let labels: Vec<i64> = (0..rows).map(|_| rng.below(c + 1) as i64).collect();
    let s = rng.uniform(rows, 0.0, 1.0);
    let st = Tensor::from_vec(s.clone(), rows, &CPU)?;
    let up = Tensor::from_vec(rng.uniform(rows, 0.2, 1.5), rows, &CPU)?;
    for label_dtype in [DType::I64, DType::U32] {
        let lt = Tensor::from_vec(labels.clone(), rows, &CPU)?.to_dtype(label_dtype)?;
        for beta in [2.0, 1.0] {
            for (reduction, avg) in [
                (Reduction::Mean, None),
                (Reduction::Mean, Some(2.5)),
                (Reduction::Sum, None),
                (Reduction::None, None),
            ] {
                for scaled in [false, true] {
                    let cfg = QualityFocal {
                        beta,
                        reduction,
                        avg_factor: avg,
                    };
                    let v1 = Var::from_vec(z.clone(), (rows, c), &CPU)?;
                    let v2 = Var::from_vec(z.clone(), (rows, c), &CPU)?;
                    let ours = quality_focal(&v1, &lt, &st, &cfg)?;
                    let native = reduce(qfl_native(&v2, &labels, &st, beta)?, reduction, avg)?;
                    let what = format!("beta {beta} {reduction:?} avg {avg:?} scaled {scaled}");
                    assert_close(&format!("{what} value"), &ours, &native, 1e-12, 1e-9)?;
                    let g1 = objective(&ours, reduction, &up, scaled)?.backward()?;
                    let g2 = objective(&native, reduction, &up, scaled)?.backward()?;
                    let (a, b) = (g1.get(&v1).unwrap(), g2.get(&v2).unwrap());
                    assert_close(&format!("{what} grad"), a, b, 1e-9, 1e-9)?;
                }
            }
        }
    }
    Ok(())
}

/// `TOL-2`: the f32 path against the f64 reference on the same f32-rounded inputs.
fn tol_f32(what: &str, got: &Tensor, want: &[f64]) -> Result<()> {
    let got = got.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    check_f32(what, &got, want);
    Ok(())
}

#[test]
fn f32_quality_losses_match_the_f64_reference() -> Result<()> {
    let mut rng = Rng::new(73);
    let (rows, c) = (64, 20);
    let n = rows * c;
    let r32 = |v: Vec<f64>| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
    let z = r32(rng.uniform(n, -5.0, 5.0));
    let s = r32(rng.uniform(n, 0.0, 1.0));
    let lab: Vec<f32> = (0..n).map(|i| f32::from(i % 7 == 0)).collect();
    let wide = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| x.into()).collect() };
    let (zw, sw, lw) = (wide(&z), wide(&s), wide(&lab));
    for cfg in [Varifocal::ultralytics(), Varifocal::mmdetection()] {
        let v = Var::from_vec(z.clone(), (rows, c), &CPU)?;
        let st = Tensor::from_vec(s.clone(), (rows, c), &CPU)?;
        let lt = Tensor::from_vec(lab.clone(), (rows, c), &CPU)?;
        let labels = (cfg.weight == VarifocalWeight::Ultralytics).then_some(&lt);
        let loss = varifocal(&v, &st, labels, &cfg)?;
        assert_eq!(loss.dtype(), DType::F32);
        let grads = loss.backward()?;
        let mut g = vec![0.0; n];
        let targets = smoothloss_core::VarifocalTargets {
            scores: &sw,
            labels: labels.map(|_| &lw[..]),
        };
        let want = ReferenceBackend
            .varifocal(&cfg, Input::new(&zw).with_grad(&mut g), targets)
            .unwrap();
        tol_f32(&format!("{:?} value", cfg.weight), &loss, &[want.value()])?;
        tol_f32(
            &format!("{:?} grad", cfg.weight),
            grads.get(&v).unwrap(),
            &g,
        )?;
    }
    let labels: Vec<u32> = (0..rows).map(|i| (i % (c + 1)) as u32).collect();
    let labels64: Vec<i64> = labels.iter().map(|&l| l.into()).collect();
    let qs = s[..rows].to_vec();
    let cfg = QualityFocal::new();
    let v = Var::from_vec(z.clone(), (rows, c), &CPU)?;
    let loss = quality_focal(
        &v,
        &Tensor::from_vec(labels, rows, &CPU)?,
        &Tensor::from_vec(qs.clone(), rows, &CPU)?,
        &cfg,
    )?;
    let grads = loss.backward()?;
    let mut g = vec![0.0; n];
    let want = ReferenceBackend
        .quality_focal(
            &cfg,
            Input::matrix(&zw, rows, c).with_grad(&mut g),
            &labels64,
            &wide(&qs),
        )
        .unwrap();
    tol_f32("qfl value", &loss, &[want.value()])?;
    tol_f32("qfl grad", grads.get(&v).unwrap(), &g)?;
    Ok(())
}

#[test]
fn quality_losses_refuse_bad_shapes_and_targets() -> Result<()> {
    let z = Tensor::zeros((3, 4), DType::F32, &CPU)?;
    let s = Tensor::zeros((3, 4), DType::F32, &CPU)?;
    let err = |r: Result<Tensor>| r.unwrap_err().to_string();
    let e = err(varifocal(
        &z,
        &Tensor::zeros((4, 3), DType::F32, &CPU)?,
        None,
        &Varifocal::mmdetection(),
    ));
    assert!(e.contains("scores must have the logits' shape"), "{e}");
    // ultralytics' weight reads labels: none given is the front door's length error.
    let e = err(varifocal(&z, &s, None, &Varifocal::ultralytics()));
    assert!(e.contains("labels"), "{e}");
    let e = err(varifocal(
        &z,
        &s.to_dtype(DType::F64)?,
        None,
        &Varifocal::mmdetection(),
    ));
    assert!(e.contains("dtype"), "{e}");
    let e = err(varifocal(
        &z,
        &(s.clone() + 2.0)?,
        None,
        &Varifocal::mmdetection(),
    ));
    assert!(e.contains("[0, 1]"), "{e}");
    let lab = Tensor::new(&[0_u32, 4, 5], &CPU)?;
    let qs = Tensor::zeros(3, DType::F32, &CPU)?;
    // Label 4 is the background (`C`); 5 is out of range.
    let e = err(quality_focal(&z, &lab, &qs, &QualityFocal::new()));
    assert!(e.contains("out of range"), "{e}");
    let e = err(quality_focal(&z, &qs, &qs, &QualityFocal::new()));
    assert!(e.contains("class indices"), "{e}");
    let e = err(quality_focal(
        &z,
        &Tensor::new(&[0_u32, 1], &CPU)?,
        &qs,
        &QualityFocal::new(),
    ));
    assert!(e.contains("labels must be [3]"), "{e}");
    Ok(())
}
