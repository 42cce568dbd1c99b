//! The detection losses beyond the box losses through the burn adapter: `1 - ProbIoU` of
//! oriented boxes (`OBB-*`) and the distribution focal loss (`DFL-*`), gradients equal to
//! burn's own autograd of the same formulas written with burn's tensor ops (ultralytics'
//! `probiou`, `DFLoss`; mmdetection's `distribution_focal_loss`), f64 at 1e-9 (ProbIoU: 1e-7,
//! burn's own f64 autograd of it is no closer), every reduction, upstream 1 and not 1; ProbIoU's CIoU option against the f64 reference (its
//! `alpha` is detached by definition, `OBB-4`).

use burn_tensor::activation::log_softmax;
use burn_tensor::{DType, Device, Int, Tensor, TensorData};
use smoothloss_burn::*;
use smoothloss_core::{Input, Losses, ReferenceBackend, Upstream};

fn dev() -> Device {
    Device::flex().autodiff()
}

/// `n` oriented boxes: centres in `[0, 10)`, sizes in `[1, 5)`, angles in `[-pi, pi)`
/// (a fixed xorshift sequence).
fn obbs(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut u = |lo: f64, hi: f64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
    };
    let pi = std::f64::consts::PI;
    (0..n)
        .flat_map(|_| {
            [
                u(0.0, 10.0),
                u(0.0, 10.0),
                u(1.0, 5.0),
                u(1.0, 5.0),
                u(-pi, pi),
            ]
        })
        .collect()
}

fn f64_tensor<const D: usize>(v: Vec<f64>, shape: [usize; D]) -> Tensor<D> {
    Tensor::<D>::from_data(TensorData::new(v, shape), (&dev(), DType::F64))
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

fn assert_close(what: &str, a: &[f64], b: &[f64], atol: f64, rtol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Column `k` of `[n, 5]` boxes as `[n]`.
fn col(b: &Tensor<2>, k: usize) -> Tensor<1> {
    let n = b.dims()[0];
    b.clone().narrow(1, k, 1).reshape([n])
}

/// The covariance entries `(a, b, c)` of `OBB-1` (`floor = 0`), as ultralytics'
/// `_get_covariance_matrix`.
fn covariance(b: &Tensor<2>) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let (w, h, r) = (col(b, 2), col(b, 3), col(b, 4));
    let (big_a, big_b) = (
        w.powi_scalar(2).div_scalar(12.0),
        h.powi_scalar(2).div_scalar(12.0),
    );
    let (cos, sin) = (r.clone().cos(), r.sin());
    let (cos2, sin2) = (cos.clone().powi_scalar(2), sin.clone().powi_scalar(2));
    let a = big_a
        .clone()
        .mul(cos2.clone())
        .add(big_b.clone().mul(sin2.clone()));
    let bb = big_a.clone().mul(sin2).add(big_b.clone().mul(cos2));
    let c = big_a.sub(big_b).mul(cos).mul(sin);
    (a, bb, c)
}

/// ultralytics' `1 - probiou(pred, target, eps=1e-7)` per pair, written with burn ops.
fn probiou_loss_native(p: &Tensor<2>, t: &Tensor<2>) -> Tensor<1> {
    let eps = 1e-7;
    let (a1, b1, c1) = covariance(p);
    let (a2, b2, c2) = covariance(t);
    let (sa, sb, sc) = (
        a1.clone().add(a2.clone()),
        b1.clone().add(b2.clone()),
        c1.clone().add(c2.clone()),
    );
    let det = sa.clone().mul(sb.clone()).sub(sc.clone().powi_scalar(2));
    let den = det.clone().add_scalar(eps);
    let dx = col(p, 0).sub(col(t, 0));
    let dy = col(p, 1).sub(col(t, 1));
    let t1 = sa
        .mul(dy.clone().powi_scalar(2))
        .add(sb.mul(dx.clone().powi_scalar(2)))
        .div(den.clone())
        .mul_scalar(0.25);
    let t2 = sc.mul(dx.neg()).mul(dy).div(den).mul_scalar(0.5);
    let d1 = a1.mul(b1).sub(c1.powi_scalar(2)).clamp_min(0.0);
    let d2 = a2.mul(b2).sub(c2.powi_scalar(2)).clamp_min(0.0);
    let root = d1.mul(d2).sqrt().mul_scalar(4.0).add_scalar(eps);
    let t3 = det.div(root).add_scalar(eps).log().mul_scalar(0.5);
    let bd = t1.add(t2).add(t3).clamp(eps, 100.0);
    // loss = 1 - probiou = hd
    bd.neg().exp().neg().add_scalar(1.0 + eps).sqrt()
}

#[test]
fn probiou_loss_matches_burn_autograd_of_ultralytics_formula() {
    let n = 12;
    let (p, t) = (obbs(41, n), obbs(42, n));
    let up: Vec<f64> = (0..n).map(|i| 0.5 + 0.125 * i as f64).collect();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for scaled in [false, true] {
            let cfg = ProbIou::new().with_reduction(reduction);
            let v1 = f64_tensor(p.clone(), [n, 5]).require_grad();
            let v2 = f64_tensor(p.clone(), [n, 5]).require_grad();
            let tt = f64_tensor(t.clone(), [n, 5]);
            let ours = probiou_loss(v1.clone(), tt.clone(), &cfg).unwrap();
            let per_pair = probiou_loss_native(&v2, &tt);
            let native = match reduction {
                Reduction::Mean => per_pair.mean(),
                Reduction::Sum => per_pair.sum(),
                Reduction::None => per_pair,
            };
            let what = format!("probiou {reduction:?} scaled {scaled}");
            assert_close(
                &format!("{what} value"),
                &to_vec(ours.clone()),
                &to_vec(native.clone()),
                1e-12,
                1e-9,
            );
            let objective = |l: Tensor<1>| match (reduction, scaled) {
                (Reduction::None, false) => l.sum(),
                (Reduction::None, true) => l.mul(f64_tensor(up.clone(), [n])).sum(),
                (_, false) => l,
                (_, true) => l.mul_scalar(0.75),
            };
            let g1 = to_vec(v1.grad(&objective(ours).backward()).unwrap());
            let g2 = to_vec(v2.grad(&objective(native).backward()).unwrap());
            assert!(g1.iter().any(|&g| g != 0.0), "{what}");
            // 1e-7 as in `losses.rs`: burn's own f64 autograd of this formula differs from
            // the f64 reference by up to ~3e-9 (the reference agrees with the adapter at
            // 1e-12 in `probiou_ciou_matches_the_reference_with_a_per_pair_upstream`).
            assert_close(&format!("{what} grad"), &g1, &g2, 1e-7, 1e-7);
        }
    }
}

