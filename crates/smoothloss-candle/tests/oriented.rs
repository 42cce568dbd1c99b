//! `1 - ProbIoU` of oriented boxes (`OBB-*`) through the candle adapter: gradients equal to
//! candle's own autograd of ultralytics' `probiou` written with candle's tensor ops (f64 at
//! 1e-9, every reduction, upstream 1 and not 1), the CIoU option against the f64 reference
//! (its `alpha` is detached by definition, `OBB-4`), and f32 against the f64 reference at the
//! spec's tolerance.

mod common;

use candle_core::{D, DType, Device, Result, Tensor, Var};
use common::{Rng, assert_close};
use smoothloss_candle::*;
use smoothloss_core::{Input, Losses, ReferenceBackend, Upstream};

const CPU: Device = Device::Cpu;

/// `n` oriented boxes `[n, 5]`: centres in `[0, 10)`, sizes in `[1, 5)`, angles in `[-pi, pi)`.
fn obbs(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(5 * n);
    for _ in 0..n {
        out.extend(rng.uniform(2, 0.0, 10.0));
        out.extend(rng.uniform(2, 1.0, 5.0));
        out.extend(rng.uniform(1, -std::f64::consts::PI, std::f64::consts::PI));
    }
    out
}

/// Column `k` of `[n, 5]` boxes as `[n]`.
fn col(b: &Tensor, k: usize) -> Result<Tensor> {
    b.narrow(D::Minus1, k, 1)?.squeeze(D::Minus1)
}

/// The covariance entries `(a, b, c)` of `OBB-1` (`floor = 0`), as ultralytics'
/// `_get_covariance_matrix`.
fn covariance(b: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let (w, h, r) = (col(b, 2)?, col(b, 3)?, col(b, 4)?);
    let (big_a, big_b) = ((w.sqr()? / 12.0)?, (h.sqr()? / 12.0)?);
    let (cos, sin) = (r.cos()?, r.sin()?);
    let (cos2, sin2) = (cos.sqr()?, sin.sqr()?);
    let a = (big_a.mul(&cos2)? + big_b.mul(&sin2)?)?;
    let bb = (big_a.mul(&sin2)? + big_b.mul(&cos2)?)?;
    let c = big_a.sub(&big_b)?.mul(&cos)?.mul(&sin)?;
    Ok((a, bb, c))
}

/// ultralytics' `1 - probiou(pred, target, eps=1e-7)` per pair, written with candle ops.
fn probiou_loss_native(p: &Tensor, t: &Tensor) -> Result<Tensor> {
    let eps = 1e-7;
    let (x1, y1) = (col(p, 0)?, col(p, 1)?);
    let (x2, y2) = (col(t, 0)?, col(t, 1)?);
    let (a1, b1, c1) = covariance(p)?;
    let (a2, b2, c2) = covariance(t)?;
    let (sa, sb, sc) = ((&a1 + &a2)?, (&b1 + &b2)?, (&c1 + &c2)?);
    let det = (sa.mul(&sb)? - sc.sqr()?)?;
    let den = (&det + eps)?;
    let (dx, dy) = (x1.sub(&x2)?, y1.sub(&y2)?);
    let t1 = ((sa.mul(&dy.sqr()?)? + sb.mul(&dx.sqr()?)?)?.div(&den)? * 0.25)?;
    let t2 = (sc.mul(&dx.neg()?)?.mul(&dy)?.div(&den)? * 0.5)?;
    let d1 = (a1.mul(&b1)? - c1.sqr()?)?.relu()?;
    let d2 = (a2.mul(&b2)? - c2.sqr()?)?.relu()?;
    let root = ((d1.mul(&d2)?.sqrt()? * 4.0)? + eps)?;
    let t3 = ((det.div(&root)? + eps)?.log()? * 0.5)?;
    let bd = (t1 + t2 + t3)?.clamp(eps, 100.0)?;
    let hd = ((bd.neg()?.exp()?.neg()? + 1.0)? + eps)?.sqrt()?;
    // loss = 1 - probiou = 1 - (1 - hd) = hd
    Ok(hd)
}

#[test]
fn probiou_loss_matches_candle_autograd_of_ultralytics_formula() -> Result<()> {
    let mut rng = Rng::new(31);
    let n = 12;
    let (p, t) = (obbs(&mut rng, n), obbs(&mut rng, n));
    let up: Vec<f64> = (0..n).map(|i| 0.5 + 0.125 * i as f64).collect();
    let upt = Tensor::from_vec(up.clone(), n, &CPU)?;
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for scaled in [false, true] {
            let cfg = ProbIou::new().with_reduction(reduction);
            let (v1, v2) = (
                Var::from_vec(p.clone(), (n, 5), &CPU)?,
                Var::from_vec(p.clone(), (n, 5), &CPU)?,
            );
            let tt = Tensor::from_vec(t.clone(), (n, 5), &CPU)?;
            let ours = probiou_loss(&v1, &tt, &cfg)?;
            let per_pair = probiou_loss_native(&v2, &tt)?;
            let native = match reduction {
                Reduction::Mean => per_pair.mean_all()?,
                Reduction::Sum => per_pair.sum_all()?,
                Reduction::None => per_pair,
            };
            let what = format!("probiou {reduction:?} scaled {scaled}");
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
            let g1 = g1.get(&v1).unwrap();
            assert!(g1.abs()?.sum_all()?.to_scalar::<f64>()? > 0.0, "{what}");
            assert_close(
                &format!("{what} grad"),
                g1,
                g2.get(&v2).unwrap(),
                1e-9,
                1e-9,
            )?;
        }
    }
    Ok(())
}

