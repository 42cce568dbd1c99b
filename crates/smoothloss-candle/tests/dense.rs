//! The distribution focal loss (`DFL-*`) through the candle adapter: value and gradient equal
//! to candle's own autograd of ultralytics' `DFLoss` / mmdetection's
//! `distribution_focal_loss` written with candle's tensor ops (`log_softmax`, `gather`), f64
//! at 1e-9, every reduction, upstream 1 and not 1; f32 against the f64 reference.

mod common;

use candle_core::{D, DType, Device, Result, Tensor, Var};
use common::{Rng, assert_close};
use smoothloss_candle::*;
use smoothloss_core::{Input, Losses, ReferenceBackend};

const CPU: Device = Device::Cpu;

/// `DFL-1` .. `DFL-4` with candle ops: per item (box of 4 rows, or row).
fn dfl_native(z: &Tensor, t: &[f64], cfg: &DistributionFocal) -> Result<Tensor> {
    let (rows, bins) = z.dims2()?;
    let (mut l, mut r, mut wl, mut wr) = (vec![], vec![], vec![], vec![]);
    for &t in t {
        let t = match cfg.convention {
            DflConvention::Ultralytics => t.clamp(0.0, bins as f64 - 1.0 - 0.01),
            DflConvention::Mmdetection => t,
        };
        let left = t.floor();
        l.push(left as u32);
        r.push(left as u32 + 1);
        wl.push(left + 1.0 - t);
        wr.push(match cfg.convention {
            DflConvention::Ultralytics => 1.0 - (left + 1.0 - t),
            DflConvention::Mmdetection => t - left,
        });
    }
    let lp = candle_nn::ops::log_softmax(z, D::Minus1)?;
    let pick = |idx: Vec<u32>| lp.gather(&Tensor::from_vec(idx, (rows, 1), &CPU)?, 1);
    let w = |v: Vec<f64>| Tensor::from_vec(v, (rows, 1), &CPU);
    let row = (pick(l)?.mul(&w(wl)?)? + pick(r)?.mul(&w(wr)?)?)?.neg()?;
    let per = cfg.convention.rows_per_item();
    row.reshape((rows / per, per))?.mean(1)
}

#[test]
fn distribution_focal_matches_candle_autograd_of_both_conventions() -> Result<()> {
    let mut rng = Rng::new(51);
    let (boxes, bins) = (5, 16);
    let rows = 4 * boxes;
    let z = rng.uniform(rows * bins, -3.0, 3.0);
    // Targets over the whole range, some past the last bin (ultralytics clamps them).
    let t_ul = rng.uniform(rows, -0.5, bins as f64 + 0.5);
    let t_mm = rng.uniform(rows, 0.0, bins as f64 - 1.0 - 1e-6);
    for base in [
        DistributionFocal::ultralytics(),
        DistributionFocal::mmdetection(),
    ] {
        let t = match base.convention {
            DflConvention::Ultralytics => &t_ul,
            DflConvention::Mmdetection => &t_mm,
        };
        let items = rows / base.convention.rows_per_item();
        let up: Vec<f64> = (0..items).map(|i| 0.25 + 0.1 * i as f64).collect();
        let upt = Tensor::from_vec(up.clone(), items, &CPU)?;
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            for scaled in [false, true] {
                let cfg = base.with_reduction(reduction);
                let (v1, v2) = (
                    Var::from_vec(z.clone(), (rows, bins), &CPU)?,
                    Var::from_vec(z.clone(), (rows, bins), &CPU)?,
                );
                let tt = Tensor::from_vec(t.clone(), rows, &CPU)?;
                let ours = distribution_focal(&v1, &tt, &cfg)?;
                let per_item = dfl_native(&v2, t, &cfg)?;
                let native = match reduction {
                    Reduction::Mean => per_item.mean_all()?,
                    Reduction::Sum => per_item.sum_all()?,
                    Reduction::None => per_item,
                };
                let what = format!("{:?} {reduction:?} scaled {scaled}", cfg.convention);
                assert_close(&format!("{what} value"), &ours, &native, 1e-12, 1e-9)?;
                let objective = |l: &Tensor| -> Result<Tensor> {
                    match (reduction, scaled) {
                        (Reduction::None, false) => l.sum_all(),
                        (Reduction::None, true) => l.mul(&upt)?.sum_all(),
                        (_, false) => Ok(l.clone()),
                        (_, true) => l * 0.75,
                    }
                };
                let g1 = objective(&ours)?.backward()?;
                let g2 = objective(&native)?.backward()?;
                assert_close(
                    &format!("{what} grad"),
                    g1.get(&v1).unwrap(),
                    g2.get(&v2).unwrap(),
                    1e-9,
                    1e-9,
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn distribution_focal_f32_and_shape_errors() -> Result<()> {
    let mut rng = Rng::new(52);
    let (rows, bins) = (32, 16);
    let z: Vec<f32> = rng
        .uniform(rows * bins, -4.0, 4.0)
        .iter()
        .map(|&x| x as f32)
        .collect();
    let t: Vec<f32> = rng
        .uniform(rows, 0.0, 15.0)
        .iter()
        .map(|&x| x as f32)
        .collect();
    let cfg = DistributionFocal::ultralytics().with_reduction(Reduction::Sum);
    let v = Var::from_vec(z.clone(), (rows, bins), &CPU)?;
    let loss = distribution_focal(&v, &Tensor::from_vec(t.clone(), rows, &CPU)?, &cfg)?;
    let g = loss.backward()?;
    let (zw, tw): (Vec<f64>, Vec<f64>) = (
        z.iter().map(|&x| x.into()).collect(),
        t.iter().map(|&x| x.into()).collect(),
    );
    let mut g64 = vec![0.0; rows * bins];
    let want = ReferenceBackend
        .distribution_focal(
            &cfg,
            Input::matrix(&zw, rows, bins).with_grad(&mut g64),
            &tw,
        )
        .unwrap();
    assert_eq!(loss.dtype(), DType::F32);
    let got = f64::from(loss.to_scalar::<f32>()?);
    assert!(
        (got - want.value()).abs() <= 1e-5 * want.value().abs(),
        "{got} vs {}",
        want.value()
    );
    assert_close(
        "dfl f32 grad",
        g.get(&v).unwrap(),
        &Tensor::from_vec(g64, (rows, bins), &CPU)?,
        1e-6,
        1e-4,
    )?;
    // Shapes: targets per row, whole boxes.
    let zz = Tensor::zeros((6, 16), DType::F32, &CPU)?;
    let e = distribution_focal(&zz, &Tensor::zeros(5, DType::F32, &CPU)?, &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("targets must be [6]"), "{e}");
    let e = distribution_focal(&zz, &Tensor::zeros(6, DType::F32, &CPU)?, &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("whole boxes"), "{e}");
    Ok(())
}
