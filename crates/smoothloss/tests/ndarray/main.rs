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
use smoothloss_spec::kit::{self, Rng};

mod boxes;
mod ce;
mod elementwise;
use boxes::*;
use ce::*;
use elementwise::*;

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

/// Panics unless two losses are of the same kind (per item or reduced) and their values are
/// bit-identical (`TOL-3`, `kit::same_bits_f64`).
#[track_caller]
fn assert_same_loss(got: &Loss, want: &Loss, what: &str) {
    assert_eq!(
        got.per_item().is_some(),
        want.per_item().is_some(),
        "{what}: per item or reduced"
    );
    if let Err(e) = kit::same_bits_f64(got.values(), want.values()) {
        panic!("{what}: loss values differ: {e}");
    }
}

/// Panics unless two `f32` tensors are bit-identical (`TOL-3`, `kit::same_bits_f32`).
#[track_caller]
fn assert_same32(got: &[f32], want: &[f32], what: &str) {
    if let Err(e) = kit::same_bits_f32(got, want) {
        panic!("{what}: {e}");
    }
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
    for (i, kind) in BoxLossKind::TORCHVISION.into_iter().enumerate() {
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
    cross_entropy_shape_errors_name_both_shapes => ce_shape_errors_name_both_shapes,
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
    assert_same_loss(&got, &want, "");
    kit::assert_same_bits_f64(g.as_slice().unwrap(), &g_want);
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
