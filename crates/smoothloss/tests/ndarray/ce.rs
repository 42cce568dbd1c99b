//! Cross-entropy through the ndarray wrappers.

use super::*;

/// Cross-entropy configurations: smoothing, class weights, ignore index, every reduction.
pub(super) fn ce_configs(classes: usize) -> Vec<CrossEntropy> {
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
pub(super) fn ce_targets(rng: &mut Rng, n: usize, c: usize) -> Array1<i64> {
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
pub(super) fn ce_probs(rng: &mut Rng, n: usize, c: usize) -> Array2<f32> {
    let mut p = Array2::from_shape_vec((n, c), v32(rng, n * c, 0.0, 1.0)).unwrap();
    for mut row in p.rows_mut() {
        let s: f32 = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    p
}

pub(super) fn ce_matches<B: Losses<f32>>(be: &B) {
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
                assert_same_loss(&got, &want, &format!("{ctx} probs={probs}"));
                assert_same32(g.as_slice().unwrap(), &g_want, &ctx.to_string());
                // Forward only.
                let want = be
                    .cross_entropy(&cfg, Input::matrix(x, n, c).with_upstream(up), targets)
                    .unwrap();
                let (got, _) = call(None, Some(up));
                assert_same_loss(&got, &want, &format!("{ctx} probs={probs}"));
                // The common call: upstream 1.
                let mut g_want = vec![0.0f32; n * c];
                let input = Input::matrix(x, n, c).with_grad(&mut g_want);
                let want = be.cross_entropy(&cfg, input, targets).unwrap();
                let (got, g) = call(Some(Array2::from_elem((n, c), f32::NAN)), None);
                assert_same_loss(&got, &want, &format!("{ctx} probs={probs}"));
                assert_same32(g.unwrap().as_slice().unwrap(), &g_want, "");
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
                    assert_same_loss(&got, &want, &format!("{ctx} in place"));
                    assert_same32(zi.as_slice().unwrap(), &zs, &format!("{ctx} in place"));
                }
            }
        }
    }
}

pub(super) fn ce_non_contiguous<B: Losses<f32>>(be: &B) {
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

pub(super) fn ce_shape_errors<B: Losses<f32>>(be: &B) {
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
        LossError::WrongShape {
            what: "target_probs",
            expected: vec![n, c],
            got: vec![c, n]
        }
    );
    // Gradient of the wrong shape (same length, and another length).
    let q = ce_probs(&mut rng, n, c);
    for shape in [(c, n), (n, c + 1)] {
        let mut g = Array2::<f32>::zeros(shape);
        let err = nd::cross_entropy(be, &cfg, z.view(), t.view(), Some(g.view_mut())).unwrap_err();
        assert!(grad_shape_error(&err, [n, c], shape), "{shape:?}: {err:?}");
        let err =
            nd::cross_entropy_probs(be, &cfg, z.view(), q.view(), Some(g.view_mut())).unwrap_err();
        assert!(grad_shape_error(&err, [n, c], shape), "{shape:?}: {err:?}");
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

pub(super) fn ce_empty<B: Losses<f32>>(be: &B) {
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

/// Whether `err` is the wrappers' error for a gradient of `shape` given input `[n, c]`: both
/// shapes ([`LossError::WrongShape`]) for as many elements, else the counts.
fn grad_shape_error(err: &LossError, input: [usize; 2], shape: (usize, usize)) -> bool {
    let same = shape.0 * shape.1 == input[0] * input[1];
    match err {
        LossError::WrongShape {
            what: "grad",
            expected,
            got,
        } => same && *expected == input && *got == [shape.0, shape.1],
        LossError::ShapeMismatch {
            what: "grad",
            expected,
            ..
        } => !same && *expected == input[0] * input[1],
        _ => false,
    }
}

/// Issue 14's reproducers: a transposed `(c, n)` gradient of `(n, c)` logits is
/// [`LossError::WrongShape`] with both shapes (it was `ShapeMismatch { expected: 24, got: 24 }`),
/// and `(0, 5)` logits with a `(0, 6)` gradient are the front door's `EmptyInput` for the
/// logits (it was `expected: 0, got: 0`): neither's Debug nor Display contradicts itself.
pub(super) fn ce_shape_errors_name_both_shapes<B: Losses<f32>>(be: &B) {
    let cfg = CrossEntropy::new();
    let (n, c) = (4usize, 6usize);
    let z = Array2::<f32>::zeros((n, c));
    let t = Array1::<i64>::zeros(n);
    let mut g = Array2::<f32>::zeros((c, n));
    let err = nd::cross_entropy(be, &cfg, z.view(), t.view(), Some(g.view_mut())).unwrap_err();
    assert_eq!(
        err,
        LossError::WrongShape {
            what: "grad",
            expected: vec![4, 6],
            got: vec![6, 4]
        }
    );
    assert_eq!(
        format!("{err:?}"),
        "WrongShape { what: \"grad\", expected: [4, 6], got: [6, 4] }"
    );
    assert_eq!(
        err.to_string(),
        "shape mismatch for `grad`: expected shape [4, 6], got [6, 4]"
    );
    let mut gm = Array2::<f32>::zeros((c, n));
    let q = ce_probs(&mut Rng::new(3), n, c);
    let err =
        nd::cross_entropy_probs(be, &cfg, z.view(), q.view(), Some(gm.view_mut())).unwrap_err();
    assert!(
        matches!(err, LossError::WrongShape { what: "grad", .. }),
        "{err:?}"
    );
    // Empty logits with a gradient of another empty shape.
    let z0 = Array2::<f32>::zeros((0, 5));
    let t0 = Array1::<i64>::zeros(0);
    let mut g0 = Array2::<f32>::zeros((0, 6));
    let err = nd::cross_entropy(be, &cfg, z0.view(), t0.view(), Some(g0.view_mut())).unwrap_err();
    assert!(
        matches!(err, LossError::EmptyInput { what: "logits", .. }),
        "{err:?}"
    );
    let (dbg, msg) = (format!("{err:?}"), err.to_string());
    assert!(
        !dbg.contains("expected: 0") && !msg.contains("expected 0"),
        "{dbg} / {msg}"
    );
}
