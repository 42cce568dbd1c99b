//! The loss-agnostic block runner of the box, regression and binary losses.
//!
//! Work is split into blocks of a fixed number of items (independent of the thread count) run
//! on the backend's rayon pool; each block sums its losses into eight `f64` lanes in a fixed
//! order ([`accumulate`], [`lanes_sum`]), and the block partials are added in block order.
//! Results are therefore bit-identical for any number of threads.

use crate::CpuBackend;
use rayon::prelude::*;
use smoothloss_core::{Reduction, Upstream};

/// Items per chunk of the vectorised loops inside a block (a block is a multiple of it).
pub(crate) const CH: usize = 64;

/// Where the per-item upstream factor comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Up<'a> {
    /// One factor for every item.
    Scalar(f32),
    /// `upstream[i] * scale` per item (the block's slice).
    Per(&'a [f64], f64),
}

/// Adds `l[..r]` to eight `f64` lanes (lane = position modulo 8; fixed order).
#[inline(always)]
pub(crate) fn accumulate(acc: &mut [f64; 8], l: &[f32], r: usize) {
    if r == l.len() && r.is_multiple_of(8) {
        for k in 0..r / 8 {
            for j in 0..8 {
                acc[j] += f64::from(l[8 * k + j]);
            }
        }
    } else {
        for (j, v) in l[..r].iter().enumerate() {
            acc[j % 8] += f64::from(*v);
        }
    }
}

/// Sums the lanes in a fixed order.
#[inline(always)]
pub(crate) fn lanes_sum(acc: &[f64; 8]) -> f64 {
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// Runs `f(range, grad_block, losses_block)` over fixed blocks of `block` items (grad has
/// `stride` values per item) on the backend's pool and returns the partial sums added in
/// block order.
fn run_blocks<F>(
    backend: &CpuBackend,
    n: usize,
    block: usize,
    stride: usize,
    grad: Option<&mut [f32]>,
    losses: Option<&mut [f64]>,
    f: F,
) -> f64
where
    F: Fn(std::ops::Range<usize>, Option<&mut [f32]>, Option<&mut [f64]>) -> f64 + Sync,
{
    let nb = n.div_ceil(block).max(1);
    if nb == 1 {
        return f(0..n, grad, losses);
    }
    let gs: Vec<Option<&mut [f32]>> = match grad {
        Some(g) => g.chunks_mut(block * stride).map(Some).collect(),
        None => (0..nb).map(|_| None).collect(),
    };
    let ls: Vec<Option<&mut [f64]>> = match losses {
        Some(l) => l.chunks_mut(block).map(Some).collect(),
        None => (0..nb).map(|_| None).collect(),
    };
    let parts: Vec<f64> = backend.install(|| {
        gs.into_par_iter()
            .zip(ls)
            .enumerate()
            .map(|(b, (g, l))| f(b * block..n.min((b + 1) * block), g, l))
            .collect()
    });
    parts.iter().fold(0.0, |a, b| a + b)
}

/// Runs a loss over `n` items in fixed blocks of `block` items (the gradient has `stride`
/// values per item) and reduces: validates nothing (the caller did). `f(range, up, grad,
/// losses)` runs one block with its upstream factors (`upstream` times the `mean` scale) and
/// returns its loss sum.
#[allow(clippy::too_many_arguments)]
pub(crate) fn drive<B>(
    backend: &CpuBackend,
    n: usize,
    block: usize,
    stride: usize,
    reduction: Reduction,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
    f: B,
) -> Vec<f64>
where
    B: Fn(std::ops::Range<usize>, Up<'_>, Option<&mut [f32]>, Option<&mut [f64]>) -> f64 + Sync,
{
    let scale = match reduction {
        Reduction::Mean => 1.0 / n as f64,
        _ => 1.0,
    };
    let mut per = (reduction == Reduction::None).then(|| vec![0.0f64; n]);
    let total = run_blocks(
        backend,
        n,
        block,
        stride,
        grad,
        per.as_deref_mut(),
        |r, g, l| {
            let up = match upstream {
                Upstream::PerElement(u) => Up::Per(&u[r.clone()], scale),
                Upstream::Scalar(s) => Up::Scalar((s * scale) as f32),
            };
            f(r, up, g, l)
        },
    );
    match reduction {
        Reduction::None => per.unwrap_or_default(),
        Reduction::Sum => vec![total],
        Reduction::Mean => vec![total / n as f64],
    }
}
