// The ndarray wrappers, compiled once per supported ndarray release (`lib.rs`: the modules
// `ndarray` for 0.17 and `ndarray_016` for 0.16, each with `nd` naming its ndarray crate).

use nd::{Array2, ArrayView, ArrayView1, ArrayView2, ArrayViewMut, ArrayViewMut2, Dimension};
use smoothloss_core::error::checked_size;
use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, CeTargets, CrossEntropy, Element, Huber, Input, Loss,
    LossError, Losses, Result, SigmoidFocal, SmoothL1, Upstream,
};

/// The data of a standard-layout view, else [`LossError::NonContiguous`] naming it.
fn data<'a, T, D: Dimension>(what: &'static str, a: &ArrayView<'a, T, D>) -> Result<&'a [T]> {
    a.to_slice().ok_or(LossError::NonContiguous { what })
}

/// The shape and data of a standard-layout gradient view, else [`LossError::NonContiguous`].
fn grad_data<'a, T, D: Dimension>(
    grad: Option<ArrayViewMut<'a, T, D>>,
) -> Result<Option<(D, &'a mut [T])>> {
    grad.map(|g| {
        let dim = g.raw_dim();
        g.into_slice()
            .map(|s| (dim, s))
            .ok_or(LossError::NonContiguous { what: "grad" })
    })
    .transpose()
}

/// `got` must have the shape `expected`; two shapes without elements always agree (an empty
/// input goes on to the front door, which reports what it reports for no elements). Different
/// element counts are [`LossError::ShapeMismatch`], as the front door's length checks report
/// them; the same count in another shape is [`LossError::WrongShape`], with both shapes.
fn check_shape(what: &'static str, expected: &[usize], got: &[usize]) -> Result<()> {
    let (e, g) = (
        expected.iter().product::<usize>(),
        got.iter().product::<usize>(),
    );
    if expected == got || (e == 0 && g == 0) {
        Ok(())
    } else if e == g {
        Err(LossError::WrongShape {
            what,
            expected: expected.to_vec(),
            got: got.to_vec(),
        })
    } else {
        Err(LossError::ShapeMismatch {
            what,
            expected: e,
            got: g,
        })
    }
}

/// The gradient (if any) must have the input's shape.
fn check_grad<T, D: Dimension>(input: &[usize], grad: &Option<(D, &mut [T])>) -> Result<()> {
    match grad {
        Some((dim, _)) => check_shape("grad", input, dim.slice()),
        None => Ok(()),
    }
}

/// Cross-entropy of `logits` `[N, C]` against class indices `targets` `[N]` (`CE-*`); the
/// gradient, when `grad` (`[N, C]`) is given, is written there. See
/// [`Losses::cross_entropy`]; the [example](self) above.
pub fn cross_entropy<T: Element, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &CrossEntropy,
    logits: ArrayView2<'_, T>,
    targets: ArrayView1<'_, i64>,
    grad: Option<ArrayViewMut2<'_, T>>,
) -> Result<Loss> {
    cross_entropy_with_upstream(backend, cfg, logits, targets, grad, Upstream::ONE)
}

/// As [`cross_entropy`], the gradient scaled by `upstream`.
pub fn cross_entropy_with_upstream<T: Element, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &CrossEntropy,
    logits: ArrayView2<'_, T>,
    targets: ArrayView1<'_, i64>,
    grad: Option<ArrayViewMut2<'_, T>>,
    upstream: Upstream<'_>,
) -> Result<Loss> {
    let (n, c) = logits.dim();
    let x = data("logits", &logits)?;
    let t = data("targets", &targets)?;
    let grad = grad_data(grad)?;
    if !logits.is_empty() {
        check_shape("targets", &[n], targets.shape())?;
        check_grad(logits.shape(), &grad)?;
    }
    let input = Input::matrix(x, n, c)
        .with_optional_grad(grad.map(|(_, g)| g))
        .with_upstream(upstream);
    backend.cross_entropy(cfg, input, CeTargets::Classes(t))
}

/// Cross-entropy of `logits` `[N, C]` against target distributions `probs` `[N, C]` (`CE-6`);
/// the gradient, when `grad` (`[N, C]`) is given, is written there. See
/// [`Losses::cross_entropy`] with [`CeTargets::Probs`].
///
/// `probs` (or `grad`) of another shape than `logits` gives [`LossError::ShapeMismatch`]
/// naming `target_probs` (or `grad`), or [`LossError::WrongShape`] with as many elements.
pub fn cross_entropy_probs<T: Element, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &CrossEntropy,
    logits: ArrayView2<'_, T>,
    probs: ArrayView2<'_, T>,
    grad: Option<ArrayViewMut2<'_, T>>,
) -> Result<Loss> {
    cross_entropy_probs_with_upstream(backend, cfg, logits, probs, grad, Upstream::ONE)
}

