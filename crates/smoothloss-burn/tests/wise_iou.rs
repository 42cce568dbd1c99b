//! Wise-IoU v3 (`BOX-24`) through the burn adapter: values and gradients equal to burn's own
//! autograd of Wise-IoU v1 (`BOX-17`) written with burn's tensor ops times the detached
//! focusing coefficient `r` (computed here from the written formula and the running mean),
//! over two successive batches (the state goes in and comes back updated), every reduction,
//! upstream 1 and not 1, f64 at 1e-9; f32 against the f64 reference (`TOL-2`); errors leave
//! the state alone.

mod common;

use burn_tensor::Tensor;
use common::*;
use smoothloss_burn::*;
use smoothloss_core::{Input, Losses, ReferenceBackend};

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

fn col(b: &Tensor<2>, k: usize) -> Tensor<1> {
    let n = b.dims()[0];
    b.clone().narrow(1, k, 1).reshape([n])
}

/// `(L_WIoUv1, IoU)` per pair: `exp(rho^2 / (cw^2 + ch^2)*) (1 - IoU)`, eps in the union.
fn wiou_v1_native(p: &Tensor<2>, t: &Tensor<2>, eps: f64) -> (Tensor<1>, Tensor<1>) {
    let [x1, y1, x2, y2] = [0, 1, 2, 3].map(|k| col(p, k));
    let [a1, b1, a2, b2] = [0, 1, 2, 3].map(|k| col(t, k));
    let iw = x2
        .clone()
        .min_pair(a2.clone())
        .sub(x1.clone().max_pair(a1.clone()))
        .clamp_min(0.0);
    let ih = y2
        .clone()
        .min_pair(b2.clone())
        .sub(y1.clone().max_pair(b1.clone()))
        .clamp_min(0.0);
    let inter = iw.mul(ih);
    let ap = x2.clone().sub(x1.clone()).mul(y2.clone().sub(y1.clone()));
    let at = a2.clone().sub(a1.clone()).mul(b2.clone().sub(b1.clone()));
    let iou = inter.clone().div(ap.add(at).sub(inter).add_scalar(eps));
    let dx = x1
        .clone()
        .add(x2.clone())
        .sub(a1.clone().add(a2.clone()))
        .mul_scalar(0.5);
    let dy = y1
        .clone()
        .add(y2.clone())
        .sub(b1.clone().add(b2.clone()))
        .mul_scalar(0.5);
    let rho2 = dx.square().add(dy.square());
    let cw = x2.max_pair(a2).sub(x1.min_pair(a1));
    let ch = y2.max_pair(b2).sub(y1.min_pair(b1));
    let diag = cw.square().add(ch.square()).detach();
    let loss = rho2.div(diag).exp().mul(iou.clone().neg().add_scalar(1.0));
    (loss, iou)
}

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
fn wise_iou_v3_matches_burn_autograd_and_carries_its_state() {
    let mut rng = Rng(81);
    let n = 12;
    let up = rng.uniform(n, 0.2, 1.5);
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for scaled in [false, true] {
            let cfg = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy).with_reduction(reduction);
            let mut ours_state = WiseIouState::new().with_momentum(0.3);
            let mut want_state = ours_state;
            for batch in 0..2 {
                let (p, t) = pairs(&mut rng, n);
                let p1 = f64_tensor(p.clone(), [n, 4]).require_grad();
                let p2 = f64_tensor(p, [n, 4]).require_grad();
                let tt = f64_tensor(t, [n, 4]);
                let ours = wise_iou_v3(p1.clone(), tt.clone(), &cfg, &mut ours_state).unwrap();
                let (v1, iou) = wiou_v1_native(&p2, &tt, cfg.eps);
                let (mean, r) = focus(&want_state, &to_vec(iou));
                want_state.mean = mean;
                let per = v1.mul(f64_tensor(r, [n]));
                let native = match reduction {
                    Reduction::Mean => per.mean(),
                    Reduction::Sum => per.sum(),
                    Reduction::None => per,
                };
                let what = format!("{reduction:?} scaled {scaled} batch {batch}");
                assert!(
                    (ours_state.mean - want_state.mean).abs() <= 1e-12,
                    "{what}: mean"
                );
                assert_ne!(ours_state.mean, 1.0, "{what}: the state was not updated");
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
                    &grad_of(&p1, &g1),
                    &grad_of(&p2, &g2),
                    1e-9,
                    1e-9,
                );
            }
        }
    }
}

#[test]
fn wise_iou_v3_f32_and_errors_leave_the_state_alone() {
    let mut rng = Rng(82);
    let n = 40;
    let (p, t) = pairs(&mut rng, n);
    let r = |v: &[f64]| -> Vec<f64> { v.iter().map(|&x| f64::from(x as f32)).collect() };
    let (p, t) = (r(&p), r(&t));
    let cfg = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy);
    let (mut state, mut ref_state) = (WiseIouState::new(), WiseIouState::new());
    let x = f32_tensor(&p, [n, 4]).require_grad();
    let loss = wise_iou_v3(x.clone(), f32_tensor(&t, [n, 4]), &cfg, &mut state).unwrap();
    let got = to_vec(loss.clone());
    let g = grad_of(&x, &loss.backward());
    let mut want_g = vec![0.0; 4 * n];
    let want = ReferenceBackend
        .wise_iou_v3(
            &cfg,
            &mut ref_state,
            Input::new(&p).with_grad(&mut want_g),
            &t,
        )
        .unwrap();
    check_f32("value", &got, &[want.value()]);
    check_f32("g", &g, &want_g);
    assert!((state.mean - ref_state.mean).abs() <= 1e-12);
    let before = state;
    let giou = BoxLoss::new(BoxLossKind::Giou, BoxFormat::Xyxy);
    let e = wise_iou_v3(
        f32_tensor(&p, [n, 4]),
        f32_tensor(&t, [n, 4]),
        &giou,
        &mut state,
    );
    assert!(
        matches!(e, Err(LossError::InvalidParameter { name: "kind", .. })),
        "{:?}",
        e.as_ref().err()
    );
    let e = wise_iou_v3(
        f32_tensor(&p, [n, 4]),
        f32_tensor(&t[4..], [n - 1, 4]),
        &cfg,
        &mut state,
    );
    assert!(
        matches!(e, Err(LossError::WrongShape { .. })),
        "{:?}",
        e.as_ref().err()
    );
    assert_eq!(state, before);
}
