//! `ndarray` convenience wrappers around every loss of the CPU backend: cross-entropy, the box
//! losses and pairwise IoU, Smooth L1 and Huber, BCE with logits and sigmoid focal loss.
//!
//! Views must be in standard (row-major, contiguous) layout; anything else (a transposed view,
//! a strided slice) is refused with [`LossError::NonContiguous`] rather than copied silently.
//! The wrappers then check what a flat slice cannot express, the shapes, and report a mismatch
//! as [`LossError::ShapeMismatch`] (element counts, as the slice API does); these checks come
//! before the slice API's own. Everything else (parameters, targets, upstream gradients, empty
//! inputs) is left to the slice API, so results, and every error the wrappers do not add, are
//! exactly those of the slice API on the same data.
//!
//! Empty inputs: when the first input (`pred`, `logits`) holds no elements the call goes
//! straight to the slice API, which reports it (normally [`LossError::EmptyInput`]); arrays
//! with no elements never fail a shape check against each other.

use crate::CpuBackend;
use ndarray::{ArrayView, ArrayView1, ArrayView2, ArrayViewMut, ArrayViewMut2, Dimension};
use smoothloss_core::backend::{BinaryOps, BoxLossOps, CrossEntropyOps, RegressionOps};
use smoothloss_core::error::{LossError, Result, checked_size};
use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, CeTargets, CrossEntropy, Huber, SigmoidFocal, SmoothL1,
    Upstream,
};

fn contiguous<'a, T>(what: &'static str, s: Option<&'a [T]>) -> Result<&'a [T]> {
    s.ok_or(LossError::NonContiguous { what })
}

fn same_shape(logits: (usize, usize), grad: (usize, usize), grad_len: usize) -> Result<()> {
    if logits == grad {
        Ok(())
    } else {
        Err(LossError::ShapeMismatch {
            what: "grad",
            expected: logits.0 * logits.1,
            got: grad_len,
        })
    }
}

/// Cross-entropy of `logits` `[N, C]` against class indices `targets` `[N]`; the gradient, when
/// `grad` (`[N, C]`) is given, is written there. See
/// [`CrossEntropyOps::cross_entropy`].
pub fn cross_entropy(
    backend: &CpuBackend,
    cfg: &CrossEntropy,
    logits: ArrayView2<'_, f32>,
    targets: ArrayView1<'_, i64>,
    upstream: Upstream<'_>,
    grad: Option<ArrayViewMut2<'_, f32>>,
) -> Result<Vec<f64>> {
    let (n, c) = logits.dim();
    let x = contiguous("logits", logits.as_slice())?;
    let t = contiguous("targets", targets.as_slice())?;
    match grad {
        Some(mut g) => {
            same_shape((n, c), g.dim(), g.len())?;
            let g = g
                .as_slice_mut()
                .ok_or(LossError::NonContiguous { what: "grad" })?;
            backend.cross_entropy(cfg, x, n, c, CeTargets::Classes(t), upstream, Some(g))
        }
        None => backend.cross_entropy(cfg, x, n, c, CeTargets::Classes(t), upstream, None),
    }
}

/// Cross-entropy of `logits` `[N, C]` against target distributions `probs` `[N, C]`.
pub fn cross_entropy_probs(
    backend: &CpuBackend,
    cfg: &CrossEntropy,
    logits: ArrayView2<'_, f32>,
    probs: ArrayView2<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<ArrayViewMut2<'_, f32>>,
) -> Result<Vec<f64>> {
    let (n, c) = logits.dim();
    let x = contiguous("logits", logits.as_slice())?;
    let q = contiguous("target_probs", probs.as_slice())?;
    match grad {
        Some(mut g) => {
            same_shape((n, c), g.dim(), g.len())?;
            let g = g
                .as_slice_mut()
                .ok_or(LossError::NonContiguous { what: "grad" })?;
            backend.cross_entropy(cfg, x, n, c, CeTargets::Probs(q), upstream, Some(g))
        }
        None => backend.cross_entropy(cfg, x, n, c, CeTargets::Probs(q), upstream, None),
    }
}