/// As [`cross_entropy_probs`], the gradient scaled by `upstream`.
pub fn cross_entropy_probs_with_upstream<T: Element, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &CrossEntropy,
    logits: ArrayView2<'_, T>,
    probs: ArrayView2<'_, T>,
    grad: Option<ArrayViewMut2<'_, T>>,
    upstream: Upstream<'_>,
) -> Result<Loss> {
    let (n, c) = logits.dim();
    let x = data("logits", &logits)?;
    let q = data("target_probs", &probs)?;
    let grad = grad_data(grad)?;
    if !logits.is_empty() {
        check_shape("target_probs", logits.shape(), probs.shape())?;
        check_grad(logits.shape(), &grad)?;
    }
    let input = Input::matrix(x, n, c)
        .with_optional_grad(grad.map(|(_, g)| g))
        .with_upstream(upstream);
    backend.cross_entropy(cfg, input, CeTargets::Probs(q))
}

/// As [`cross_entropy`], writing the gradient over `logits` once the loss has read them (saves
/// a buffer of the logits' size). See [`Input::in_place`].
pub fn cross_entropy_in_place<T: Element, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &CrossEntropy,
    logits: ArrayViewMut2<'_, T>,
    targets: ArrayView1<'_, i64>,
) -> Result<Loss> {
    cross_entropy_in_place_with_upstream(backend, cfg, logits, targets, Upstream::ONE)
}

/// As [`cross_entropy_in_place`], the gradient scaled by `upstream`.
pub fn cross_entropy_in_place_with_upstream<T: Element, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &CrossEntropy,
    logits: ArrayViewMut2<'_, T>,
    targets: ArrayView1<'_, i64>,
    upstream: Upstream<'_>,
) -> Result<Loss> {
    let (n, c) = logits.dim();
    let empty = logits.is_empty();
    let x = logits
        .into_slice()
        .ok_or(LossError::NonContiguous { what: "logits" })?;
    let t = data("targets", &targets)?;
    if !empty {
        check_shape("targets", &[n], targets.shape())?;
    }
    let input = Input::in_place(x).shaped(n, c).with_upstream(upstream);
    backend.cross_entropy(cfg, input, CeTargets::Classes(t))
}

/// A box array `[N, 4]` with at least one row must have four columns; the error has the form
/// of the front door's for a buffer that does not hold whole boxes.
fn box_width(what: &'static str, (rows, cols): (usize, usize)) -> Result<()> {
    if cols == 4 || rows == 0 {
        Ok(())
    } else {
        Err(LossError::ShapeMismatch {
            what,
            expected: rows.saturating_mul(4),
            got: rows * cols,
        })
    }
}

/// Box loss over aligned pairs `pred`, `target` `[N, 4]` (layout `cfg.format`, `BOX-*`); the
/// gradient with respect to `pred`, when `grad` (`[N, 4]`) is given, is written there. See
/// [`Losses::box_loss`].
///
/// A `pred` with a second dimension other than 4, or a `target` / `grad` of another shape than
/// `pred`, gives [`LossError::ShapeMismatch`] naming that argument ([`LossError::WrongShape`]
/// for a `target` / `grad` with as many elements).
///
/// ```
/// use ndarray::array;
/// use smoothloss::{BoxFormat, BoxLoss, BoxLossKind, ReferenceBackend};
///
/// let giou = BoxLoss::new(BoxLossKind::Giou, BoxFormat::Xyxy);
/// let pred = array![[0.0_f64, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]];
/// let target = array![[1.0_f64, 1.0, 3.0, 3.0], [1.0, 1.0, 3.0, 4.0]];
/// let loss = smoothloss::ndarray::box_loss(&ReferenceBackend, &giou, pred.view(), target.view(), None)?;
/// assert!(loss.value() > 0.0);
/// # Ok::<(), smoothloss::LossError>(())
/// ```
pub fn box_loss<T: Element, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &BoxLoss,
    pred: ArrayView2<'_, T>,
    target: ArrayView2<'_, T>,
    grad: Option<ArrayViewMut2<'_, T>>,
) -> Result<Loss> {
    box_loss_with_upstream(backend, cfg, pred, target, grad, Upstream::ONE)
}

