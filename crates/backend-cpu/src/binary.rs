//! BCE with logits and sigmoid focal loss on the CPU: branchless `f32` element kernels with
//! polynomial `exp` / `log1p` (see [`crate::elementwise`]), fused forward + backward,
//! deterministic multithreading.

use crate::{CpuBackend, loss_of, split_io};
use crate::elementwise::{GM_GENERAL, GM_ONE, GM_TWO, GM_ZERO, bce_block, focal_block};
use crate::regression::drive;
use smoothloss_core::backend::BinaryOps;
use smoothloss_core::{BceWithLogits, Loss, PairCall, Parts, Result, SigmoidFocal};

impl BinaryOps<f32> for CpuBackend {
    fn run_bce_with_logits(&self, call: PairCall<'_, BceWithLogits, f32>) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with: targets,
            upstream,
        } = call.into_parts();
        let (cfg, n) = (plan.cfg, plan.items);
        let (logits, grad) = split_io(io);
        let logits = &logits[..];
        let pw: Option<Vec<f32>> = cfg
            .pos_weight
            .as_ref()
            .map(|w| w.iter().map(|&v| v as f32).collect());
        let pw = pw.as_deref();
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
                let (x, y) = (&logits[r.clone()], &targets[r.clone()]);
                if g {
                    bce_block::<true>(x, y, r.start, pw, up, gr, l)
                } else {
                    bce_block::<false>(x, y, r.start, pw, up, gr, l)
                }
            },
        ),
        ))
    }

    fn run_sigmoid_focal(&self, call: PairCall<'_, SigmoidFocal, f32>) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with: targets,
            upstream,
        } = call.into_parts();
        let (cfg, n) = (plan.cfg, plan.items);
        let (logits, grad) = split_io(io);
        let logits = &logits[..];
        let (alpha, gamma) = (cfg.alpha as f32, cfg.gamma as f32);
        let g = grad.is_some();
        let gm = if cfg.gamma == 0.0 {
            GM_ZERO
        } else if cfg.gamma == 1.0 {
            GM_ONE
        } else if cfg.gamma == 2.0 {
            GM_TWO
        } else {
            GM_GENERAL
        };
        Ok(loss_of(
            cfg.reduction,
            drive(
            self,
            n,
            cfg.reduction,
            upstream,
            grad,
            |r, up, gr, l| {
                let (x, y) = (&logits[r.clone()], &targets[r.clone()]);
                macro_rules! go {
                    ($gm:expr) => {
                        if g {
                            focal_block::<true, { $gm }>(
                                x, y, r.start, None, up, gr, l, alpha, gamma,
                            )
                        } else {
                            focal_block::<false, { $gm }>(
                                x, y, r.start, None, up, gr, l, alpha, gamma,
                            )
                        }
                    };
                }
                match gm {
                    GM_ZERO => go!(GM_ZERO),
                    GM_ONE => go!(GM_ONE),
                    GM_TWO => go!(GM_TWO),
                    _ => go!(GM_GENERAL),
                }
            },
        ),
        ))
    }
}
