//! The `ndarray` wrappers of the box, regression and binary losses against the slice API on the
//! same data: results and gradients must be bit-identical (the slice API is tested against the
//! `f64` reference elsewhere), non-standard layouts are refused with `NonContiguous`, shape
//! errors are typed, and empty inputs get the slice API's answer.

use ndarray::{Array, Array2, ArrayView, ArrayViewMut, Dimension, IxDyn, ShapeBuilder, s};
use smoothloss_core::backend::{BinaryOps, BoxLossOps, RegressionOps};
use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, Huber, LossError, Reduction, Result,
    SigmoidFocal, SmoothL1, Upstream,
};
use smoothloss_cpu::CpuBackend;
use smoothloss_cpu::ndarray_api;
use smoothloss_spec::random::Rng;

const FORMATS: [BoxFormat; 3] = [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh];

/// `n` uniform values in `[lo, hi)`, rounded to `f32`.
fn vec32(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    (0..n).map(|_| rng.range(lo, hi) as f32).collect()
}

/// A uniform value in `[lo, hi)`, rounded to `f32`.
fn range32(rng: &mut Rng, lo: f64, hi: f64) -> f32 {
    rng.range(lo, hi) as f32
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn bits32(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `n` boxes in `format` with positive sizes, overlapping their partners more or less.
fn boxes(rng: &mut Rng, n: usize, format: BoxFormat) -> Vec<f32> {
    let mut out = Vec::with_capacity(4 * n);
    for _ in 0..n {
        let (x1, y1) = (
            range32(rng, -10.0, 10.0) as f64,
            range32(rng, -10.0, 10.0) as f64,
        );
        let (w, h) = (range32(rng, 0.5, 8.0) as f64, range32(rng, 0.5, 8.0) as f64);
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

#[test]
fn box_loss_matches_slice_api() {
    let be = CpuBackend::new();
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
            let want = be.box_loss(&cfg, p, t, up, Some(&mut g_want)).unwrap();
            let mut g = Array2::<f32>::from_elem((n, 4), f32::NAN);
            let got = ndarray_api::box_loss(
                &be,
                &cfg,
                pred.view(),
                target.view(),
                up,
                Some(g.view_mut()),
            )
            .unwrap();
            assert_eq!(bits(&got), bits(&want), "{cfg:?} n={n}");
            assert_eq!(
                bits32(g.as_slice().unwrap()),
                bits32(&g_want),
                "{cfg:?} n={n}"
            );
            // Forward only.
            let want = be.box_loss(&cfg, p, t, up, None).unwrap();
            let got =
                ndarray_api::box_loss(&be, &cfg, pred.view(), target.view(), up, None).unwrap();
            assert_eq!(bits(&got), bits(&want), "{cfg:?} n={n}");
        }
    }
}

#[test]
fn box_loss_refuses_non_contiguous() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(2);
    let cfg = BoxLoss::default();
    let pred = box_array(&mut rng, 5, cfg.format);
    let target = box_array(&mut rng, 5, cfg.format);
    // A [4, 5] array seen transposed as [5, 4].
    let pred_t = Array2::from_shape_vec((4, 5), pred.as_slice().unwrap().to_vec()).unwrap();
    let err = ndarray_api::box_loss(&be, &cfg, pred_t.t(), target.view(), Upstream::ONE, None)
        .unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "pred" });
    // Every other row of a [10, 4] array.
    let target2 = box_array(&mut rng, 10, cfg.format);
    let err = ndarray_api::box_loss(
        &be,
        &cfg,
        pred.view(),
        target2.slice(s![..;2, ..]),
        Upstream::ONE,
        None,
    )
    .unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "target" });
    // A column-major gradient of the right shape.
    let mut g = Array2::<f32>::zeros((5, 4).f());
    let err = ndarray_api::box_loss(
        &be,
        &cfg,
        pred.view(),
        target.view(),
        Upstream::ONE,
        Some(g.view_mut()),
    )
    .unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "grad" });
}

