//! Box losses and pairwise IoU through the ndarray wrappers.

use super::*;

pub(super) fn box_loss_matches<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(1);
    for cfg in box_configs() {
        for n in [1usize, 5, 37] {
            let pred = box_array(&mut rng, n, cfg.format);
            let target = box_array(&mut rng, n, cfg.format);
            let up_vals: Vec<f64> = (0..n).map(|i| 0.5 + i as f64 * 0.25).collect();
            let up = if cfg.reduction == Reduction::None {
                Upstream::PerElement(&up_vals)
            } else {
                Upstream::Scalar(1.5)
            };
            let (p, t) = (pred.as_slice().unwrap(), target.as_slice().unwrap());
            let mut g_want = vec![0.0f32; 4 * n];
            let input = Input::new(p).with_grad(&mut g_want).with_upstream(up);
            let want = be.box_loss(&cfg, input, t).unwrap();
            let mut g = Array2::<f32>::from_elem((n, 4), f32::NAN);
            let got = nd::box_loss_with_upstream(
                be,
                &cfg,
                pred.view(),
                target.view(),
                Some(g.view_mut()),
                up,
            )
            .unwrap();
            assert_same_loss(&got, &want, &format!("{cfg:?} n={n}"));
            assert_same32(g.as_slice().unwrap(), &g_want, &format!("{cfg:?} n={n}"));
            // Forward only.
            let want = be
                .box_loss(&cfg, Input::new(p).with_upstream(up), t)
                .unwrap();
            let got =
                nd::box_loss_with_upstream(be, &cfg, pred.view(), target.view(), None, up).unwrap();
            assert_same_loss(&got, &want, &format!("{cfg:?} n={n}"));
            // The common call: upstream 1.
            let mut g_want = vec![0.0f32; 4 * n];
            let want = be
                .box_loss(&cfg, Input::new(p).with_grad(&mut g_want), t)
                .unwrap();
            let mut g = Array2::<f32>::from_elem((n, 4), f32::NAN);
            let got =
                nd::box_loss(be, &cfg, pred.view(), target.view(), Some(g.view_mut())).unwrap();
            assert_same_loss(&got, &want, &format!("{cfg:?} n={n}"));
            assert_same32(g.as_slice().unwrap(), &g_want, "");
        }
    }
}

pub(super) fn box_loss_non_contiguous<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(2);
    let cfg = BoxLoss::default();
    let pred = box_array(&mut rng, 5, cfg.format);
    let target = box_array(&mut rng, 5, cfg.format);
    // A [4, 5] array seen transposed as [5, 4].
    let pred_t = Array2::from_shape_vec((4, 5), pred.as_slice().unwrap().to_vec()).unwrap();
    let err = nd::box_loss(be, &cfg, pred_t.t(), target.view(), None).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "pred" });
    // Every other row of a [10, 4] array.
    let target2 = box_array(&mut rng, 10, cfg.format);
    let err = nd::box_loss(be, &cfg, pred.view(), target2.slice(s![..;2, ..]), None).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "target" });
    // A column-major gradient of the right shape.
    let mut g = Array2::<f32>::zeros((5, 4).f());
    let err = nd::box_loss(be, &cfg, pred.view(), target.view(), Some(g.view_mut())).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "grad" });
}

