//! Errors on the device: targets checked by the kernels (class targets by `ce_prepare`, binary
//! targets by the loss kernels and `bin_target_check`) and the shape errors of device buffers,
//! against the host front door's errors (ignored without a GPU).

use super::*;

#[test]
#[ignore = "needs a CUDA device"]
fn out_of_range_targets_are_found_on_the_device() {
    let b = backend!();
    let st = b.stream().clone();
    let (rows, classes) = (6usize, 4usize);
    let z = st.clone_htod(&vec![0.5f32; rows * classes]).unwrap();
    let t = st.clone_htod(&[0i64, 1, -100, 7, 2, -3]).unwrap();
    let out = b
        .cross_entropy_dev(
            &CrossEntropy::new(),
            Io::Read(&z),
            [rows, classes],
            DeviceCeTargets::Classes(&t),
            DeviceUpstream::Scalar(1.0),
        )
        .unwrap();
    assert_eq!(
        out.to_host(),
        Err(LossError::TargetOutOfRange {
            row: 3,
            target: 7,
            classes
        })
    );
    // The host front door checks the targets first, with the reference's (the same) error.
    let host_t = [0i64, 1, -100, 7, 2, -3];
    let zh = vec![0.5f32; rows * classes];
    let e = b
        .cross_entropy(
            &CrossEntropy::new(),
            Input::matrix(&zh, rows, classes),
            &host_t,
        )
        .map(Loss::into_values);
    let w = ReferenceBackend
        .cross_entropy(
            &CrossEntropy::new(),
            Input::matrix(&zh, rows, classes),
            &host_t,
        )
        .map(Loss::into_values);
    assert_eq!(e, w);
    assert_eq!(e, out.to_host());
}

/// Binary targets in device buffers are checked on the device: outside [0, 1] or NaN is the
/// same `InvalidParameter` error the host-slice path's validation gives, for the first such
/// element; valid targets pass.
#[test]
#[ignore = "needs a CUDA device"]
fn binary_targets_are_checked_on_the_device() {
    let b = backend!();
    let st = b.stream().clone();
    let n = 5000usize;
    let x = st.clone_htod(&vec![0.3f32; n]).unwrap();
    for (bad, want) in [
        (vec![], None),
        (vec![(4000usize, 2.0f32), (1234, -1.0)], Some(-1.0f64)),
        (vec![(77, f32::NAN)], Some(f64::NAN)),
    ] {
        let mut y_host = vec![0.5f32; n];
        for &(i, v) in &bad {
            y_host[i] = v;
        }
        let y = st.clone_htod(&y_host).unwrap();
        let cfg = BceWithLogits {
            pos_weight: None,
            reduction: Reduction::Mean,
        };
        let got = b
            .bce_with_logits_dev(&cfg, Io::Read(&x), &y, DeviceUpstream::Scalar(1.0))
            .unwrap()
            .to_host();
        let focal = SigmoidFocal {
            alpha: 0.25,
            gamma: 2.0,
            reduction: Reduction::Sum,
        };
        let got_f = b
            .sigmoid_focal_dev(&focal, Io::Read(&x), &y, DeviceUpstream::Scalar(1.0))
            .unwrap()
            .to_host();
        for r in [got, got_f] {
            match (r, want) {
                (Ok(v), None) => assert!(v[0].is_finite(), "{v:?}"),
                (Err(LossError::InvalidParameter { name, value, .. }), Some(w)) => {
                    assert_eq!(name, "targets");
                    assert!(
                        value == w || (value.is_nan() && w.is_nan()),
                        "{value} vs {w}"
                    );
                }
                (other, w) => panic!("{bad:?}: got {other:?}, want {w:?}"),
            }
        }
    }
}