#[test]
fn box_loss_shape_errors() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(3);
    let cfg = BoxLoss::default();
    let pred = box_array(&mut rng, 5, cfg.format);
    let target = box_array(&mut rng, 5, cfg.format);
    // [4, 3]: twelve numbers, which the slice API would take for three boxes.
    let p43 = Array2::from_shape_vec((4, 3), vec32(&mut rng, 12, 0.0, 1.0)).unwrap();
    let t43 = Array2::from_shape_vec((4, 3), vec32(&mut rng, 12, 0.0, 1.0)).unwrap();
    assert!(
        be.box_loss(
            &cfg,
            p43.as_slice().unwrap(),
            t43.as_slice().unwrap(),
            Upstream::ONE,
            None
        )
        .is_ok()
    );
    let err =
        ndarray_api::box_loss(&be, &cfg, p43.view(), t43.view(), Upstream::ONE, None).unwrap_err();
    assert_eq!(
        err,
        LossError::ShapeMismatch {
            what: "pred",
            expected: 16,
            got: 12
        }
    );
    // [5, 3]: the slice API refuses it too, with the same variant and argument.
    let p53 = Array2::from_shape_vec((5, 3), vec32(&mut rng, 15, 0.0, 1.0)).unwrap();
    let slice_err = be
        .box_loss(
            &cfg,
            p53.as_slice().unwrap(),
            p53.as_slice().unwrap(),
            Upstream::ONE,
            None,
        )
        .unwrap_err();
    assert!(matches!(
        slice_err,
        LossError::ShapeMismatch { what: "pred", .. }
    ));
    let err =
        ndarray_api::box_loss(&be, &cfg, p53.view(), p53.view(), Upstream::ONE, None).unwrap_err();
    assert!(matches!(err, LossError::ShapeMismatch { what: "pred", .. }));
    // Target with another number of boxes, or the same numbers in another shape.
    let t6 = box_array(&mut rng, 6, cfg.format);
    let err =
        ndarray_api::box_loss(&be, &cfg, pred.view(), t6.view(), Upstream::ONE, None).unwrap_err();
    assert!(matches!(
        err,
        LossError::ShapeMismatch {
            what: "target",
            expected: 20,
            got: 24
        }
    ));
    let t_flat = target.clone().into_shape_with_order((10, 2)).unwrap();
    let err = ndarray_api::box_loss(&be, &cfg, pred.view(), t_flat.view(), Upstream::ONE, None)
        .unwrap_err();
    assert!(matches!(
        err,
        LossError::ShapeMismatch { what: "target", .. }
    ));
    // Gradient of the wrong shape (same length, and another length).
    for shape in [(4usize, 5usize), (6, 4)] {
        let mut g = Array2::<f32>::zeros(shape);
        let err = ndarray_api::box_loss(
            &be,
            &cfg,
            pred.view(),
            target.view(),
            Upstream::ONE,
            Some(g.view_mut()),
        )
        .unwrap_err();
        assert!(
            matches!(err, LossError::ShapeMismatch { what: "grad", .. }),
            "{shape:?}: {err:?}"
        );
    }
    // Errors found by the slice API come through unchanged.
    let bad = BoxLoss::default().with_eps(0.0);
    let err = ndarray_api::box_loss(&be, &bad, pred.view(), target.view(), Upstream::ONE, None)
        .unwrap_err();
    let want = be
        .box_loss(
            &bad,
            pred.as_slice().unwrap(),
            target.as_slice().unwrap(),
            Upstream::ONE,
            None,
        )
        .unwrap_err();
    assert_eq!(err, want);
    assert!(matches!(
        err,
        LossError::InvalidParameter { name: "eps", .. }
    ));
}

#[test]
fn box_loss_empty_input() {
    let be = CpuBackend::new();
    let cfg = BoxLoss::default();
    let want = be
        .box_loss(&cfg, &[], &[], Upstream::ONE, Some(&mut []))
        .unwrap_err();
    assert!(matches!(want, LossError::EmptyInput { what: "pred", .. }));
    let e = Array2::<f32>::zeros((0, 4));
    let mut g = Array2::<f32>::zeros((0, 4));
    let err = ndarray_api::box_loss(
        &be,
        &cfg,
        e.view(),
        e.view(),
        Upstream::ONE,
        Some(g.view_mut()),
    )
    .unwrap_err();
    assert_eq!(err, want);
    let err =
        ndarray_api::box_loss(&be, &cfg, e.view(), e.view(), Upstream::ONE, None).unwrap_err();
    assert_eq!(err, want);
}

