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
        CpuBackend::with_threads(2).with_simd_level(SimdLevel::Avx2Fma),
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

mod adversarial {
    //! Any lengths, shapes, parameters and values (NaN, infinities, huge, tiny) into the
    //! front door of the CPU and the reference: never a panic, and the same error on both.
    use proptest::prelude::*;
    use smoothloss_core::{
        DflConvention, DistributionFocal, Input, LossError, Losses, ProbIou, QualityFocal,
        Reduction, ReferenceBackend, Upstream, Varifocal, VarifocalWeight,
    };
    use smoothloss_cpu::CpuBackend;

    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![
            4 => -20.0f32..20.0,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
            1 => Just(3.0e38f32),
            1 => Just(-1.0e-40f32),
            1 => Just(0.0f32),
            1 => Just(1.0f32),
        ]
    }

    fn reduction() -> impl Strategy<Value = Reduction> {
        prop_oneof![
            Just(Reduction::None),
            Just(Reduction::Mean),
            Just(Reduction::Sum)
        ]
    }

    /// Both errors alike (by Debug, NaN parameters included), or both values.
    fn same(
        a: &Result<smoothloss_core::Loss, LossError>,
        b: &Result<smoothloss_core::Loss, LossError>,
    ) -> Result<(), TestCaseError> {
        match (a, b) {
            (Ok(x), Ok(y)) => prop_assert_eq!(x.values().len(), y.values().len()),
            (Err(x), Err(y)) => prop_assert_eq!(format!("{x:?}"), format!("{y:?}")),
            _ => prop_assert!(false, "cpu {a:?} vs reference {b:?}"),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn dfl_never_panics(
            rows in 0usize..10, bins in 0usize..6, extra in 0usize..3, tl in 0usize..12,
            mm in any::<bool>(), red in reduction(), shaped in any::<bool>(), grad in any::<bool>(),
            vals in proptest::collection::vec(value(), 0..80), per in any::<bool>(),
        ) {
            let n = rows * bins + extra;
            let z: Vec<f32> = (0..n).map(|i| vals.get(i % vals.len().max(1)).copied().unwrap_or(0.5)).collect();
            let t: Vec<f32> = (0..tl).map(|i| vals.get(i).copied().unwrap_or(1.5).abs().min(3.0)).collect();
            let conv = if mm { DflConvention::Mmdetection } else { DflConvention::Ultralytics };
            let cfg = DistributionFocal { convention: conv, reduction: red };
            let up: Vec<f64> = vec![0.5; rows.max(1)];
            let run_f32 = |b: &dyn Fn(Input<'_, f32>) -> Result<smoothloss_core::Loss, LossError>| {
                let mut g = vec![0.0f32; n];
                let mut i = Input::new(&z[..]);
                if shaped { i = i.shaped(rows, bins); }
                if grad { i = i.with_grad(&mut g); }
                if per { i = i.with_upstream(Upstream::PerElement(&up)); }
                b(i)
            };
            let a = run_f32(&|i| CpuBackend::new().distribution_focal(&cfg, i, &t));
            let b = run_f32(&|i| ReferenceBackend.distribution_focal(&cfg, i, &t));
            same(&a, &b)?;
        }

        #[test]
        fn varifocal_and_qfl_never_panic(
            n in 0usize..20, sl in 0usize..22, ll in 0usize..22, w in 0usize..3,
            gamma in prop_oneof![Just(2.0), Just(0.0), Just(-1.0), Just(f64::NAN), 0.1..4.0f64],
            avg in prop_oneof![Just(None), Just(Some(2.0)), Just(Some(0.0))], red in reduction(),
            vals in proptest::collection::vec(value(), 1..40), classes in 0usize..5,
        ) {
            let x: Vec<f32> = (0..n).map(|i| vals[i % vals.len()]).collect();
            let s: Vec<f32> = (0..sl).map(|i| vals[(i + 1) % vals.len()].abs().min(1.0)).collect();
            let l: Vec<f32> = (0..ll).map(|i| f32::from(u8::from(i % 3 == 0))).collect();
            let weight = [VarifocalWeight::Ultralytics, VarifocalWeight::MmdetIouWeighted, VarifocalWeight::Mmdet][w];
            let cfg = Varifocal { alpha: 0.75, gamma, weight, reduction: red, avg_factor: avg };
            let a = CpuBackend::new().varifocal(&cfg, &x[..], (&s[..], &l[..]));
            let b = ReferenceBackend.varifocal(&cfg, &x[..], (&s[..], &l[..]));
            same(&a, &b)?;
            let a = CpuBackend::new().varifocal(&cfg, &x[..], &s[..]);
            let b = ReferenceBackend.varifocal(&cfg, &x[..], &s[..]);
            same(&a, &b)?;
            let labels: Vec<i64> = (0..ll).map(|i| i as i64 % 7 - 1).collect();
            let q = QualityFocal { beta: gamma, reduction: red, avg_factor: avg };
            let rows = n.checked_div(classes).unwrap_or(0);
            let mut g1 = vec![0.0f32; n];
            let mut g2 = vec![0.0f32; n];
            let a = CpuBackend::new().quality_focal(&q, Input::matrix(&x, rows, classes).with_grad(&mut g1), &labels, &s);
            let b = ReferenceBackend.quality_focal(&q, Input::matrix(&x, rows, classes).with_grad(&mut g2), &labels, &s);
            same(&a, &b)?;
        }

        #[test]
        fn probiou_never_panics(
            n in 0usize..4, extra in 0usize..7, tl in 0usize..22, m in 0usize..4, ol in 0usize..17,
            eps in prop_oneof![Just(1e-7), Just(0.0), Just(1e-45), Just(f64::INFINITY)],
            ciou in any::<bool>(), red in reduction(),
            vals in proptest::collection::vec(value(), 1..40),
        ) {
            let len = 5 * n + extra;
            let p: Vec<f32> = (0..len).map(|i| vals[i % vals.len()]).collect();
            let t: Vec<f32> = (0..tl).map(|i| vals[(i + 3) % vals.len()]).collect();
            let cfg = ProbIou { eps, floor: 0.0, ciou, reduction: red };
            let mut g1 = vec![0.0f32; len];
            let mut g2 = vec![0.0f32; len];
            let a = CpuBackend::new().probiou_loss(&cfg, Input::new(&p).with_grad(&mut g1), &t);
            let b = ReferenceBackend.probiou_loss(&cfg, Input::new(&p).with_grad(&mut g2), &t);
            same(&a, &b)?;
            let b2: Vec<f32> = (0..5 * m).map(|i| vals[(i + 5) % vals.len()]).collect();
            let mut o1 = vec![0.0f32; ol];
            let mut o2 = vec![0.0f32; ol];
            let a = CpuBackend::new().batch_probiou(eps, &p, &b2, &mut o1);
            let b = ReferenceBackend.batch_probiou(eps, &p, &b2, &mut o2);
            match (&a, &b) {
                (Ok(()), Ok(())) => {
                    for (x, y) in o1.iter().zip(&o2) {
                        prop_assert_eq!(x.is_nan(), y.is_nan());
                    }
                }
                (Err(x), Err(y)) => prop_assert_eq!(format!("{x:?}"), format!("{y:?}")),
                _ => prop_assert!(false, "cpu {a:?} vs reference {b:?}"),
            }
        }
    }
}

/// A fuzz finding (fixed): mmdetection's weights with an empty label slice (`(scores, &[])`,
/// which the plan accepts as "no labels") panicked on the CPU (`% 0`) and in the reference
/// (out-of-bounds); the front door now drops it. Same values as with the scores alone.
#[test]
fn an_empty_label_slice_with_mmdetections_weight_is_no_labels() {
    let x = [0.5f32, -1.0, 2.0];
    let s = [0.0f32, 0.7, 0.0];
    let cfg = Varifocal::mmdetection();
    let none: &[f32] = &[];
    let a = CpuBackend::new()
        .varifocal(&cfg, &x[..], (&s[..], none))
        .unwrap();
    let r = ReferenceBackend
        .varifocal(&cfg, &x[..], (&s[..], none))
        .unwrap();
    let plain = CpuBackend::new().varifocal(&cfg, &x[..], &s[..]).unwrap();
    assert_eq!(a, plain);
    assert!((a.value() - r.value()).abs() <= 1e-6 * r.value().abs());
}
