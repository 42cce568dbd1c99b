//! The CPU's dense-detector losses (DFL, varifocal, quality focal, ProbIoU): bit-identical for
//! any thread count and SIMD level on calls split into many blocks (`TOL-3`), against the f64
//! reference on the same rounded inputs (`TOL-2`), the hand-derived ProbIoU gradient against
//! the reference's dual numbers, and the non-finite rules of `TOL-4` equal to the reference's.

use smoothloss_core::{
    DflConvention, DistributionFocal, Input, Losses, ProbIou, QualityFocal, Reduction,
    ReferenceBackend, Varifocal, VarifocalWeight,
};
use smoothloss_cpu::{CpuBackend, SimdLevel};
use smoothloss_spec::cases::detection::obb_pairs;
use smoothloss_spec::cases::{DetectionCall, LossCall};
use smoothloss_spec::random::Rng;
use smoothloss_spec::{covers, kit};

fn large_calls() -> Vec<(String, DetectionCall)> {
    let mut rng = Rng::new(13);
    let mut v = Vec::new();
    let (boxes, bins) = (20_001, 16);
    let rows = 4 * boxes;
    for conv in [DflConvention::Ultralytics, DflConvention::Mmdetection] {
        v.push((
            format!("dfl-{}", conv.as_str()),
            DetectionCall::Dfl {
                cfg: DistributionFocal {
                    convention: conv,
                    reduction: Reduction::Mean,
                },
                logits: rng.vec(rows * bins, -8.0, 8.0),
                rows,
                bins,
                targets: rng.vec(rows, 0.0, 14.9),
            },
        ));
    }
    let n = 150_001;
    let labels: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i % 7 == 0))).collect();
    let scores: Vec<f64> = labels.iter().map(|l| l * rng.unit()).collect();
    for w in [
        VarifocalWeight::Ultralytics,
        VarifocalWeight::MmdetIouWeighted,
    ] {
        v.push((
            format!("varifocal-{}", w.as_str()),
            DetectionCall::Varifocal {
                cfg: Varifocal {
                    weight: w,
                    ..Varifocal::ultralytics()
                },
                logits: rng.vec(n, -10.0, 10.0),
                scores: scores.clone(),
                labels: (w == VarifocalWeight::Ultralytics).then(|| labels.clone()),
            },
        ));
    }
    let (qr, qc) = (3_001, 80);
    v.push((
        "qfl".into(),
        DetectionCall::Qfl {
            cfg: QualityFocal::new().with_reduction(Reduction::Sum),
            logits: rng.vec(qr * qc, -8.0, 8.0),
            rows: qr,
            classes: qc,
            labels: (0..qr).map(|_| rng.below(qc + 1) as i64).collect(),
            scores: rng.vec(qr, 0.0, 1.0),
        },
    ));
    for ciou in [false, true] {
        let (pred, target) = obb_pairs(&mut rng, 40_001, 1.0);
        v.push((
            format!("probiou-ciou-{ciou}"),
            DetectionCall::ProbIou {
                cfg: ProbIou::new().with_ciou(ciou),
                pred,
                target,
            },
        ));
    }
    v
}

/// TOL-3 and TOL-2: 1, 2 and 3 threads and both SIMD levels give the same bits; the result
/// agrees with the f64 reference on the rounded inputs.
#[test]
fn detection_losses_are_bit_identical_for_any_thread_count_and_match_the_reference() {
    covers!("TOL-3");
    let backends = [
        CpuBackend::with_threads(1),
        CpuBackend::with_threads(2),
        CpuBackend::with_threads(3),
        CpuBackend::with_threads(2).with_simd_level(SimdLevel::Scalar),
    ];
    let up = smoothloss_core::Upstream::ONE;
    for (id, call) in large_calls() {
        let outs: Vec<_> = backends
            .iter()
            .map(|b| call.run::<f32, _>(b, up, true).unwrap())
            .collect();
        for o in &outs[1..] {
            kit::assert_same_bits_f64(&o.loss, &outs[0].loss);
            kit::assert_same_bits_f64(o.grad.as_ref().unwrap(), outs[0].grad.as_ref().unwrap());
        }
        let want = call
            .round::<f32>()
            .run::<f64, _>(&ReferenceBackend, up, true)
            .unwrap();
        let rel = kit::rel_error(outs[0].loss[0], want.loss[0]);
        assert!(
            rel < 2e-6,
            "{id}: loss {} vs {} ({rel})",
            outs[0].loss[0],
            want.loss[0]
        );
        let g = outs[0].grad.as_ref().unwrap();
        let w = want.grad.as_ref().unwrap();
        let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (k, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale + 1e-5 * b.abs(),
                "{id} grad[{k}]: {a} vs {b}"
            );
        }
    }
}