#[test]
fn box_iou_matches_slice_api() {
    let be = CpuBackend::new();
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
            ndarray_api::box_iou(&be, format, b1.view(), b2.view(), out.view_mut()).unwrap();
            assert_eq!(bits32(out.as_slice().unwrap()), bits32(&want), "{format:?}");
        }
    }
}

#[test]
fn box_iou_refuses_non_contiguous() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(5);
    let f = BoxFormat::Xyxy;
    let b1 = box_array(&mut rng, 5, f);
    let b2 = box_array(&mut rng, 3, f);
    let b1_t = Array2::from_shape_vec((4, 5), b1.as_slice().unwrap().to_vec()).unwrap();
    let mut out = Array2::<f32>::zeros((5, 3));
    let err = ndarray_api::box_iou(&be, f, b1_t.t(), b2.view(), out.view_mut()).unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "boxes1" });
    let b2_wide = box_array(&mut rng, 6, f);
    let err = ndarray_api::box_iou(
        &be,
        f,
        b1.view(),
        b2_wide.slice(s![1..;2, ..]),
        out.view_mut(),
    )
    .unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "boxes2" });
    let mut out_t = Array2::<f32>::zeros((3, 5));
    let err = ndarray_api::box_iou(
        &be,
        f,
        b1.view(),
        b2.view(),
        out_t.view_mut().reversed_axes(),
    )
    .unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "iou" });
}

#[test]
fn box_iou_shape_errors() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(6);
    let f = BoxFormat::Xyxy;
    let b1 = box_array(&mut rng, 5, f);
    let b2 = box_array(&mut rng, 3, f);
    // Transposed output shape (same length) and wrong length.
    for shape in [(3usize, 5usize), (5, 4), (15, 1)] {
        let mut out = Array2::<f32>::zeros(shape);
        let err = ndarray_api::box_iou(&be, f, b1.view(), b2.view(), out.view_mut()).unwrap_err();
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
    let w3 = Array2::from_shape_vec((4, 3), vec32(&mut rng, 12, 0.0, 1.0)).unwrap();
    let mut out = Array2::<f32>::zeros((4, 3));
    let err = ndarray_api::box_iou(&be, f, w3.view(), b2.view(), out.view_mut()).unwrap_err();
    assert!(matches!(
        err,
        LossError::ShapeMismatch {
            what: "boxes1",
            expected: 16,
            got: 12
        }
    ));
    let mut out = Array2::<f32>::zeros((5, 4));
    let err = ndarray_api::box_iou(&be, f, b1.view(), w3.view(), out.view_mut()).unwrap_err();
    assert!(matches!(
        err,
        LossError::ShapeMismatch { what: "boxes2", .. }
    ));
}