#[test]
fn probiou_ciou_matches_the_reference_with_a_per_pair_upstream() {
    let n = 16;
    let (p, t) = (obbs(43, n), obbs(44, n));
    let cfg = ProbIou::new()
        .with_ciou(true)
        .with_reduction(Reduction::None);
    let v = f64_tensor(p.clone(), [n, 5]).require_grad();
    let loss = probiou_loss(v.clone(), f64_tensor(t.clone(), [n, 5]), &cfg).unwrap();
    let up: Vec<f64> = (0..n).map(|i| 1.0 + 0.5 * i as f64).collect();
    let g = to_vec(
        v.grad(
            &loss
                .clone()
                .mul(f64_tensor(up.clone(), [n]))
                .sum()
                .backward(),
        )
        .unwrap(),
    );
    let mut want_g = vec![0.0; 5 * n];
    let want = ReferenceBackend
        .probiou_loss(
            &cfg,
            Input::new(&p)
                .with_grad(&mut want_g)
                .with_upstream(Upstream::PerElement(&up)),
            &t,
        )
        .unwrap();
    assert_eq!(to_vec(loss), want.values());
    assert_close("probiou ciou grad", &g, &want_g, 1e-12, 1e-12);
    // A last dimension other than 5 is a typed error, not a panic.
    let bad = f64_tensor(vec![0.0; 12], [3, 4]);
    let e = probiou_loss(bad.clone(), bad, &cfg).unwrap_err();
    assert!(matches!(e, LossError::WrongShape { .. }), "{e:?}");
}

/// `DFL-1` .. `DFL-4` with burn ops: per item (box of 4 rows, or row).
fn dfl_native(z: Tensor<2>, t: &[f64], cfg: &DistributionFocal) -> Tensor<1> {
    let [rows, bins] = z.dims();
    let (mut l, mut r, mut wl, mut wr) = (vec![], vec![], vec![], vec![]);
    for &t in t {
        let t = match cfg.convention {
            DflConvention::Ultralytics => t.clamp(0.0, bins as f64 - 1.0 - 0.01),
            DflConvention::Mmdetection => t,
        };
        let left = t.floor();
        l.push(left as i64);
        r.push(left as i64 + 1);
        wl.push(left + 1.0 - t);
        wr.push(match cfg.convention {
            DflConvention::Ultralytics => 1.0 - (left + 1.0 - t),
            DflConvention::Mmdetection => t - left,
        });
    }
    let lp = log_softmax(z, 1);
    let idx = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [rows, 1]), &dev());
    let row = lp
        .clone()
        .gather(1, idx(l))
        .mul(f64_tensor(wl, [rows, 1]))
        .add(lp.gather(1, idx(r)).mul(f64_tensor(wr, [rows, 1])))
        .neg();
    let per = cfg.convention.rows_per_item();
    row.reshape([rows / per, per])
        .mean_dim(1)
        .reshape([rows / per])
}

