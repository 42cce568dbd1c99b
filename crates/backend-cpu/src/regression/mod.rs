//! Smooth L1 and Huber on the CPU: branchless `f32` element kernels (vectorised, AVX2 + FMA
//! or portable by the backend's level), fused forward + backward, deterministic
//! multithreading (`blocks.rs`). The per-element math is in `math.rs`.

use crate::blocks::drive;
use crate::elementwise::{EW_BLOCK, ew_dispatch};
use crate::{CpuBackend, run_pair};
use math::{huber_el, smooth_l1_el};
use smoothloss_core::backend::RegressionOps;
use smoothloss_core::{Huber, Loss, PairCall, Result, SmoothL1, Upstream};

mod math;

ew_dispatch!(
    smooth_l1_block,
    smooth_l1_avx2,
    smooth_l1_plain,
    [],
    [],
    (beta: f32, inv_beta: f32),
    |p, t, _| smooth_l1_el(p, t, beta, inv_beta)
);
ew_dispatch!(
    huber_block,
    huber_avx2,
    huber_plain,
    [],
    [],
    (delta: f32),
    |p, t, _| huber_el(p, t, delta)
);

/// Smooth L1 over validated buffers of `n` elements.
pub(crate) fn smooth_l1(
    backend: &CpuBackend,
    cfg: &SmoothL1,
    n: usize,
    pred: &[f32],
    target: &[f32],
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    let beta = cfg.beta as f32;
    let inv_beta = if cfg.beta > 0.0 {
        (1.0 / cfg.beta) as f32
    } else {
        0.0
    };
    let g = grad.is_some();
    let level = backend.simd_level();
    drive(
        backend,
        n,
        EW_BLOCK,
        1,
        cfg.reduction,
        upstream,
        grad,
        |r, up, gr, l| {
            let (x, y) = (&pred[r.clone()], &target[r.clone()]);
            if g {
                smooth_l1_block::<true>(level, x, y, r.start, None, up, gr, l, beta, inv_beta)
            } else {
                smooth_l1_block::<false>(level, x, y, r.start, None, up, gr, l, beta, inv_beta)
            }
        },
    )
}

/// Huber over validated buffers of `n` elements.
pub(crate) fn huber(
    backend: &CpuBackend,
    cfg: &Huber,
    n: usize,
    pred: &[f32],
    target: &[f32],
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    let delta = cfg.delta as f32;
    let g = grad.is_some();
    let level = backend.simd_level();
    drive(
        backend,
        n,
        EW_BLOCK,
        1,
        cfg.reduction,
        upstream,
        grad,
        |r, up, gr, l| {
            let (x, y) = (&pred[r.clone()], &target[r.clone()]);
            if g {
                huber_block::<true>(level, x, y, r.start, None, up, gr, l, delta)
            } else {
                huber_block::<false>(level, x, y, r.start, None, up, gr, l, delta)
            }
        },
    )
}

impl RegressionOps<f32> for CpuBackend {
    fn run_smooth_l1(&self, call: PairCall<'_, SmoothL1, f32>) -> Result<Loss> {
        Ok(run_pair(self, call, smooth_l1))
    }

    fn run_huber(&self, call: PairCall<'_, Huber, f32>) -> Result<Loss> {
        Ok(run_pair(self, call, huber))
    }
}