/// Bad shapes of device buffers give the host front door's errors for the same shapes (both
/// build the plan with the same `cfg.plan`): logits, gradient, targets, upstream, parameters.
#[test]
#[ignore = "needs a CUDA device"]
fn device_shape_errors_equal_the_front_doors() {
    let b = backend!();
    let st = b.stream().clone();
    let dev = |v: &[f32]| st.clone_htod(v).unwrap();
    let z = vec![0.25f32; 12];
    let (z_dev, t) = (dev(&z), [0i64, 1, 2]);
    let t_dev = st.clone_htod(&t).unwrap();
    let t2_dev = st.clone_htod(&t[..2]).unwrap();
    let up = vec![1.0f64; 3];
    let up_dev = st.clone_htod(&up).unwrap();
    let mean = CrossEntropy::new();
    let none = CrossEntropy::new().with_reduction(Reduction::None);
    let smooth = CrossEntropy::new().with_label_smoothing(1.5);
    // Cross-entropy: [rows, classes] wrong for the logits, gradient short, targets short,
    // per-row upstream under `mean`, label smoothing out of range, no rows.
    let mut g_short = vec![0f32; 11];
    let mut g_short_dev = dev(&g_short);
    let cases: Vec<(&CrossEntropy, [usize; 2], bool, bool, bool)> = vec![
        (&mean, [4, 4], false, false, false),
        (&mean, [3, 4], true, false, false),
        (&mean, [3, 4], false, true, false),
        (&mean, [3, 4], false, false, true),
        (&smooth, [3, 4], false, false, false),
        (&mean, [0, 4], false, false, false),
    ];
    for (cfg, [rows, classes], short_grad, short_t, per_row) in cases {
        let host_t: &[i64] = if short_t { &t[..2] } else { &t };
        let host_up = if per_row {
            Upstream::PerElement(&up)
        } else {
            Upstream::ONE
        };
        let mut input = Input::matrix(&z, rows, classes).with_upstream(host_up);
        if short_grad {
            input = input.with_grad(&mut g_short);
        }
        let want = b.cross_entropy(cfg, input, host_t).unwrap_err();
        let io = if short_grad {
            Io::Separate {
                input: &z_dev,
                grad: &mut g_short_dev,
            }
        } else {
            Io::Read(&z_dev)
        };
        let tg = DeviceCeTargets::Classes(if short_t { &t2_dev } else { &t_dev });
        let du = if per_row {
            DeviceUpstream::PerElement(&up_dev)
        } else {
            DeviceUpstream::Scalar(1.0)
        };
        let got = b
            .cross_entropy_dev(cfg, io, [rows, classes], tg, du)
            .unwrap_err();
        assert_eq!(got, want, "CE {rows}x{classes}");
    }
    // A per-row upstream of the wrong length under `none`.
    let want = b
        .cross_entropy(
            &none,
            Input::matrix(&z, 4, 3).with_upstream(Upstream::PerElement(&up)),
            &[0i64, 1, 2, 0],
        )
        .unwrap_err();
    let t4 = st.clone_htod(&[0i64, 1, 2, 0]).unwrap();
    let got = b
        .cross_entropy_dev(
            &none,
            Io::Read(&z_dev),
            [4, 3],
            DeviceCeTargets::Classes(&t4),
            DeviceUpstream::PerElement(&up_dev),
        )
        .unwrap_err();
    assert_eq!(got, want, "CE upstream length");
    // Boxes: not a whole number of boxes, target length, eps.
    let bad_eps = BoxLoss {
        eps: 0.0,
        ..BoxLoss::default()
    };
    for (cfg, p_len, t_len) in [
        (BoxLoss::default(), 10usize, 10usize),
        (BoxLoss::default(), 8, 12),
        (bad_eps, 8, 8),
        (BoxLoss::default(), 0, 0),
    ] {
        let (p, tt) = (vec![1.0f32; p_len], vec![2.0f32; t_len]);
        let want = b.box_loss(&cfg, &p, &tt).unwrap_err();
        // (A zero-length device buffer, where the driver allocates one.)
        let Ok(pd) = st.clone_htod(&p) else { continue };
        let td = dev(&tt);
        let got = b
            .box_loss_dev(&cfg, Io::Read(&pd), &td, DeviceUpstream::Scalar(1.0))
            .unwrap_err();
        assert_eq!(got, want, "box {p_len} {t_len}");
    }
    // Element-wise: target length, beta, pos_weight not dividing n, a non-finite upstream.
    let (x, y) = (vec![0.5f32; 6], vec![0.5f32; 5]);
    let (x_dev, y_dev, y6_dev) = (dev(&x), dev(&y), dev(&x));
    let cfg = SmoothL1::default();
    assert_eq!(
        b.smooth_l1_dev(&cfg, Io::Read(&x_dev), &y_dev, DeviceUpstream::Scalar(1.0))
            .unwrap_err(),
        b.smooth_l1(&cfg, &x, &y).unwrap_err()
    );
    let cfg = SmoothL1 {
        beta: -1.0,
        ..SmoothL1::default()
    };
    assert_eq!(
        b.smooth_l1_dev(&cfg, Io::Read(&x_dev), &y6_dev, DeviceUpstream::Scalar(1.0))
            .unwrap_err(),
        b.smooth_l1(&cfg, &x, &x).unwrap_err()
    );
    let cfg = BceWithLogits {
        pos_weight: Some(vec![1.0; 4]),
        reduction: Reduction::Mean,
    };
    assert_eq!(
        b.bce_with_logits_dev(&cfg, Io::Read(&x_dev), &y6_dev, DeviceUpstream::Scalar(1.0))
            .unwrap_err(),
        b.bce_with_logits(&cfg, &x, &x).unwrap_err()
    );
    let cfg = Huber::default();
    let nan_up = Upstream::Scalar(f64::NAN);
    assert_eq!(
        b.huber_dev(
            &cfg,
            Io::Read(&x_dev),
            &y6_dev,
            DeviceUpstream::Scalar(f64::NAN)
        )
        .unwrap_err()
        .to_string(),
        b.huber(&cfg, Input::new(&x).with_upstream(nan_up), &x)
            .unwrap_err()
            .to_string()
    );
}

