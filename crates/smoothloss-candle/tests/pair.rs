//! The losses on two aligned operands (boxes, smooth L1, Huber, BCE with logits, sigmoid
//! focal) and pairwise IoU through the candle adapter: value and gradient equal to the f64
//! reference's fused call with the same upstream gradient, the gradient against central finite
//! differences of the value (every loss whose gradient is the true derivative; CIoU's aspect
//! weight carries no gradient, as torchvision, so it is checked against the reference only),
//! and smooth L1 / BCE against candle's autograd of the same loss written with tensor ops.

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use common::{Rng, assert_close};
use smoothloss_candle::*;
use smoothloss_core::{Input, Losses, ReferenceBackend, Upstream};

const CPU: Device = Device::Cpu;

/// `n` boxes `[n, 4]` in `format` with positive widths and heights.
fn boxes(rng: &mut Rng, n: usize, format: BoxFormat) -> Vec<f64> {
    let mut out = Vec::with_capacity(4 * n);
    for _ in 0..n {
        let (x, y) = (rng.uniform(1, 0.0, 10.0)[0], rng.uniform(1, 0.0, 10.0)[0]);
        let (w, h) = (rng.uniform(1, 1.0, 5.0)[0], rng.uniform(1, 1.0, 5.0)[0]);
        out.extend(match format {
            BoxFormat::Xyxy => [x, y, x + w, y + h],
            BoxFormat::Xywh => [x, y, w, h],
            BoxFormat::Cxcywh => [x + w / 2.0, y + h / 2.0, w, h],
        });
    }
    out
}

/// Checks `cfg` on `(x, y)` of `dims`: the adapter against the reference's fused call (value
/// and gradient, upstream 1 and not 1), and, when `fd`, against finite differences.
fn check<C: PairLossCall>(
    what: &str,
    cfg: &C,
    x: &[f64],
    y: &[f64],
    dims: &[usize],
    fd: bool,
) -> Result<()> {
    let v = Var::from_vec(x.to_vec(), dims, &CPU)?;
    let t = Tensor::from_vec(y.to_vec(), dims, &CPU)?;
    let loss = pair_loss(&v, &t, cfg)?;
    let per_item = loss.rank() > 0;
    let n_items = loss.elem_count();
    let up: Vec<f64> = (0..n_items).map(|i| 0.5 + 0.25 * i as f64).collect();
    for scaled in [false, true] {
        let (objective, upstream) = match (per_item, scaled) {
            (false, false) => (loss.clone(), Upstream::ONE),
            (false, true) => ((&loss * 0.75)?, Upstream::Scalar(0.75)),
            (true, false) => (loss.sum_all()?, Upstream::ONE),
            (true, true) => (
                loss.mul(&Tensor::from_vec(up.clone(), loss.dims(), &CPU)?)?
                    .sum_all()?,
                Upstream::PerElement(&up),
            ),
        };
        let g = objective.backward()?;
        let g = g.get(&v).unwrap();
        let mut want_g = vec![0.0; x.len()];
        let want = cfg
            .call(
                &ReferenceBackend,
                Input::new(x).with_grad(&mut want_g).with_upstream(upstream),
                y,
            )
            .unwrap();
        let got: Vec<f64> = loss.flatten_all()?.to_vec1()?;
        assert_eq!(got, want.values(), "{what}: values");
        assert_close(
            &format!("{what} grad (scaled {scaled})"),
            g,
            &Tensor::from_vec(want_g, dims, &CPU)?,
            1e-12,
            1e-12,
        )?;
        if fd && !scaled {
            let value = |x: &[f64]| {
                cfg.call(&ReferenceBackend, Input::new(x), y)
                    .unwrap()
                    .value()
            };
            let h = 1e-6;
            let mut fd_g = vec![0.0; x.len()];
            for i in 0..x.len() {
                let (mut a, mut b) = (x.to_vec(), x.to_vec());
                a[i] += h;
                b[i] -= h;
                fd_g[i] = (value(&a) - value(&b)) / (2.0 * h);
            }
            assert_close(
                &format!("{what} grad vs finite differences"),
                g,
                &Tensor::from_vec(fd_g, dims, &CPU)?,
                1e-6,
                1e-5,
            )?;
        }
    }
    Ok(())
}