/// As [`cross_entropy`], writing the gradient over `logits`.
pub fn cross_entropy_in_place(
    backend: &CpuBackend,
    cfg: &CrossEntropy,
    mut logits: ArrayViewMut2<'_, f32>,
    targets: ArrayView1<'_, i64>,
    upstream: Upstream<'_>,
) -> Result<Vec<f64>> {
    let (n, c) = logits.dim();
    let t = contiguous("targets", targets.as_slice())?;
    let x = logits
        .as_slice_mut()
        .ok_or(LossError::NonContiguous { what: "logits" })?;
    backend.cross_entropy_in_place(cfg, x, n, c, CeTargets::Classes(t), upstream)
}

/// `got` must have the shape `expected`; two shapes without elements always agree. The error
/// counts elements, as the slice API's length checks do.
fn check_shape(what: &'static str, expected: &[usize], got: &[usize]) -> Result<()> {
    let (e, g) = (
        expected.iter().product::<usize>(),
        got.iter().product::<usize>(),
    );
    if expected == got || (e == 0 && g == 0) {
        Ok(())
    } else {
        Err(LossError::ShapeMismatch {
            what,
            expected: e,
            got: g,
        })
    }
}

/// A box array `[N, 4]` with at least one row must have four columns; the error has the form
/// of the slice API's (`box_count`) for a buffer that does not hold whole boxes.
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

/// Box loss over aligned pairs `pred`, `target` `[N, 4]` (layout `cfg.format`); the gradient
/// with respect to `pred`, when `grad` (`[N, 4]`) is given, is written there. See
/// [`BoxLossOps::box_loss`].
///
/// A `pred` with a second dimension other than 4, or a `target` / `grad` of another shape than
/// `pred`, gives [`LossError::ShapeMismatch`] naming that argument.
pub fn box_loss(
    backend: &CpuBackend,
    cfg: &BoxLoss,
    pred: ArrayView2<'_, f32>,
    target: ArrayView2<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<ArrayViewMut2<'_, f32>>,
) -> Result<Vec<f64>> {
    let p = contiguous("pred", pred.as_slice())?;
    let t = contiguous("target", target.as_slice())?;
    let checked = !pred.is_empty();
    if checked {
        box_width("pred", pred.dim())?;
        check_shape("target", pred.shape(), target.shape())?;
    }
    match grad {
        Some(mut g) => {
            if checked {
                check_shape("grad", pred.shape(), g.shape())?;
            }
            let g = g
                .as_slice_mut()
                .ok_or(LossError::NonContiguous { what: "grad" })?;
            backend.box_loss(cfg, p, t, upstream, Some(g))
        }
        None => backend.box_loss(cfg, p, t, upstream, None),
    }
}

/// Pairwise IoU of `boxes1` `[N, 4]` and `boxes2` `[M, 4]` (layout `format`) into `out`
/// `[N, M]`. See [`BoxLossOps::box_iou`].
///
/// A box array with rows but a second dimension other than 4 gives
/// [`LossError::ShapeMismatch`] naming it; an `out` of another shape than `[N, M]` gives
/// [`LossError::ShapeMismatch`] (and a non-contiguous `out` [`LossError::NonContiguous`])
/// naming `iou`, as the slice API calls that buffer.
pub fn box_iou(
    backend: &CpuBackend,
    format: BoxFormat,
    boxes1: ArrayView2<'_, f32>,
    boxes2: ArrayView2<'_, f32>,
    mut out: ArrayViewMut2<'_, f32>,
) -> Result<()> {
    let a = contiguous("boxes1", boxes1.as_slice())?;
    let b = contiguous("boxes2", boxes2.as_slice())?;
    box_width("boxes1", boxes1.dim())?;
    box_width("boxes2", boxes2.dim())?;
    let (n, m) = (boxes1.nrows(), boxes2.nrows());
    // `N * M` can overflow where each array's own size does not: the slice API's error.
    checked_size("iou", n, m)?;
    check_shape("iou", &[n, m], out.shape())?;
    let o = out
        .as_slice_mut()
        .ok_or(LossError::NonContiguous { what: "iou" })?;
    backend.box_iou(format, a, b, o)
}

