//! Wise-IoU v3 (`BOX-24`) through the candle adapter: values and gradients equal to candle's
//! own autograd of Wise-IoU v1 (`BOX-17`) written with candle's tensor ops times the detached
//! focusing coefficient `r`, itself computed here from the written formula and the running
//! mean, over two successive batches (the state goes in and comes back updated), every
//! reduction, upstream 1 and not 1, f64 at 1e-9; f32 against the f64 reference (`TOL-2`).

mod common;

use candle_core::{D, DType, Device, Result, Tensor, Var};
use common::{Rng, assert_close, check_f32};
use smoothloss_candle::*;
use smoothloss_core::{Input, Losses, ReferenceBackend};

const CPU: Device = Device::Cpu;

/// `n` overlapping-ish `xyxy` pairs: targets, and predictions moved by up to 2 and resized.
fn pairs(rng: &mut Rng, n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut p, mut t) = (vec![], vec![]);
    for _ in 0..n {
        let v = rng.uniform(8, 0.0, 1.0);
        let (x, y, w, h) = (10.0 * v[0], 10.0 * v[1], 1.0 + 4.0 * v[2], 1.0 + 4.0 * v[3]);
        t.extend([x, y, x + w, y + h]);
        let (dx, dy) = (4.0 * v[4] - 2.0, 4.0 * v[5] - 2.0);
        let (pw, ph) = (w * (0.5 + v[6]), h * (0.5 + v[7]));
        p.extend([x + dx, y + dy, x + dx + pw, y + dy + ph]);
    }
    (p, t)
}

fn col(b: &Tensor, k: usize) -> Result<Tensor> {
    b.narrow(D::Minus1, k, 1)?.squeeze(D::Minus1)
}

/// `(L_WIoUv1, IoU)` per pair (`BOX-17`, `BOX-2`, `BOX-3`): `exp(rho^2 / (cw^2 + ch^2)*) (1 -
/// IoU)`, the enclosing size detached, eps in the union.
fn wiou_v1_native(p: &Tensor, t: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
    let [x1, y1, x2, y2] = [0, 1, 2, 3].map(|k| col(p, k).unwrap());
    let [a1, b1, a2, b2] = [0, 1, 2, 3].map(|k| col(t, k).unwrap());
    let iw = (x2.minimum(&a2)? - x1.maximum(&a1)?)?.relu()?;
    let ih = (y2.minimum(&b2)? - y1.maximum(&b1)?)?.relu()?;
    let inter = iw.mul(&ih)?;
    let union = ((x2.sub(&x1)?.mul(&y2.sub(&y1)?)? + a2.sub(&a1)?.mul(&b2.sub(&b1)?)?)? - &inter)?;
    let iou = inter.div(&(union + eps)?)?;
    let dx = ((x1.add(&x2)? - a1.add(&a2)?)? * 0.5)?;
    let dy = ((y1.add(&y2)? - b1.add(&b2)?)? * 0.5)?;
    let rho2 = (dx.sqr()? + dy.sqr()?)?;
    let cw = (x2.maximum(&a2)? - x1.minimum(&a1)?)?;
    let ch = (y2.maximum(&b2)? - y1.minimum(&b1)?)?;
    let diag = (cw.sqr()? + ch.sqr()?)?.detach();
    let loss = rho2.div(&diag)?.exp()?.mul(&iou.affine(-1.0, 1.0)?)?;
    Ok((loss, iou))
}

/// `BOX-24`'s running mean and coefficients from the IoU values, as written in the spec.
fn focus(state: &WiseIouState, iou: &[f64]) -> (f64, Vec<f64>) {
    let batch = iou.iter().map(|i| 1.0 - i).sum::<f64>() / iou.len() as f64;
    let mean = (1.0 - state.momentum) * state.mean + state.momentum * batch;
    let r = iou
        .iter()
        .map(|i| {
            let beta = (1.0 - i) / mean;
            beta / (state.delta * state.alpha.powf(beta - state.delta))
        })
        .collect();
    (mean, r)
}

