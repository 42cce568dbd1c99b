//! The options of language-model training (`CE-10` .. `CE-15`): logit softcap, z-loss, row
//! weights, a given `mean` denominator, per-row log-sum-exp and argmax-hit outputs.
//!
//! Calls without these options never come here: they keep the pipelined long-row and batched
//! short-row paths unchanged. Calls with them run row by row through the same chunk kernels
//! (`kernels::pass1` / `pass2`, AVX2 or portable) and the same per-row combination
//! ([`long::combine`]: `S = n0 + s'`, `ln S = ln_1p(s')` for a single maximum, so confident
//! rows keep `TOL-2`'s relative accuracy), with the options applied per row around them:
//!
//! - softcap (`CE-10`): the row's capped logits `cap tanh(z / cap)` and their derivatives
//!   `1 - tanh^2` (in `f32`, accurate to 1.5 ulp of `z'` below the cap: `softcap.rs`) go to two
//!   per-task scratch rows; the kernels run in place on the capped row (its exponentials, then
//!   the gradient with respect to the capped logits), so the row stays in cache, and the
//!   gradient buffer is written once, `d loss / d raw logits = g' dz'/dz`;
//! - z-loss (`CE-11`): `s lse^2` added to the row's loss and `2 s lse` to the gradient's `A`
//!   (the gradient is `A p_j - B_j`, so pass 2 is unchanged); the target's entry from `f64`;
//! - row weights (`CE-12`): multiply the row's loss and its gradient factor;
//! - a given denominator (`CE-13`): the reduction's scale;
//! - log-sum-exp and hit (`CE-14`): `M + ln S` and `z_y == M`, from the combination.
//!
//! Rows are distributed over rayon tasks in fixed blocks and every row is computed by the same
//! code whatever the task layout, so the results are bit-identical for any thread count.

use super::bufs::{Bufs, RowBuf};
use super::long::{self, RowCombined};
use super::plan::{ChunkStats, Plan, TASK_ELEMS, chunk_factor};
use crate::CpuBackend;
use rayon::prelude::*;
use smoothloss_core::cross_entropy::CeTargets;
use smoothloss_core::reduction::{Reduction, Upstream};
use smoothloss_core::{CeOutput, CePlan, CeRowOutputs, CrossEntropy};

/// One row's results.
#[derive(Debug, Clone, Copy, Default)]
struct RowOut {
    loss: f64,
    z_loss: f64,
    lse: f64,
    hit: bool,
}

/// Per-task scratch: the capped row and its derivatives, the chunk statistics.
#[derive(Default)]
struct Scratch {
    capped: Vec<f32>,
    dcap: Vec<f32>,
    stats: Vec<ChunkStats>,
}

/// Runs a call with options on the backend's SIMD level and pool; `denom` is the reduction's
/// denominator (`CE-7`, `CE-13`), finite and non-zero under `mean` (the caller routes the
/// degenerate ones to the reference).
pub(super) fn run_options(
    backend: &CpuBackend,
    call_plan: &CePlan<'_>,
    bufs: Bufs<'_>,
    targets: CeTargets<'_, f32>,
    upstream: Upstream<'_>,
    denom: f64,
    rows_out: CeRowOutputs<'_, f32>,
) -> CeOutput {
    let (cfg, rows, c) = (call_plan.cfg, call_plan.rows(), call_plan.classes());
    let plan = Plan::new(backend.simd_level(), cfg, c, targets);
    let scale = if cfg.reduction == Reduction::Mean {
        1.0 / denom
    } else {
        1.0
    };
    // CE-12: the row weight joins the row's gradient factor.
    let us = |i: usize| {
        let u = long::row_us(call_plan, &upstream, scale, i);
        if cfg.row_weights.is_some() {
            u * cfg.row_weight(i)
        } else {
            u
        }
    };
    let mut out = vec![RowOut::default(); rows];
    let g = (TASK_ELEMS / c).max(1);
    let block = |first: usize, piece: Bufs<'_>, res: &mut [RowOut]| {
        let mut sc = Scratch::default();
        for (r, (row, o)) in piece.pieces(c).into_iter().zip(res.iter_mut()).enumerate() {
            let i = first + r;
            *o = process_row(&plan, cfg, i, row, us(i), &mut sc);
        }
    };
    if backend.threads() <= 1 || rows <= g {
        block(0, bufs, &mut out);
    } else {
        backend.install(|| {
            bufs.pieces(g * c)
                .into_par_iter()
                .zip(out.par_chunks_mut(g))
                .enumerate()
                .for_each(|(t, (piece, res))| block(t * g, piece, res));
        });
    }
    if let Some(l) = rows_out.lse {
        for (d, o) in l.iter_mut().zip(&out) {
            *d = o.lse as f32;
        }
    }
    if let Some(h) = rows_out.hit {
        for (d, o) in h.iter_mut().zip(&out) {
            *d = o.hit;
        }
    }
    let (losses, z_losses): (Vec<f64>, Vec<f64>) = out.iter().map(|o| (o.loss, o.z_loss)).unzip();
    CeOutput {
        loss: call_plan.reduce(losses, denom),
        z_loss: call_plan.reduce(z_losses, denom),
    }
}

