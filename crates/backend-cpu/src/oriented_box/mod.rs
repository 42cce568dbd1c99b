//! ProbIoU of oriented boxes on the CPU (`OBB-*`): the loss `1 - ProbIoU` fused with its
//! gradient over fixed blocks of pairs (`blocks.rs`, bit-identical for any thread count), and
//! the pairwise matrix by rows. The per-pair math (`math.rs`) widens each pair to `f64`.

use crate::blocks::{Up, drive};
use crate::{CpuBackend, run_pair};
use math::{ObbParams, probiou_pair};
use rayon::prelude::*;
use smoothloss_core::backend::OrientedBoxOps;
use smoothloss_core::{Loss, PairCall, ProbIou, ProbIouPairwiseCall, Result, Upstream};

pub(crate) mod math;

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
        let row = |i: usize, o: &mut [f32]| {
            let a = load(b1, i);
            for (j, oj) in o.iter_mut().enumerate() {
                *oj = probiou_pair::<false>(a, load(b2, j), &prm).1 as f32;
            }
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
