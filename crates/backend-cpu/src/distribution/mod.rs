//! Distribution focal loss on the CPU (`DFL-*`): one pass per row of `bins` logits (max,
//! exponentials, the two target bins' log-probabilities and the gradient) in `f32` with the
//! polynomial `exp` / `ln` of [`crate::math`], eight rows at a time (`lanes.rs`), items (boxes
//! or rows) accumulated in `f64`, run in fixed blocks by `blocks.rs` (bit-identical for any
//! thread count).

use crate::blocks::{Up, drive};
use crate::{CpuBackend, run_pair};
use smoothloss_core::backend::DistributionOps;
use smoothloss_core::{DflConvention, DistributionFocal, Loss, PairCall, Result, Upstream};

mod lanes;
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
    let level = backend.simd_level();
    drive(
        backend,
        items,
        block,
        width,
        cfg.reduction,
        upstream,
        grad,
        |r, up: Up<'_>, g, l| {
            let a = BlockArgs {
                logits,
                targets,
                first: r.start,
                bins,
                per,
                conv,
            };
            #[cfg(target_arch = "x86_64")]
            if level.avx2() {
                // SAFETY: `level.avx2()` only if the CPU has AVX2 and
                // FMA (`CpuBackend::with_simd_level` falls back to scalar otherwise).
                return unsafe { block_avx2(&a, r.len(), up, g, l) };
            }
            let _ = level;
            block_plain(&a, r.len(), up, g, l)
        },
    )
}

/// What a block reads.
struct BlockArgs<'a> {
    logits: &'a [f32],
    targets: &'a [f32],
    first: usize,
    bins: usize,
    per: usize,
    conv: DflConvention,
}

/// One block of `n` items from item `a.first`: writes the gradient rows and per-item losses
/// (when given), returns the loss sum in item order. Rows go eight at a time through
/// `lanes::group` (a box's four rows never straddle two groups' item sums: an item's loss is
/// the `f64` sum of its rows in order, divided by `per`).
#[inline(always)]
fn block_body(
    a: &BlockArgs<'_>,
    n: usize,
    up: Up<'_>,
    mut g: Option<&mut [f32]>,
    mut l: Option<&mut [f64]>,
) -> f64 {
    let (bins, per) = (a.bins, a.per);
    let (row0, rows) = (a.first * per, n * per);
    let mut sc = lanes::Scratch::new(bins);
    let mut total = 0.0;
    let mut item = 0.0f64;
    let mut loss = [0.0f32; lanes::L];
    for g0 in (0..rows).step_by(lanes::L) {
        let nr = (rows - g0).min(lanes::L);
        let f: [f32; lanes::L] = std::array::from_fn(|k| {
            if k < nr {
                let i = (g0 + k) / per;
                (match up {
                    Up::Scalar(s) => s,
                    Up::Per(u, s) => (u[i] * s) as f32,
                }) / per as f32
            } else {
                0.0
            }
        });
        let (r0, r1) = (row0 + g0, row0 + g0 + nr);
        let gr = g
            .as_deref_mut()
            .map(|g| &mut g[g0 * bins..(g0 + nr) * bins]);
        lanes::group(
            &a.logits[r0 * bins..r1 * bins],
            &a.targets[r0..r1],
            &f,
            a.conv,
            &mut sc,
            gr,
            &mut loss,
        );
        for (k, &lk) in loss[..nr].iter().enumerate() {
            item += f64::from(lk);
            if (g0 + k + 1) % per == 0 {
                let v = item / per as f64;
                if let Some(l) = l.as_deref_mut() {
                    l[(g0 + k) / per] = v;
                }
                total += v;
                item = 0.0;
            }
        }
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(
    a: &BlockArgs<'_>,
    n: usize,
    up: Up<'_>,
    g: Option<&mut [f32]>,
    l: Option<&mut [f64]>,
) -> f64 {
    block_body(a, n, up, g, l)
}

fn block_plain(
    a: &BlockArgs<'_>,
    n: usize,
    up: Up<'_>,
    g: Option<&mut [f32]>,
    l: Option<&mut [f64]>,
) -> f64 {
    block_body(a, n, up, g, l)
}

impl DistributionOps<f32> for CpuBackend {
    fn run_distribution_focal(&self, call: PairCall<'_, DistributionFocal, f32>) -> Result<Loss> {
        Ok(run_pair(self, call, distribution_focal))
    }
}
