//! Fused cross-entropy (forward + backward) on `f32` logits.
//!
//! # Algorithm
//!
//! Each row is cut into chunks of [`CHUNK`] columns at fixed offsets; a row of at most
//! [`SHORT_ROW`] columns is a single chunk (one maximum, no chunk factors, one kernel call per
//! pass: short rows pay little per-row cost). Pass 1 reads a chunk once
//! from memory: a max loop over the chunk (from L1), then one loop (two vectors per iteration,
//! their `exp` chains interleaved) that computes
//! `e_j = exp(z_j - m_c)` with the chunk's own maximum `m_c` (prefetching the next chunk),
//! stores `e_j` (when a gradient is wanted) into a per-thread scratch row (or, in place and for
//! rows split across threads, into the gradient buffer), and accumulates in `f32` lanes (one
//! vector accumulator per block of 512 columns, so 64 terms per lane; the blocks' sums are added
//! in `f64`) the chunk's `sum e_j` (in a chunk whose sum is below 1.5, one dominant maximum,
//! the 512-column block holding the maximum is summed again from the stored exponentials
//! without its 1, and `S = n0 + s'` with `n0 = 1` and `s'` that block's sum plus the other
//! blocks' (AVX2; the portable kernel counts the maximum apart in its loop), so that a confident row's
//! `S = 1 + s'` keeps a tiny `s'`; see the tolerance below; counting apart in the main loop
//! measured 15-20 % slower),
//! `sum w_j (z_j - m_c)` (the smoothing term) and, for probability targets, `sum w_j q'_j` and
//! `sum w_j q'_j (z_j - m_c)`. The per-chunk statistics are combined in `f64`, in chunk order:
//! `M = max m_c`, `S = n0 + s'` (`n0` from the chunks whose maximum is `M`, `s'` the rest,
//! each other chunk's sum times `exp(m_c - M)`), `log S = ln_1p(s')` when `n0 = 1`, the loss.
//! Pass 2 turns the stored
//! exponentials, still in cache, into the gradient `u s (A p_j - B_j)` with
//! `p_j = e_j exp(m_c - M) / S` (`CE-8`, `CE-9`), one FMA per element, the gradient lines of
//! the next chunk prefetched so the stores do not wait on memory (plus the weight or
//! target load when present; partial vectors use masked loads and stores with the same formula,
//! so an element's bits do not depend on where vectors start), written once; the target class
//! of a hard target is then set from `f64`. With a separate gradient buffer, pass 2 of row `r`
//! runs chunk by chunk interleaved with pass 1 of row `r + 1`: with ordinary stores in the same
//! loop (one block of 16 gradient elements per 16 exponentials), so the gradient stores spread
//! over the `exp` work; with streaming stores (`CpuBackend::streams_gradient`: large gradients
//! whose rows start on 64-byte lines, or forced with `with_streaming_stores`) as one tight loop
//! per chunk before its pass 1, on whole 64-byte lines only (a line shared with the
//! neighbouring row or chunk gets ordinary stores, as a half-written streaming line is flushed
//! as a slow partial write).
//!
//! # Short rows
//!
//! Rows of at most 32 classes with hard targets (plain or class-weighted) take the lanes path
//! (`lanes.rs`): eight rows transposed into one block by in-register shuffles, one row per
//! `f32` lane, every step a vertical operation, so nothing is paid per row but the `f64` loss
//! and gradient constants (themselves eight lanes wide); rows with a non-finite logit or
//! upstream leave the lanes for the batched path below, one row at a time.
//!
//! Other rows of at most `SHORT_MAX` (128) classes take a batched path instead
//! (`short.rs`), where the per-row costs of the chunked kernels dominate: about
//! 1024 logits' worth of rows at a time, (1) per row the maximum, `d_j = z_j - m` written into a
//! per-call scratch buffer and the smoothing sums `sum w_j q'_j d_j` (and `sum w_j q'_j`), (2)
//! one vectorised `exp` over the whole contiguous batch, (3) per row `S = n0 + s'` as in the
//! long path, `log S` (an `f64` series, absolute error below `2e-11` and relative to `s'` when
//! `n0 = 1`), the loss and the gradient constants, (4) the gradient, one FMA per element, the
//! hard target's entry set from `f64` (`p_y - 1 = -s' / S` when the target is the single
//! maximum). Per-row sums
//! use eight `f32` lanes (column index modulo 8; partial vectors through masked loads) combined
//! by a fixed `f32` tree, at most `C / 8 + 4 <= 20` roundings per term, well inside the
//! tolerance below. Each row's results depend only on the row (`exp` gives the same bits
//! wherever a vector starts), so they do not depend on the batching or on the thread count.
//!
//! Rows are distributed over rayon tasks; a few very long rows are also split into blocks of
//! chunks. Every chunk is computed by the same code whatever the task layout and the partial
//! results are combined in a fixed order, so the results are **bit-identical for any number of
//! threads**. Per-row losses are reduced in row order in `f64`; the `mean` denominator is the
//! exact `f64` sum of target weights in row order, as the reference.
//!
//! # Tolerance (against the `f64` reference on the same `f32` inputs)
//!
//! With `R_i = sum_j |w_j q'_ij|` the row's target mass (hard targets:
//! `R_i = (1 - eps) w_y + eps W / C`) and `g_i = |u_i s|` the row's upstream times the
//! reduction scale:
//!
//! - per-row loss: `|got - want| <= 2e-5 |want| + 1e-5 R_i` (for `q >= 0`);
//!   `sum` and `mean` values: the sum of the per-row bounds (divided by the `mean`
//!   denominator);
//! - per-row loss, relative to the row's own loss however small (a confident row, issue 14;
//!   `TOL-2`): `|got - want| <= 2^-24 (K |want| + 2 R_i T_i) + C 2^-52 R_i`,
//!   `T_i = sum_j p_j |z_j - m|` (the effect of rounding the exponentials' arguments to
//!   `f32`), `K = 24` for short rows, `72` for long rows (`tests/confident_rows.rs`);
//! - gradient: `|got - want| <= 1e-5 |want| + 5e-6 g_i R_i` element-wise.
//!
//! Non-finite values follow the reference exactly (`CE-1`, `CE-3`, `CE-5`, `CE-7`): NaN or
//! `+inf` in a row makes its loss and gradient NaN, `-inf` logits give `p = 0` (a finite
//! gradient; the loss is finite for `eps = 0`, where the smoothing term is absent, and `+inf`
//! for `eps > 0`, or NaN through `0 * -inf` for a zero class weight or target probability),
//! ignored rows get loss 0 and gradient exactly 0.
//! A `+inf` target probability gives the reference's `+inf` loss (the `d_j = 0` terms of
//! `sum w_j q'_j d_j` are skipped, not `inf * 0`; `TOL-4`). A `mean` whose denominator is 0
//! (every kept row has weight 0) or a non-finite scalar upstream runs through the `f64`
//! reference: each gradient entry is `inf * g_j`, whose class (`+-inf` or NaN) depends on
//! whether `g_j` is 0, which an `f32` `p_j` that underflowed would change.
//!
//! # Layout
//!
//! * `plan`: the per-call constants (`Plan`), chunk geometry and statistics;
//! * `bufs`: the borrowed buffers of one task and the raw row views the kernels write through;
//! * `long`: rows of more than `SHORT_MAX` classes, chunked, pipelined, split across threads;
//! * `lanes`: short rows (at most 32 classes, hard targets), eight rows at a time, one per
//!   SIMD lane (`kernels/lanes_avx2.rs` for the AVX2 transposes);
//! * `short`: short rows, batched;
//! * `options`: calls with the options of `CE-10` .. `CE-15` (softcap, z-loss, row weights, a
//!   given denominator, per-row log-sum-exp and hits), row by row through the same kernels;
//! * `kernels`: the per-chunk kernels, portable (`kernels/mod.rs`) and AVX2 + FMA
//!   (`kernels/avx2.rs`, `kernels/short_avx2.rs` for the short-row reductions).

