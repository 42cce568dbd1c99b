//! Every loss of the candle adapter on candle's CUDA device (feature `cuda`) against the same
//! call on the CPU in `f64` (the reference; the CPU adapter is itself checked against candle's
//! autograd by the other test files): the loss and the gradient that candle's backward
//! returns, with an upstream gradient that is not 1, at the spec's `f32` tolerance (`TOL-2`;
//! the kernels of the non-CE losses compute in f64 from `f32` data). The inputs are rounded
//! to `f32` first, so both sides see the same values.
//!
//! These need a GPU: `cargo test -p smoothloss-candle --features cuda --test cuda -- --ignored`
//! (built beside candle's own CUDA kernels, which need `nvcc` at build time).
#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use common::{Rng, check_f32, check_within};
use smoothloss_candle::*;

/// The CUDA device, or the test's failure message.
fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA device (these tests are ignored without one)")
}

/// `f32`-representable values.
fn rounded(v: Vec<f64>) -> Vec<f64> {
    v.into_iter().map(|x| x as f32 as f64).collect()
}

/// A tensor of `values` on `dev` in `dtype`.
fn on(dev: &Device, dtype: DType, values: &[f64], dims: &[usize]) -> Result<Tensor> {
    Tensor::from_slice(values, dims, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(dev)
}

/// A tensor's values, flattened, as f64 on the host.
fn host(t: &Tensor) -> Result<Vec<f64>> {
    t.flatten_all()?
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .to_vec1::<f64>()
}

/// The loss (flattened) and the gradient of `1.5 * sum(loss)` with respect to `x`, from
/// `loss(x, dev, dtype)`, as f64 on the host.
fn value_and_grad(
    dev: &Device,
    dtype: DType,
    x: &[f64],
    dims: &[usize],
    loss: &dyn Fn(&Tensor, &Device, DType) -> Result<Tensor>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let v = Var::from_tensor(&on(dev, dtype, x, dims)?)?;
    let l = loss(v.as_tensor(), dev, dtype)?;
    let grads = (l.sum_all()? * 1.5)?.backward()?;
    let g = grads.get(v.as_tensor()).expect("a gradient for x");
    Ok((host(&l)?, host(g)?))
}

/// `loss` on the GPU in `f32` against the CPU in `f64`: values and gradients at `TOL-2`.
fn check(
    what: &str,
    x: &[f64],
    dims: &[usize],
    loss: &dyn Fn(&Tensor, &Device, DType) -> Result<Tensor>,
) -> Result<()> {
    let (want_l, want_g) = value_and_grad(&Device::Cpu, DType::F64, x, dims, loss)?;
    let (got_l, got_g) = value_and_grad(&gpu(), DType::F32, x, dims, loss)?;
    check_f32(&format!("{what}: loss"), &got_l, &want_l);
    check_f32(&format!("{what}: grad"), &got_g, &want_g);
    Ok(())
}

/// `n` boxes `xyxy` around a 50 x 50 field and targets near them.
fn boxes(rng: &mut Rng, n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let v = rng.uniform(4, 0.0, 1.0);
        let (x, y, w, h) = (
            50.0 * v[0],
            50.0 * v[1],
            1.0 + 20.0 * v[2],
            1.0 + 20.0 * v[3],
        );
        t.extend_from_slice(&[x, y, x + w, y + h]);
        let d = rng.uniform(4, -3.0, 3.0);
        p.extend_from_slice(&[x + d[0], y + d[1], x + w + d[2], y + h * 0.8 + d[3]]);
    }
    (rounded(p), rounded(t))
}

#[test]
#[ignore = "needs a CUDA device"]
fn cross_entropy_on_cuda_matches_the_reference() -> Result<()> {
    let mut rng = Rng::new(11);
    let (n, c) = (37, 300);
    let x = rounded(rng.uniform(n * c, -8.0, 8.0));
    let y: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
    for (name, cfg) in [
        ("plain", CrossEntropy::new()),
        ("smoothing", CrossEntropy::smooth_loss(0.1)),
        (
            "ignore, sum",
            CrossEntropy::smooth_loss(0.2)
                .with_ignore_index(Some(i64::from(y[3])))
                .with_reduction(Reduction::Sum),
        ),
    ] {
        check(
            &format!("cross_entropy {name}"),
            &x,
            &[n, c],
            &|x, dev, _| {
                let t = Tensor::from_slice(&y, n, dev)?;
                cross_entropy(x, &t, &cfg)
            },
        )?;
    }
    Ok(())
}

