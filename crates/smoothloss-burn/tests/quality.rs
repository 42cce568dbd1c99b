//! The varifocal loss (`QUAL-1` .. `QUAL-4`) and the quality focal loss (`QUAL-5` .. `QUAL-7`)
//! through the burn adapter: values and gradients equal to burn's own autograd of
//! ultralytics' `VarifocalLoss` / mmdetection's `varifocal_loss` and `quality_focal_loss`
//! written with burn's tensor ops (f64: values at 1e-9, gradients at 1e-7, since burn 0.22's
//! own f64 autograd on flex is ~5e-8 from the reference, as `losses.rs` measured, while
//! candle's autograd of the same formulas agrees with the adapter at 1e-9; every weight and
//! reduction, `avg_factor`,
//! upstream 1 and not 1); f32 against the f64 reference at the spec's tolerance (`TOL-2`).

mod common;

use burn_tensor::{DType, Int, Tensor, TensorData};
use common::*;
use smoothloss_burn::*;
use smoothloss_core::{Input, Losses, ReferenceBackend, VarifocalTargets};

/// `BCE(x, s)` with logits, element-wise: `max(x, 0) - x s + log(1 + e^-|x|)`.
fn bce<const D: usize>(x: Tensor<D>, s: Tensor<D>) -> Tensor<D> {
    let soft = x.clone().abs().neg().exp().log1p();
    x.clone().clamp_min(0.0).sub(x.mul(s)).add(soft)
}

fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.neg().exp().add_scalar(1.0).recip()
}

/// ultralytics `VarifocalLoss` / mmdetection `varifocal_loss`, element-wise, the weight not
/// detached; `pos` the host mask `score > 0` (mmdetection's positives).
fn varifocal_native(
    x: Tensor<2>,
    s: &[f64],
    label: &[f64],
    cfg: &Varifocal,
    dims: [usize; 2],
) -> Tensor<2> {
    let st = f64_tensor(s.to_vec(), dims);
    let p = sigmoid(x.clone());
    let w = match cfg.weight {
        VarifocalWeight::Ultralytics => {
            let l = f64_tensor(label.to_vec(), dims);
            let neg = p
                .powf_scalar(cfg.gamma)
                .mul_scalar(cfg.alpha)
                .mul(l.clone().neg().add_scalar(1.0));
            neg.add(st.clone().mul(l))
        }
        weight => {
            let pos: Vec<f64> = s.iter().map(|&v| f64::from(v > 0.0)).collect();
            let positive: Vec<f64> = match weight {
                VarifocalWeight::MmdetIouWeighted => {
                    s.iter().zip(&pos).map(|(a, b)| a * b).collect()
                }
                _ => pos.clone(),
            };
            let neg: Vec<f64> = pos.iter().map(|p| 1.0 - p).collect();
            let focal = p
                .sub(st.clone())
                .abs()
                .powf_scalar(cfg.gamma)
                .mul_scalar(cfg.alpha);
            f64_tensor(positive, dims).add(focal.mul(f64_tensor(neg, dims)))
        }
    };
    bce(x, st).mul(w)
}

fn reduce(l: Tensor<1>, r: Reduction, avg: Option<f64>) -> Tensor<1> {
    let n = l.dims()[0] as f64;
    match r {
        Reduction::Mean => l.sum().div_scalar(avg.unwrap_or(n)),
        Reduction::Sum => l.sum(),
        Reduction::None => l,
    }
}