use crate::CpuBackend;
use bufs::Bufs;
use plan::{BLOCK_CHUNKS, PAR_MIN_ELEMS, Plan, TASK_ELEMS};
use rayon::prelude::*;
use smoothloss_core::backend::CrossEntropyOps;
use smoothloss_core::cross_entropy::CeTargets;
use smoothloss_core::error::Result;
use smoothloss_core::reduction::{Reduction, Upstream};
use smoothloss_core::{CeCall, CeOutput, CePlan, CeRowOutputs, Io, Loss, Parts};

mod bufs;
mod kernels;
mod lanes;
mod long;
mod options;
mod plan;
mod short;
mod softcap;

pub use plan::{CHUNK, SHORT_ROW};

/// Rows `first..` held by `bufs` (whole rows), on the short or the long path.
fn process_rows(
    plan: &Plan<'_>,
    first: usize,
    bufs: Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    losses: &mut [f64],
    nt: bool,
) {
    if lanes::takes(plan) {
        // Tiny rows (hard targets): eight rows at a time, one per SIMD lane.
        lanes::process_rows_lanes(plan, first, bufs, us, losses);
        return;
    }
    if plan.classes <= short::SHORT_MAX {
        // Short rows: batches of rows, one vectorised `exp` per batch (no streaming stores).
        short::process_rows_short(plan, first, bufs, us, losses);
        return;
    }
    long::process_rows_long(plan, first, bufs, us, losses, nt);
    if nt {
        kernels::store_fence(plan.level);
    }
}

