#![cfg(feature = "ndarray")]
//! The `ndarray` wrappers of every loss against the slice API (the front door, `Losses`) on
//! the same data and the same backend: results and gradients must be bit-identical (the slice
//! API is tested against the `f64` reference elsewhere), non-standard layouts are refused with
//! `NonContiguous`, shape errors are typed, and empty inputs get the slice API's answer. Every
//! check runs on the default (CPU) backend and on the `f64` reference used as a backend, to
//! show the wrappers are backend-agnostic; one runs on `f64` data.

use ndarray::{Array, Array1, Array2, ArrayView, ArrayViewMut, Dimension, IxDyn, ShapeBuilder, s};
use smoothloss::ndarray as nd;
use smoothloss::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CeTargets, CrossEntropy, DefaultBackend, Huber,
    Input, Loss, LossError, Losses, Reduction, ReferenceBackend, Result, SigmoidFocal, SmoothL1,
    Upstream,
};
use smoothloss_spec::random::Rng;

const FORMATS: [BoxFormat; 3] = [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh];

/// Each named test runs its check on the default backend and on the reference.
macro_rules! on_backends {
    ($($name:ident => $check:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            $check(&DefaultBackend::default());
            $check(&ReferenceBackend);
        }
    )*};
}

/// Uniform `f32` in `[lo, hi)`.
fn r32(rng: &mut Rng, lo: f64, hi: f64) -> f32 {
    rng.range(lo, hi) as f32
}

/// `n` uniform `f32` values in `[lo, hi)`.
fn v32(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    (0..n).map(|_| r32(rng, lo, hi)).collect()
}

/// A loss's kind (per item or reduced) and its values' bits.
fn bits(l: &Loss) -> (bool, Vec<u64>) {
    (
        l.per_item().is_some(),
        l.values().iter().map(|x| x.to_bits()).collect(),
    )
}

