//! Backend traits, one small trait per loss family (the burn pattern).
//!
//! Every method has a default body that widens the input to `f64`, calls the [`reference`]
//! implementation and narrows the gradient back, so a new backend is correct before it is fast
//! and overrides one method at a time. All methods validate first and return the same typed
//! errors as the reference.
//!
//! Gradients: `grad`, when given, receives `upstream * d(loss)/d(input)` and has the input's
//! length. Return value: one loss for `mean`/`sum`, one per row / element / pair for `none`,
//! in `f64` (backends accumulate in at least `f64`-faithful order; see the spec for tolerances).
//!
//! [`reference`]: crate::reference

use crate::binary::{BceWithLogits, SigmoidFocal};
use crate::box_loss::{BoxFormat, BoxLoss};
use crate::cross_entropy::{CeTargets, CrossEntropy};
use crate::element::{Element, to_f64_vec};
use crate::error::Result;
use crate::reduction::Upstream;
use crate::reference;
use crate::regression::{Huber, SmoothL1};

fn write_back<T: Element>(src: &[f64], dst: Option<&mut [T]>) {
    if let Some(dst) = dst {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = T::from_f64(*s);
        }
    }
}

/// Cross-entropy (`CE-*`).
pub trait CrossEntropyOps<T: Element> {
    /// Cross-entropy over `logits` `[rows, classes]` row-major; see [`CrossEntropy`].
    fn cross_entropy(
        &self,
        cfg: &CrossEntropy,
        logits: &[T],
        rows: usize,
        classes: usize,
        targets: CeTargets<'_, T>,
        upstream: Upstream<'_>,
        grad: Option<&mut [T]>,
    ) -> Result<Vec<f64>> {
        let z = to_f64_vec(logits);
        let probs;
        let t = match targets {
            CeTargets::Classes(c) => CeTargets::Classes(c),
            CeTargets::Probs(p) => {
                probs = to_f64_vec(p);
                CeTargets::Probs(&probs[..])
            }
        };
        let mut g = grad.as_ref().map(|g| vec![0.0; g.len()]);
        let out = reference::cross_entropy(cfg, &z, rows, classes, t, upstream, g.as_deref_mut())?;
        write_back(g.as_deref().unwrap_or(&[]), grad);
        Ok(out)
    }

    /// As [`CrossEntropyOps::cross_entropy`], writing the gradient over the logits (as
    /// Liger-Kernel does) to save a buffer of the logits' size.
    fn cross_entropy_in_place(
        &self,
        cfg: &CrossEntropy,
        logits: &mut [T],
        rows: usize,
        classes: usize,
        targets: CeTargets<'_, T>,
        upstream: Upstream<'_>,
    ) -> Result<Vec<f64>> {
        let copy = logits.to_vec();
        self.cross_entropy(cfg, &copy, rows, classes, targets, upstream, Some(logits))
    }
}

/// Box losses on aligned pairs and pairwise IoU (`BOX-*`).
pub trait BoxLossOps<T: Element> {
    /// Box loss over `pred`, `target` `[N, 4]`; the gradient is with respect to `pred`, in
    /// `cfg.format`.
    fn box_loss(
        &self,
        cfg: &BoxLoss,
        pred: &[T],
        target: &[T],
        upstream: Upstream<'_>,
        grad: Option<&mut [T]>,
    ) -> Result<Vec<f64>> {
        let mut g = grad.as_ref().map(|g| vec![0.0; g.len()]);
        let out = reference::box_loss(
            cfg,
            &to_f64_vec(pred),
            &to_f64_vec(target),
            upstream,
            g.as_deref_mut(),
        )?;
        write_back(g.as_deref().unwrap_or(&[]), grad);
        Ok(out)
    }

    /// Pairwise IoU of `boxes1` `[N, 4]` and `boxes2` `[M, 4]` into `out` `[N, M]`.
    fn box_iou(&self, format: BoxFormat, boxes1: &[T], boxes2: &[T], out: &mut [T]) -> Result<()> {
        let mut o = vec![0.0; out.len()];
        reference::box_iou(format, &to_f64_vec(boxes1), &to_f64_vec(boxes2), &mut o)?;
        write_back(&o, Some(out));
        Ok(())
    }
}