/// As [`box_loss`], the gradient scaled by `upstream` (one value per pair under `none`).
pub fn box_loss_with_upstream<T: Element, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &BoxLoss,
    pred: ArrayView2<'_, T>,
    target: ArrayView2<'_, T>,
    grad: Option<ArrayViewMut2<'_, T>>,
    upstream: Upstream<'_>,
) -> Result<Loss> {
    let p = data("pred", &pred)?;
    let t = data("target", &target)?;
    let grad = grad_data(grad)?;
    if !pred.is_empty() {
        box_width("pred", pred.dim())?;
        check_shape("target", pred.shape(), target.shape())?;
        check_grad(pred.shape(), &grad)?;
    }
    // Flat: the shape is checked above, and an empty `pred` gets the slice API's answer.
    let input = Input::new(p)
        .with_optional_grad(grad.map(|(_, g)| g))
        .with_upstream(upstream);
    backend.box_loss(cfg, input, t)
}

/// The box counts `(N, M)` of a pairwise IoU, after the wrappers' checks.
fn iou_shape<T>(b1: &ArrayView2<'_, T>, b2: &ArrayView2<'_, T>) -> Result<(usize, usize)> {
    box_width("boxes1", b1.dim())?;
    box_width("boxes2", b2.dim())?;
    let (n, m) = (b1.nrows(), b2.nrows());
    // `N * M` can overflow where each array's own size does not: the front door's error.
    checked_size("iou", n, m)?;
    Ok((n, m))
}

/// Pairwise IoU of `boxes1` `[N, 4]` and `boxes2` `[M, 4]` (layout `format`, `BOX-13`,
/// `torchvision.ops.box_iou`) as a new `[N, M]` array. See [`Losses::box_iou`];
/// [`box_iou_into`] writes into an existing array instead.
///
/// A box array with rows but a second dimension other than 4 gives
/// [`LossError::ShapeMismatch`] naming it. Empty box sets give an empty array. An `[N, M]`
/// array that cannot be allocated gives [`LossError::TooLarge`] naming `iou`.
///
/// ```
/// use ndarray::array;
/// use smoothloss::{BoxFormat, DefaultBackend};
///
/// let a = array![[0.0_f32, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]];
/// let b = array![[1.0_f32, 1.0, 3.0, 3.0]];
/// let iou = smoothloss::ndarray::box_iou(&DefaultBackend::default(), BoxFormat::Xyxy, a.view(), b.view())?;
/// assert_eq!(iou.dim(), (2, 1));
/// assert!((iou[[0, 0]] - 1.0 / 7.0).abs() < 1e-6);
/// assert_eq!(iou[[1, 0]], 0.0);
/// # Ok::<(), smoothloss::LossError>(())
/// ```
#[doc(alias = "bbox_iou")]
pub fn box_iou<T: Element, B: Losses<T> + ?Sized>(
    backend: &B,
    format: BoxFormat,
    boxes1: ArrayView2<'_, T>,
    boxes2: ArrayView2<'_, T>,
) -> Result<Array2<T>> {
    let a = data("boxes1", &boxes1)?;
    let b = data("boxes2", &boxes2)?;
    let (n, m) = iou_shape(&boxes1, &boxes2)?;
    let too_large = LossError::TooLarge {
        what: "iou",
        a: n,
        b: m,
    };
    let total = n * m;
    let mut out = Vec::new();
    out.try_reserve_exact(total)
        .map_err(|_| too_large.clone())?;
    out.resize(total, T::from_f64(0.0));
    backend.box_iou(format, a, b, &mut out)?;
    Array2::from_shape_vec((n, m), out).map_err(|_| too_large)
}

/// Pairwise IoU of `boxes1` `[N, 4]` and `boxes2` `[M, 4]` (layout `format`) into `out`
/// `[N, M]`. See [`Losses::box_iou`]; [`box_iou`] returns a new array instead.
///
/// A box array with rows but a second dimension other than 4 gives
/// [`LossError::ShapeMismatch`] naming it; an `out` of another shape than `[N, M]` gives
/// [`LossError::ShapeMismatch`] ([`LossError::WrongShape`] with `N * M` elements, and a
/// non-contiguous `out` [`LossError::NonContiguous`])
/// naming `iou`, as the front door calls that buffer.
pub fn box_iou_into<T: Element, B: Losses<T> + ?Sized>(
    backend: &B,
    format: BoxFormat,
    boxes1: ArrayView2<'_, T>,
    boxes2: ArrayView2<'_, T>,
    out: ArrayViewMut2<'_, T>,
) -> Result<()> {
    let a = data("boxes1", &boxes1)?;
    let b = data("boxes2", &boxes2)?;
    let out_dim = out.dim();
    let o = out
        .into_slice()
        .ok_or(LossError::NonContiguous { what: "iou" })?;
    let (n, m) = iou_shape(&boxes1, &boxes2)?;
    check_shape("iou", &[n, m], &[out_dim.0, out_dim.1])?;
    backend.box_iou(format, a, b, o)
}

