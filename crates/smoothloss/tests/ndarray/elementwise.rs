//! The element-wise losses through the ndarray wrappers.

use super::*;

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
    assert_same_loss(&got, &want, &ctx.to_string());
    assert_same32(g.as_slice().unwrap(), &g_want, &ctx.to_string());
    // Forward only.
    let want_fwd = loss.slice(be, &av, &bv, up, None).unwrap();
    let got = loss.nd(be, a.view(), b.view(), up, None).unwrap();
    assert_same_loss(&got, &want_fwd, &ctx.to_string());
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
    assert_same_loss(&got, &want, &format!("{ctx} (dyn)"));
    assert_same32(gd.as_slice().unwrap(), &g_want, &format!("{ctx} (dyn)"));
    // The common call: upstream 1.
    let mut g1_want = vec![0.0f32; len];
    let want = loss
        .slice(be, &av, &bv, Upstream::ONE, Some(&mut g1_want))
        .unwrap();
    let mut g1 = Array::<f32, D>::from_elem(shape, f32::NAN);
    let got = loss
        .nd1(be, a.view(), b.view(), Some(g1.view_mut()))
        .unwrap();
    assert_same_loss(&got, &want, &format!("{ctx} (upstream 1)"));
    assert_same32(g1.as_slice().unwrap(), &g1_want, &ctx.to_string());
}

pub(super) fn ew_matches<B: Losses<f32>>(be: &B) {
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

pub(super) fn ew_non_contiguous<B: Losses<f32>>(be: &B) {
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

pub(super) fn ew_shapes<B: Losses<f32>>(be: &B) {
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
            matches!(&err, LossError::WrongShape { what, expected, got }
                if *what == bn && *expected == [3, 4, 5] && *got == [5, 4, 3]),
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
            matches!(&err, LossError::WrongShape { what, expected, got }
                if *what == bn && *expected == [3, 4, 5] && *got == [60]),
            "{loss:?}: {err:?}"
        );
        // Gradient of another shape or length.
        let b = Array::from_shape_vec((3, 4, 5), bv).unwrap();
        for shape in [(3usize, 5usize, 4usize), (3, 4, 6)] {
            let mut g = Array::<f32, _>::zeros(shape);
            let err = loss
                .nd1(be, a.view(), b.view(), Some(g.view_mut()))
                .unwrap_err();
            let same = shape.0 * shape.1 * shape.2 == 60;
            assert!(
                match &err {
                    LossError::WrongShape {
                        what: "grad",
                        expected,
                        got,
                    } => same && *expected == [3, 4, 5] && *got == [shape.0, shape.1, shape.2],
                    LossError::ShapeMismatch {
                        what: "grad",
                        expected: 60,
                        ..
                    } => !same,
                    _ => false,
                },
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

pub(super) fn ew_empty<B: Losses<f32>>(be: &B) {
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