/// Runs the fused kernel over the buffers of a validated call, on the backend's SIMD level
/// and pool, with the call's `mean` denominator `denom`; returns the reduced loss.
fn run(
    backend: &CpuBackend,
    call_plan: &CePlan<'_>,
    bufs: Bufs<'_>,
    targets: CeTargets<'_, f32>,
    upstream: Upstream<'_>,
    denom: f64,
) -> Loss {
    let (cfg, rows, c) = (call_plan.cfg, call_plan.rows(), call_plan.classes());
    let mut plan = Plan::new(backend.simd_level(), cfg, c, targets);
    let nchunks = plan.nchunks;
    let scale = if cfg.reduction == Reduction::Mean {
        1.0 / denom
    } else {
        1.0
    };
    // A scalar upstream gives every row the same factor (`row_us` is `u * scale` for all `i`).
    if let Upstream::Scalar(u) = upstream {
        plan.uniform_us = Some(u * scale);
    }
    let us = |i: usize| long::row_us(call_plan, &upstream, scale, i);
    let mut losses = vec![0.0; rows];
    let total = rows * c;
    // Non-temporal gradient stores only when the gradient is far larger than the caches.
    let nt = match &bufs {
        Bufs::Split(_, g) => backend.streams_gradient(g, rows, c),
        _ => false,
    };
    if backend.threads() <= 1 || total < PAR_MIN_ELEMS {
        // Sequential in the calling thread: no pool hand-off for one thread or tiny inputs.
        process_rows(&plan, 0, bufs, &us, &mut losses, nt);
    } else {
        backend.install(|| {
            let threads = rayon::current_num_threads();
            if rows < 2 * threads && nchunks >= 2 * BLOCK_CHUNKS {
                for (i, (piece, loss)) in bufs.pieces(c).into_iter().zip(&mut losses).enumerate() {
                    *loss = long::process_row_split(&plan, i, piece, us(i));
                }
            } else {
                let g = (TASK_ELEMS / c).max(1);
                bufs.pieces(g * c)
                    .into_par_iter()
                    .zip(losses.par_chunks_mut(g))
                    .enumerate()
                    .for_each(|(t, (piece, ls))| process_rows(&plan, t * g, piece, &us, ls, nt));
            }
        });
    }
    call_plan.reduce(losses, denom)
}