/// Shared body of the element-wise wrappers: contiguity, then shapes (`b` and `grad` must have
/// `a`'s shape unless `a` is empty), then the front door call `f` on a flat [`Input`].
fn elementwise<T: Element, D: Dimension>(
    (a_name, b_name): (&'static str, &'static str),
    a: ArrayView<'_, T, D>,
    b: ArrayView<'_, T, D>,
    grad: Option<ArrayViewMut<'_, T, D>>,
    upstream: Upstream<'_>,
    f: impl for<'b> FnOnce(Input<'b, T>, &'b [T]) -> Result<Loss>,
) -> Result<Loss> {
    let x = data(a_name, &a)?;
    let y = data(b_name, &b)?;
    let grad = grad_data(grad)?;
    if !a.is_empty() {
        check_shape(b_name, a.shape(), b.shape())?;
        check_grad(a.shape(), &grad)?;
    }
    let input = Input::new(x)
        .with_optional_grad(grad.map(|(_, g)| g))
        .with_upstream(upstream);
    f(input, y)
}

/// Smooth L1 loss (`REG-1`, `REG-2`), element-wise over `pred` and `target` of the same shape
/// (any dimensionality); the gradient, when `grad` (same shape) is given, is written there.
/// With reduction `none` the losses come back flattened in row-major order. See
/// [`Losses::smooth_l1`].
///
/// ```
/// use ndarray::{Array2, array};
/// use smoothloss::{DefaultBackend, Reduction, SmoothL1};
///
/// let cfg = SmoothL1 { beta: 1.0, reduction: Reduction::Sum };
/// let pred = array![[0.5_f32, 3.0], [0.0, -1.0]];
/// let target = Array2::<f32>::zeros((2, 2));
/// let mut grad = Array2::<f32>::zeros((2, 2));
/// let loss = smoothloss::ndarray::smooth_l1(
///     &DefaultBackend::default(), &cfg, pred.view(), target.view(), Some(grad.view_mut()),
/// )?;
/// assert_eq!(loss.value(), 0.125 + 2.5 + 0.0 + 0.5);
/// assert_eq!(grad, array![[0.5, 1.0], [0.0, -1.0]]);
/// # Ok::<(), smoothloss::LossError>(())
/// ```
pub fn smooth_l1<T: Element, D: Dimension, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &SmoothL1,
    pred: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    grad: Option<ArrayViewMut<'_, T, D>>,
) -> Result<Loss> {
    smooth_l1_with_upstream(backend, cfg, pred, target, grad, Upstream::ONE)
}

/// As [`smooth_l1`], the gradient scaled by `upstream` (one value per element, in row-major
/// order, under `none`).
pub fn smooth_l1_with_upstream<T: Element, D: Dimension, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &SmoothL1,
    pred: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    grad: Option<ArrayViewMut<'_, T, D>>,
    upstream: Upstream<'_>,
) -> Result<Loss> {
    elementwise(("pred", "target"), pred, target, grad, upstream, |x, y| {
        backend.smooth_l1(cfg, x, y)
    })
}

/// Huber loss (`REG-3`, `REG-4`), element-wise over `pred` and `target` of the same shape (any
/// dimensionality); as [`smooth_l1`]. See [`Losses::huber`].
pub fn huber<T: Element, D: Dimension, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &Huber,
    pred: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    grad: Option<ArrayViewMut<'_, T, D>>,
) -> Result<Loss> {
    huber_with_upstream(backend, cfg, pred, target, grad, Upstream::ONE)
}

/// As [`huber`], the gradient scaled by `upstream`.
pub fn huber_with_upstream<T: Element, D: Dimension, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &Huber,
    pred: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    grad: Option<ArrayViewMut<'_, T, D>>,
    upstream: Upstream<'_>,
) -> Result<Loss> {
    elementwise(("pred", "target"), pred, target, grad, upstream, |x, y| {
        backend.huber(cfg, x, y)
    })
}