fn bits32(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `n` boxes in `format` with positive sizes, overlapping their partners more or less.
fn boxes(rng: &mut Rng, n: usize, format: BoxFormat) -> Vec<f32> {
    let mut out = Vec::with_capacity(4 * n);
    for _ in 0..n {
        let (x1, y1) = (r32(rng, -10.0, 10.0) as f64, r32(rng, -10.0, 10.0) as f64);
        let (w, h) = (r32(rng, 0.5, 8.0) as f64, r32(rng, 0.5, 8.0) as f64);
        let b = format.from_xyxy([x1, y1, x1 + w, y1 + h]);
        out.extend(b.iter().map(|&v| v as f32));
    }
    out
}

/// `[rows, 4]` array of random boxes.
fn box_array(rng: &mut Rng, rows: usize, format: BoxFormat) -> Array2<f32> {
    Array2::from_shape_vec((rows, 4), boxes(rng, rows, format)).unwrap()
}

/// Configurations covering every kind, format, reduction and the threshold weighting.
fn box_configs() -> Vec<BoxLoss> {
    let mut cfgs = Vec::new();
    for (i, kind) in BoxLossKind::ALL.into_iter().enumerate() {
        for (j, format) in FORMATS.into_iter().enumerate() {
            let r = [Reduction::None, Reduction::Mean, Reduction::Sum][(i + j) % 3];
            let mut cfg = BoxLoss::new(kind, format).with_reduction(r);
            if (i + j) % 2 == 0 {
                cfg = cfg.with_threshold_weight(0.3, 0.5);
            }
            cfgs.push(cfg);
        }
    }
    cfgs
}

on_backends! {
    cross_entropy_matches_slice_api => ce_matches,
    cross_entropy_refuses_non_contiguous => ce_non_contiguous,
    cross_entropy_shape_errors => ce_shape_errors,
    cross_entropy_empty_inputs => ce_empty,
    box_loss_matches_slice_api => box_loss_matches,
    box_loss_refuses_non_contiguous => box_loss_non_contiguous,
    box_loss_shape_errors => box_loss_shapes,
    box_loss_empty_input => box_loss_empty,
    box_iou_matches_slice_api => box_iou_matches,
    box_iou_refuses_non_contiguous => box_iou_non_contiguous,
    box_iou_shape_errors => box_iou_shapes,
    box_iou_empty_inputs => box_iou_empty,
    elementwise_match_slice_api => ew_matches,
    elementwise_refuse_non_contiguous => ew_non_contiguous,
    elementwise_shape_errors => ew_shapes,
    elementwise_empty_inputs => ew_empty,
}

/// Cross-entropy configurations: smoothing, class weights, ignore index, every reduction.
fn ce_configs(classes: usize) -> Vec<CrossEntropy> {
    vec![
        CrossEntropy::new(),
        CrossEntropy::smooth_loss(0.1).with_reduction(Reduction::None),
        CrossEntropy::smooth_loss(0.3)
            .with_class_weights((0..classes).map(|j| 0.5 + j as f64 * 0.25).collect())
            .with_reduction(Reduction::Sum),
        CrossEntropy::new()
            .with_class_weights((0..classes).map(|j| 2.0 - (j % 7) as f64 * 0.25).collect()),
    ]
}

/// Class targets for `n` rows of `c` classes, every third row from the second on ignored.
fn ce_targets(rng: &mut Rng, n: usize, c: usize) -> Array1<i64> {
    (0..n)
        .map(|i| {
            if i % 3 == 1 {
                -100
            } else {
                rng.below(c) as i64
            }
        })
        .collect()
}

/// Probability targets `[n, c]`, rows summing to about one.
fn ce_probs(rng: &mut Rng, n: usize, c: usize) -> Array2<f32> {
    let mut p = Array2::from_shape_vec((n, c), v32(rng, n * c, 0.0, 1.0)).unwrap();
    for mut row in p.rows_mut() {
        let s: f32 = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    p
}

fn ce_matches<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(11);
    for (n, c) in [(1usize, 1usize), (3, 7), (9, 33), (17, 1000)] {
        for cfg in ce_configs(c) {
            let ctx = format!("{cfg:?} {n}x{c}");
            let z = Array2::from_shape_vec((n, c), v32(&mut rng, n * c, -6.0, 6.0)).unwrap();
            let x = z.as_slice().unwrap();
            let up_vals: Vec<f64> = (0..n).map(|i| 0.5 + i as f64 * 0.25).collect();
            let up = if cfg.reduction == Reduction::None {
                Upstream::PerElement(&up_vals)
            } else {
                Upstream::Scalar(1.5)
            };
            for probs in [false, true] {
                let t = ce_targets(&mut rng, n, c);
                let q = ce_probs(&mut rng, n, c);
                let targets: CeTargets<'_, f32> = if probs {
                    CeTargets::Probs(q.as_slice().unwrap())
                } else {
                    CeTargets::Classes(t.as_slice().unwrap())
                };
                let call = |g: Option<Array2<f32>>, up: Option<Upstream<'_>>| {
                    let mut g = g;
                    let gv = g.as_mut().map(|g| g.view_mut());
                    let loss = match (probs, up) {
                        (false, Some(u)) => {
                            nd::cross_entropy_with_upstream(be, &cfg, z.view(), t.view(), gv, u)
                        }
                        (false, None) => nd::cross_entropy(be, &cfg, z.view(), t.view(), gv),
                        (true, Some(u)) => nd::cross_entropy_probs_with_upstream(
                            be,
                            &cfg,
                            z.view(),
                            q.view(),
                            gv,
                            u,
                        ),
                        (true, None) => nd::cross_entropy_probs(be, &cfg, z.view(), q.view(), gv),
                    };
                    (loss.unwrap(), g)
                };
                // With a gradient and an upstream gradient.
                let mut g_want = vec![0.0f32; n * c];
                let input = Input::matrix(x, n, c)
                    .with_grad(&mut g_want)
                    .with_upstream(up);
                let want = be.cross_entropy(&cfg, input, targets).unwrap();
                let (got, g) = call(Some(Array2::from_elem((n, c), f32::NAN)), Some(up));
                let g = g.unwrap();
                assert_eq!(bits(&got), bits(&want), "{ctx} probs={probs}");
                assert_eq!(bits32(g.as_slice().unwrap()), bits32(&g_want), "{ctx}");
                // Forward only.
                let want = be
                    .cross_entropy(&cfg, Input::matrix(x, n, c).with_upstream(up), targets)
                    .unwrap();
                let (got, _) = call(None, Some(up));
                assert_eq!(bits(&got), bits(&want), "{ctx} probs={probs}");
                // The common call: upstream 1.
                let mut g_want = vec![0.0f32; n * c];
                let input = Input::matrix(x, n, c).with_grad(&mut g_want);
                let want = be.cross_entropy(&cfg, input, targets).unwrap();
                let (got, g) = call(Some(Array2::from_elem((n, c), f32::NAN)), None);
                assert_eq!(bits(&got), bits(&want), "{ctx} probs={probs}");
                assert_eq!(bits32(g.unwrap().as_slice().unwrap()), bits32(&g_want));
                if probs {
                    continue;
                }
                // In place, with and without the upstream gradient.
                for up in [Some(up), None] {
                    let mut zs = x.to_vec();
                    let input = Input::in_place(&mut zs)
                        .shaped(n, c)
                        .with_upstream(up.unwrap_or_default());
                    let want = be.cross_entropy(&cfg, input, targets).unwrap();
                    let mut zi = z.clone();
                    let got = match up {
                        Some(u) => nd::cross_entropy_in_place_with_upstream(
                            be,
                            &cfg,
                            zi.view_mut(),
                            t.view(),
                            u,
                        ),
                        None => nd::cross_entropy_in_place(be, &cfg, zi.view_mut(), t.view()),
                    }
                    .unwrap();
                    assert_eq!(bits(&got), bits(&want), "{ctx} in place");
                    assert_eq!(
                        bits32(zi.as_slice().unwrap()),
                        bits32(&zs),
                        "{ctx} in place"
                    );
                }
            }
        }
    }
}

