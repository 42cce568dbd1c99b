//! The fused linear cross-entropy (`LCE-*`) through the burn adapter: values and the
//! gradients of `hidden` and `weight` equal to burn's own autograd of `F.cross_entropy(h @
//! W^T, y)` written with burn's tensor ops (matmul, log-softmax, a host-built target-weight
//! matrix), over label smoothing, class weights, `ignore_index`, every reduction and upstream 1
//! and not 1, in f64 (1e-7: burn's own f64 log-softmax autograd on flex agrees with the f64
//! reference to ~5e-8 only, as `losses.rs` measured; against the reference's fused call 1e-12);
//! f32 against the f64 reference (`TOL-2`'s LCE figures); `none` with a tracked weight refused.

mod common;

use burn_tensor::{Int, Tensor, TensorData, activation::log_softmax};
use common::*;
use smoothloss_burn::*;
use smoothloss_core::{Linear, Losses, ReferenceBackend};

fn ce_native(z: Tensor<2>, y: &[i64], cfg: &CrossEntropy) -> Tensor<1> {
    let [n, c] = z.dims();
    let eps = cfg.label_smoothing;
    let (mut m, mut denom) = (vec![0.0; n * c], 0.0);
    for (i, &t) in y.iter().enumerate() {
        if cfg.ignore_index == Some(t) {
            continue;
        }
        denom += cfg.weight(t as usize);
        for j in 0..c {
            m[i * c + j] = cfg.weight(j) * eps / c as f64;
        }
        m[i * c + t as usize] += cfg.weight(t as usize) * (1.0 - eps);
    }
    let rows = log_softmax(z, 1)
        .mul(f64_tensor(m, [n, c]))
        .sum_dim(1)
        .reshape([n])
        .neg();
    match cfg.reduction {
        Reduction::None => rows,
        Reduction::Sum => rows.sum(),
        Reduction::Mean => rows.sum().div_scalar(denom),
    }
}

fn classes(y: &[i64]) -> Tensor<1, Int> {
    Tensor::<1, Int>::from_data(TensorData::new(y.to_vec(), [y.len()]), &dev())
}

#[test]
fn linear_cross_entropy_matches_burn_autograd_over_every_option() {
    let (n, v, hd) = (6, 7, 5);
    let mut rng = Rng(91);
    let w8: Vec<f64> = (0..v).map(|j| 0.5 + j as f64 / v as f64).collect();
    let ces = [
        CrossEntropy::new(),
        CrossEntropy::smooth_loss(0.1),
        CrossEntropy::smooth_loss(0.2)
            .with_class_weights(w8)
            .with_ignore_index(Some(1)),
    ];
    for (k, ce) in ces.iter().enumerate() {
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            for scaled in [false, true] {
                let ce = ce.clone().with_reduction(reduction);
                let cfg = LinearCrossEntropy::new(ce.clone());
                let h = rng.uniform(n * hd, -1.0, 1.0);
                let w = rng.uniform(v * hd, -1.0, 1.0);
                let mut y: Vec<i64> = (0..n).map(|_| rng.below(v) as i64).collect();
                y[0] = 1; // one ignored row where ignore_index is set
                let up = rng.uniform(n, 0.2, 1.5);
                // `none`: the weight is frozen (detached); else both are tracked.
                let track_w = reduction != Reduction::None;
                let h1 = f64_tensor(h.clone(), [n, hd]).require_grad();
                let h2 = f64_tensor(h.clone(), [n, hd]).require_grad();
                let (w1, w2) = if track_w {
                    (
                        f64_tensor(w.clone(), [v, hd]).require_grad(),
                        f64_tensor(w.clone(), [v, hd]).require_grad(),
                    )
                } else {
                    (
                        f64_tensor(w.clone(), [v, hd]),
                        f64_tensor(w.clone(), [v, hd]),
                    )
                };
                let ours = linear_cross_entropy(h1.clone(), w1.clone(), classes(&y), &cfg).unwrap();
                let native = ce_native(h2.clone().matmul(w2.clone().transpose()), &y, &ce);
                let what = format!("ce {k} {reduction:?} scaled {scaled}");
                let mut gh = vec![0.0; n * hd];
                let mut gw = vec![0.0; v * hd];
                let want = ReferenceBackend
                    .linear_cross_entropy(
                        &cfg,
                        Linear::new(&h, &w, hd).with_grads(&mut gh, &mut gw),
                        &y[..],
                    )
                    .unwrap();
                assert_close(&what, &to_vec(ours.clone()), want.values(), 1e-12, 1e-12);
                assert_close(
                    &what,
                    &to_vec(ours.clone()),
                    &to_vec(native.clone()),
                    1e-9,
                    1e-9,
                );
                let g1 = objective(ours, &up, scaled).backward();
                let g2 = objective(native, &up, scaled).backward();
                assert_close(
                    &format!("{what} dh"),
                    &grad_of(&h1, &g1),
                    &grad_of(&h2, &g2),
                    1e-7,
                    1e-7,
                );
                if track_w {
                    assert_close(
                        &format!("{what} dw"),
                        &grad_of(&w1, &g1),
                        &grad_of(&w2, &g2),
                        1e-7,
                        1e-7,
                    );
                } else {
                    assert!(w1.grad(&g1).is_none());
                }
                if !scaled && reduction != Reduction::None {
                    // Upstream 1: exactly the reference's fused gradients.
                    assert_close(
                        &format!("{what} dh ref"),
                        &grad_of(&h1, &g1),
                        &gh,
                        1e-12,
                        1e-12,
                    );
                    assert_close(
                        &format!("{what} dw ref"),
                        &grad_of(&w1, &g1),
                        &gw,
                        1e-12,
                        1e-12,
                    );
                }
            }
        }
    }
}