#[test]
fn box_iou_empty_inputs() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(7);
    let f = BoxFormat::Cxcywh;
    let b = box_array(&mut rng, 3, f);
    let e = Array2::<f32>::zeros((0, 4));
    // The slice API accepts empty box sets (nothing to compute); so does the wrapper.
    let want = be.box_iou(f, &[], b.as_slice().unwrap(), &mut []);
    assert_eq!(want, Ok(()));
    let mut out = Array2::<f32>::zeros((0, 3));
    assert_eq!(
        ndarray_api::box_iou(&be, f, e.view(), b.view(), out.view_mut()),
        want
    );
    let mut out = Array2::<f32>::zeros((3, 0));
    assert_eq!(
        ndarray_api::box_iou(&be, f, b.view(), e.view(), out.view_mut()),
        be.box_iou(f, b.as_slice().unwrap(), &[], &mut [])
    );
    // An empty set against a non-empty output: the slice API's shape error.
    let mut out = Array2::<f32>::zeros((1, 3));
    let want = be
        .box_iou(f, &[], b.as_slice().unwrap(), &mut [0.0; 3])
        .unwrap_err();
    assert_eq!(
        ndarray_api::box_iou(&be, f, e.view(), b.view(), out.view_mut()).unwrap_err(),
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
        let a = vec32(rng, len, -4.0, 4.0);
        let b = match self {
            Ew::SmoothL1(_) | Ew::Huber(_) => vec32(rng, len, -4.0, 4.0),
            Ew::Bce(_) | Ew::Focal(_) => (0..len)
                .map(|i| match i % 3 {
                    0 => 0.0,
                    1 => 1.0,
                    _ => range32(rng, 0.0, 1.0),
                })
                .collect(),
        };
        (a, b)
    }

    fn nd<D: Dimension>(
        &self,
        be: &CpuBackend,
        a: ArrayView<'_, f32, D>,
        b: ArrayView<'_, f32, D>,
        up: Upstream<'_>,
        g: Option<ArrayViewMut<'_, f32, D>>,
    ) -> Result<Vec<f64>> {
        match self {
            Ew::SmoothL1(c) => ndarray_api::smooth_l1(be, c, a, b, up, g),
            Ew::Huber(c) => ndarray_api::huber(be, c, a, b, up, g),
            Ew::Bce(c) => ndarray_api::bce_with_logits(be, c, a, b, up, g),
            Ew::Focal(c) => ndarray_api::sigmoid_focal(be, c, a, b, up, g),
        }
    }

    fn slice(
        &self,
        be: &CpuBackend,
        a: &[f32],
        b: &[f32],
        up: Upstream<'_>,
        g: Option<&mut [f32]>,
    ) -> Result<Vec<f64>> {
        match self {
            Ew::SmoothL1(c) => be.smooth_l1(c, a, b, up, g),
            Ew::Huber(c) => be.huber(c, a, b, up, g),
            Ew::Bce(c) => be.bce_with_logits(c, a, b, up, g),
            Ew::Focal(c) => be.sigmoid_focal(c, a, b, up, g),
        }
    }
}

/// Checks the wrapper against the slice API on arrays of `shape`, with and without a
/// gradient, through a statically and a dynamically dimensioned view.
fn ew_case<Sh: ShapeBuilder<Dim = D> + Clone, D: Dimension>(
    be: &CpuBackend,
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
    let reduction = match loss {
        Ew::SmoothL1(c) => c.reduction,
        Ew::Huber(c) => c.reduction,
        Ew::Bce(c) => c.reduction,
        Ew::Focal(c) => c.reduction,
    };
    let up = if reduction == Reduction::None {
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
}

#[test]
fn elementwise_match_slice_api() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(8);
    for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
        for loss in Ew::all(reduction, 5) {
            ew_case(&be, &mut rng, &loss, (3, 4, 5));
            ew_case(&be, &mut rng, &loss, (7, 5));
            ew_case(&be, &mut rng, &loss, 5);
            ew_case(&be, &mut rng, &loss, (2, 1, 3, 5));
        }
        // Long enough for several parallel blocks.
        for loss in Ew::all(reduction, 1000) {
            ew_case(&be, &mut rng, &loss, (70, 1000));
        }
    }
}

#[test]
fn elementwise_refuse_non_contiguous() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(9);
    for loss in Ew::all(Reduction::Mean, 5) {
        let (an, bn) = loss.names();
        let (av, bv) = loss.data(&mut rng, 60);
        let a = Array::from_shape_vec((3, 4, 5), av.clone()).unwrap();
        let b = Array::from_shape_vec((3, 4, 5), bv.clone()).unwrap();
        // A [5, 4, 3] array with its axes reversed is [3, 4, 5] but not standard layout.
        let a_rev = Array::from_shape_vec((5, 4, 3), av).unwrap();
        let err = loss
            .nd(
                &be,
                a_rev.view().reversed_axes(),
                b.view(),
                Upstream::ONE,
                None,
            )
            .unwrap_err();
        assert_eq!(err, LossError::NonContiguous { what: an }, "{loss:?}");
        // Every other entry of the last axis.
        let (_, bv2) = loss.data(&mut rng, 120);
        let b_wide = Array::from_shape_vec((3, 4, 10), bv2).unwrap();
        let err = loss
            .nd(
                &be,
                a.view(),
                b_wide.slice(s![.., .., ..;2]),
                Upstream::ONE,
                None,
            )
            .unwrap_err();
        assert_eq!(err, LossError::NonContiguous { what: bn }, "{loss:?}");
        // A column-major gradient.
        let mut g = Array::<f32, _>::zeros((3, 4, 5).f());
        let err = loss
            .nd(&be, a.view(), b.view(), Upstream::ONE, Some(g.view_mut()))
            .unwrap_err();
        assert_eq!(err, LossError::NonContiguous { what: "grad" }, "{loss:?}");
        // Dynamic dimension: a transposed 2-D view.
        let a2 = Array::from_shape_vec((12, 5), a.as_slice().unwrap().to_vec()).unwrap();
        let b2 = Array::from_shape_vec((5, 12), b.as_slice().unwrap().to_vec()).unwrap();
        let err = loss
            .nd(
                &be,
                a2.view().into_dyn(),
                b2.t().into_dyn(),
                Upstream::ONE,
                None,
            )
            .unwrap_err();
        assert_eq!(err, LossError::NonContiguous { what: bn }, "{loss:?}");
    }
}

