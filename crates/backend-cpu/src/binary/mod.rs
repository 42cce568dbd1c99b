//! BCE with logits and sigmoid focal loss on the CPU: branchless `f32` element kernels with
//! polynomial `exp` / `log1p` ([`crate::math`]), fused forward + backward, deterministic
//! multithreading (`blocks.rs`). The per-element math is in `math.rs`.

use crate::blocks::drive;
use crate::elementwise::{EW_BLOCK, ew_dispatch};
use crate::{CpuBackend, run_pair};
use math::{GammaGeneral, GammaOne, GammaTwo, GammaZero, Power, PowerMarker, bce_el, focal_el};
use smoothloss_core::backend::BinaryOps;
use smoothloss_core::{BceWithLogits, Loss, PairCall, Result, SigmoidFocal, Upstream};

pub(crate) mod math;

ew_dispatch!(bce_block, bce_avx2, bce_plain, [], [], (), bce_el);
ew_dispatch!(
    focal_block,
    focal_avx2,
    focal_plain,
    [P: PowerMarker],
    [P],
    (alpha: f32, alpha_c: f32, gamma: f32),
    |x, y, _| focal_el::<P>(x, y, alpha, alpha_c, gamma)
);

/// BCE with logits over validated buffers of `n` elements.
pub(crate) fn bce_with_logits(
    backend: &CpuBackend,
    cfg: &BceWithLogits,
    n: usize,
    logits: &[f32],
    targets: &[f32],
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    let pw: Option<Vec<f32>> = cfg
        .pos_weight
        .as_ref()
        .map(|w| w.iter().map(|&v| v as f32).collect());
    let pw = pw.as_deref();
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
            let (x, y) = (&logits[r.clone()], &targets[r.clone()]);
            if g {
                bce_block::<true>(level, x, y, r.start, pw, up, gr, l)
            } else {
                bce_block::<false>(level, x, y, r.start, pw, up, gr, l)
            }
        },
    )
}

/// Sigmoid focal loss over validated buffers of `n` elements.
pub(crate) fn sigmoid_focal(
    backend: &CpuBackend,
    cfg: &SigmoidFocal,
    n: usize,
    logits: &[f32],
    targets: &[f32],
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    // `1 - alpha` in f64, rounded once: see `focal_el`.
    let (alpha, alpha_c, gamma) = (cfg.alpha as f32, (1.0 - cfg.alpha) as f32, cfg.gamma as f32);
    let g = grad.is_some();
    let power = Power::of(cfg.gamma);
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
            let (x, y) = (&logits[r.clone()], &targets[r.clone()]);
            macro_rules! go {
                ($p:ty) => {
                    if g {
                        focal_block::<true, $p>(
                            level, x, y, r.start, None, up, gr, l, alpha, alpha_c, gamma,
                        )
                    } else {
                        focal_block::<false, $p>(
                            level, x, y, r.start, None, up, gr, l, alpha, alpha_c, gamma,
                        )
                    }
                };
            }
            // The one run-time to type dispatch of the focal power.
            match power {
                Power::Zero => go!(GammaZero),
                Power::One => go!(GammaOne),
                Power::Two => go!(GammaTwo),
                Power::General => go!(GammaGeneral),
            }
        },
    )
}

impl BinaryOps<f32> for CpuBackend {
    fn run_bce_with_logits(&self, call: PairCall<'_, BceWithLogits, f32>) -> Result<Loss> {
        Ok(run_pair(self, call, bce_with_logits))
    }

    fn run_sigmoid_focal(&self, call: PairCall<'_, SigmoidFocal, f32>) -> Result<Loss> {
        Ok(run_pair(self, call, sigmoid_focal))
    }
}
