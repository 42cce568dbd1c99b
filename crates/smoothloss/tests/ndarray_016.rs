//! `smoothloss::ndarray_016` takes ndarray 0.16 views and gives exactly what
//! `smoothloss::ndarray` gives on the same data in ndarray 0.17 views.
#![cfg(all(feature = "ndarray", feature = "ndarray-016"))]

use smoothloss::{BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, DefaultBackend, LossError};

#[test]
fn both_ndarray_releases_give_the_same_results() {
    let b = DefaultBackend::default();
    let z = [2.0_f32, 0.5, -1.0, 0.1, 0.2, 0.3];
    let cfg = CrossEntropy::smooth_loss(0.1);
    let z16 = ndarray_016::Array2::from_shape_vec((2, 3), z.to_vec()).unwrap();
    let t16 = ndarray_016::Array1::from_vec(vec![0_i64, 2]);
    let mut g16 = ndarray_016::Array2::<f32>::zeros((2, 3));
    let l16 = smoothloss::ndarray_016::cross_entropy(
        &b,
        &cfg,
        z16.view(),
        t16.view(),
        Some(g16.view_mut()),
    )
    .unwrap();
    let z17 = ndarray::Array2::from_shape_vec((2, 3), z.to_vec()).unwrap();
    let t17 = ndarray::Array1::from_vec(vec![0_i64, 2]);
    let mut g17 = ndarray::Array2::<f32>::zeros((2, 3));
    let l17 =
        smoothloss::ndarray::cross_entropy(&b, &cfg, z17.view(), t17.view(), Some(g17.view_mut()))
            .unwrap();
    assert_eq!(l16, l17);
    assert_eq!(g16.as_slice().unwrap(), g17.as_slice().unwrap());
    // The 0.16 module's checks are the same: a transposed view is refused.
    let e =
        smoothloss::ndarray_016::cross_entropy(&b, &cfg, z16.t(), t16.view(), None).unwrap_err();
    assert_eq!(e, LossError::NonContiguous { what: "logits" });
    let p = ndarray_016::arr2(&[[0.0_f32, 0.0, 2.0, 2.0]]);
    let giou = BoxLoss::new(BoxLossKind::Giou, BoxFormat::Xyxy);
    let l = smoothloss::ndarray_016::box_loss(&b, &giou, p.view(), p.view(), None).unwrap();
    assert!(l.value().abs() < 1e-6, "{l}"); // identical boxes (IoU eps)
}