/// Smooth L1 and Huber (`REG-*`).
pub trait RegressionOps<T: Element> {
    /// Smooth L1 loss, element-wise over `pred` and `target`.
    fn smooth_l1(
        &self,
        cfg: &SmoothL1,
        pred: &[T],
        target: &[T],
        upstream: Upstream<'_>,
        grad: Option<&mut [T]>,
    ) -> Result<Vec<f64>> {
        let mut g = grad.as_ref().map(|g| vec![0.0; g.len()]);
        let out = reference::smooth_l1(
            cfg,
            &to_f64_vec(pred),
            &to_f64_vec(target),
            upstream,
            g.as_deref_mut(),
        )?;
        write_back(g.as_deref().unwrap_or(&[]), grad);
        Ok(out)
    }

    /// Huber loss, element-wise over `pred` and `target`.
    fn huber(
        &self,
        cfg: &Huber,
        pred: &[T],
        target: &[T],
        upstream: Upstream<'_>,
        grad: Option<&mut [T]>,
    ) -> Result<Vec<f64>> {
        let mut g = grad.as_ref().map(|g| vec![0.0; g.len()]);
        let out = reference::huber(
            cfg,
            &to_f64_vec(pred),
            &to_f64_vec(target),
            upstream,
            g.as_deref_mut(),
        )?;
        write_back(g.as_deref().unwrap_or(&[]), grad);
        Ok(out)
    }
}

/// BCE with logits and sigmoid focal loss (`BIN-*`).
pub trait BinaryOps<T: Element> {
    /// Binary cross-entropy with logits, element-wise.
    fn bce_with_logits(
        &self,
        cfg: &BceWithLogits,
        logits: &[T],
        targets: &[T],
        upstream: Upstream<'_>,
        grad: Option<&mut [T]>,
    ) -> Result<Vec<f64>> {
        let mut g = grad.as_ref().map(|g| vec![0.0; g.len()]);
        let out = reference::bce_with_logits(
            cfg,
            &to_f64_vec(logits),
            &to_f64_vec(targets),
            upstream,
            g.as_deref_mut(),
        )?;
        write_back(g.as_deref().unwrap_or(&[]), grad);
        Ok(out)
    }

    /// Sigmoid focal loss, element-wise.
    fn sigmoid_focal(
        &self,
        cfg: &SigmoidFocal,
        logits: &[T],
        targets: &[T],
        upstream: Upstream<'_>,
        grad: Option<&mut [T]>,
    ) -> Result<Vec<f64>> {
        let mut g = grad.as_ref().map(|g| vec![0.0; g.len()]);
        let out = reference::sigmoid_focal(
            cfg,
            &to_f64_vec(logits),
            &to_f64_vec(targets),
            upstream,
            g.as_deref_mut(),
        )?;
        write_back(g.as_deref().unwrap_or(&[]), grad);
        Ok(out)
    }
}

/// A complete backend for element type `T`: every loss family plus a name.
pub trait Backend<T: Element>:
    CrossEntropyOps<T> + BoxLossOps<T> + RegressionOps<T> + BinaryOps<T> + Sync
{
    /// Name used in reports ("reference", "cpu", "cuda").
    fn name(&self) -> String;
}

/// The reference implementation as a backend (every method is the default): the `f64` spec,
/// also usable with `f32` data (computed in `f64`, rounded once).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceBackend;

macro_rules! reference_backend {
    ($($t:ty),*) => {$(
        impl CrossEntropyOps<$t> for ReferenceBackend {}
        impl BoxLossOps<$t> for ReferenceBackend {}
        impl RegressionOps<$t> for ReferenceBackend {}
        impl BinaryOps<$t> for ReferenceBackend {}
        impl Backend<$t> for ReferenceBackend {
            fn name(&self) -> String {
                "reference".into()
            }
        }
    )*};
}
reference_backend!(f32, f64);