/// Binary cross-entropy with logits (`BIN-1`, `BIN-2`), element-wise over `logits` and
/// `targets` (in `[0, 1]`) of the same shape (any dimensionality); the gradient, when `grad`
/// (same shape) is given, is written there. `cfg.pos_weight` is indexed by the row-major
/// element index modulo its length, so a weight per entry of the last axis broadcasts along
/// that axis. See [`Losses::bce_with_logits`].
pub fn bce_with_logits<T: Element, D: Dimension, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &BceWithLogits,
    logits: ArrayView<'_, T, D>,
    targets: ArrayView<'_, T, D>,
    grad: Option<ArrayViewMut<'_, T, D>>,
) -> Result<Loss> {
    bce_with_logits_with_upstream(backend, cfg, logits, targets, grad, Upstream::ONE)
}

/// As [`bce_with_logits`], the gradient scaled by `upstream`.
pub fn bce_with_logits_with_upstream<T: Element, D: Dimension, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &BceWithLogits,
    logits: ArrayView<'_, T, D>,
    targets: ArrayView<'_, T, D>,
    grad: Option<ArrayViewMut<'_, T, D>>,
    upstream: Upstream<'_>,
) -> Result<Loss> {
    elementwise(
        ("logits", "targets"),
        logits,
        targets,
        grad,
        upstream,
        |x, y| backend.bce_with_logits(cfg, x, y),
    )
}

/// Sigmoid focal loss (`BIN-3`, `BIN-4`), element-wise over `logits` and `targets` of the same
/// shape (any dimensionality); as [`bce_with_logits`]. See [`Losses::sigmoid_focal`].
pub fn sigmoid_focal<T: Element, D: Dimension, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &SigmoidFocal,
    logits: ArrayView<'_, T, D>,
    targets: ArrayView<'_, T, D>,
    grad: Option<ArrayViewMut<'_, T, D>>,
) -> Result<Loss> {
    sigmoid_focal_with_upstream(backend, cfg, logits, targets, grad, Upstream::ONE)
}

/// As [`sigmoid_focal`], the gradient scaled by `upstream`.
pub fn sigmoid_focal_with_upstream<T: Element, D: Dimension, B: Losses<T> + ?Sized>(
    backend: &B,
    cfg: &SigmoidFocal,
    logits: ArrayView<'_, T, D>,
    targets: ArrayView<'_, T, D>,
    grad: Option<ArrayViewMut<'_, T, D>>,
    upstream: Upstream<'_>,
) -> Result<Loss> {
    elementwise(
        ("logits", "targets"),
        logits,
        targets,
        grad,
        upstream,
        |x, y| backend.sigmoid_focal(cfg, x, y),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nd::Array2;
    use smoothloss_core::ReferenceBackend;

    #[test]
    fn shape_errors_do_not_contradict_themselves() {
        let cfg = CrossEntropy::new();
        let logits = Array2::<f64>::zeros((4, 6));
        let targets = nd::Array1::<i64>::zeros(4);
        // A transposed `(c, n)` gradient: as many elements, another shape.
        let mut g = Array2::<f64>::zeros((6, 4));
        let err = cross_entropy(
            &ReferenceBackend,
            &cfg,
            logits.view(),
            targets.view(),
            Some(g.view_mut()),
        )
        .unwrap_err();
        assert_eq!(
            err,
            LossError::WrongShape {
                what: "grad",
                expected: vec![4, 6],
                got: vec![6, 4],
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("`grad`") && msg.contains("[4, 6]") && msg.contains("[6, 4]"));
        // `(0, 5)` logits with a `(0, 6)` gradient: two shapes without elements agree, the
        // empty logits go to the front door, which reports them empty (not "expected 0, got 0").
        let logits = Array2::<f64>::zeros((0, 5));
        let targets = nd::Array1::<i64>::zeros(0);
        let mut g = Array2::<f64>::zeros((0, 6));
        let e = cross_entropy(
            &ReferenceBackend,
            &cfg,
            logits.view(),
            targets.view(),
            Some(g.view_mut()),
        )
        .unwrap_err();
        assert!(matches!(e, LossError::EmptyInput { .. }), "{e:?}");
        // The `rows * classes` overflow names its factors, not usize::MAX elements.
        let e = checked_size("iou", usize::MAX, 3).unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("expected 18446744073709551615"), "{msg}");
        assert!(
            matches!(e, LossError::TooLarge { what: "iou", .. }),
            "{msg}"
        );
    }
}