#[test]
fn box_losses_every_kind_format_and_reduction() -> Result<()> {
    let mut rng = Rng::new(11);
    let n = 6;
    for format in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh] {
        for kind in BoxLossKind::ALL {
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let mut cfg = BoxLoss::new(kind, format).with_image_size(640.0, 480.0);
                cfg.reduction = reduction;
                let (p, t) = (boxes(&mut rng, n, format), boxes(&mut rng, n, format));
                let what = format!("{kind:?} {format:?} {reduction:?}");
                check(&what, &cfg, &p, &t, &[n, 4], exact_gradient(kind))?;
            }
        }
    }
    // The seed's threshold weighting, and `[B, N, 4]` boxes (`none` gives `[B, N]`).
    let cfg = BoxLoss::iou_loss(0.3, 0.5);
    let (p, t) = (
        boxes(&mut rng, 8, BoxFormat::Xyxy),
        boxes(&mut rng, 8, BoxFormat::Xyxy),
    );
    check("iou_loss", &cfg, &p, &t, &[2, 4, 4], false)?;
    let mut none = BoxLoss::new(BoxLossKind::Giou, BoxFormat::Xyxy);
    none.reduction = Reduction::None;
    let l = box_loss(
        &Tensor::from_vec(p, (2, 4, 4), &CPU)?,
        &Tensor::from_vec(t, (2, 4, 4), &CPU)?,
        &none,
    )?;
    assert_eq!(l.dims(), &[2, 4]);
    Ok(())
}

#[test]
fn elementwise_losses_against_the_reference_and_finite_differences() -> Result<()> {
    let mut rng = Rng::new(12);
    let dims = [3, 5];
    let x = rng.uniform(15, -3.0, 3.0);
    let y = rng.uniform(15, -1.0, 1.0);
    let p = rng.uniform(15, 0.0, 1.0);
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        check(
            "smooth_l1",
            &SmoothL1 {
                beta: 0.7,
                reduction,
            },
            &x,
            &y,
            &dims,
            true,
        )?;
        check(
            "huber",
            &Huber {
                delta: 1.3,
                reduction,
            },
            &x,
            &y,
            &dims,
            true,
        )?;
        let bce = BceWithLogits {
            pos_weight: Some(vec![0.5, 1.0, 2.0, 3.0, 0.0]),
            reduction,
        };
        check("bce_with_logits", &bce, &x, &p, &dims, true)?;
        let focal = SigmoidFocal {
            alpha: 0.25,
            gamma: 2.0,
            reduction,
        };
        check("sigmoid_focal", &focal, &x, &p, &dims, true)?;
    }
    Ok(())
}

#[test]
fn smooth_l1_and_bce_match_candle_autograd_of_the_same_formula() -> Result<()> {
    let mut rng = Rng::new(13);
    let (x, y, p) = (
        rng.uniform(40, -4.0, 4.0),
        rng.uniform(40, -1.0, 1.0),
        rng.uniform(40, 0.0, 1.0),
    );
    let v = Var::from_vec(x, (8, 5), &CPU)?;
    let (t, q) = (
        Tensor::from_vec(y, (8, 5), &CPU)?,
        Tensor::from_vec(p, (8, 5), &CPU)?,
    );
    // smooth L1, beta 0.5: 0.5 d^2 / beta where |d| < beta, else |d| - beta / 2; mean.
    let beta = 0.5;
    let d = v.sub(&t)?;
    let quad = ((d.sqr()? * 0.5)? / beta)?;
    let lin = (d.abs()? - beta / 2.0)?;
    let native = d.abs()?.lt(beta)?.where_cond(&quad, &lin)?.mean_all()?;
    let ours = smooth_l1(
        &v,
        &t,
        &SmoothL1 {
            beta,
            reduction: Reduction::Mean,
        },
    )?;
    assert_close("smooth_l1 value", &ours, &native, 1e-12, 1e-12)?;
    let (g1, g2) = (ours.backward()?, native.backward()?);
    assert_close(
        "smooth_l1 grad",
        g1.get(&v).unwrap(),
        g2.get(&v).unwrap(),
        1e-12,
        1e-9,
    )?;
    // BCE with logits: max(x, 0) - x q + log(1 + exp(-|x|)); sum.
    let native = (v.relu()? - v.mul(&q)?)?
        .add(&(v.abs()?.neg()?.exp()? + 1.0)?.log()?)?
        .sum_all()?;
    let ours = bce_with_logits(
        &v,
        &q,
        &BceWithLogits {
            pos_weight: None,
            reduction: Reduction::Sum,
        },
    )?;
    assert_close("bce value", &ours, &native, 1e-12, 1e-12)?;
    let (g1, g2) = (ours.backward()?, native.backward()?);
    assert_close(
        "bce grad",
        g1.get(&v).unwrap(),
        g2.get(&v).unwrap(),
        1e-12,
        1e-9,
    )?;
    Ok(())
}