fn ce_non_contiguous<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(12);
    let cfg = CrossEntropy::smooth_loss(0.1);
    let (n, c) = (5, 3);
    let z = Array2::from_shape_vec((n, c), v32(&mut rng, n * c, -3.0, 3.0)).unwrap();
    let t = ce_targets(&mut rng, n, c);
    let q = ce_probs(&mut rng, n, c);
    // A [3, 5] array seen transposed as [5, 3].
    let z_t = Array2::from_shape_vec((c, n), z.as_slice().unwrap().to_vec()).unwrap();
    let err = nd::cross_entropy(be, &cfg, z_t.t(), t.view(), None).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "logits" });
    let err = nd::cross_entropy_probs(be, &cfg, z_t.t(), q.view(), None).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "logits" });
    let mut zm = z_t.clone();
    let err =
        nd::cross_entropy_in_place(be, &cfg, zm.view_mut().reversed_axes(), t.view()).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "logits" });
    // Every other target of ten.
    let t_wide = ce_targets(&mut rng, 2 * n, c);
    let err = nd::cross_entropy(be, &cfg, z.view(), t_wide.slice(s![..;2]), None).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "targets" });
    let mut zm = z.clone();
    let err =
        nd::cross_entropy_in_place(be, &cfg, zm.view_mut(), t_wide.slice(s![1..;2])).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "targets" });
    // Probabilities seen transposed.
    let q_t = Array2::from_shape_vec((c, n), q.as_slice().unwrap().to_vec()).unwrap();
    let err = nd::cross_entropy_probs(be, &cfg, z.view(), q_t.t(), None).unwrap_err();
    assert_eq!(
        err,
        LossError::NonContiguous {
            what: "target_probs"
        }
    );
    // A column-major gradient of the right shape.
    let mut g = Array2::<f32>::zeros((n, c).f());
    let err = nd::cross_entropy(be, &cfg, z.view(), t.view(), Some(g.view_mut())).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "grad" });
    let err =
        nd::cross_entropy_probs(be, &cfg, z.view(), q.view(), Some(g.view_mut())).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "grad" });
}

fn ce_shape_errors<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(13);
    let cfg = CrossEntropy::new();
    let (n, c) = (4, 6);
    let z = Array2::from_shape_vec((n, c), v32(&mut rng, n * c, -3.0, 3.0)).unwrap();
    let x = z.as_slice().unwrap();
    let t = ce_targets(&mut rng, n, c);
    // One target too many: the slice API's error.
    let t5 = ce_targets(&mut rng, n + 1, c);
    let err = nd::cross_entropy(be, &cfg, z.view(), t5.view(), None).unwrap_err();
    let want = be
        .cross_entropy(&cfg, Input::matrix(x, n, c), t5.as_slice().unwrap())
        .unwrap_err();
    assert_eq!(err, want);
    assert_eq!(
        err,
        LossError::ShapeMismatch {
            what: "targets",
            expected: 4,
            got: 5
        }
    );
    let mut zm = z.clone();
    let err = nd::cross_entropy_in_place(be, &cfg, zm.view_mut(), t5.view()).unwrap_err();
    assert_eq!(err, want);
    // The wrappers' shape checks come before the front door's: with class weights of the wrong
    // length as well, the slice API reports the weights, the wrapper the targets.
    let bad_w = CrossEntropy::new().with_class_weights(vec![1.0; c + 1]);
    let slice_err = be
        .cross_entropy(&bad_w, Input::matrix(x, n, c), t5.as_slice().unwrap())
        .unwrap_err();
    assert!(matches!(
        slice_err,
        LossError::ShapeMismatch {
            what: "class_weights",
            ..
        }
    ));
    let err = nd::cross_entropy(be, &bad_w, z.view(), t5.view(), None).unwrap_err();
    assert_eq!(err, want);
    // Probabilities [C, N]: as many numbers, which the slice API cannot tell from [N, C].
    let q = ce_probs(&mut rng, c, n);
    assert!(
        be.cross_entropy(
            &cfg,
            Input::matrix(x, n, c),
            CeTargets::Probs(q.as_slice().unwrap())
        )
        .is_ok()
    );
    let err = nd::cross_entropy_probs(be, &cfg, z.view(), q.view(), None).unwrap_err();
    assert_eq!(
        err,
        LossError::ShapeMismatch {
            what: "target_probs",
            expected: 24,
            got: 24
        }
    );
    // Gradient of the wrong shape (same length, and another length).
    let q = ce_probs(&mut rng, n, c);
    for shape in [(c, n), (n, c + 1)] {
        let mut g = Array2::<f32>::zeros(shape);
        let err = nd::cross_entropy(be, &cfg, z.view(), t.view(), Some(g.view_mut())).unwrap_err();
        assert!(
            matches!(
                err,
                LossError::ShapeMismatch {
                    what: "grad",
                    expected: 24,
                    ..
                }
            ),
            "{shape:?}: {err:?}"
        );
        let err =
            nd::cross_entropy_probs(be, &cfg, z.view(), q.view(), Some(g.view_mut())).unwrap_err();
        assert!(
            matches!(
                err,
                LossError::ShapeMismatch {
                    what: "grad",
                    expected: 24,
                    ..
                }
            ),
            "{shape:?}: {err:?}"
        );
    }
    // Errors found by the slice API come through unchanged: a parameter, a target value, an
    // upstream gradient.
    let bad = CrossEntropy::smooth_loss(1.5);
    let err = nd::cross_entropy(be, &bad, z.view(), t.view(), None).unwrap_err();
    let want = be
        .cross_entropy(&bad, Input::matrix(x, n, c), t.as_slice().unwrap())
        .unwrap_err();
    assert_eq!(err, want);
    assert!(matches!(
        err,
        LossError::InvalidParameter {
            name: "label_smoothing",
            ..
        }
    ));
    let t_bad = Array1::from(vec![0, 1, c as i64, 2]);
    let err = nd::cross_entropy(be, &cfg, z.view(), t_bad.view(), None).unwrap_err();
    let want = be
        .cross_entropy(&cfg, Input::matrix(x, n, c), t_bad.as_slice().unwrap())
        .unwrap_err();
    assert_eq!(err, want);
    assert!(matches!(err, LossError::TargetOutOfRange { row: 2, .. }));
    let up = [1.0; 4];
    let err = nd::cross_entropy_with_upstream(
        be,
        &cfg,
        z.view(),
        t.view(),
        None,
        Upstream::PerElement(&up),
    )
    .unwrap_err();
    let want = be
        .cross_entropy(
            &cfg,
            Input::matrix(x, n, c).with_upstream(Upstream::PerElement(&up)),
            t.as_slice().unwrap(),
        )
        .unwrap_err();
    assert_eq!(err, want);
    assert!(matches!(
        err,
        LossError::InvalidParameter {
            name: "upstream",
            ..
        }
    ));
}