#[test]
fn varifocal_matches_burn_autograd_of_both_sources() {
    let mut rng = Rng(71);
    let (q, c) = (6, 5);
    let n = q * c;
    let z = rng.uniform(n, -4.0, 4.0);
    let (mut s, mut label) = (vec![0.0; n], vec![0.0; n]);
    for i in 0..q {
        let j = rng.below(c);
        label[i * c + j] = 1.0;
        s[i * c + j] = 0.05 + 0.95 * rng.next_f64();
    }
    let up = rng.uniform(n, 0.2, 1.5);
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
                let z1 = f64_tensor(z.clone(), [q, c]).require_grad();
                let z2 = f64_tensor(z.clone(), [q, c]).require_grad();
                let labels = (cfg.weight == VarifocalWeight::Ultralytics)
                    .then(|| f64_tensor(label.clone(), [q, c]));
                let ours =
                    varifocal(z1.clone(), f64_tensor(s.clone(), [q, c]), labels, &cfg).unwrap();
                let native = varifocal_native(z2.clone(), &s, &label, &cfg, [q, c]).reshape([n]);
                let native = reduce(native, reduction, avg);
                let what = format!("{:?} {reduction:?} avg {avg:?} scaled {scaled}", cfg.weight);
                assert_close(
                    &what,
                    &to_vec(ours.clone()),
                    &to_vec(native.clone()),
                    1e-12,
                    1e-9,
                );
                let g1 = objective(ours, &up, scaled).backward();
                let g2 = objective(native, &up, scaled).backward();
                let (a, b) = (grad_of(&z1, &g1), grad_of(&z2, &g2));
                assert!(a.iter().any(|&v| v != 0.0), "{what}: zero grad");
                assert_close(&format!("{what} grad"), &a, &b, 1e-7, 1e-7);
            }
        }
    }
}

/// mmdetection `quality_focal_loss` per row: the label's column against the score scaled by
/// `|s - p|^beta`, the others against 0 scaled by `p^beta`, summed over the row.
fn qfl_native(x: Tensor<2>, labels: &[i64], s: &[f64], beta: f64) -> Tensor<1> {
    let [rows, c] = x.dims();
    let mut onehot = vec![0.0; rows * c];
    let mut sc = vec![0.0; rows * c];
    for (i, &l) in labels.iter().enumerate() {
        if (l as usize) < c {
            onehot[i * c + l as usize] = 1.0;
        }
        for j in 0..c {
            sc[i * c + j] = s[i];
        }
    }
    let m = f64_tensor(onehot, [rows, c]);
    let st = f64_tensor(sc, [rows, c]);
    let p = sigmoid(x.clone());
    let pos = bce(x.clone(), st.clone()).mul(st.sub(p.clone()).abs().powf_scalar(beta));
    let neg = bce(x.clone(), x.zeros_like()).mul(p.powf_scalar(beta));
    let inv = m.clone().neg().add_scalar(1.0);
    pos.mul(m).add(neg.mul(inv)).sum_dim(1).reshape([rows])
}

#[test]
fn quality_focal_matches_burn_autograd_of_mmdetection() {
    let mut rng = Rng(72);
    let (rows, c) = (9, 4);
    let z = rng.uniform(rows * c, -4.0, 4.0);
    let labels: Vec<i64> = (0..rows).map(|_| rng.below(c + 1) as i64).collect();
    let s = rng.uniform(rows, 0.0, 1.0);
    let up = rng.uniform(rows, 0.2, 1.5);
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
                let z1 = f64_tensor(z.clone(), [rows, c]).require_grad();
                let z2 = f64_tensor(z.clone(), [rows, c]).require_grad();
                let lt =
                    Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [rows]), &dev());
                let ours =
                    quality_focal(z1.clone(), lt, f64_tensor(s.clone(), [rows]), &cfg).unwrap();
                let native = reduce(qfl_native(z2.clone(), &labels, &s, beta), reduction, avg);
                let what = format!("beta {beta} {reduction:?} avg {avg:?} scaled {scaled}");
                assert_close(
                    &what,
                    &to_vec(ours.clone()),
                    &to_vec(native.clone()),
                    1e-12,
                    1e-9,
                );
                let g1 = objective(ours, &up, scaled).backward();
                let g2 = objective(native, &up, scaled).backward();
                assert_close(
                    &format!("{what} grad"),
                    &grad_of(&z1, &g1),
                    &grad_of(&z2, &g2),
                    1e-7,
                    1e-7,
                );
            }
        }
    }
}