/// Shared body of the element-wise wrappers: contiguity, then shapes (`b` and `grad` must have
/// `a`'s shape unless `a` is empty), then the slice call `f`.
fn elementwise<D: Dimension>(
    (a_name, b_name): (&'static str, &'static str),
    a: ArrayView<'_, f32, D>,
    b: ArrayView<'_, f32, D>,
    grad: Option<ArrayViewMut<'_, f32, D>>,
    f: impl FnOnce(&[f32], &[f32], Option<&mut [f32]>) -> Result<Vec<f64>>,
) -> Result<Vec<f64>> {
    let x = contiguous(a_name, a.as_slice())?;
    let y = contiguous(b_name, b.as_slice())?;
    let checked = !a.is_empty();
    if checked {
        check_shape(b_name, a.shape(), b.shape())?;
    }
    match grad {
        Some(mut g) => {
            if checked {
                check_shape("grad", a.shape(), g.shape())?;
            }
            let g = g
                .as_slice_mut()
                .ok_or(LossError::NonContiguous { what: "grad" })?;
            f(x, y, Some(g))
        }
        None => f(x, y, None),
    }
}

/// Smooth L1 loss, element-wise over `pred` and `target` of the same shape (any
/// dimensionality); the gradient, when `grad` (same shape) is given, is written there. With
/// reduction `none` the losses come back flattened in row-major order. See
/// [`RegressionOps::smooth_l1`].
pub fn smooth_l1<D: Dimension>(
    backend: &CpuBackend,
    cfg: &SmoothL1,
    pred: ArrayView<'_, f32, D>,
    target: ArrayView<'_, f32, D>,
    upstream: Upstream<'_>,
    grad: Option<ArrayViewMut<'_, f32, D>>,
) -> Result<Vec<f64>> {
    elementwise(("pred", "target"), pred, target, grad, |x, y, g| {
        backend.smooth_l1(cfg, x, y, upstream, g)
    })
}

/// Huber loss, element-wise over `pred` and `target` of the same shape (any dimensionality);
/// as [`smooth_l1`]. See [`RegressionOps::huber`].
pub fn huber<D: Dimension>(
    backend: &CpuBackend,
    cfg: &Huber,
    pred: ArrayView<'_, f32, D>,
    target: ArrayView<'_, f32, D>,
    upstream: Upstream<'_>,
    grad: Option<ArrayViewMut<'_, f32, D>>,
) -> Result<Vec<f64>> {
    elementwise(("pred", "target"), pred, target, grad, |x, y, g| {
        backend.huber(cfg, x, y, upstream, g)
    })
}

/// Binary cross-entropy with logits, element-wise over `logits` and `targets` of the same
/// shape (any dimensionality); the gradient, when `grad` (same shape) is given, is written
/// there. `cfg.pos_weight` is indexed by the row-major element index modulo its length, so a
/// weight per entry of the last axis broadcasts along that axis. See
/// [`BinaryOps::bce_with_logits`].
pub fn bce_with_logits<D: Dimension>(
    backend: &CpuBackend,
    cfg: &BceWithLogits,
    logits: ArrayView<'_, f32, D>,
    targets: ArrayView<'_, f32, D>,
    upstream: Upstream<'_>,
    grad: Option<ArrayViewMut<'_, f32, D>>,
) -> Result<Vec<f64>> {
    elementwise(("logits", "targets"), logits, targets, grad, |x, y, g| {
        backend.bce_with_logits(cfg, x, y, upstream, g)
    })
}

/// Sigmoid focal loss, element-wise over `logits` and `targets` of the same shape (any
/// dimensionality); as [`bce_with_logits`]. See [`BinaryOps::sigmoid_focal`].
pub fn sigmoid_focal<D: Dimension>(
    backend: &CpuBackend,
    cfg: &SigmoidFocal,
    logits: ArrayView<'_, f32, D>,
    targets: ArrayView<'_, f32, D>,
    upstream: Upstream<'_>,
    grad: Option<ArrayViewMut<'_, f32, D>>,
) -> Result<Vec<f64>> {
    elementwise(("logits", "targets"), logits, targets, grad, |x, y, g| {
        backend.sigmoid_focal(cfg, x, y, upstream, g)
    })
}
