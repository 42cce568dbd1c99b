//! The dense-detector device-buffer entry points (`probiou_loss_dev`, `batch_probiou_dev`)
//! against the host front door of the same backend and the f64 reference (ignored without a
//! device), and their shape errors against the host's.

use super::*;
use smoothloss_core::ProbIou;

/// `n` pairs `[n, 5]`: targets anywhere, predictions near them.
fn obb_pairs(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let tb = [
            rng.range_f32(-50.0, 50.0),
            rng.range_f32(-50.0, 50.0),
            rng.range_f32(1.0, 30.0),
            rng.range_f32(1.0, 30.0),
            rng.range_f32(-3.0, 3.0),
        ];
        p.extend([
            tb[0] + rng.range_f32(-2.0, 2.0),
            tb[1] + rng.range_f32(-2.0, 2.0),
            tb[2] * rng.range_f32(0.7, 1.3),
            tb[3] * rng.range_f32(0.7, 1.3),
            tb[4] + rng.range_f32(-0.3, 0.3),
        ]);
        t.extend(tb);
    }
    (p, t)
}

#[test]
#[ignore = "needs a CUDA device"]
fn probiou_device_entries_match_the_front_door_and_the_reference() {
    let b = backend!();
    let st = b.stream().clone();
    let mut rng = Rng::new(1313);
    let n = 1001;
    let (p, t) = obb_pairs(&mut rng, n);
    let (pd, td) = (st.clone_htod(&p).unwrap(), st.clone_htod(&t).unwrap());
    for cfg in [
        ProbIou::new().with_reduction(Reduction::None),
        ProbIou::new().with_ciou(true),
        ProbIou::new()
            .with_floor(0.3)
            .with_reduction(Reduction::Sum),
    ] {
        let mut gd = st.alloc_zeros::<f32>(5 * n).unwrap();
        let out = b
            .probiou_loss_dev(
                &cfg,
                Io::Separate {
                    input: &pd,
                    grad: &mut gd,
                },
                &td,
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap();
        let mut g = vec![0.0f32; 5 * n];
        let host = b
            .probiou_loss(&cfg, Input::new(&p).with_grad(&mut g), &t)
            .unwrap();
        // The same kernel on the same numbers: the same bits.
        assert_eq!(out.to_host().unwrap(), host.values(), "{cfg:?}");
        assert_eq!(st.clone_dtoh(&gd).unwrap(), g, "{cfg:?}");
        let (pw, tw) = (widen(&p), widen(&t));
        let mut gw = vec![0.0f64; 5 * n];
        let want = ReferenceBackend
            .probiou_loss(&cfg, Input::new(&pw).with_grad(&mut gw), &tw)
            .unwrap();
        assert_close("probiou loss", host.values(), want.values(), 1e-6, 1e-7);
        let gw32: Vec<f32> = gw.iter().map(|&v| v as f32).collect();
        assert_grad("probiou grad", &g, &gw32, 1e-5, 1e-6);
        // In place: the gradient over the predictions.
        let mut inplace = st.clone_htod(&p).unwrap();
        let again = b
            .probiou_loss_dev(
                &cfg,
                Io::InPlace(&mut inplace),
                &td,
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap();
        assert_eq!(again.to_host().unwrap(), host.values(), "{cfg:?} in place");
        assert_eq!(st.clone_dtoh(&inplace).unwrap(), g, "{cfg:?} in place");
    }
    // Pairwise.
    let (a, c) = (&p[..5 * 37], &t[..5 * 53]);
    let (ad, cd) = (st.clone_htod(a).unwrap(), st.clone_htod(c).unwrap());
    let mut od = st.alloc_zeros::<f32>(37 * 53).unwrap();
    b.batch_probiou_dev(1e-7, &ad, &cd, &mut od).unwrap();
    let mut host = vec![0.0f32; 37 * 53];
    b.batch_probiou(1e-7, a, c, &mut host).unwrap();
    assert_eq!(st.clone_dtoh(&od).unwrap(), host);
    let mut want = vec![0.0f64; 37 * 53];
    ReferenceBackend
        .batch_probiou(1e-7, &widen(a), &widen(c), &mut want)
        .unwrap();
    assert_close("batch_probiou", &widen(&host), &want, 1e-6, 1e-7);
}

#[test]
#[ignore = "needs a CUDA device"]
fn probiou_device_shape_errors_are_the_hosts() {
    let b = backend!();
    let st = b.stream().clone();
    for (cfg, p_len, t_len) in [(ProbIou::new(), 12usize, 12usize), (ProbIou::new(), 10, 15)] {
        let (p, t) = (vec![1.0f32; p_len], vec![2.0f32; t_len]);
        let want = b.probiou_loss(&cfg, &p, &t).unwrap_err();
        let (pd, td) = (st.clone_htod(&p).unwrap(), st.clone_htod(&t).unwrap());
        let got = b
            .probiou_loss_dev(&cfg, Io::Read(&pd), &td, DeviceUpstream::Scalar(1.0))
            .unwrap_err();
        assert_eq!(got, want, "probiou {p_len} {t_len}");
    }
    let (a, c) = (vec![1.0f32; 10], vec![1.0f32; 15]);
    let (ad, cd) = (st.clone_htod(&a).unwrap(), st.clone_htod(&c).unwrap());
    let mut od = st.alloc_zeros::<f32>(5).unwrap();
    let mut host = vec![0.0f32; 5];
    assert_eq!(
        b.batch_probiou_dev(1e-7, &ad, &cd, &mut od).unwrap_err(),
        b.batch_probiou(1e-7, &a, &c, &mut host).unwrap_err()
    );
}

/// The DFL, varifocal and QFL device entry points against the host front door of the same
/// backend (the same kernels on the same numbers: the same bits), separate and in place, and
/// the front door against the f64 reference.
#[test]
#[ignore = "needs a CUDA device"]
fn dfl_varifocal_qfl_device_entries_match_the_front_door() {
    use smoothloss_core::{DistributionFocal, QualityFocal, Varifocal, VarifocalTargets};
    let b = backend!();
    let st = b.stream().clone();
    let mut rng = Rng::new(1613);
    // DFL: 1001 boxes of 4 rows x 16 bins (ultralytics), the same rows one by one (mmdetection).
    let (rows, bins) = (4 * 1001usize, 16usize);
    let z: Vec<f32> = (0..rows * bins).map(|_| rng.range_f32(-4.0, 4.0)).collect();
    let t: Vec<f32> = (0..rows).map(|_| rng.range_f32(0.0, 14.9)).collect();
    let (zd, td) = (st.clone_htod(&z).unwrap(), st.clone_htod(&t).unwrap());
    for cfg in [
        DistributionFocal::ultralytics(),
        DistributionFocal::mmdetection(),
        DistributionFocal::mmdetection().with_reduction(Reduction::Sum),
    ] {
        let mut gd = st.alloc_zeros::<f32>(rows * bins).unwrap();
        let dev = b
            .distribution_focal_dev(
                &cfg,
                Io::Separate {
                    input: &zd,
                    grad: &mut gd,
                },
                &td,
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap()
            .to_host()
            .unwrap();
        let mut g = vec![0f32; rows * bins];
        let host = b
            .distribution_focal(&cfg, Input::matrix(&z, rows, bins).with_grad(&mut g), &t)
            .unwrap();
        assert_eq!(dev, host.values(), "{cfg:?}");
        assert_eq!(st.clone_dtoh(&gd).unwrap(), g, "{cfg:?}");
        let mut gr = vec![0f32; rows * bins];
        let want = ReferenceBackend
            .distribution_focal(&cfg, Input::matrix(&z, rows, bins).with_grad(&mut gr), &t)
            .unwrap();
        assert_close("dfl loss", host.values(), want.values(), 1e-6, 1e-7);
        assert_grad("dfl grad", &g, &gr, 1e-5, 1e-6);
        let mut ip = st.clone_htod(&z).unwrap();
        let again = b
            .distribution_focal_dev(&cfg, Io::InPlace(&mut ip), &td, DeviceUpstream::Scalar(1.0))
            .unwrap();
        assert_eq!(again.to_host().unwrap(), host.values(), "{cfg:?} in place");
        assert_eq!(st.clone_dtoh(&ip).unwrap(), g, "{cfg:?} in place");
    }
    // Varifocal: ultralytics (scores and labels) and mmdetection (scores).
    let n = 16 * 1000 + 3;
    let x: Vec<f32> = (0..n).map(|_| rng.range_f32(-5.0, 5.0)).collect();
    let s: Vec<f32> = (0..n).map(|_| rng.range_f32(0.0, 1.0)).collect();
    let lab: Vec<f32> = (0..n).map(|i| (i % 5 == 0) as u8 as f32).collect();
    let (xd, sd, ld) = (
        st.clone_htod(&x).unwrap(),
        st.clone_htod(&s).unwrap(),
        st.clone_htod(&lab).unwrap(),
    );
    for (cfg, with_labels) in [
        (Varifocal::ultralytics(), true),
        (Varifocal::mmdetection(), false),
        (Varifocal::mmdetection().with_avg_factor(37.5), false),
    ] {
        let mut gd = st.alloc_zeros::<f32>(n).unwrap();
        let dev = b
            .varifocal_dev(
                &cfg,
                Io::Separate {
                    input: &xd,
                    grad: &mut gd,
                },
                &sd,
                with_labels.then_some(&ld),
                DeviceUpstream::Scalar(0.5),
            )
            .unwrap()
            .to_host()
            .unwrap();
        let tg = VarifocalTargets {
            scores: &s[..],
            labels: with_labels.then_some(&lab[..]),
        };
        let mut g = vec![0f32; n];
        let host = b
            .varifocal(
                &cfg,
                Input::new(&x)
                    .with_upstream(Upstream::Scalar(0.5))
                    .with_grad(&mut g),
                tg,
            )
            .unwrap();
        assert_eq!(dev, host.values(), "{cfg:?}");
        assert_eq!(st.clone_dtoh(&gd).unwrap(), g, "{cfg:?}");
        let mut gr = vec![0f32; n];
        let want = ReferenceBackend
            .varifocal(
                &cfg,
                Input::new(&x)
                    .with_upstream(Upstream::Scalar(0.5))
                    .with_grad(&mut gr),
                tg,
            )
            .unwrap();
        assert_close("varifocal loss", host.values(), want.values(), 1e-6, 1e-7);
        assert_grad("varifocal grad", &g, &gr, 1e-5, 1e-6);
    }
    // Quality focal: 2000 rows of 80 classes, labels in [0, 80].
    let (qr, qc) = (2000usize, 80usize);
    let q: Vec<f32> = (0..qr * qc).map(|_| rng.range_f32(-5.0, 5.0)).collect();
    let ql: Vec<i64> = (0..qr).map(|_| rng.below(qc + 1) as i64).collect();
    let qs: Vec<f32> = (0..qr).map(|_| rng.range_f32(0.0, 1.0)).collect();
    let (qd, qld, qsd) = (
        st.clone_htod(&q).unwrap(),
        st.clone_htod(&ql).unwrap(),
        st.clone_htod(&qs).unwrap(),
    );
    for cfg in [
        QualityFocal::new(),
        QualityFocal::new()
            .with_beta(1.5)
            .with_reduction(Reduction::None),
    ] {
        let mut gd = st.alloc_zeros::<f32>(qr * qc).unwrap();
        let dev = b
            .quality_focal_dev(
                &cfg,
                Io::Separate {
                    input: &qd,
                    grad: &mut gd,
                },
                &qld,
                &qsd,
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap()
            .to_host()
            .unwrap();
        let mut g = vec![0f32; qr * qc];
        let host = b
            .quality_focal(&cfg, Input::matrix(&q, qr, qc).with_grad(&mut g), &ql, &qs)
            .unwrap();
        assert_eq!(dev, host.values(), "{cfg:?}");
        assert_eq!(st.clone_dtoh(&gd).unwrap(), g, "{cfg:?}");
        let mut gr = vec![0f32; qr * qc];
        let want = ReferenceBackend
            .quality_focal(&cfg, Input::matrix(&q, qr, qc).with_grad(&mut gr), &ql, &qs)
            .unwrap();
        assert_close("qfl loss", host.values(), want.values(), 1e-6, 1e-7);
        assert_grad("qfl grad", &g, &gr, 1e-5, 1e-6);
        let mut ip = st.clone_htod(&q).unwrap();
        let again = b
            .quality_focal_dev(
                &cfg,
                Io::InPlace(&mut ip),
                &qld,
                &qsd,
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap();
        assert_eq!(again.to_host().unwrap(), host.values(), "{cfg:?} in place");
        assert_eq!(st.clone_dtoh(&ip).unwrap(), g, "{cfg:?} in place");
    }
}

/// Invalid targets on device buffers are found on the device and reported by `to_host` as
/// the host front door reports them; shape errors are the host's.
#[test]
#[ignore = "needs a CUDA device"]
fn dfl_varifocal_qfl_device_errors_are_the_hosts() {
    use smoothloss_core::{DistributionFocal, QualityFocal, Varifocal, VarifocalTargets};
    let b = backend!();
    let st = b.stream().clone();
    let (rows, bins) = (8usize, 16usize);
    let z = vec![0.5f32; rows * bins];
    let zd = st.clone_htod(&z).unwrap();
    for (cfg, bad) in [
        (DistributionFocal::ultralytics(), f32::NAN),
        (DistributionFocal::mmdetection(), 15.0),
        (DistributionFocal::mmdetection(), -0.5),
    ] {
        let mut t = vec![3.5f32; rows];
        t[6] = bad;
        let want = b
            .distribution_focal(&cfg, Input::matrix(&z, rows, bins), &t)
            .unwrap_err();
        let got = b
            .distribution_focal_dev(
                &cfg,
                Io::Read(&zd),
                &st.clone_htod(&t).unwrap(),
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap()
            .to_host()
            .unwrap_err();
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{cfg:?}");
    }
    // A shape error: 7 targets for 8 rows of 16.
    let t7 = st.clone_htod(&[1.0f32; 7]).unwrap();
    let got = b
        .distribution_focal_dev(
            &DistributionFocal::mmdetection(),
            Io::Read(&zd),
            &t7,
            DeviceUpstream::Scalar(1.0),
        )
        .unwrap_err();
    let want = b
        .distribution_focal(&DistributionFocal::mmdetection(), &z[..], &[1.0f32; 7])
        .unwrap_err();
    assert_eq!(got, want);
    // Varifocal: a score, then a label.
    let n = 300;
    let x = vec![0.1f32; n];
    let xd = st.clone_htod(&x).unwrap();
    for (si, li) in [(Some(200usize), Some(100usize)), (None, Some(250))] {
        let mut s = vec![0.5f32; n];
        let mut l = vec![1.0f32; n];
        if let Some(i) = si {
            s[i] = 1.25;
        }
        if let Some(i) = li {
            l[i] = f32::NAN;
        }
        let cfg = Varifocal::ultralytics();
        let want = b
            .varifocal(
                &cfg,
                &x[..],
                VarifocalTargets {
                    scores: &s,
                    labels: Some(&l),
                },
            )
            .unwrap_err();
        let got = b
            .varifocal_dev(
                &cfg,
                Io::Read(&xd),
                &st.clone_htod(&s).unwrap(),
                Some(&st.clone_htod(&l).unwrap()),
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap()
            .to_host()
            .unwrap_err();
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
    }
    // Quality focal: a label out of range, then a score.
    let (qr, qc) = (50usize, 4usize);
    let q = vec![0.2f32; qr * qc];
    let qd = st.clone_htod(&q).unwrap();
    for (li, si) in [(Some(30usize), Some(10usize)), (None, Some(40))] {
        let mut l: Vec<i64> = (0..qr as i64).map(|i| i % 5).collect();
        let mut s = vec![0.5f32; qr];
        if let Some(i) = li {
            l[i] = 5;
        }
        if let Some(i) = si {
            s[i] = -1.0;
        }
        let cfg = QualityFocal::new();
        let want = b
            .quality_focal(&cfg, Input::matrix(&q, qr, qc), &l, &s)
            .unwrap_err();
        let got = b
            .quality_focal_dev(
                &cfg,
                Io::Read(&qd),
                &st.clone_htod(&l).unwrap(),
                &st.clone_htod(&s).unwrap(),
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap()
            .to_host()
            .unwrap_err();
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
    }
}

/// The dense-detector device entry points once each for `sanitizer_smoke`, with an invalid
/// target in each checked buffer (flagged on the device, never used as an index).
pub(super) fn dense_dev_smoke(b: &CudaBackend, rng: &mut Rng) {
    use smoothloss_core::{DistributionFocal, QualityFocal, Varifocal};
    let st = b.stream().clone();
    let (rows, bins) = (4 * 37usize, 16usize);
    let z: Vec<f32> = (0..rows * bins).map(|_| rng.range_f32(-3.0, 3.0)).collect();
    let mut t: Vec<f32> = (0..rows).map(|_| rng.range_f32(0.0, 14.0)).collect();
    t[5] = 1e30;
    let (zd, td) = (st.clone_htod(&z).unwrap(), st.clone_htod(&t).unwrap());
    let mut gd = st.alloc_zeros::<f32>(rows * bins).unwrap();
    let err = b
        .distribution_focal_dev(
            &DistributionFocal::mmdetection(),
            Io::Separate {
                input: &zd,
                grad: &mut gd,
            },
            &td,
            DeviceUpstream::Scalar(1.0),
        )
        .unwrap()
        .to_host();
    assert!(
        matches!(err, Err(LossError::InvalidParameter { .. })),
        "{err:?}"
    );
    let n = 1001;
    let x: Vec<f32> = (0..n).map(|_| rng.range_f32(-4.0, 4.0)).collect();
    let mut s: Vec<f32> = (0..n).map(|_| rng.range_f32(0.0, 1.0)).collect();
    s[7] = 2.0;
    let (xd, sd) = (st.clone_htod(&x).unwrap(), st.clone_htod(&s).unwrap());
    let mut xi = xd.clone();
    let err = b
        .varifocal_dev(
            &Varifocal::mmdetection(),
            Io::InPlace(&mut xi),
            &sd,
            None,
            DeviceUpstream::Scalar(1.0),
        )
        .unwrap()
        .to_host();
    assert!(
        matches!(err, Err(LossError::InvalidParameter { .. })),
        "{err:?}"
    );
    let (qr, qc) = (37usize, 80usize);
    let q: Vec<f32> = (0..qr * qc).map(|_| rng.range_f32(-4.0, 4.0)).collect();
    let mut ql: Vec<i64> = (0..qr).map(|_| rng.below(qc + 1) as i64).collect();
    ql[3] = 1 << 40;
    let qd = st.clone_htod(&q).unwrap();
    let err = b
        .quality_focal_dev(
            &QualityFocal::new(),
            Io::Read(&qd),
            &st.clone_htod(&ql).unwrap(),
            &st.clone_htod(&s[..qr]).unwrap(),
            DeviceUpstream::Scalar(1.0),
        )
        .unwrap()
        .to_host();
    assert!(
        matches!(err, Err(LossError::TargetOutOfRange { .. })),
        "{err:?}"
    );
}