#[test]
#[ignore = "needs a CUDA device"]
fn pair_losses_on_cuda_match_the_reference() -> Result<()> {
    let mut rng = Rng::new(12);
    let n = 257;
    let (p, t) = boxes(&mut rng, n);
    for kind in [BoxLossKind::Giou, BoxLossKind::Ciou, BoxLossKind::Siou] {
        let cfg = BoxLoss::new(kind, BoxFormat::Xyxy);
        check(&format!("box_loss {kind:?}"), &p, &[n, 4], &|x, dev, dt| {
            box_loss(x, &on(dev, dt, &t, &[n, 4])?, &cfg)
        })?;
    }
    let z = rounded(rng.uniform(4 * n, -6.0, 6.0));
    let q = rounded(rng.uniform(4 * n, 0.0, 1.0));
    check("smooth_l1", &z, &[n, 4], &|x, dev, dt| {
        smooth_l1(x, &on(dev, dt, &q, &[n, 4])?, &SmoothL1::default())
    })?;
    check("bce_with_logits", &z, &[n, 4], &|x, dev, dt| {
        bce_with_logits(x, &on(dev, dt, &q, &[n, 4])?, &BceWithLogits::default())
    })?;
    check("sigmoid_focal", &z, &[n, 4], &|x, dev, dt| {
        sigmoid_focal(x, &on(dev, dt, &q, &[n, 4])?, &SigmoidFocal::default())
    })?;
    // Oriented boxes (cx, cy, w, h, angle).
    let mut ob = Vec::new();
    let mut ot = Vec::new();
    for _ in 0..n {
        let v = rng.uniform(5, 0.0, 1.0);
        ot.extend_from_slice(&[
            20.0 * v[0],
            20.0 * v[1],
            1.0 + 5.0 * v[2],
            1.0 + 5.0 * v[3],
            v[4],
        ]);
        let d = rng.uniform(5, -0.5, 0.5);
        ob.extend_from_slice(&[
            20.0 * v[0] + d[0],
            20.0 * v[1] + d[1],
            1.0 + 5.0 * v[2] + d[2],
            1.0 + 5.0 * v[3] + d[3],
            v[4] + d[4],
        ]);
    }
    let (ob, ot) = (rounded(ob), rounded(ot));
    check("probiou_loss", &ob, &[n, 5], &|x, dev, dt| {
        probiou_loss(x, &on(dev, dt, &ot, &[n, 5])?, &ProbIou::new())
    })?;
    Ok(())
}

#[test]
#[ignore = "needs a CUDA device"]
fn dense_detector_losses_on_cuda_match_the_reference() -> Result<()> {
    let mut rng = Rng::new(13);
    // Distribution focal loss: 4 rows a box, 16 bins, targets inside [0, 15).
    let (rows, bins) = (4 * 33, 16);
    let z = rounded(rng.uniform(rows * bins, -4.0, 4.0));
    let d = rounded(rng.uniform(rows, 0.0, 14.9));
    for cfg in [
        DistributionFocal::ultralytics(),
        DistributionFocal::ultralytics().with_reduction(Reduction::Sum),
    ] {
        check("distribution_focal", &z, &[rows, bins], &|x, dev, dt| {
            distribution_focal(x, &on(dev, dt, &d, &[rows])?, &cfg)
        })?;
    }
    // Varifocal: scores, and labels for ultralytics' weight (a three-operand op).
    let (r, c) = (41, 7);
    let x = rounded(rng.uniform(r * c, -5.0, 5.0));
    let s = rounded(rng.uniform(r * c, 0.0, 1.0));
    let lab: Vec<f64> = (0..r * c).map(|i| f64::from(i % 3 == 0)).collect();
    check("varifocal ultralytics", &x, &[r, c], &|x, dev, dt| {
        let (s, l) = (on(dev, dt, &s, &[r, c])?, on(dev, dt, &lab, &[r, c])?);
        varifocal(x, &s, Some(&l), &Varifocal::ultralytics())
    })?;
    check("varifocal mmdetection", &x, &[r, c], &|x, dev, dt| {
        varifocal(
            x,
            &on(dev, dt, &s, &[r, c])?,
            None,
            &Varifocal::mmdetection(),
        )
    })?;
    // Quality focal loss: u32 labels in [0, c] (c: background), one score a row.
    let labels: Vec<u32> = (0..r).map(|_| rng.below(c + 1) as u32).collect();
    let score = rounded(rng.uniform(r, 0.0, 1.0));
    check("quality_focal", &x, &[r, c], &|x, dev, dt| {
        let l = Tensor::from_slice(&labels, r, dev)?;
        quality_focal(x, &l, &on(dev, dt, &score, &[r])?, &QualityFocal::new())
    })?;
    Ok(())
}