#[test]
fn probiou_ciou_and_f32_match_the_reference() -> Result<()> {
    let mut rng = Rng::new(32);
    let n = 16;
    let (p, t) = (obbs(&mut rng, n), obbs(&mut rng, n));
    // CIoU option, f64, a per-pair upstream: the reference's fused call with that upstream.
    let cfg = ProbIou::new()
        .with_ciou(true)
        .with_reduction(Reduction::None);
    let v = Var::from_vec(p.clone(), (n, 5), &CPU)?;
    let loss = probiou_loss(&v, &Tensor::from_vec(t.clone(), (n, 5), &CPU)?, &cfg)?;
    assert_eq!(loss.dims(), &[n]);
    let up: Vec<f64> = (0..n).map(|i| 1.0 + 0.5 * i as f64).collect();
    let g = loss
        .mul(&Tensor::from_vec(up.clone(), n, &CPU)?)?
        .sum_all()?
        .backward()?;
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
    assert_eq!(loss.to_vec1::<f64>()?, want.values());
    assert_close(
        "probiou ciou grad",
        g.get(&v).unwrap(),
        &Tensor::from_vec(want_g, (n, 5), &CPU)?,
        1e-12,
        1e-12,
    )?;
    // f32 through the CPU backend against the f64 reference of the same (rounded) inputs.
    let cfg = ProbIou::new();
    let p32: Vec<f32> = p.iter().map(|&x| x as f32).collect();
    let t32: Vec<f32> = t.iter().map(|&x| x as f32).collect();
    let v = Var::from_vec(p32.clone(), (n, 5), &CPU)?;
    let loss = probiou_loss(&v, &Tensor::from_vec(t32.clone(), (n, 5), &CPU)?, &cfg)?;
    let g = loss.backward()?;
    let (pw, tw): (Vec<f64>, Vec<f64>) = (
        p32.iter().map(|&x| x.into()).collect(),
        t32.iter().map(|&x| x.into()).collect(),
    );
    let mut g64 = vec![0.0; 5 * n];
    let want = ReferenceBackend
        .probiou_loss(&cfg, Input::new(&pw).with_grad(&mut g64), &tw)
        .unwrap();
    assert_eq!(loss.dtype(), DType::F32);
    assert!((f64::from(loss.to_scalar::<f32>()?) - want.value()).abs() <= 1e-5);
    assert_close(
        "probiou f32 grad",
        g.get(&v).unwrap(),
        &Tensor::from_vec(g64, (n, 5), &CPU)?,
        1e-6,
        1e-4,
    )?;
    // A last dimension other than 5 is a clear error.
    let bad = Tensor::zeros((3, 4), DType::F32, &CPU)?;
    let e = probiou_loss(&bad, &bad, &cfg).unwrap_err().to_string();
    assert!(e.contains("last dimension must be 5"), "{e}");
    Ok(())
}

/// `OBB-6`: the pairwise matrix is the f64 reference's, symmetric for a set against itself
/// (`OBB-7`), each diagonal entry the largest ProbIoU `1 - sqrt(1 - exp(-eps) + eps)`, and the
/// f32 path within `TOL-2` of the reference.
#[test]
fn batch_probiou_is_the_reference_matrix() -> Result<()> {
    let mut rng = Rng::new(33);
    let (n, m, eps) = (7, 5, 1e-7);
    let (a, b) = (obbs(&mut rng, n), obbs(&mut rng, m));
    let ta = Tensor::from_vec(a.clone(), (n, 5), &CPU)?;
    let tb = Tensor::from_vec(b.clone(), (m, 5), &CPU)?;
    let got = batch_probiou(&ta, &tb, eps)?;
    assert_eq!(got.dims(), &[n, m]);
    let mut want = vec![0.0; n * m];
    ReferenceBackend
        .batch_probiou(eps, &a, &b, &mut want)
        .unwrap();
    assert_close(
        "f64",
        &got,
        &Tensor::from_vec(want.clone(), (n, m), &CPU)?,
        0.0,
        0.0,
    )?;
    let own = batch_probiou(&ta, &ta, eps)?.to_vec2::<f64>()?;
    let top = 1.0 - (1.0 - (-eps).exp() + eps).sqrt();
    for (i, row) in own.iter().enumerate() {
        assert!((row[i] - top).abs() <= 1e-12, "{} vs {top}", row[i]);
        for (j, &v) in row.iter().enumerate() {
            assert!((v - own[j][i]).abs() <= 1e-12);
            assert!(v <= top + 1e-12);
        }
    }
    let g32 = batch_probiou(&ta.to_dtype(DType::F32)?, &tb.to_dtype(DType::F32)?, eps)?;
    assert_eq!(g32.dtype(), DType::F32);
    let (a32, b32): (Vec<f64>, Vec<f64>) = (
        a.iter().map(|&x| f64::from(x as f32)).collect(),
        b.iter().map(|&x| f64::from(x as f32)).collect(),
    );
    let mut w32 = vec![0.0; n * m];
    ReferenceBackend
        .batch_probiou(eps, &a32, &b32, &mut w32)
        .unwrap();
    let g = g32.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    common::check_f32("f32", &g, &w32);
    let e = batch_probiou(&ta, &Tensor::zeros((3, 4), DType::F64, &CPU)?, eps).unwrap_err();
    assert!(e.to_string().contains("[M, 5]"), "{e}");
    Ok(())
}