/// OBB-5: the CPU's hand-derived ProbIoU gradient (f64 per pair) equals the reference's dual
/// numbers to f32 rounding, with and without CIoU and floor, near and far pairs, zero sizes.
#[test]
fn probiou_hand_gradient_matches_the_dual_numbers() {
    covers!("OBB-5", "OBB-4");
    let mut rng = Rng::new(5);
    for (jitter, ciou, floor) in [
        (0.2, false, 0.0),
        (1.0, true, 0.0),
        (5.0, false, 0.3),
        (30.0, true, 0.0),
    ] {
        let (mut pred, target) = obb_pairs(&mut rng, 3000, jitter);
        pred[2] = 0.0; // a zero width: finite loss and gradient
        pred[5 + 3] = 0.0;
        let pf: Vec<f32> = pred.iter().map(|&v| v as f32).collect();
        let tf: Vec<f32> = target.iter().map(|&v| v as f32).collect();
        let pr: Vec<f64> = pf.iter().map(|&v| f64::from(v)).collect();
        let tr: Vec<f64> = tf.iter().map(|&v| f64::from(v)).collect();
        let cfg = ProbIou::new()
            .with_ciou(ciou)
            .with_floor(floor)
            .with_reduction(Reduction::None);
        let mut g = vec![0.0f32; pf.len()];
        let got = CpuBackend::new()
            .probiou_loss(&cfg, Input::new(&pf).with_grad(&mut g), &tf)
            .unwrap();
        let mut gw = vec![0.0f64; pr.len()];
        let want = ReferenceBackend
            .probiou_loss(&cfg, Input::new(&pr).with_grad(&mut gw), &tr)
            .unwrap();
        for (i, (a, b)) in got.values().iter().zip(want.values()).enumerate() {
            assert!(
                a.is_finite() && (a - b).abs() <= 1e-6 * b.abs() + 1e-7,
                "pair {i}: {a} vs {b}"
            );
        }
        for (k, (a, b)) in g.iter().zip(&gw).enumerate() {
            let a = f64::from(*a);
            assert!(
                a.is_finite() && (a - b).abs() <= 1e-5 * b.abs() + 1e-7,
                "grad[{k}]: {a} vs {b}"
            );
        }
    }
}

/// TOL-4: the CPU gives the reference's NaN pattern for non-finite logits and coordinates.
#[test]
fn non_finite_inputs_give_the_references_nan_pattern() {
    covers!("TOL-4");
    let same_nans = |id: &str, a: &[f64], b: &[f64]| {
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x.is_nan(), y.is_nan(), "{id}[{k}]: {x} vs {y}");
        }
    };
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    let mut rng = Rng::new(3);
    let calls: Vec<DetectionCall> = vec![
        DetectionCall::Dfl {
            cfg: DistributionFocal::ultralytics(),
            logits: rng.vec(8 * 16, -5.0, 5.0),
            rows: 8,
            bins: 16,
            targets: rng.vec(8, 0.0, 15.0),
        },
        DetectionCall::Varifocal {
            cfg: Varifocal::mmdetection().with_reduction(Reduction::None),
            logits: rng.vec(9, -5.0, 5.0),
            scores: (0..9).map(|i| if i % 2 == 0 { 0.5 } else { 0.0 }).collect(),
            labels: None,
        },
        DetectionCall::Qfl {
            cfg: QualityFocal::new().with_reduction(Reduction::None),
            logits: rng.vec(3 * 4, -5.0, 5.0),
            rows: 3,
            classes: 4,
            labels: vec![0, 4, 2],
            scores: vec![0.3, 0.0, 0.9],
        },
    ];
    for call in calls {
        for (k, &s) in specials.iter().enumerate() {
            let mut c = call.clone();
            match &mut c {
                DetectionCall::Dfl { logits, .. }
                | DetectionCall::Varifocal { logits, .. }
                | DetectionCall::Qfl { logits, .. } => logits[2 * k + 1] = f64::from(s),
                _ => unreachable!(),
            }
            let up = smoothloss_core::Upstream::ONE;
            let got = c.run::<f32, _>(&CpuBackend::new(), up, true).unwrap();
            let want = c.run::<f64, _>(&ReferenceBackend, up, true).unwrap();
            let id = format!("{:?}", LossCall::Detection(c.clone()))
                .chars()
                .take(12)
                .collect::<String>();
            same_nans(&id, &got.loss, &want.loss);
            same_nans(&id, got.grad.as_ref().unwrap(), want.grad.as_ref().unwrap());
            assert!(
                got.loss.iter().any(|v| v.is_nan()),
                "{id}: the special value had no effect"
            );
        }
    }
    for &s in &specials {
        let mut p = [1.0f32, 2.0, 3.0, 4.0, 0.1, 1.0, 2.0, 3.0, 4.0, 0.1];
        let t = [1.5f32, 2.0, 3.0, 4.0, 0.3, 1.0, 2.5, 3.0, 4.0, 0.2];
        p[7] = s;
        let cfg = ProbIou::new().with_reduction(Reduction::None);
        let mut g = [0.0f32; 10];
        let l = CpuBackend::new()
            .probiou_loss(&cfg, Input::new(&p).with_grad(&mut g), &t)
            .unwrap();
        let v = l.per_item().unwrap();
        assert!(v[0].is_finite() && v[1].is_nan());
        assert!(g[..5].iter().all(|x| x.is_finite()) && g[5..].iter().all(|x| x.is_nan()));
    }
}