#[test]
fn distribution_focal_matches_burn_autograd_of_both_conventions() {
    let (boxes, bins) = (5, 16);
    let rows = 4 * boxes;
    let z: Vec<f64> = obbs(45, rows * bins / 5)
        .iter()
        .map(|v| v / 2.0 - 2.5)
        .collect();
    let t_ul: Vec<f64> = obbs(46, rows / 5 + 1)[..rows]
        .iter()
        .map(|v| v * 1.6 - 0.5)
        .collect();
    let t_mm: Vec<f64> = t_ul.iter().map(|v| v.clamp(0.0, 14.5)).collect();
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
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            for scaled in [false, true] {
                let cfg = base.with_reduction(reduction);
                let v1 = f64_tensor(z.clone(), [rows, bins]).require_grad();
                let v2 = f64_tensor(z.clone(), [rows, bins]).require_grad();
                let tt = f64_tensor(t.clone(), [rows]);
                let ours = distribution_focal(v1.clone(), tt, &cfg).unwrap();
                let per_item = dfl_native(v2.clone(), t, &cfg);
                let native = match reduction {
                    Reduction::Mean => per_item.mean(),
                    Reduction::Sum => per_item.sum(),
                    Reduction::None => per_item,
                };
                let what = format!("{:?} {reduction:?} scaled {scaled}", cfg.convention);
                assert_close(
                    &format!("{what} value"),
                    &to_vec(ours.clone()),
                    &to_vec(native.clone()),
                    1e-12,
                    1e-9,
                );
                let objective = |l: Tensor<1>| match (reduction, scaled) {
                    (Reduction::None, false) => l.sum(),
                    (Reduction::None, true) => l.mul(f64_tensor(up.clone(), [items])).sum(),
                    (_, false) => l,
                    (_, true) => l.mul_scalar(0.75),
                };
                let g1 = to_vec(v1.grad(&objective(ours).backward()).unwrap());
                let g2 = to_vec(v2.grad(&objective(native).backward()).unwrap());
                assert!(g1.iter().any(|&g| g != 0.0), "{what}");
                assert_close(&format!("{what} grad"), &g1, &g2, 1e-9, 1e-9);
            }
        }
    }
    // Targets not one per row: a typed error.
    let z = f64_tensor(vec![0.0; 6 * 16], [6, 16]);
    let e = distribution_focal(
        z,
        f64_tensor(vec![1.0; 5], [5]),
        &DistributionFocal::mmdetection(),
    );
    assert!(matches!(e, Err(LossError::WrongShape { .. })), "{e:?}");
}

/// `OBB-6`: the pairwise matrix is the f64 reference's, symmetric for a set against itself
/// (`OBB-7`) with the largest ProbIoU `1 - sqrt(1 - exp(-eps) + eps)` on the diagonal; f32
/// boxes give f32 results; bad shapes are typed errors.
#[test]
fn batch_probiou_is_the_reference_matrix() {
    let (n, m, eps) = (7, 5, 1e-7);
    let (a, b) = (obbs(61, n), obbs(62, m));
    let got = batch_probiou(
        f64_tensor(a.clone(), [n, 5]),
        f64_tensor(b.clone(), [m, 5]),
        eps,
    )
    .unwrap();
    assert_eq!(got.dims(), [n, m]);
    let mut want = vec![0.0; n * m];
    smoothloss_core::Losses::batch_probiou(&ReferenceBackend, eps, &a, &b, &mut want).unwrap();
    assert_eq!(to_vec(got), want);
    let own = to_vec(
        batch_probiou(
            f64_tensor(a.clone(), [n, 5]),
            f64_tensor(a.clone(), [n, 5]),
            eps,
        )
        .unwrap(),
    );
    let top = 1.0 - (1.0 - (-eps).exp() + eps).sqrt();
    for i in 0..n {
        assert!((own[i * n + i] - top).abs() <= 1e-12);
        for j in 0..n {
            assert!((own[i * n + j] - own[j * n + i]).abs() <= 1e-12);
        }
    }
    let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
    let t32 = Tensor::<2>::from_data(TensorData::new(a32, [n, 5]), (&dev(), DType::F32));
    assert_eq!(
        batch_probiou(t32.clone(), t32, eps).unwrap().dtype(),
        DType::F32
    );
    let e = batch_probiou(
        f64_tensor(a, [n, 5]),
        f64_tensor(vec![0.0; 12], [3, 4]),
        eps,
    );
    assert!(
        matches!(e, Err(LossError::WrongShape { what: "boxes2", .. })),
        "{:?}",
        e.as_ref().err()
    );
}