#[test]
fn bce_with_large_logits_stays_finite_where_candle_nn_does_not() -> Result<()> {
    let z = Var::new(&[[200.0_f32, -200.0]], &CPU)?;
    let q = Tensor::new(&[[0.0_f32, 1.0]], &CPU)?;
    let ours = bce_with_logits(&z, &q, &BceWithLogits::default())?;
    assert_eq!(ours.to_scalar::<f32>()?, 200.0); // (200 + 200) / 2
    let g = ours.backward()?;
    assert_eq!(g.get(&z).unwrap().to_vec2::<f32>()?, vec![vec![0.5, -0.5]]);
    let theirs = candle_nn::loss::binary_cross_entropy_with_logit(&z, &q)?.to_scalar::<f32>()?;
    assert!(
        !theirs.is_finite(),
        "candle_nn's BCE with logits at +-200: {theirs}"
    );
    Ok(())
}

#[test]
fn f32_pair_losses_match_the_f64_reference() -> Result<()> {
    let mut rng = Rng::new(14);
    let (p, t) = (
        boxes(&mut rng, 64, BoxFormat::Cxcywh),
        boxes(&mut rng, 64, BoxFormat::Cxcywh),
    );
    let cfg = BoxLoss::new(BoxLossKind::Ciou, BoxFormat::Cxcywh);
    let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
    let t32: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    let v = Var::from_vec(p32.clone(), (64, 4), &CPU)?;
    let loss = box_loss(&v, &Tensor::from_vec(t32.clone(), (64, 4), &CPU)?, &cfg)?;
    let g = loss.backward()?;
    let (pw, tw): (Vec<f64>, Vec<f64>) = (
        p32.iter().map(|&v| v.into()).collect(),
        t32.iter().map(|&v| v.into()).collect(),
    );
    let mut g64 = vec![0.0; 256];
    let want = ReferenceBackend
        .box_loss(&cfg, Input::new(&pw).with_grad(&mut g64), &tw)
        .unwrap();
    assert!((f64::from(loss.to_scalar::<f32>()?) - want.value()).abs() <= 1e-6);
    assert_close(
        "ciou f32 grad",
        g.get(&v).unwrap(),
        &Tensor::from_vec(g64, (64, 4), &CPU)?,
        1e-6,
        1e-4,
    )?;
    Ok(())
}

#[test]
fn pair_shape_errors() -> Result<()> {
    let a = Tensor::zeros((3, 4), DType::F32, &CPU)?;
    let b = Tensor::zeros((4, 3), DType::F32, &CPU)?;
    let e = smooth_l1(&a, &b, &SmoothL1::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("differs"), "{e}");
    let e = box_loss(&a.reshape((4, 3))?, &b, &BoxLoss::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("last dimension must be 4"), "{e}");
    let e = huber(&a, &a.to_dtype(DType::U32)?, &Huber::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("float"), "{e}");
    let bad = Tensor::new(&[[2.0_f32, 0.0, 0.0, 0.0]], &CPU)?;
    let e = bce_with_logits(&bad, &bad, &BceWithLogits::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("[0, 1]") || e.contains("target"), "{e}");
    Ok(())
}

#[test]
fn box_iou_is_the_reference_pairwise_iou() -> Result<()> {
    let mut rng = Rng::new(15);
    let (a, b) = (
        boxes(&mut rng, 5, BoxFormat::Xyxy),
        boxes(&mut rng, 3, BoxFormat::Xyxy),
    );
    let iou = box_iou(
        &Tensor::from_vec(a.clone(), (5, 4), &CPU)?,
        &Tensor::from_vec(b.clone(), (3, 4), &CPU)?,
        BoxFormat::Xyxy,
    )?;
    assert_eq!(iou.dims(), &[5, 3]);
    let mut want = vec![0.0; 15];
    ReferenceBackend
        .box_iou(BoxFormat::Xyxy, &a, &b, &mut want)
        .unwrap();
    assert_eq!(iou.flatten_all()?.to_vec1::<f64>()?, want);
    let e = box_iou(
        &Tensor::zeros((2, 3), DType::F32, &CPU)?,
        &Tensor::zeros((2, 4), DType::F32, &CPU)?,
        BoxFormat::Xyxy,
    );
    assert!(e.unwrap_err().to_string().contains("[N, 4]"));
    Ok(())
}

/// Whether a box kind's gradient is the derivative of its value: CIoU's aspect weight and
/// Wise-IoU's enclosing-box factor are detached by definition (BOX-4, BOX-17), so those two
/// are checked against the reference only, not against finite differences.
fn exact_gradient(kind: BoxLossKind) -> bool {
    !matches!(kind, BoxLossKind::Ciou | BoxLossKind::Wiou)
}