#[test]
fn linear_cross_entropy_f32_and_refusals() {
    let (n, v, hd) = (32, 50, 16);
    let mut rng = Rng(92);
    let r = |x: Vec<f64>| -> Vec<f64> { x.iter().map(|&a| f64::from(a as f32)).collect() };
    let h = r(rng.uniform(n * hd, -1.0, 1.0));
    let w = r(rng.uniform(v * hd, -1.0, 1.0));
    let y: Vec<i64> = (0..n).map(|_| rng.below(v) as i64).collect();
    let cfg = LinearCrossEntropy::new(CrossEntropy::smooth_loss(0.1));
    let ht = f32_tensor(&h, [n, hd]).require_grad();
    let wt = f32_tensor(&w, [v, hd]).require_grad();
    let loss = linear_cross_entropy(ht.clone(), wt.clone(), classes(&y), &cfg).unwrap();
    let got = to_vec(loss.clone());
    let g = loss.backward();
    let (mut gh, mut gw) = (vec![0.0; n * hd], vec![0.0; v * hd]);
    let want = ReferenceBackend
        .linear_cross_entropy(
            &cfg,
            Linear::new(&h, &w, hd).with_grads(&mut gh, &mut gw),
            &y[..],
        )
        .unwrap();
    check_tol("value", &got, &[want.value()], 2e-7);
    check_tol("dh", &grad_of(&ht, &g), &gh, 2e-7);
    check_tol("dw", &grad_of(&wt, &g), &gw, 2e-7);
    // `none` with a tracked weight: refused, typed; shapes: typed.
    let none = LinearCrossEntropy::new(CrossEntropy::new().with_reduction(Reduction::None));
    let e = linear_cross_entropy(
        f32_tensor(&h, [n, hd]),
        f32_tensor(&w, [v, hd]).require_grad(),
        classes(&y),
        &none,
    );
    assert!(
        matches!(
            e,
            Err(LossError::InvalidParameter {
                name: "reduction",
                ..
            })
        ),
        "{:?}",
        e.as_ref().err()
    );
    let e = linear_cross_entropy(
        f32_tensor(&h, [n, hd]),
        f32_tensor(&w[..v * (hd - 1)], [v, hd - 1]),
        classes(&y),
        &cfg,
    );
    assert!(
        matches!(e, Err(LossError::WrongShape { what: "weight", .. })),
        "{:?}",
        e.as_ref().err()
    );
    let e = linear_cross_entropy(
        f32_tensor(&h, [n, hd]),
        f32_tensor(&w, [v, hd]),
        classes(&y[1..]),
        &cfg,
    );
    assert!(
        matches!(
            e,
            Err(LossError::WrongShape {
                what: "targets",
                ..
            })
        ),
        "{:?}",
        e.as_ref().err()
    );
}
