//! `ndarray` convenience wrappers around the CPU cross-entropy.
//!
//! Views must be in standard (row-major, contiguous) layout; anything else (a transposed view,
//! a strided slice) is refused with [`LossError::NonContiguous`] rather than copied silently.
//! Shapes and targets are then validated exactly as the slice API does.

use crate::CpuBackend;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};
use smoothloss_core::backend::CrossEntropyOps;
use smoothloss_core::error::{LossError, Result};
use smoothloss_core::{CeTargets, CrossEntropy, Upstream};

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