/// `TOL-4`'s `f32` domain on the device: the cross-entropy kernels compute in `f32`, so
/// `cross_entropy_dev` refuses class weights and a scalar upstream beyond `f32::MAX` with the
/// host front door's error for the same call on `f32` data; `f32::MAX` itself runs. (The box,
/// regression and binary kernels compute in f64 and keep the f64 domain on the device.)
#[test]
#[ignore = "needs a CUDA device"]
fn device_f32_domain_equals_the_front_doors() {
    let b = backend!();
    let st = b.stream().clone();
    let (rows, classes) = (2usize, 3usize);
    let z = vec![0.5f32; rows * classes];
    let t = [0i64, 2];
    let (z_dev, t_dev) = (st.clone_htod(&z).unwrap(), st.clone_htod(&t).unwrap());
    let big = CrossEntropy::new().with_class_weights(vec![1.0, 1e39, 1.0]);
    let one = CrossEntropy::new();
    for (cfg, up) in [(&big, 1.0), (&one, 1e39), (&one, -1e39)] {
        let input = Input::matrix(&z, rows, classes).with_upstream(Upstream::Scalar(up));
        let want = b.cross_entropy(cfg, input, &t).unwrap_err();
        let input = Input::matrix(&z, rows, classes).with_upstream(Upstream::Scalar(up));
        assert_eq!(
            ReferenceBackend.cross_entropy(cfg, input, &t).unwrap_err(),
            want
        );
        assert!(matches!(want, LossError::InvalidParameter { .. }));
        let got = b
            .cross_entropy_dev(
                cfg,
                Io::Read(&z_dev),
                [rows, classes],
                DeviceCeTargets::Classes(&t_dev),
                DeviceUpstream::Scalar(up),
            )
            .unwrap_err();
        assert_eq!(
            got, want,
            "CE weights {:?}, upstream {up}",
            cfg.class_weights
        );
    }
    let edge = CrossEntropy::new().with_class_weights(vec![1.0, f64::from(f32::MAX), 1.0]);
    let out = b
        .cross_entropy_dev(
            &edge,
            Io::Read(&z_dev),
            [rows, classes],
            DeviceCeTargets::Classes(&t_dev),
            DeviceUpstream::Scalar(1.0),
        )
        .unwrap();
    assert!(out.to_host().is_ok());
}