pub(super) fn box_loss_shapes<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(3);
    let cfg = BoxLoss::default();
    let pred = box_array(&mut rng, 5, cfg.format);
    let target = box_array(&mut rng, 5, cfg.format);
    // [4, 3]: twelve numbers, which the slice API would take for three boxes.
    let p43 = Array2::from_shape_vec((4, 3), v32(&mut rng, 12, 0.0, 1.0)).unwrap();
    let t43 = Array2::from_shape_vec((4, 3), v32(&mut rng, 12, 0.0, 1.0)).unwrap();
    assert!(
        be.box_loss(&cfg, p43.as_slice().unwrap(), t43.as_slice().unwrap())
            .is_ok()
    );
    let err = nd::box_loss(be, &cfg, p43.view(), t43.view(), None).unwrap_err();
    assert_eq!(
        err,
        LossError::ShapeMismatch {
            what: "pred",
            expected: 16,
            got: 12
        }
    );
    // [5, 3]: the slice API refuses it too, with the same variant and argument.
    let p53 = Array2::from_shape_vec((5, 3), v32(&mut rng, 15, 0.0, 1.0)).unwrap();
    let slice_err = be
        .box_loss(&cfg, p53.as_slice().unwrap(), p53.as_slice().unwrap())
        .unwrap_err();
    assert!(matches!(
        slice_err,
        LossError::ShapeMismatch { what: "pred", .. }
    ));
    let err = nd::box_loss(be, &cfg, p53.view(), p53.view(), None).unwrap_err();
    assert!(matches!(err, LossError::ShapeMismatch { what: "pred", .. }));
    // Target with another number of boxes, or the same numbers in another shape.
    let t6 = box_array(&mut rng, 6, cfg.format);
    let err = nd::box_loss(be, &cfg, pred.view(), t6.view(), None).unwrap_err();
    assert!(matches!(
        err,
        LossError::ShapeMismatch {
            what: "target",
            expected: 20,
            got: 24
        }
    ));
    let t_flat = target.clone().into_shape_with_order((10, 2)).unwrap();
    let err = nd::box_loss(be, &cfg, pred.view(), t_flat.view(), None).unwrap_err();
    assert_eq!(
        err,
        LossError::WrongShape {
            what: "target",
            expected: vec![5, 4],
            got: vec![10, 2]
        }
    );
    // Gradient of the wrong shape (same length, and another length).
    for shape in [(4usize, 5usize), (6, 4)] {
        let mut g = Array2::<f32>::zeros(shape);
        let err =
            nd::box_loss(be, &cfg, pred.view(), target.view(), Some(g.view_mut())).unwrap_err();
        // As many elements: both shapes; another count: the counts.
        let same = shape.0 * shape.1 == 20;
        assert!(
            match &err {
                LossError::WrongShape {
                    what: "grad",
                    expected,
                    got,
                } => same && *expected == [5, 4] && *got == [shape.0, shape.1],
                LossError::ShapeMismatch { what: "grad", .. } => !same,
                _ => false,
            },
            "{shape:?}: {err:?}"
        );
    }
    // Errors found by the slice API come through unchanged.
    let bad = BoxLoss::default().with_eps(0.0);
    let err = nd::box_loss(be, &bad, pred.view(), target.view(), None).unwrap_err();
    let want = be
        .box_loss(&bad, pred.as_slice().unwrap(), target.as_slice().unwrap())
        .unwrap_err();
    assert_eq!(err, want);
    assert!(matches!(
        err,
        LossError::InvalidParameter { name: "eps", .. }
    ));
}

pub(super) fn box_loss_empty<B: Losses<f32>>(be: &B) {
    let cfg = BoxLoss::default();
    let none: [f32; 0] = [];
    let mut g0: [f32; 0] = [];
    let want = be
        .box_loss(&cfg, Input::new(&none).with_grad(&mut g0), &none)
        .unwrap_err();
    assert!(matches!(want, LossError::EmptyInput { what: "pred", .. }));
    let e = Array2::<f32>::zeros((0, 4));
    let mut g = Array2::<f32>::zeros((0, 4));
    let err = nd::box_loss(be, &cfg, e.view(), e.view(), Some(g.view_mut())).unwrap_err();
    assert_eq!(err, want);
    let err = nd::box_loss(be, &cfg, e.view(), e.view(), None).unwrap_err();
    assert_eq!(err, want);
    // No elements, so no shape check: [0, 3] is empty too.
    let e3 = Array2::<f32>::zeros((0, 3));
    let err = nd::box_loss(be, &cfg, e3.view(), e.view(), None).unwrap_err();
    assert_eq!(err, want);
}

pub(super) fn box_iou_matches<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(4);
    for format in FORMATS {
        for (n, m) in [(1usize, 1usize), (5, 3), (5, 5), (37, 11)] {
            let b1 = box_array(&mut rng, n, format);
            let b2 = box_array(&mut rng, m, format);
            let mut want = vec![0.0f32; n * m];
            be.box_iou(
                format,
                b1.as_slice().unwrap(),
                b2.as_slice().unwrap(),
                &mut want,
            )
            .unwrap();
            let mut out = Array2::<f32>::from_elem((n, m), f32::NAN);
            nd::box_iou_into(be, format, b1.view(), b2.view(), out.view_mut()).unwrap();
            assert_same32(out.as_slice().unwrap(), &want, &format!("{format:?}"));
            let got = nd::box_iou(be, format, b1.view(), b2.view()).unwrap();
            assert_eq!(got.dim(), (n, m));
            assert_same32(got.as_slice().unwrap(), &want, &format!("{format:?}"));
        }
    }
}