#[test]
fn elementwise_shape_errors() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(10);
    for loss in Ew::all(Reduction::Sum, 5) {
        let (_, bn) = loss.names();
        let (av, bv) = loss.data(&mut rng, 60);
        let a = Array::from_shape_vec((3, 4, 5), av.clone()).unwrap();
        // Same elements, another shape (the slice API cannot tell).
        let b_t = Array::from_shape_vec((5, 4, 3), bv.clone()).unwrap();
        let err = loss
            .nd(&be, a.view(), b_t.view(), Upstream::ONE, None)
            .unwrap_err();
        assert!(
            matches!(err, LossError::ShapeMismatch { what, expected: 60, got: 60 } if what == bn),
            "{loss:?}: {err:?}"
        );
        // Another length: the same error as the slice API.
        let b_short = Array::from_shape_vec((3, 4, 4), bv[..48].to_vec()).unwrap();
        let err = loss
            .nd(&be, a.view(), b_short.view(), Upstream::ONE, None)
            .unwrap_err();
        let want = loss
            .slice(&be, &av, &bv[..48], Upstream::ONE, None)
            .unwrap_err();
        assert_eq!(err, want, "{loss:?}");
        assert!(
            matches!(err, LossError::ShapeMismatch { what, expected: 60, got: 48 } if what == bn),
            "{loss:?}: {err:?}"
        );
        // Another number of dimensions (dynamic views).
        let b_flat = Array::from_shape_vec(60, bv.clone()).unwrap();
        let err = loss
            .nd(
                &be,
                a.view().into_dyn(),
                b_flat.view().into_dyn(),
                Upstream::ONE,
                None,
            )
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
                .nd(&be, a.view(), b.view(), Upstream::ONE, Some(g.view_mut()))
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
            .nd(&be, a.view(), b.view(), Upstream::PerElement(&up), None)
            .unwrap_err();
        let want = loss
            .slice(
                &be,
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

#[test]
fn elementwise_empty_inputs() {
    let be = CpuBackend::new();
    for loss in Ew::all(Reduction::Mean, 5) {
        let (an, _) = loss.names();
        let want = loss
            .slice(&be, &[], &[], Upstream::ONE, Some(&mut []))
            .unwrap_err();
        assert!(
            matches!(want, LossError::EmptyInput { what, .. } if what == an),
            "{loss:?}: {want:?}"
        );
        for shape in [vec![0usize], vec![3, 0, 5], vec![0, 4]] {
            let a = Array::<f32, _>::zeros(IxDyn(&shape));
            let mut g = Array::<f32, _>::zeros(IxDyn(&shape));
            let err = loss
                .nd(&be, a.view(), a.view(), Upstream::ONE, Some(g.view_mut()))
                .unwrap_err();
            assert_eq!(err, want, "{loss:?} {shape:?}");
            let err = loss
                .nd(&be, a.view(), a.view(), Upstream::ONE, None)
                .unwrap_err();
            assert_eq!(err, want, "{loss:?} {shape:?}");
        }
        // An empty input against a non-empty target: the slice API reports the empty input
        // first, and so does the wrapper.
        let a = Array::<f32, _>::zeros((0, 5));
        let b = Array::<f32, _>::from_elem((2, 5), 0.5);
        let want = loss
            .slice(&be, &[], b.as_slice().unwrap(), Upstream::ONE, None)
            .unwrap_err();
        let err = loss
            .nd(&be, a.view(), b.view(), Upstream::ONE, None)
            .unwrap_err();
        assert_eq!(err, want, "{loss:?}");
    }
}
