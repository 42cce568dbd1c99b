//! Smooth L1 and Huber on the CPU: branchless `f32` element kernels (vectorised, AVX2 + FMA
//! chosen at run time), fused forward + backward, deterministic multithreading.

use crate::{CpuBackend, loss_of, split_io};
use crate::elementwise::{EW_BLOCK, UpE, huber_block, run_blocks, smooth_l1_block};
use smoothloss_core::backend::RegressionOps;
use smoothloss_core::{Huber, Loss, PairCall, Parts, Reduction, Result, SmoothL1, Upstream};

/// Shared driver: validates nothing (the caller did), runs `block` over fixed blocks and
/// reduces.
pub(crate) fn drive<B>(
    backend: &CpuBackend,
    n: usize,
    reduction: Reduction,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
    block: B,
) -> Vec<f64>
where
    B: Fn(std::ops::Range<usize>, UpE<'_>, Option<&mut [f32]>, Option<&mut [f64]>) -> f64 + Sync,
{
    let scale = match reduction {
        Reduction::Mean => 1.0 / n as f64,
        _ => 1.0,
    };
    let mut per = (reduction == Reduction::None).then(|| vec![0.0f64; n]);
    let total = run_blocks(
        backend,
        n,
        EW_BLOCK,
        1,
        grad,
        per.as_deref_mut(),
        |r, g, l| {
            let up = match upstream {
                Upstream::PerElement(u) => UpE::Per(&u[r.clone()], scale),
                Upstream::Scalar(s) => UpE::Scalar((s * scale) as f32),
            };
            block(r, up, g, l)
        },
    );
    match reduction {
        Reduction::None => per.unwrap_or_default(),
        Reduction::Sum => vec![total],
        Reduction::Mean => vec![total / n as f64],
    }
}

impl RegressionOps<f32> for CpuBackend {
    fn run_smooth_l1(&self, call: PairCall<'_, SmoothL1, f32>) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with: target,
            upstream,
        } = call.into_parts();
        let (cfg, n) = (plan.cfg, plan.items);
        let (pred, grad) = split_io(io);
        let pred = &pred[..];
        let beta = cfg.beta as f32;
        let inv_beta = if cfg.beta > 0.0 {
            (1.0 / cfg.beta) as f32
        } else {
            0.0
        };
        let g = grad.is_some();
        Ok(loss_of(
            cfg.reduction,
            drive(
            self,
            n,
            cfg.reduction,
            upstream,
            grad,
            |r, up, gr, l| {
                let (x, y) = (&pred[r.clone()], &target[r.clone()]);
                if g {
                    smooth_l1_block::<true>(x, y, r.start, None, up, gr, l, beta, inv_beta)
                } else {
                    smooth_l1_block::<false>(x, y, r.start, None, up, gr, l, beta, inv_beta)
                }
            },
        ),
        ))
    }

    fn run_huber(&self, call: PairCall<'_, Huber, f32>) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with: target,
            upstream,
        } = call.into_parts();
        let (cfg, n) = (plan.cfg, plan.items);
        let (pred, grad) = split_io(io);
        let pred = &pred[..];
        let delta = cfg.delta as f32;
        let g = grad.is_some();
        Ok(loss_of(
            cfg.reduction,
            drive(
            self,
            n,
            cfg.reduction,
            upstream,
            grad,
            |r, up, gr, l| {
                let (x, y) = (&pred[r.clone()], &target[r.clone()]);
                if g {
                    huber_block::<true>(x, y, r.start, None, up, gr, l, delta)
                } else {
                    huber_block::<false>(x, y, r.start, None, up, gr, l, delta)
                }
            },
        ),
        ))
    }
}