fn ce_empty<B: Losses<f32>>(be: &B) {
    let cfg = CrossEntropy::new();
    for (n, c) in [(0usize, 5usize), (3, 0), (0, 0)] {
        let z = Array2::<f32>::zeros((n, c));
        let t = Array1::<i64>::zeros(n);
        let want = be
            .cross_entropy(
                &cfg,
                Input::matrix(z.as_slice().unwrap(), n, c),
                t.as_slice().unwrap(),
            )
            .unwrap_err();
        assert!(
            matches!(want, LossError::EmptyInput { what: "logits", .. }),
            "{want:?}"
        );
        // With or without a gradient, whatever its (empty) shape, and against targets that do
        // not fit: the front door's answer.
        let mut g = Array2::<f32>::zeros((n, c));
        let err = nd::cross_entropy(be, &cfg, z.view(), t.view(), Some(g.view_mut())).unwrap_err();
        assert_eq!(err, want, "{n}x{c}");
        let mut g = Array2::<f32>::zeros((0, 2));
        let err = nd::cross_entropy(be, &cfg, z.view(), t.view(), Some(g.view_mut())).unwrap_err();
        assert_eq!(err, want, "{n}x{c}");
        let t2 = Array1::<i64>::zeros(n + 2);
        let want2 = be
            .cross_entropy(&cfg, Input::matrix(&[], n, c), t2.as_slice().unwrap())
            .unwrap_err();
        let err = nd::cross_entropy(be, &cfg, z.view(), t2.view(), None).unwrap_err();
        assert_eq!(err, want2, "{n}x{c}");
        let q = Array2::<f32>::zeros((c, n));
        let want = be
            .cross_entropy(&cfg, Input::matrix(&[], n, c), CeTargets::Probs(&[]))
            .unwrap_err();
        let err = nd::cross_entropy_probs(be, &cfg, z.view(), q.view(), None).unwrap_err();
        assert_eq!(err, want, "{n}x{c}");
        let mut zi = z.clone();
        let err = nd::cross_entropy_in_place(be, &cfg, zi.view_mut(), t.view()).unwrap_err();
        assert_eq!(err, want, "{n}x{c}");
    }
}

