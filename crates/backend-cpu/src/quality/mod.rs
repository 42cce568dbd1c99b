//! Varifocal and quality focal losses on the CPU (`QUAL-*`): branchless `f32` element math
//! (`math.rs`) with the polynomial `exp` / `ln` of [`crate::math`]; the varifocal loss runs on
//! the chunked element-wise kernel of the binary losses (`elementwise.rs`), the quality focal
//! loss row by row; both in fixed blocks by `blocks.rs` (bit-identical for any thread count).

use crate::blocks::{Up, drive};
use crate::elementwise::{EW_BLOCK, ew_dispatch};
use crate::{CpuBackend, loss_of, split_io};
use math::{power_of, qfl_el, vfl_el};
use smoothloss_core::backend::QualityOps;
use smoothloss_core::{
    Call, Loss, Parts, QflTargets, QualityFocal, Reduction, Result, Upstream, Varifocal,
    VarifocalTargets, VarifocalWeight,
};

pub(crate) mod math;

ew_dispatch!(
    vfl_block,
    vfl_avx2,
    vfl_plain,
    [const K: u8, const P: u8],
    [K, P],
    (alpha: f32, gamma: f32),
    |x, s, l| vfl_el::<K, P>(x, s, l, alpha, gamma)
);

/// `(reduction, upstream)` for the block runner: a `mean` over a divisor other than the item
/// count (`avg_factor`) runs as a `sum` with the scalar upstream divided by it.
fn mean_as_sum<'a>(
    reduction: Reduction,
    up: Upstream<'a>,
    den: Option<f64>,
) -> (Reduction, Upstream<'a>) {
    match (reduction, den, up) {
        (Reduction::Mean, Some(d), Upstream::Scalar(s)) => {
            (Reduction::Sum, Upstream::Scalar(s / d))
        }
        _ => (reduction, up),
    }
}

/// The varifocal loss over validated buffers of `n` elements.
fn varifocal(
    backend: &CpuBackend,
    cfg: &Varifocal,
    logits: &[f32],
    t: VarifocalTargets<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    let n = logits.len();
    let (alpha, gamma) = (cfg.alpha as f32, cfg.gamma as f32);
    let g = grad.is_some();
    let level = backend.simd_level();
    let power = power_of(cfg.gamma);
    let (red, up) = mean_as_sum(cfg.reduction, upstream, cfg.avg_factor);
    let mut v = drive(backend, n, EW_BLOCK, 1, red, up, grad, |r, up, gr, l| {
        let (x, s) = (&logits[r.clone()], &t.scores[r.clone()]);
        macro_rules! go {
            ($k:expr, $p:expr) => {
                if g {
                    vfl_block::<true, $k, $p>(
                        level, x, s, r.start, t.labels, up, gr, l, alpha, gamma,
                    )
                } else {
                    vfl_block::<false, $k, $p>(
                        level, x, s, r.start, t.labels, up, gr, l, alpha, gamma,
                    )
                }
            };
        }
        macro_rules! by_power {
            ($k:expr) => {
                match power {
                    0 => go!($k, 0),
                    2 => go!($k, 2),
                    _ => go!($k, 1),
                }
            };
        }
        // The one run-time to type dispatch of the weight and the power.
        match cfg.weight {
            VarifocalWeight::Ultralytics => by_power!(0),
            VarifocalWeight::MmdetIouWeighted => by_power!(1),
            VarifocalWeight::Mmdet => by_power!(2),
        }
    });
    if let (Reduction::Mean, Some(d)) = (cfg.reduction, cfg.avg_factor) {
        v[0] /= d;
    }
    v
}

/// The quality focal loss over validated buffers of `rows x classes` logits.
#[allow(clippy::too_many_arguments)]
fn quality_focal(
    backend: &CpuBackend,
    cfg: &QualityFocal,
    rows: usize,
    classes: usize,
    logits: &[f32],
    t: QflTargets<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    let beta = cfg.beta as f32;
    let two = cfg.beta == 2.0;
    let block = (EW_BLOCK / classes).max(1);
    let (red, up) = mean_as_sum(cfg.reduction, upstream, cfg.avg_factor);
    let mut v = drive(
        backend,
        rows,
        block,
        classes,
        red,
        up,
        grad,
        |r, up: Up<'_>, mut g, mut l| {
            let mut total = 0.0;
            for (k, i) in r.clone().enumerate() {
                let f = match up {
                    Up::Scalar(s) => s,
                    Up::Per(u, s) => (u[k] * s) as f32,
                };
                let (label, s) = (t.labels[i], t.scores[i]);
                let z = &logits[i * classes..(i + 1) * classes];
                let mut row = 0.0f64;
                let mut gr = g
                    .as_deref_mut()
                    .map(|g| &mut g[k * classes..(k + 1) * classes]);
                for (j, &x) in z.iter().enumerate() {
                    let (lv, d) = qfl_el(x, label == j as i64, s, beta, two);
                    row += f64::from(lv);
                    if let Some(gr) = gr.as_deref_mut() {
                        gr[j] = f * d;
                    }
                }
                if let Some(l) = l.as_deref_mut() {
                    l[k] = row;
                }
                total += row;
            }
            total
        },
    );
    if let (Reduction::Mean, Some(d)) = (cfg.reduction, cfg.avg_factor) {
        v[0] /= d;
    }
    v
}

impl QualityOps<f32> for CpuBackend {
    fn run_varifocal(
        &self,
        call: Call<'_, Varifocal, f32, VarifocalTargets<'_, f32>>,
    ) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let (input, grad) = split_io(io);
        let v = varifocal(self, plan.cfg, &input, with, upstream, grad);
        Ok(loss_of(plan.reduction(), v))
    }

    fn run_quality_focal(
        &self,
        call: Call<'_, QualityFocal, f32, QflTargets<'_, f32>>,
    ) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let (input, grad) = split_io(io);
        let v = quality_focal(
            self, plan.cfg, plan.items, plan.width, &input, with, upstream, grad,
        );
        Ok(loss_of(plan.reduction(), v))
    }
}