#[test]
#[ignore = "needs a CUDA device"]
fn wise_iou_v3_on_cuda_matches_the_reference_and_carries_its_state() -> Result<()> {
    let mut rng = Rng::new(14);
    let cfg = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy);
    let (mut on_gpu, mut on_cpu) = (WiseIouState::new(), WiseIouState::new());
    for step in 0..3 {
        let n = 500;
        let (p, t) = boxes(&mut rng, n);
        let (mut cpu_state, mut gpu_state) = (on_cpu, on_gpu);
        let (want_l, want_g) =
            value_and_grad(&Device::Cpu, DType::F64, &p, &[n, 4], &|x, d, dt| {
                wise_iou_v3(x, &on(d, dt, &t, &[n, 4])?, &cfg, &mut cpu_state.clone())
            })?;
        // The closure's state is a copy: run once more on each side to carry the state.
        let (got_l, got_g) = value_and_grad(&gpu(), DType::F32, &p, &[n, 4], &|x, d, dt| {
            wise_iou_v3(x, &on(d, dt, &t, &[n, 4])?, &cfg, &mut gpu_state.clone())
        })?;
        check_f32(&format!("wise_iou_v3 step {step}: loss"), &got_l, &want_l);
        check_f32(&format!("wise_iou_v3 step {step}: grad"), &got_g, &want_g);
        let (dev, cpu) = (gpu(), Device::Cpu);
        wise_iou_v3(
            &on(&dev, DType::F32, &p, &[n, 4])?,
            &on(&dev, DType::F32, &t, &[n, 4])?,
            &cfg,
            &mut gpu_state,
        )?;
        wise_iou_v3(
            &on(&cpu, DType::F64, &p, &[n, 4])?,
            &on(&cpu, DType::F64, &t, &[n, 4])?,
            &cfg,
            &mut cpu_state,
        )?;
        assert!(
            (gpu_state.mean - cpu_state.mean).abs() <= 1e-6 * cpu_state.mean,
            "step {step}: {gpu_state:?} vs {cpu_state:?}"
        );
        assert_ne!(cpu_state.mean, on_cpu.mean, "the state moved");
        (on_gpu, on_cpu) = (gpu_state, cpu_state);
    }
    Ok(())
}

#[test]
#[ignore = "needs a CUDA device"]
fn pairwise_matrices_on_cuda_match_the_reference() -> Result<()> {
    let mut rng = Rng::new(15);
    let (n, m) = (33, 70);
    let (a, _) = boxes(&mut rng, n);
    let (b, _) = boxes(&mut rng, m);
    let (dev, cpu) = (gpu(), Device::Cpu);
    let got = host(&box_iou(
        &on(&dev, DType::F32, &a, &[n, 4])?,
        &on(&dev, DType::F32, &b, &[m, 4])?,
        BoxFormat::Xyxy,
    )?)?;
    let want = host(&box_iou(
        &on(&cpu, DType::F64, &a, &[n, 4])?,
        &on(&cpu, DType::F64, &b, &[m, 4])?,
        BoxFormat::Xyxy,
    )?)?;
    check_f32("box_iou", &got, &want);
    // ProbIoU of boxes read as (cx, cy, w, h, angle): the first five numbers of each box pair.
    let five = |v: &[f64], k: usize| -> Vec<f64> {
        (0..k)
            .flat_map(|i| {
                let b = &v[4 * i..4 * i + 4];
                [
                    b[0],
                    b[1],
                    1.0 + b[2] - b[0].min(b[2]),
                    1.0 + (b[3] - b[1]).abs(),
                    0.3,
                ]
            })
            .map(|x| x as f32 as f64)
            .collect()
    };
    let (a5, b5) = (five(&a, n), five(&b, m));
    let got = host(&batch_probiou(
        &on(&dev, DType::F32, &a5, &[n, 5])?,
        &on(&dev, DType::F32, &b5, &[m, 5])?,
        1e-7,
    )?)?;
    let want = host(&batch_probiou(
        &on(&cpu, DType::F64, &a5, &[n, 5])?,
        &on(&cpu, DType::F64, &b5, &[m, 5])?,
        1e-7,
    )?)?;
    check_f32("batch_probiou", &got, &want);
    Ok(())
}