fn box_loss_matches<B: Losses<f32>>(be: &B) {
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
            assert_eq!(bits(&got), bits(&want), "{cfg:?} n={n}");
            assert_eq!(
                bits32(g.as_slice().unwrap()),
                bits32(&g_want),
                "{cfg:?} n={n}"
            );
            // Forward only.
            let want = be
                .box_loss(&cfg, Input::new(p).with_upstream(up), t)
                .unwrap();
            let got =
                nd::box_loss_with_upstream(be, &cfg, pred.view(), target.view(), None, up).unwrap();
            assert_eq!(bits(&got), bits(&want), "{cfg:?} n={n}");
            // The common call: upstream 1.
            let mut g_want = vec![0.0f32; 4 * n];
            let want = be
                .box_loss(&cfg, Input::new(p).with_grad(&mut g_want), t)
                .unwrap();
            let mut g = Array2::<f32>::from_elem((n, 4), f32::NAN);
            let got =
                nd::box_loss(be, &cfg, pred.view(), target.view(), Some(g.view_mut())).unwrap();
            assert_eq!(bits(&got), bits(&want), "{cfg:?} n={n}");
            assert_eq!(bits32(g.as_slice().unwrap()), bits32(&g_want));
        }
    }
}

fn box_loss_non_contiguous<B: Losses<f32>>(be: &B) {
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

fn box_loss_shapes<B: Losses<f32>>(be: &B) {
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
    assert!(matches!(
        err,
        LossError::ShapeMismatch { what: "target", .. }
    ));
    // Gradient of the wrong shape (same length, and another length).
    for shape in [(4usize, 5usize), (6, 4)] {
        let mut g = Array2::<f32>::zeros(shape);
        let err =
            nd::box_loss(be, &cfg, pred.view(), target.view(), Some(g.view_mut())).unwrap_err();
        assert!(
            matches!(err, LossError::ShapeMismatch { what: "grad", .. }),
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

fn box_loss_empty<B: Losses<f32>>(be: &B) {
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

fn box_iou_matches<B: Losses<f32>>(be: &B) {
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
            assert_eq!(bits32(out.as_slice().unwrap()), bits32(&want), "{format:?}");
            let got = nd::box_iou(be, format, b1.view(), b2.view()).unwrap();
            assert_eq!(got.dim(), (n, m));
            assert_eq!(bits32(got.as_slice().unwrap()), bits32(&want), "{format:?}");
        }
    }
}

fn box_iou_non_contiguous<B: Losses<f32>>(be: &B) {
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

fn box_iou_shapes<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(6);
    let f = BoxFormat::Xyxy;
    let b1 = box_array(&mut rng, 5, f);
    let b2 = box_array(&mut rng, 3, f);
    // Transposed output shape (same length) and wrong length.
    for shape in [(3usize, 5usize), (5, 4), (15, 1)] {
        let mut out = Array2::<f32>::zeros(shape);
        let err = nd::box_iou_into(be, f, b1.view(), b2.view(), out.view_mut()).unwrap_err();
        assert!(
            matches!(
                err,
                LossError::ShapeMismatch {
                    what: "iou",
                    expected: 15,
                    ..
                }
            ),
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

fn box_iou_empty<B: Losses<f32>>(be: &B) {
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

/// The four element-wise losses, each callable through both APIs.
#[derive(Debug, Clone)]
enum Ew {
    SmoothL1(SmoothL1),
    Huber(Huber),
    Bce(BceWithLogits),
    Focal(SigmoidFocal),
}

impl Ew {
    /// Every loss under `reduction`; `last` is the size of the last axis (for `pos_weight`).
    fn all(reduction: Reduction, last: usize) -> Vec<Ew> {
        vec![
            Ew::SmoothL1(SmoothL1 {
                beta: 0.5,
                reduction,
            }),
            Ew::SmoothL1(SmoothL1 {
                beta: 0.0,
                reduction,
            }),
            Ew::Huber(Huber {
                delta: 0.7,
                reduction,
            }),
            Ew::Bce(BceWithLogits {
                pos_weight: None,
                reduction,
            }),
            Ew::Bce(BceWithLogits {
                pos_weight: Some((0..last).map(|i| 0.5 + i as f64 * 0.3).collect()),
                reduction,
            }),
            Ew::Focal(SigmoidFocal {
                alpha: 0.25,
                gamma: 2.0,
                reduction,
            }),
            Ew::Focal(SigmoidFocal {
                alpha: -1.0,
                gamma: 1.5,
                reduction,
            }),
        ]
    }

    fn reduction(&self) -> Reduction {
        match self {
            Ew::SmoothL1(c) => c.reduction,
            Ew::Huber(c) => c.reduction,
            Ew::Bce(c) => c.reduction,
            Ew::Focal(c) => c.reduction,
        }
    }

    /// Names of the two inputs in errors.
    fn names(&self) -> (&'static str, &'static str) {
        match self {
            Ew::SmoothL1(_) | Ew::Huber(_) => ("pred", "target"),
            Ew::Bce(_) | Ew::Focal(_) => ("logits", "targets"),
        }
    }

    /// Inputs of `len` elements: predictions / logits and targets (in [0, 1] for the binary
    /// losses, some exactly 0 or 1).
    fn data(&self, rng: &mut Rng, len: usize) -> (Vec<f32>, Vec<f32>) {
        let a = v32(rng, len, -4.0, 4.0);
        let b = match self {
            Ew::SmoothL1(_) | Ew::Huber(_) => v32(rng, len, -4.0, 4.0),
            Ew::Bce(_) | Ew::Focal(_) => (0..len)
                .map(|i| match i % 3 {
                    0 => 0.0,
                    1 => 1.0,
                    _ => r32(rng, 0.0, 1.0),
                })
                .collect(),
        };
        (a, b)
    }

    /// The wrapper with an upstream gradient.
    fn nd<B: Losses<f32>, D: Dimension>(
        &self,
        be: &B,
        a: ArrayView<'_, f32, D>,
        b: ArrayView<'_, f32, D>,
        up: Upstream<'_>,
        g: Option<ArrayViewMut<'_, f32, D>>,
    ) -> Result<Loss> {
        match self {
            Ew::SmoothL1(c) => nd::smooth_l1_with_upstream(be, c, a, b, g, up),
            Ew::Huber(c) => nd::huber_with_upstream(be, c, a, b, g, up),
            Ew::Bce(c) => nd::bce_with_logits_with_upstream(be, c, a, b, g, up),
            Ew::Focal(c) => nd::sigmoid_focal_with_upstream(be, c, a, b, g, up),
        }
    }

    /// The common call: upstream 1.
    fn nd1<B: Losses<f32>, D: Dimension>(
        &self,
        be: &B,
        a: ArrayView<'_, f32, D>,
        b: ArrayView<'_, f32, D>,
        g: Option<ArrayViewMut<'_, f32, D>>,
    ) -> Result<Loss> {
        match self {
            Ew::SmoothL1(c) => nd::smooth_l1(be, c, a, b, g),
            Ew::Huber(c) => nd::huber(be, c, a, b, g),
            Ew::Bce(c) => nd::bce_with_logits(be, c, a, b, g),
            Ew::Focal(c) => nd::sigmoid_focal(be, c, a, b, g),
        }
    }

    /// The slice API.
    fn slice<B: Losses<f32>>(
        &self,
        be: &B,
        a: &[f32],
        b: &[f32],
        up: Upstream<'_>,
        g: Option<&mut [f32]>,
    ) -> Result<Loss> {
        let input = Input::new(a).with_optional_grad(g).with_upstream(up);
        match self {
            Ew::SmoothL1(c) => be.smooth_l1(c, input, b),
            Ew::Huber(c) => be.huber(c, input, b),
            Ew::Bce(c) => be.bce_with_logits(c, input, b),
            Ew::Focal(c) => be.sigmoid_focal(c, input, b),
        }
    }
}

/// Checks the wrapper against the slice API on arrays of `shape`, with and without a
/// gradient, through a statically and a dynamically dimensioned view.
fn ew_case<B: Losses<f32>, Sh: ShapeBuilder<Dim = D> + Clone, D: Dimension>(
    be: &B,
    rng: &mut Rng,
    loss: &Ew,
    shape: Sh,
) {
    let a0 = Array::<f32, D>::zeros(shape.clone());
    let len = a0.len();
    let (av, bv) = loss.data(rng, len);
    let a = Array::from_shape_vec(shape.clone(), av.clone()).unwrap();
    let b = Array::from_shape_vec(shape.clone(), bv.clone()).unwrap();
    let up_vals: Vec<f64> = (0..len).map(|i| 1.0 - i as f64 * 0.01).collect();
    let up = if loss.reduction() == Reduction::None {
        Upstream::PerElement(&up_vals)
    } else {
        Upstream::Scalar(0.75)
    };
    let mut g_want = vec![0.0f32; len];
    let want = loss.slice(be, &av, &bv, up, Some(&mut g_want)).unwrap();
    let mut g = Array::<f32, D>::from_elem(shape.clone(), f32::NAN);
    let got = loss
        .nd(be, a.view(), b.view(), up, Some(g.view_mut()))
        .unwrap();
    let ctx = format!("{loss:?} {:?}", a.shape());
    assert_eq!(bits(&got), bits(&want), "{ctx}");
    assert_eq!(bits32(g.as_slice().unwrap()), bits32(&g_want), "{ctx}");
    // Forward only.
    let want_fwd = loss.slice(be, &av, &bv, up, None).unwrap();
    let got = loss.nd(be, a.view(), b.view(), up, None).unwrap();
    assert_eq!(bits(&got), bits(&want_fwd), "{ctx}");
    // The same through `ArrayViewD`.
    let mut gd = Array::<f32, IxDyn>::from_elem(IxDyn(a.shape()), f32::NAN);
    let got = loss
        .nd(
            be,
            a.view().into_dyn(),
            b.view().into_dyn(),
            up,
            Some(gd.view_mut()),
        )
        .unwrap();
    assert_eq!(bits(&got), bits(&want), "{ctx} (dyn)");
    assert_eq!(
        bits32(gd.as_slice().unwrap()),
        bits32(&g_want),
        "{ctx} (dyn)"
    );
    // The common call: upstream 1.
    let mut g1_want = vec![0.0f32; len];
    let want = loss
        .slice(be, &av, &bv, Upstream::ONE, Some(&mut g1_want))
        .unwrap();
    let mut g1 = Array::<f32, D>::from_elem(shape, f32::NAN);
    let got = loss
        .nd1(be, a.view(), b.view(), Some(g1.view_mut()))
        .unwrap();
    assert_eq!(bits(&got), bits(&want), "{ctx} (upstream 1)");
    assert_eq!(bits32(g1.as_slice().unwrap()), bits32(&g1_want), "{ctx}");
}

fn ew_matches<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(8);
    for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
        for loss in Ew::all(reduction, 5) {
            ew_case(be, &mut rng, &loss, (3, 4, 5));
            ew_case(be, &mut rng, &loss, (7, 5));
            ew_case(be, &mut rng, &loss, 5);
            ew_case(be, &mut rng, &loss, (2, 1, 3, 5));
        }
        // Long enough for several parallel blocks.
        for loss in Ew::all(reduction, 1000) {
            ew_case(be, &mut rng, &loss, (70, 1000));
        }
    }
}

fn ew_non_contiguous<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(9);
    for loss in Ew::all(Reduction::Mean, 5) {
        let (an, bn) = loss.names();
        let (av, bv) = loss.data(&mut rng, 60);
        let a = Array::from_shape_vec((3, 4, 5), av.clone()).unwrap();
        let b = Array::from_shape_vec((3, 4, 5), bv.clone()).unwrap();
        // A [5, 4, 3] array with its axes reversed is [3, 4, 5] but not standard layout.
        let a_rev = Array::from_shape_vec((5, 4, 3), av).unwrap();
        let err = loss
            .nd1(be, a_rev.view().reversed_axes(), b.view(), None)
            .unwrap_err();
        assert_eq!(err, LossError::NonContiguous { what: an }, "{loss:?}");
        // Every other entry of the last axis.
        let (_, bv2) = loss.data(&mut rng, 120);
        let b_wide = Array::from_shape_vec((3, 4, 10), bv2).unwrap();
        let err = loss
            .nd1(be, a.view(), b_wide.slice(s![.., .., ..;2]), None)
            .unwrap_err();
        assert_eq!(err, LossError::NonContiguous { what: bn }, "{loss:?}");
        // A column-major gradient.
        let mut g = Array::<f32, _>::zeros((3, 4, 5).f());
        let err = loss
            .nd1(be, a.view(), b.view(), Some(g.view_mut()))
            .unwrap_err();
        assert_eq!(err, LossError::NonContiguous { what: "grad" }, "{loss:?}");
        // Dynamic dimension: a transposed 2-D view.
        let a2 = Array::from_shape_vec((12, 5), a.as_slice().unwrap().to_vec()).unwrap();
        let b2 = Array::from_shape_vec((5, 12), b.as_slice().unwrap().to_vec()).unwrap();
        let err = loss
            .nd1(be, a2.view().into_dyn(), b2.t().into_dyn(), None)
            .unwrap_err();
        assert_eq!(err, LossError::NonContiguous { what: bn }, "{loss:?}");
    }
}

fn ew_shapes<B: Losses<f32>>(be: &B) {
    let mut rng = Rng::new(10);
    for loss in Ew::all(Reduction::Sum, 5) {
        let (_, bn) = loss.names();
        let (av, bv) = loss.data(&mut rng, 60);
        let a = Array::from_shape_vec((3, 4, 5), av.clone()).unwrap();
        // Same elements, another shape (the slice API cannot tell).
        let b_t = Array::from_shape_vec((5, 4, 3), bv.clone()).unwrap();
        assert!(loss.slice(be, &av, &bv, Upstream::ONE, None).is_ok());
        let err = loss.nd1(be, a.view(), b_t.view(), None).unwrap_err();
        assert!(
            matches!(err, LossError::ShapeMismatch { what, expected: 60, got: 60 } if what == bn),
            "{loss:?}: {err:?}"
        );
        // Another length: the same error as the slice API.
        let b_short = Array::from_shape_vec((3, 4, 4), bv[..48].to_vec()).unwrap();
        let err = loss.nd1(be, a.view(), b_short.view(), None).unwrap_err();
        let want = loss
            .slice(be, &av, &bv[..48], Upstream::ONE, None)
            .unwrap_err();
        assert_eq!(err, want, "{loss:?}");
        assert!(
            matches!(err, LossError::ShapeMismatch { what, expected: 60, got: 48 } if what == bn),
            "{loss:?}: {err:?}"
        );
        // Another number of dimensions (dynamic views).
        let b_flat = Array::from_shape_vec(60, bv.clone()).unwrap();
        let err = loss
            .nd1(be, a.view().into_dyn(), b_flat.view().into_dyn(), None)
            .unwrap_err();
        assert!(
            matches!(err, LossError::ShapeMismatch { what, .. } if what == bn),
            "{loss:?}: {err:?}"
        );
        // Gradient of another shape or length.
        let b = Array::from_shape_vec((3, 4, 5), bv).unwrap();
        for shape in [(3usize, 5usize, 4usize), (3, 4, 6)] {
            let mut g = Array::<f32, _>::zeros(shape);
            let err = loss
                .nd1(be, a.view(), b.view(), Some(g.view_mut()))
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    LossError::ShapeMismatch {
                        what: "grad",
                        expected: 60,
                        ..
                    }
                ),
                "{loss:?} {shape:?}: {err:?}"
            );
        }
        // Errors found by the slice API (a per-element upstream under `sum`) come through.
        let up = vec![1.0; 60];
        let err = loss
            .nd(be, a.view(), b.view(), Upstream::PerElement(&up), None)
            .unwrap_err();
        let want = loss
            .slice(
                be,
                a.as_slice().unwrap(),
                b.as_slice().unwrap(),
                Upstream::PerElement(&up),
                None,
            )
            .unwrap_err();
        assert_eq!(err, want, "{loss:?}");
        assert!(matches!(
            err,
            LossError::InvalidParameter {
                name: "upstream",
                ..
            }
        ));
    }
}

fn ew_empty<B: Losses<f32>>(be: &B) {
    for loss in Ew::all(Reduction::Mean, 5) {
        let (an, _) = loss.names();
        let want = loss
            .slice(be, &[], &[], Upstream::ONE, Some(&mut []))
            .unwrap_err();
        assert!(
            matches!(want, LossError::EmptyInput { what, .. } if what == an),
            "{loss:?}: {want:?}"
        );
        for shape in [vec![0usize], vec![3, 0, 5], vec![0, 4]] {
            let a = Array::<f32, _>::zeros(IxDyn(&shape));
            let mut g = Array::<f32, _>::zeros(IxDyn(&shape));
            let err = loss
                .nd1(be, a.view(), a.view(), Some(g.view_mut()))
                .unwrap_err();
            assert_eq!(err, want, "{loss:?} {shape:?}");
            let err = loss.nd1(be, a.view(), a.view(), None).unwrap_err();
            assert_eq!(err, want, "{loss:?} {shape:?}");
        }
        // An empty input against a non-empty target: the slice API reports the empty input
        // first, and so does the wrapper.
        let a = Array::<f32, _>::zeros((0, 5));
        let b = Array::<f32, _>::from_elem((2, 5), 0.5);
        let want = loss
            .slice(be, &[], b.as_slice().unwrap(), Upstream::ONE, None)
            .unwrap_err();
        let err = loss.nd1(be, a.view(), b.view(), None).unwrap_err();
        assert_eq!(err, want, "{loss:?}");
    }
}

/// The wrappers are generic over the element type too: `f64` arrays on the reference.
#[test]
fn f64_data_on_the_reference() {
    let be = ReferenceBackend;
    let mut rng = Rng::new(14);
    let (n, c) = (6, 9);
    let cfg = CrossEntropy::smooth_loss(0.2).with_reduction(Reduction::None);
    let z = Array2::from_shape_vec((n, c), rng.vec(n * c, -5.0, 5.0)).unwrap();
    let t: Array1<i64> = (0..n).map(|_| rng.below(c) as i64).collect();
    let mut g_want = vec![0.0f64; n * c];
    let want = <ReferenceBackend as Losses<f64>>::cross_entropy(
        &be,
        &cfg,
        Input::matrix(z.as_slice().unwrap(), n, c).with_grad(&mut g_want),
        t.as_slice().unwrap(),
    )
    .unwrap();
    let mut g = Array2::<f64>::from_elem((n, c), f64::NAN);
    let got = nd::cross_entropy(&be, &cfg, z.view(), t.view(), Some(g.view_mut())).unwrap();
    assert_eq!(bits(&got), bits(&want));
    assert_eq!(
        g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        g_want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let b1 = Array2::from_shape_vec((3, 4), boxes(&mut rng, 3, BoxFormat::Xywh))
        .unwrap()
        .mapv(f64::from);
    let b2 = Array2::from_shape_vec((2, 4), boxes(&mut rng, 2, BoxFormat::Xywh))
        .unwrap()
        .mapv(f64::from);
    let mut want = vec![0.0f64; 6];
    <ReferenceBackend as Losses<f64>>::box_iou(
        &be,
        BoxFormat::Xywh,
        b1.as_slice().unwrap(),
        b2.as_slice().unwrap(),
        &mut want,
    )
    .unwrap();
    let got = nd::box_iou(&be, BoxFormat::Xywh, b1.view(), b2.view()).unwrap();
    assert_eq!(got.as_slice().unwrap(), &want[..]);
}