pub(super) fn box_iou_non_contiguous<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(5);
    let f = BoxFormat::Xyxy;
    let b1 = box_array(&mut rng, 5, f);
    let b2 = box_array(&mut rng, 3, f);
    let b1_t = Array2::from_shape_vec((4, 5), b1.as_slice().unwrap().to_vec()).unwrap();
    let mut out = Array2::<f32>::zeros((5, 3));
    let err = nd::box_iou_into(be, f, b1_t.t(), b2.view(), out.view_mut()).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "boxes1" });
    let err = nd::box_iou(be, f, b1_t.t(), b2.view()).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "boxes1" });
    let b2_wide = box_array(&mut rng, 6, f);
    let err = nd::box_iou_into(
        be,
        f,
        b1.view(),
        b2_wide.slice(s![1..;2, ..]),
        out.view_mut(),
    )
    .unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "boxes2" });
    let err = nd::box_iou(be, f, b1.view(), b2_wide.slice(s![1..;2, ..])).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "boxes2" });
    let mut out_t = Array2::<f32>::zeros((3, 5));
    let err = nd::box_iou_into(
        be,
        f,
        b1.view(),
        b2.view(),
        out_t.view_mut().reversed_axes(),
    )
    .unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "iou" });
}

pub(super) fn box_iou_shapes<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(6);
    let f = BoxFormat::Xyxy;
    let b1 = box_array(&mut rng, 5, f);
    let b2 = box_array(&mut rng, 3, f);
    // Transposed output shape (same length) and wrong length.
    for shape in [(3usize, 5usize), (5, 4), (15, 1)] {
        let mut out = Array2::<f32>::zeros(shape);
        let err = nd::box_iou_into(be, f, b1.view(), b2.view(), out.view_mut()).unwrap_err();
        let same = shape.0 * shape.1 == 15;
        assert!(
            match &err {
                LossError::WrongShape {
                    what: "iou",
                    expected,
                    got,
                } => same && *expected == [5, 3] && *got == [shape.0, shape.1],
                LossError::ShapeMismatch {
                    what: "iou",
                    expected: 15,
                    ..
                } => !same,
                _ => false,
            },
            "{shape:?}: {err:?}"
        );
    }
    // Box arrays that are not [_, 4]; [4, 3] would pass the slice API as three boxes.
    let w3 = Array2::from_shape_vec((4, 3), v32(&mut rng, 12, 0.0, 1.0)).unwrap();
    let mut out = Array2::<f32>::zeros((4, 3));
    let err = nd::box_iou_into(be, f, w3.view(), b2.view(), out.view_mut()).unwrap_err();
    let want = LossError::ShapeMismatch {
        what: "boxes1",
        expected: 16,
        got: 12,
    };
    assert_eq!(err, want);
    assert_eq!(nd::box_iou(be, f, w3.view(), b2.view()).unwrap_err(), want);
    let mut out = Array2::<f32>::zeros((5, 4));
    let err = nd::box_iou_into(be, f, b1.view(), w3.view(), out.view_mut()).unwrap_err();
    assert!(matches!(
        err,
        LossError::ShapeMismatch { what: "boxes2", .. }
    ));
    let err = nd::box_iou(be, f, b1.view(), w3.view()).unwrap_err();
    assert!(matches!(
        err,
        LossError::ShapeMismatch { what: "boxes2", .. }
    ));
}

pub(super) fn box_iou_empty<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(7);
    let f = BoxFormat::Cxcywh;
    let b = box_array(&mut rng, 3, f);
    let e = Array2::<f32>::zeros((0, 4));
    // The slice API accepts empty box sets (nothing to compute); so do the wrappers.
    let want = be.box_iou(f, &[], b.as_slice().unwrap(), &mut []);
    assert_eq!(want, Ok(()));
    let mut out = Array2::<f32>::zeros((0, 3));
    assert_eq!(
        nd::box_iou_into(be, f, e.view(), b.view(), out.view_mut()),
        want
    );
    assert_eq!(
        nd::box_iou(be, f, e.view(), b.view()).map(|a| a.dim()),
        Ok((0, 3))
    );
    let mut out = Array2::<f32>::zeros((3, 0));
    let want = be.box_iou(f, b.as_slice().unwrap(), &[], &mut []);
    assert_eq!(want, Ok(()));
    assert_eq!(
        nd::box_iou_into(be, f, b.view(), e.view(), out.view_mut()),
        want
    );
    assert_eq!(
        nd::box_iou(be, f, b.view(), e.view()).map(|a| a.dim()),
        Ok((3, 0))
    );
    // An empty set against a non-empty output: the slice API's shape error.
    let mut out = Array2::<f32>::zeros((1, 3));
    let want = be
        .box_iou(f, &[], b.as_slice().unwrap(), &mut [0.0; 3])
        .unwrap_err();
    assert_eq!(
        nd::box_iou_into(be, f, e.view(), b.view(), out.view_mut()).unwrap_err(),
        want
    );
}
