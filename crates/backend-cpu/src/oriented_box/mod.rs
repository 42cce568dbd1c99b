//! ProbIoU of oriented boxes on the CPU (`OBB-*`): the loss `1 - ProbIoU` fused with its
//! gradient over fixed blocks of pairs (`blocks.rs`, bit-identical for any thread count), and
//! the pairwise matrix by rows. The per-pair math widens each pair to `f64`: eight pairs at a
//! time without branches (`lanes.rs`, vectorised, AVX2 + FMA or portable build by the backend's
//! level), or one at a time with libm (`math.rs`: the CIoU option, and the lanes that
//! `lanes.rs` hands back).

use crate::blocks::{Up, drive};
use crate::{CpuBackend, run_pair};
use math::{ObbParams, probiou_pair};
use rayon::prelude::*;
use smoothloss_core::backend::OrientedBoxOps;
use smoothloss_core::{Loss, PairCall, ProbIou, ProbIouPairwiseCall, Result, Upstream};

pub(crate) mod lanes;
pub(crate) mod math;

/// `lanes::block` on a level with its const parameters chosen (gradient?, `floor > 0`?).
type LaneBlock = fn(
    crate::SimdLevel,
    &[f32],
    &[f32],
    &ObbParams,
    Up<'_>,
    Option<&mut [f32]>,
    Option<&mut [f64]>,
) -> f64;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn lanes_avx2<const G: bool, const FL: bool>(
    pred: &[f32],
    target: &[f32],
    prm: &ObbParams,
    up: Up<'_>,
    grad: Option<&mut [f32]>,
    losses: Option<&mut [f64]>,
) -> f64 {
    lanes::block::<G, FL>(pred, target, prm, up, grad, losses)
}

fn lanes_plain<const G: bool, const FL: bool>(
    pred: &[f32],
    target: &[f32],
    prm: &ObbParams,
    up: Up<'_>,
    grad: Option<&mut [f32]>,
    losses: Option<&mut [f64]>,
) -> f64 {
    lanes::block::<G, FL>(pred, target, prm, up, grad, losses)
}

fn lanes_dispatch<const G: bool, const FL: bool>(
    level: crate::SimdLevel,
    pred: &[f32],
    target: &[f32],
    prm: &ObbParams,
    up: Up<'_>,
    grad: Option<&mut [f32]>,
    losses: Option<&mut [f64]>,
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if level.avx2() {
        // SAFETY: `level.avx2()` only if the CPU has AVX2 and FMA
        // (`CpuBackend::with_simd_level` falls back to scalar otherwise).
        return unsafe { lanes_avx2::<G, FL>(pred, target, prm, up, grad, losses) };
    }
    let _ = level;
    lanes_plain::<G, FL>(pred, target, prm, up, grad, losses)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2(a: &[f32; 5], b: &[f32], prm: &ObbParams, out: &mut [f32]) {
    lanes::row(a, b, prm, out);
}

fn row_dispatch(
    level: crate::SimdLevel,
    a: &[f32; 5],
    b: &[f32],
    prm: &ObbParams,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if level.avx2() {
        // SAFETY: as in `lanes_dispatch`.
        return unsafe { rows_avx2(a, b, prm, out) };
    }
    let _ = level;
    lanes::row(a, b, prm, out);
}

/// Pairs per block of the deterministic parallel split.
const OBB_BLOCK: usize = 8 * 1024;

fn load(v: &[f32], i: usize) -> [f64; 5] {
    std::array::from_fn(|k| f64::from(v[5 * i + k]))
}

/// `1 - ProbIoU` over validated buffers of `n` pairs.
pub(crate) fn probiou_loss(
    backend: &CpuBackend,
    cfg: &ProbIou,
    n: usize,
    pred: &[f32],
    target: &[f32],
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    let prm = ObbParams {
        eps: cfg.eps,
        floor: cfg.floor,
        ciou: cfg.ciou,
    };
    if !cfg.ciou {
        let level = backend.simd_level();
        let lanes: LaneBlock = match (grad.is_some(), cfg.floor != 0.0) {
            (true, false) => lanes_dispatch::<true, false>,
            (true, true) => lanes_dispatch::<true, true>,
            (false, false) => lanes_dispatch::<false, false>,
            (false, true) => lanes_dispatch::<false, true>,
        };
        return drive(
            backend,
            n,
            OBB_BLOCK,
            5,
            cfg.reduction,
            upstream,
            grad,
            |r, up: Up<'_>, g, l| {
                let (p, t) = (
                    &pred[5 * r.start..5 * r.end],
                    &target[5 * r.start..5 * r.end],
                );
                lanes(level, p, t, &prm, up, g, l)
            },
        );
    }
    drive(
        backend,
        n,
        OBB_BLOCK,
        5,
        cfg.reduction,
        upstream,
        grad,
        |r, up: Up<'_>, mut g, mut l| {
            let mut total = 0.0;
            for (k, i) in r.clone().enumerate() {
                let (p, t) = (load(pred, i), load(target, i));
                let loss = if let Some(g) = g.as_deref_mut() {
                    let f = match up {
                        Up::Scalar(s) => f64::from(s),
                        Up::Per(u, s) => u[k] * s,
                    };
                    let (loss, _, d) = probiou_pair::<true>(p, t, &prm);
                    for (gk, dk) in g[5 * k..5 * k + 5].iter_mut().zip(d) {
                        *gk = (f * dk) as f32;
                    }
                    loss
                } else {
                    probiou_pair::<false>(p, t, &prm).0
                };
                // Rounded to f32 as every f32 backend's per-item loss.
                let loss = f64::from(loss as f32);
                if let Some(l) = l.as_deref_mut() {
                    l[k] = loss;
                }
                total += loss;
            }
            total
        },
    )
}

impl OrientedBoxOps<f32> for CpuBackend {
    fn run_probiou_loss(&self, call: PairCall<'_, ProbIou, f32>) -> Result<Loss> {
        Ok(run_pair(self, call, probiou_loss))
    }

    fn run_batch_probiou(&self, call: ProbIouPairwiseCall<'_, f32>) -> Result<()> {
        let (plan, b1, b2, out) = call.into_parts();
        let prm = ObbParams {
            eps: plan.eps,
            floor: 0.0,
            ciou: false,
        };
        let m = plan.m;
        let level = self.simd_level();
        let row = |i: usize, o: &mut [f32]| {
            let a: [f32; 5] = std::array::from_fn(|k| b1[5 * i + k]);
            row_dispatch(level, &a, b2, &prm, o);
        };
        if plan.n * m <= 4096 {
            for (i, o) in out.chunks_mut(m.max(1)).enumerate() {
                row(i, o);
            }
        } else {
            self.install(|| {
                out.par_chunks_mut(m)
                    .enumerate()
                    .for_each(|(i, o)| row(i, o));
            });
        }
        Ok(())
    }
}