#[test]
#[ignore = "needs a CUDA device"]
fn cuda_errors_name_the_supported_dtype_and_bad_targets() -> Result<()> {
    let dev = gpu();
    let x = Tensor::zeros((4, 3), DType::F64, &dev)?;
    let s = Tensor::zeros((4, 3), DType::F64, &dev)?;
    let e = varifocal(&x, &s, None, &Varifocal::mmdetection()).unwrap_err();
    assert!(e.to_string().contains("f32"), "{e}");
    // A score outside [0, 1] is found on the device and reported as on the host.
    let x = Tensor::zeros((4, 3), DType::F32, &dev)?;
    let s = Tensor::full(1.5f32, (4, 3), &dev)?;
    let e = varifocal(&x, &s, None, &Varifocal::mmdetection()).unwrap_err();
    let host = varifocal(
        &x.to_device(&Device::Cpu)?,
        &s.to_device(&Device::Cpu)?,
        None,
        &Varifocal::mmdetection(),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), host.to_string());
    Ok(())
}

#[test]
#[ignore = "needs a CUDA device"]
fn linear_cross_entropy_on_cuda_matches_the_reference() -> Result<()> {
    let mut rng = Rng::new(16);
    let (n, h, v) = (37, 64, 1000);
    let hid = rounded(rng.uniform(n * h, -1.0, 1.0));
    let w = rounded(rng.uniform(v * h, -0.5, 0.5));
    let y: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    // Both gradients of `1.5 * sum(loss)`, from (hidden, weight) on `dev` in `dt`.
    let run = |dev: &Device, dt: DType, cfg: &LinearCrossEntropy| -> Result<[Vec<f64>; 3]> {
        let hv = Var::from_tensor(&on(dev, dt, &hid, &[n, h])?)?;
        let wv = Var::from_tensor(&on(dev, dt, &w, &[v, h])?)?;
        let t = Tensor::from_slice(&y, n, dev)?;
        let l = linear_cross_entropy(hv.as_tensor(), wv.as_tensor(), &t, cfg)?;
        let g = (l.sum_all()? * 1.5)?.backward()?;
        Ok([
            host(&l)?,
            host(g.get(hv.as_tensor()).expect("d hidden"))?,
            host(g.get(wv.as_tensor()).expect("d weight"))?,
        ])
    };
    let ce = CrossEntropy::smooth_loss(0.1).with_z_loss(1e-4);
    for cfg in [
        LinearCrossEntropy::new(ce.clone()),
        LinearCrossEntropy::new(ce.clone().with_reduction(Reduction::None)).with_chunk_rows(16),
    ] {
        let want = run(&Device::Cpu, DType::F64, &cfg)?;
        let got = run(&gpu(), DType::F32, &cfg)?;
        // LCE-6's f32 bound (spec/formulas/tolerance.md, `Tolerance::LCE_F32`).
        for (what, (g, w)) in ["loss", "d hidden", "d weight"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            check_within(
                &format!("linear_cross_entropy {what}"),
                g,
                w,
                [2e-7, 4e-6, 4e-7],
            );
        }
    }
    // Probability targets are refused on the device with a clear error.
    let dev = gpu();
    let q = Tensor::full(1.0f32 / v as f32, (n, v), &dev)?;
    let e = linear_cross_entropy(
        &on(&dev, DType::F32, &hid, &[n, h])?,
        &on(&dev, DType::F32, &w, &[v, h])?,
        &q,
        &LinearCrossEntropy::new(CrossEntropy::new()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("class indices"), "{e}");
    Ok(())
}