/// The whole call through the `f64` reference (`TOL-4`): for a `mean` whose denominator is 0
/// (every kept row has class weight 0) or a non-finite scalar upstream, every gradient entry
/// is `inf * g_j` or `NaN * g_j`, whose value (`+-inf` or NaN) depends on whether `g_j` is 0,
/// and `g_j` of a class far below the maximum is 0 in `f32` (`p_j` underflows) where the
/// reference's `f64` `p_j` is not. Such calls are degenerate, not fast paths.
fn run_reference(
    cfg: &smoothloss_core::CrossEntropy,
    rows: usize,
    classes: usize,
    io: Io<'_, [f32]>,
    targets: CeTargets<'_, f32>,
    upstream: Upstream<'_>,
    rows_out: CeRowOutputs<'_, f32>,
) -> Result<CeOutput> {
    use smoothloss_core::{Input, Losses, ReferenceBackend};
    let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let probs;
    let t64 = match targets {
        CeTargets::Classes(t) => CeTargets::Classes(t),
        CeTargets::Probs(q) => {
            probs = widen(q);
            CeTargets::Probs(&probs[..])
        }
    };
    let (z, out): (Vec<f64>, Option<&mut [f32]>) = match io {
        Io::Read(z) => (widen(z), None),
        Io::Separate { input, grad } => (widen(input), Some(grad)),
        Io::InPlace(z) => (widen(z), Some(z)),
    };
    let input = Input::matrix(&z, rows, classes).with_upstream(upstream);
    let mut lse = vec![0.0f64; if rows_out.lse.is_some() { rows } else { 0 }];
    let mut r64 = CeRowOutputs::new();
    if rows_out.lse.is_some() {
        r64 = r64.with_lse(&mut lse);
    }
    if let Some(h) = rows_out.hit {
        r64 = r64.with_hits(h);
    }
    let res = match out {
        None => ReferenceBackend.cross_entropy_rows(cfg, input, t64, r64)?,
        Some(out) => {
            let mut g = vec![0.0f64; z.len()];
            let res =
                ReferenceBackend.cross_entropy_rows(cfg, input.with_grad(&mut g), t64, r64)?;
            for (o, &v) in out.iter_mut().zip(&g) {
                *o = v as f32;
            }
            res
        }
    };
    if let Some(l) = rows_out.lse {
        for (d, &v) in l.iter_mut().zip(&lse) {
            *d = v as f32;
        }
    }
    Ok(res)
}

impl CrossEntropyOps<f32> for CpuBackend {
    fn run_cross_entropy(&self, call: CeCall<'_, f32>) -> Result<Loss> {
        if call.plan().cfg.has_llm_options() {
            return Ok(self.run_cross_entropy_rows(call, CeRowOutputs::new())?.loss);
        }
        let Parts {
            plan,
            io,
            with: targets,
            upstream,
        } = call.into_parts();
        let cfg = plan.cfg;
        // CE-7: the mean denominator, in row order as the reference (core's one definition).
        let denom = cfg.mean_denominator(&targets, plan.rows());
        let degenerate_mean = cfg.reduction == Reduction::Mean && !(1.0 / denom).is_finite();
        let degenerate_up = matches!(upstream, Upstream::Scalar(u) if !u.is_finite());
        if degenerate_mean || degenerate_up {
            let (rows, classes) = (plan.rows(), plan.classes());
            return Ok(run_reference(
                cfg,
                rows,
                classes,
                io,
                targets,
                upstream,
                CeRowOutputs::new(),
            )?
            .loss);
        }
        let bufs = match io {
            Io::Read(z) => Bufs::ReadOnly(z),
            Io::Separate { input, grad } => Bufs::Split(input, grad),
            Io::InPlace(z) => Bufs::InPlace(z),
        };
        Ok(run(self, &plan, bufs, targets, upstream, denom))
    }

    fn run_cross_entropy_rows(
        &self,
        call: CeCall<'_, f32>,
        rows_out: CeRowOutputs<'_, f32>,
    ) -> Result<CeOutput> {
        let Parts {
            plan,
            io,
            with: targets,
            upstream,
        } = call.into_parts();
        let cfg = plan.cfg;
        // CE-7 / CE-13: the reduction's denominator (core's one definition).
        let denom = cfg.reduction_denominator(&targets, plan.rows());
        let degenerate_mean = cfg.reduction == Reduction::Mean && !(1.0 / denom).is_finite();
        let degenerate_up = matches!(upstream, Upstream::Scalar(u) if !u.is_finite());
        if degenerate_mean || degenerate_up {
            let (rows, classes) = (plan.rows(), plan.classes());
            return run_reference(cfg, rows, classes, io, targets, upstream, rows_out);
        }
        let bufs = match io {
            Io::Read(z) => Bufs::ReadOnly(z),
            Io::Separate { input, grad } => Bufs::Split(input, grad),
            Io::InPlace(z) => Bufs::InPlace(z),
        };
        Ok(options::run_options(
            self, &plan, bufs, targets, upstream, denom, rows_out,
        ))
    }
}