/// One row (`bufs` holds exactly the row) with every option; `us` is the row's gradient
/// factor (upstream, reduction scale and row weight).
fn process_row(
    plan: &Plan<'_>,
    cfg: &CrossEntropy,
    i: usize,
    mut bufs: Bufs<'_>,
    us: f64,
    sc: &mut Scratch,
) -> RowOut {
    if plan.ignored(i) {
        bufs.fill_grad(0.0);
        return RowOut::default();
    }
    let c = plan.classes;
    let y = plan.target(i);
    let Scratch {
        capped,
        dcap,
        stats,
    } = sc;
    // CE-10: the capped row and its derivatives into the scratch rows, chunk by chunk, each
    // chunk's pass 1 run while it is in L1 (the logits are read before anything is written,
    // so in place works); pass 2 then runs in place on the capped row's exponentials (in
    // cache), and the gradient buffer is written once, at the end, with the chain rule.
    // Without a softcap the kernels run on the row itself.
    let mut capped_zy = None;
    let (mut kb, gout) = match cfg.softcap {
        None => (bufs, None),
        Some(cap) => {
            let cap = super::softcap::Cap::new(cap);
            capped.resize(c, 0.0);
            dcap.resize(c, 0.0);
            let mut run = |z: &[f32], store: bool| {
                // The capped target logit, the bits of the vector path (`Cap::one`).
                capped_zy = Some(y.map_or(0.0, |y| cap.one(z[y]).0));
                cap_pass1(plan, i, cap, z, capped, dcap, stats, store);
            };
            let g = match bufs {
                Bufs::Split(x, g) => {
                    run(x, true);
                    Some(g)
                }
                Bufs::InPlace(g) => {
                    run(g, true);
                    Some(g)
                }
                Bufs::ReadOnly(x) => {
                    run(x, false);
                    None
                }
            };
            let kb = if g.is_some() {
                Bufs::InPlace(&mut capped[..c])
            } else {
                Bufs::ReadOnly(&capped[..c])
            };
            (kb, g)
        }
    };
    let mut raw = RowBuf::new(&mut kb, None, false);
    let zy = match capped_zy {
        Some(zy) => zy,
        None => {
            let zy = y.map_or(0.0, |y| raw.logit(y));
            stats.clear();
            stats.resize(plan.nchunks, ChunkStats::default());
            long::pass1_range(plan, i, 0, &raw, stats);
            zy
        }
    };
    let mut row = long::combine(plan, stats, y, zy);
    let lse = row.lse();
    let hit = y.is_some() && row.finite && zy == row.m;
    // A NaN row's z-loss is NaN, as the reference's `s * NaN^2`.
    let mut z_loss = if cfg.z_loss != 0.0 && !row.finite {
        f64::NAN
    } else {
        0.0
    };
    if cfg.z_loss != 0.0 && row.finite {
        // CE-11: `s lse^2`, and `2 s lse p_j` through `A`.
        z_loss = cfg.z_loss * lse * lse;
        row.loss += z_loss;
        row.a += 2.0 * cfg.z_loss * lse;
    }
    let mut loss = row.loss;
    if cfg.row_weights.is_some() {
        let r = cfg.row_weight(i);
        loss *= r;
        z_loss *= r;
    }
    let res = RowOut {
        loss,
        z_loss,
        lse,
        hit,
    };
    if !raw.has_grad() {
        return res;
    }
    if !row.finite {
        raw.fill_out(f32::NAN);
    } else if !(us.is_finite() && row.a.is_finite()) {
        slow_grad(plan, cfg, i, &mut raw, stats, &row, y, us, lse);
    } else {
        let gy = y.map(|y| {
            (
                y,
                target_grad(plan, cfg, stats, &row, y, raw.e_at(y), us, lse),
            )
        });
        long::pass2_range(plan, i, 0, &mut raw, stats, &row, us);
        if let Some((y, g)) = gy {
            raw.set_out(y, g);
        }
    }
    // `raw` (a view of `kb`, the capped row with a softcap) is not used below.
    if let Some(g) = gout {
        // CE-10: the chain rule, the one write of the gradient buffer.
        super::softcap::chain_rule(plan.level, capped, dcap, g);
    }
    res
}

