//! Distribution focal loss on the CPU (`DFL-*`): one pass per row of `bins` logits (max,
//! exponentials, the two target bins' log-probabilities and the gradient) in `f32` with the
//! polynomial `exp` / `ln` of [`crate::math`], items (boxes or rows) accumulated in `f64`, run
//! in fixed blocks by `blocks.rs` (bit-identical for any thread count).

use crate::blocks::{Up, drive};
use crate::{CpuBackend, run_pair};
use smoothloss_core::backend::DistributionOps;
use smoothloss_core::{DistributionFocal, Loss, PairCall, Result, Upstream};

pub(crate) mod math;

/// Logits per block of the deterministic parallel split (rounded to whole items).
const DFL_BLOCK_LOGITS: usize = 64 * 1024;

/// The distribution focal loss over validated buffers of `items` items.
pub(crate) fn distribution_focal(
    backend: &CpuBackend,
    cfg: &DistributionFocal,
    items: usize,
    logits: &[f32],
    targets: &[f32],
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    let per = cfg.convention.rows_per_item();
    let width = logits.len() / items;
    let bins = width / per;
    let block = (DFL_BLOCK_LOGITS / width).max(1);
    let conv = cfg.convention;
    drive(
        backend,
        items,
        block,
        width,
        cfg.reduction,
        upstream,
        grad,
        |r, up: Up<'_>, mut g, mut l| {
            let mut total = 0.0;
            for (k, i) in r.clone().enumerate() {
                let f = match up {
                    Up::Scalar(s) => s,
                    Up::Per(u, s) => (u[k] * s) as f32,
                } / per as f32;
                let mut item = 0.0f64;
                for side in 0..per {
                    let row = i * per + side;
                    let z = &logits[row * bins..(row + 1) * bins];
                    let t = targets[row];
                    let gr = g
                        .as_deref_mut()
                        .map(|g| &mut g[(k * per + side) * bins..(k * per + side + 1) * bins]);
                    item += f64::from(math::dfl_row(z, t, conv, f, gr));
                }
                let item = item / per as f64;
                if let Some(l) = l.as_deref_mut() {
                    l[k] = item;
                }
                total += item;
            }
            total
        },
    )
}

impl DistributionOps<f32> for CpuBackend {
    fn run_distribution_focal(&self, call: PairCall<'_, DistributionFocal, f32>) -> Result<Loss> {
        Ok(run_pair(self, call, distribution_focal))
    }
}