#[test]
fn wise_iou_v3_matches_candle_autograd_and_carries_its_state() -> Result<()> {
    let mut rng = Rng::new(81);
    let n = 12;
    let cfg0 = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy);
    let up = Tensor::from_vec(rng.uniform(n, 0.2, 1.5), n, &CPU)?;
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for scaled in [false, true] {
            let cfg = cfg0.with_reduction(reduction);
            // A large momentum so that the mean moves visibly between the two batches.
            let mut ours_state = WiseIouState::new().with_momentum(0.3);
            let mut want_state = ours_state;
            for batch in 0..2 {
                let (p, t) = pairs(&mut rng, n);
                let tt = Tensor::from_vec(t, (n, 4), &CPU)?;
                let v1 = Var::from_vec(p.clone(), (n, 4), &CPU)?;
                let v2 = Var::from_vec(p, (n, 4), &CPU)?;
                let ours = wise_iou_v3(&v1, &tt, &cfg, &mut ours_state)?;
                let (v1_loss, iou) = wiou_v1_native(&v2, &tt, cfg.eps)?;
                let (mean, r) = focus(&want_state, &iou.to_vec1::<f64>()?);
                want_state.mean = mean;
                let per = v1_loss.mul(&Tensor::from_vec(r, n, &CPU)?)?;
                let native = match reduction {
                    Reduction::Mean => per.mean_all()?,
                    Reduction::Sum => per.sum_all()?,
                    Reduction::None => per,
                };
                let what = format!("{reduction:?} scaled {scaled} batch {batch}");
                assert!(
                    (ours_state.mean - want_state.mean).abs() <= 1e-12,
                    "{what}: mean {} vs {}",
                    ours_state.mean,
                    want_state.mean
                );
                assert_ne!(ours_state.mean, 1.0, "{what}: the state was not updated");
                assert_close(&format!("{what} value"), &ours, &native, 1e-12, 1e-9)?;
                let obj = |l: &Tensor| -> Result<Tensor> {
                    match (reduction, scaled) {
                        (Reduction::None, false) => l.sum_all(),
                        (Reduction::None, true) => l.mul(&up)?.sum_all(),
                        (_, false) => Ok(l.clone()),
                        (_, true) => l * 0.75,
                    }
                };
                let g1 = obj(&ours)?.backward()?;
                let g2 = obj(&native)?.backward()?;
                let (a, b) = (g1.get(&v1).unwrap(), g2.get(&v2).unwrap());
                assert_close(&format!("{what} grad"), a, b, 1e-9, 1e-9)?;
            }
        }
    }
    Ok(())
}

#[test]
fn wise_iou_v3_f32_and_errors_leave_the_state_alone() -> Result<()> {
    let mut rng = Rng::new(82);
    let n = 40;
    let (p, t) = pairs(&mut rng, n);
    let (p32, t32): (Vec<f32>, Vec<f32>) = (
        p.iter().map(|&x| x as f32).collect(),
        t.iter().map(|&x| x as f32).collect(),
    );
    let cfg = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy);
    let mut state = WiseIouState::new();
    let mut ref_state = state;
    let v = Var::from_vec(p32.clone(), (n, 4), &CPU)?;
    let loss = wise_iou_v3(
        &v,
        &Tensor::from_vec(t32.clone(), (n, 4), &CPU)?,
        &cfg,
        &mut state,
    )?;
    let grads = loss.backward()?;
    let (pw, tw): (Vec<f64>, Vec<f64>) = (
        p32.iter().map(|&x| x.into()).collect(),
        t32.iter().map(|&x| x.into()).collect(),
    );
    let mut g = vec![0.0; 4 * n];
    let want = ReferenceBackend
        .wise_iou_v3(&cfg, &mut ref_state, Input::new(&pw).with_grad(&mut g), &tw)
        .unwrap();
    let got = f64::from(loss.to_scalar::<f32>()?);
    check_f32("value", &[got], &[want.value()]);
    let gg = grads
        .get(&v)
        .unwrap()
        .flatten_all()?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    check_f32("grad", &gg, &g);
    assert!((state.mean - ref_state.mean).abs() <= 1e-12);
    // A kind other than wiou, and a bad state: errors, the state unchanged.
    let before = state;
    let x = Tensor::from_vec(p32, (n, 4), &CPU)?;
    let y = Tensor::from_vec(t32, (n, 4), &CPU)?;
    let giou = BoxLoss::new(BoxLossKind::Giou, BoxFormat::Xyxy);
    let e = wise_iou_v3(&x, &y, &giou, &mut state)
        .unwrap_err()
        .to_string();
    assert!(e.contains("wiou"), "{e}");
    let mut bad = state.with_momentum(1.5);
    let e = wise_iou_v3(&x, &y, &cfg, &mut bad).unwrap_err().to_string();
    assert!(e.contains("momentum"), "{e}");
    assert_eq!(bad, state.with_momentum(1.5));
    assert_eq!(state, before);
    let e = wise_iou_v3(&x, &y.narrow(0, 0, n - 1)?, &cfg, &mut state)
        .unwrap_err()
        .to_string();
    assert!(e.contains("differs"), "{e}");
    Ok(())
}