/// `CE-10` and pass 1 of one row, chunk by chunk: chunk `k` of the logits `z` capped into
/// `capped` (its derivatives into `dcap`), then pass 1 on it (the exponentials stored over it
/// when `store`) while it is in L1; `stats` gets the row's chunk statistics.
#[allow(clippy::too_many_arguments)]
fn cap_pass1(
    plan: &Plan<'_>,
    i: usize,
    cap: super::softcap::Cap,
    z: &[f32],
    capped: &mut [f32],
    dcap: &mut [f32],
    stats: &mut Vec<ChunkStats>,
    store: bool,
) {
    let c = plan.classes;
    stats.clear();
    stats.resize(plan.nchunks, ChunkStats::default());
    for k in 0..plan.nchunks {
        let off = k * plan.chunk;
        let n = plan.chunk.min(c - off);
        let cc = &mut capped[off..off + n];
        super::softcap::softcap_row(
            plan.level,
            &z[off..off + n],
            cap,
            cc,
            &mut dcap[off..off + n],
        );
        let mut b = if store {
            Bufs::InPlace(cc)
        } else {
            Bufs::ReadOnly(cc)
        };
        let r = RowBuf::new(&mut b, None, false);
        long::pass1_range(plan, i, k, &r, &mut stats[k..k + 1]);
    }
}

/// The hard target's gradient entry in `f64` (the long path's `target_grad` plus the z-loss
/// term `2 s lse p_y`).
#[allow(clippy::too_many_arguments)]
fn target_grad(
    plan: &Plan<'_>,
    cfg: &CrossEntropy,
    stats: &[ChunkStats],
    row: &RowCombined,
    y: usize,
    ey: f32,
    us: f64,
    lse: f64,
) -> f32 {
    let st = &stats[y / plan.chunk];
    let f = chunk_factor(st.m, f64::from(row.m));
    let p = f64::from(ey) * f / row.s;
    let wy = plan.weight(y);
    let n0 = if f == 1.0 { row.n0 } else { 0.0 };
    let pm1 = super::short::p_minus_1(p, ey, n0, row.s1, 1.0 / row.s);
    let eps = plan.eps;
    let mut g = (1.0 - eps) * wy * pm1 + eps / plan.classes as f64 * (plan.w_sum * p - wy);
    if cfg.z_loss != 0.0 {
        g += 2.0 * cfg.z_loss * lse * p;
    }
    (us * g) as f32
}

/// The reference's formula per element (a non-finite `A`: an infinite target probability),
/// z-loss term included.
#[allow(clippy::too_many_arguments)]
fn slow_grad(
    plan: &Plan<'_>,
    cfg: &CrossEntropy,
    i: usize,
    raw: &mut RowBuf<'_>,
    stats: &[ChunkStats],
    row: &RowCombined,
    y: Option<usize>,
    us: f64,
    lse: f64,
) {
    let c = plan.classes;
    let eps = plan.eps;
    let mm = f64::from(row.m);
    // `A` without the z-loss part: the probability targets' `sum_k w_k q'_k`.
    let a0 = if cfg.z_loss != 0.0 {
        row.a - 2.0 * cfg.z_loss * lse
    } else {
        row.a
    };
    for j in 0..raw.len {
        let st = &stats[j / plan.chunk];
        let f = if st.m == f32::NEG_INFINITY {
            0.0
        } else {
            chunk_factor(st.m, mm)
        };
        let p = f64::from(raw.e_at(j)) * f / row.s;
        let mut g = match y {
            Some(y) => {
                let wy = plan.weight(y);
                let hard = wy * (p - if j == y { 1.0 } else { 0.0 });
                let soft = plan.w_sum * p - plan.weight(j);
                (1.0 - eps) * hard + eps / c as f64 * soft
            }
            None => {
                let q = f64::from(plan.probs.map_or(0.0, |q| q[i * c + j]));
                let qs = (1.0 - eps) * q + eps / c as f64;
                p * a0 - plan.weight(j) * qs
            }
        };
        if cfg.z_loss != 0.0 {
            g += 2.0 * cfg.z_loss * lse * p;
        }
        raw.set_out(j, (us * g) as f32);
    }
}