#[test]
fn f32_quality_losses_match_the_f64_reference_and_errors_are_typed() {
    let mut rng = Rng(73);
    let (rows, c) = (64, 20);
    let n = rows * c;
    let r = |v: Vec<f64>| -> Vec<f64> { v.iter().map(|&x| f64::from(x as f32)).collect() };
    let z = r(rng.uniform(n, -5.0, 5.0));
    let s = r(rng.uniform(n, 0.0, 1.0));
    let lab: Vec<f64> = (0..n).map(|i| f64::from(i % 7 == 0)).collect();
    for cfg in [Varifocal::ultralytics(), Varifocal::mmdetection()] {
        let ul = cfg.weight == VarifocalWeight::Ultralytics;
        let x = f32_tensor(&z, [rows, c]).require_grad();
        let labels = ul.then(|| f32_tensor(&lab, [rows, c]));
        let loss = varifocal(x.clone(), f32_tensor(&s, [rows, c]), labels, &cfg).unwrap();
        assert_eq!(loss.dtype(), DType::F32);
        let got = to_vec(loss.clone());
        let g = grad_of(&x, &loss.backward());
        let mut want_g = vec![0.0; n];
        let t = VarifocalTargets {
            scores: &s,
            labels: ul.then_some(&lab[..]),
        };
        let want = ReferenceBackend
            .varifocal(&cfg, Input::new(&z).with_grad(&mut want_g), t)
            .unwrap();
        check_f32("value", &got, &[want.value()]);
        check_f32("g", &g, &want_g);
    }
    let labels: Vec<i64> = (0..rows).map(|i| (i % (c + 1)) as i64).collect();
    let qs = s[..rows].to_vec();
    let cfg = QualityFocal::new();
    let x = f32_tensor(&z, [rows, c]).require_grad();
    let lt = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [rows]), &dev());
    let loss = quality_focal(x.clone(), lt, f32_tensor(&qs, [rows]), &cfg).unwrap();
    let got = to_vec(loss.clone());
    let g = grad_of(&x, &loss.backward());
    let mut want_g = vec![0.0; n];
    let want = ReferenceBackend
        .quality_focal(
            &cfg,
            Input::matrix(&z, rows, c).with_grad(&mut want_g),
            &labels,
            &qs,
        )
        .unwrap();
    check_f32("value", &got, &[want.value()]);
    check_f32("g", &g, &want_g);
    // Typed errors, no panic: shapes, missing labels, scores out of [0, 1], labels > C.
    let z0 = || f64_tensor(vec![0.0; 12], [3, 4]);
    let e = varifocal(
        z0(),
        f64_tensor(vec![0.0; 12], [4, 3]),
        None,
        &Varifocal::mmdetection(),
    );
    assert!(
        matches!(e, Err(LossError::WrongShape { what: "scores", .. })),
        "{:?}",
        e.as_ref().err()
    );
    let e = varifocal(z0(), z0(), None, &Varifocal::ultralytics());
    assert!(e.is_err());
    let e = varifocal(z0(), z0().add_scalar(2.0), None, &Varifocal::mmdetection());
    assert!(
        matches!(e, Err(LossError::InvalidParameter { name: "scores", .. })),
        "{:?}",
        e.as_ref().err()
    );
    let bad = Tensor::<1, Int>::from_data(TensorData::new(vec![0_i64, 4, 5], [3]), &dev());
    let e = quality_focal(
        z0(),
        bad,
        f64_tensor(vec![0.5; 3], [3]),
        &QualityFocal::new(),
    );
    assert!(e.is_err());
    let two = Tensor::<1, Int>::from_data(TensorData::new(vec![0_i64, 1], [2]), &dev());
    let e = quality_focal(
        z0(),
        two,
        f64_tensor(vec![0.5; 3], [3]),
        &QualityFocal::new(),
    );
    assert!(
        matches!(e, Err(LossError::WrongShape { what: "labels", .. })),
        "{:?}",
        e.as_ref().err()
    );
}
