//! The options of language-model training (`CE-10` .. `CE-15`): logit softcap, z-loss, row
//! weights, a given `mean` denominator, per-row log-sum-exp and argmax-hit outputs.
//!
//! Calls without these options never come here: they keep the pipelined long-row and batched
//! short-row paths unchanged. Calls with them run row by row through the same chunk kernels
//! (`kernels::pass1` / `pass2`, AVX2 or portable) and the same per-row combination
//! ([`long::combine`]: `S = n0 + s'`, `ln S = ln_1p(s')` for a single maximum, so confident
//! rows keep `TOL-2`'s relative accuracy), with the options applied per row around them:
//!
//! - softcap (`CE-10`): pass 1 caps the logits as it reads them (`kernels::pass1_capped`:
//!   `cap tanh(z / cap)` in `f32`, accurate to 1.5 ulp of `z'` below the cap, `softcap.rs`),
//!   the derivatives `1 - tanh^2` going to a per-task scratch row, and pass 2 writes
//!   `d loss / d raw logits = g' dz'/dz` (`kernels::pass2_chain`): the row is read once from
//!   memory and its gradient written once, as without the softcap;
//! - z-loss (`CE-11`): `s lse^2` added to the row's loss and `2 s lse` to the gradient's `A`
//!   (the gradient is `A p_j - B_j`, so pass 2 is unchanged); the target's entry from `f64`;
//! - row weights (`CE-12`): multiply the row's loss and its gradient factor;
//! - a given denominator (`CE-13`): the reduction's scale;
//! - log-sum-exp and hit (`CE-14`): `M + ln S` and `z_y == M`, from the combination.
//!
//! Rows are distributed over rayon tasks in fixed blocks and every row is computed by the same
//! code whatever the task layout, so the results are bit-identical for any thread count.

use super::bufs::{Bufs, RowBuf};
use super::kernels;
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

/// Per-task scratch: the chunk statistics, and for a softcap (`CE-10`) the derivatives
/// `dz'/dz` of the row and, without a gradient buffer, the row's exponentials (with one,
/// they go to the gradient buffer as on the default path).
#[derive(Default)]
struct Scratch {
    capped: Vec<f32>,
    dcap: Vec<f32>,
    stats: Vec<ChunkStats>,
    /// Capped rows pipelined ([`process_rows_capped`]): two rows' exponentials and two rows'
    /// `dz'/dz`, and the chunk statistics of the second row.
    pipe: Vec<f32>,
    stats2: Vec<ChunkStats>,
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
    let cap = cfg.softcap.map(super::softcap::Cap::new);
    let block = |first: usize, piece: Bufs<'_>, res: &mut [RowOut]| {
        let mut sc = Scratch::default();
        if let (Some(cap), Bufs::Split(..)) = (cap, &piece) {
            // CE-10 with a separate gradient: pass 2 of each row runs inside pass 1 of the next.
            process_rows_capped(&plan, cfg, cap, first, piece, &us, res, &mut sc);
            return;
        }
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
        ..
    } = sc;
    // CE-10: pass 1 caps the logits as it reads them (`kernels::pass1_capped`), storing the
    // exponentials of the capped logits where the default path stores them (the gradient
    // buffer; a scratch row without a gradient) and `dz'/dz` in a scratch row; pass 2 then
    // writes `g' dz'/dz` (`kernels::pass2_chain`): the row is read once from memory and its
    // gradient written once. Without a softcap the kernels run on the row itself.
    let cap = cfg.softcap.map(super::softcap::Cap::new);
    let mut capped_zy = None;
    let mut kb = match cap {
        None => bufs,
        Some(cap) => {
            dcap.resize(c, 0.0);
            // The capped target logit (the kernels' bits, `Cap::one`), read before pass 1
            // overwrites an in-place row.
            let logit = |x: &[f32]| y.map_or(0.0, |y| cap.one(x[y]).0);
            match bufs {
                Bufs::Split(x, g) => {
                    capped_zy = Some(logit(x));
                    // SAFETY: `x` and `g` hold the row's `c` values and are disjoint.
                    unsafe { cap_pass1(plan, i, cap, x.as_ptr(), g.as_mut_ptr(), dcap, stats) };
                    Bufs::InPlace(g)
                }
                Bufs::InPlace(g) => {
                    capped_zy = Some(logit(g));
                    let p = g.as_mut_ptr();
                    // SAFETY: `p` holds the row's `c` values (pass 1 in place).
                    unsafe { cap_pass1(plan, i, cap, p, p, dcap, stats) };
                    Bufs::InPlace(g)
                }
                Bufs::ReadOnly(x) => {
                    capped_zy = Some(logit(x));
                    capped.resize(c, 0.0);
                    let e = capped.as_mut_ptr();
                    // SAFETY: `x` and the scratch row `e` hold `c` values and are disjoint.
                    unsafe { cap_pass1(plan, i, cap, x.as_ptr(), e, dcap, stats) };
                    Bufs::ReadOnly(&capped[..c])
                }
            }
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
    let (row, res) = with_options(plan, cfg, i, stats, y, zy);
    let lse = res.lse;
    if !raw.has_grad() {
        return res;
    }
    if !row.finite {
        raw.fill_out(f32::NAN);
    } else if !(us.is_finite() && row.a.is_finite()) {
        slow_grad(plan, cfg, i, &mut raw, stats, &row, y, us, lse);
        if cap.is_some() {
            // CE-10: the chain rule on the reference's entries (a capped row's `e` is its
            // `out`, so `e_at` reads them back).
            for (j, &d) in dcap[..c].iter().enumerate() {
                raw.set_out(j, raw.e_at(j) * d);
            }
        }
    } else {
        let gy = y.map(|y| {
            (
                y,
                target_grad(plan, cfg, stats, &row, y, raw.e_at(y), us, lse),
            )
        });
        match cap {
            None => long::pass2_range(plan, i, 0, &mut raw, stats, &row, us),
            Some(_) => pass2_chain_range(plan, i, &mut raw, dcap, stats, &row, us),
        }
        if let Some((y, g)) = gy {
            // CE-10: the chain rule's product, as `pass2_chain` (one `f32` product).
            raw.set_out(y, if cap.is_some() { g * dcap[y] } else { g });
        }
    }
    res
}

/// The row's combination ([`long::combine`]) with the options around it: z-loss (`CE-11`, in
/// the loss and in the gradient's `A`), row weight (`CE-12`, on the results), log-sum-exp and
/// hit (`CE-14`); `zy` is the target's (capped) logit.
fn with_options(
    plan: &Plan<'_>,
    cfg: &CrossEntropy,
    i: usize,
    stats: &[ChunkStats],
    y: Option<usize>,
    zy: f32,
) -> (RowCombined, RowOut) {
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
    (row, res)
}

/// A capped row whose pass 2 waits for the next row's pass 1 ([`process_rows_capped`]).
struct CapPending<'a> {
    i: usize,
    /// The row's logits, its exponentials (a scratch half) and its gradient.
    raw: RowBuf<'a>,
    /// The row's `dz'/dz` (the other scratch array's half), `raw.len` of them.
    d: *const f32,
    stats: Vec<ChunkStats>,
    row: RowCombined,
    us: f64,
    /// The hard target's gradient entry, written after pass 2.
    gy: Option<(usize, f32)>,
}

/// Capped rows (`CE-10`) with a separate gradient, `first..` held by `bufs`, on one task: pass 1
/// of row `r + 1` runs chunk by chunk with pass 2 of row `r` inside it
/// (`kernels::pass1_capped_fused`), so the gradient stores of one row overlap the `tanh` and
/// `exp` work of the next, as on the default long-row path. The exponentials and `dz'/dz` go to
/// two scratch halves each, alternating between rows. Every chunk and row is computed with the
/// operations of [`process_row`] (the same kernels' arithmetic, the same combination), so the
/// results are the same bits.
#[allow(clippy::too_many_arguments)]
fn process_rows_capped(
    plan: &Plan<'_>,
    cfg: &CrossEntropy,
    cap: super::softcap::Cap,
    first: usize,
    bufs: Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    res: &mut [RowOut],
    sc: &mut Scratch,
) {
    let c = plan.classes;
    if sc.pipe.len() < 4 * c {
        sc.pipe.resize(4 * c, 0.0);
    }
    let (e_a, rest) = sc.pipe.split_at_mut(c);
    let (e_b, rest) = rest.split_at_mut(c);
    let (d_a, d_b) = rest.split_at_mut(c);
    let e_halves = [e_a.as_mut_ptr(), e_b.as_mut_ptr()];
    let d_halves = [d_a.as_mut_ptr(), d_b.as_mut_ptr()];
    let mut next = 0;
    let mut pool = [
        std::mem::take(&mut sc.stats),
        std::mem::take(&mut sc.stats2),
    ];
    let mut pieces = bufs.pieces(c);
    let mut pending: Option<CapPending<'_>> = None;
    let finish = |p: CapPending<'_>| {
        let mut raw = p.raw;
        if let Some((y, g)) = p.gy {
            raw.set_out(y, g);
        }
        p.stats
    };
    for (r, (piece, o)) in pieces.iter_mut().zip(res.iter_mut()).enumerate() {
        let i = first + r;
        if plan.ignored(i) {
            piece.fill_grad(0.0);
            *o = RowOut::default();
            continue;
        }
        // SAFETY: `e_halves[next]` points to `c` floats of `sc.pipe` (split above) that no live
        // view uses: the pending row, if any, uses the other half, and the view of two rows ago
        // on this half has been dropped (finished).
        let e_sc = unsafe { std::slice::from_raw_parts_mut(e_halves[next], c) };
        let d = d_halves[next];
        let mut raw = RowBuf::new(piece, Some(e_sc), false);
        let y = plan.target(i);
        // The capped target logit (the kernels' bits, `Cap::one`).
        let zy = y.map_or(0.0, |y| cap.one(raw.logit(y)).0);
        let mut stats = std::mem::take(&mut pool[next]);
        stats.clear();
        stats.resize(plan.nchunks, ChunkStats::default());
        for (k, st) in stats.iter_mut().enumerate() {
            let off = k * plan.chunk;
            let n = plan.chunk.min(c - off);
            let one = raw.sub(off, n);
            let (w, q) = (plan.wslice(off, n), plan.qslice(i, off, n));
            *st = match pending.as_ref() {
                Some(p) => {
                    let (a, b, bq) = long::pass2_params(plan, &p.stats[k], &p.row, p.us);
                    let two = p.raw.sub(off, n);
                    // SAFETY: `off + n <= c`: `one.src` readable and `one.e` (this row's
                    // scratch half) writable for `n`, disjoint; `d + off` (this row's `dz'/dz`
                    // half) writable for `n`; `two.e` and `p.d + off` (the other halves)
                    // readable and `two.out` (the pending row's gradient) writable for `n`,
                    // disjoint from each other and from this row's buffers (distinct rows and
                    // halves, `RowBuf` invariant).
                    unsafe {
                        kernels::pass1_capped_fused(
                            plan.level,
                            plan.kind,
                            one.src,
                            one.e,
                            d.add(off),
                            n,
                            w,
                            q,
                            plan.qa,
                            plan.qb,
                            cap,
                            two.e,
                            p.d.add(off),
                            two.out,
                            a,
                            b,
                            bq,
                            plan.qslice(p.i, off, n),
                        )
                    }
                }
                // SAFETY: as above, without a pending row.
                None => unsafe {
                    kernels::pass1_capped(
                        plan.level,
                        plan.kind,
                        one.src,
                        one.e,
                        d.add(off),
                        n,
                        w,
                        q,
                        plan.qa,
                        plan.qb,
                        cap,
                    )
                },
            };
        }
        if let Some(p) = pending.take() {
            pool[next ^ 1] = finish(p);
        }
        let (row, out) = with_options(plan, cfg, i, &stats, y, zy);
        *o = out;
        let ui = us(i);
        // SAFETY: `d` points to this row's `c` derivatives, written by pass 1 above; no
        // mutable view of them is alive until the next-but-one row.
        let dz = unsafe { std::slice::from_raw_parts(d as *const f32, c) };
        if !row.finite {
            raw.fill_out(f32::NAN);
        } else if !(ui.is_finite() && row.a.is_finite()) {
            slow_grad(plan, cfg, i, &mut raw, &stats, &row, y, ui, out.lse);
            // The chain rule on the reference's entries, as `process_row`.
            for (j, &dj) in dz.iter().enumerate() {
                raw.set_out(j, raw.out_at(j) * dj);
            }
        } else {
            let gy = y.map(|y| {
                let g = target_grad(plan, cfg, &stats, &row, y, raw.e_at(y), ui, out.lse);
                // The chain rule's product, as `pass2_chain` (one `f32` product).
                (y, g * dz[y])
            });
            pending = Some(CapPending {
                i,
                raw,
                d,
                stats,
                row,
                us: ui,
                gy,
            });
            next ^= 1;
            continue;
        }
        pool[next] = stats;
    }
    if let Some(mut p) = pending.take() {
        // SAFETY: `p.d` points to the pending row's `c` derivatives (written by its pass 1).
        let dz = unsafe { std::slice::from_raw_parts(p.d, c) };
        pass2_chain_range(plan, p.i, &mut p.raw, dz, &p.stats, &p.row, p.us);
        pool[next ^ 1] = finish(p);
    }
    let [s1, s2] = pool;
    sc.stats = s1;
    sc.stats2 = s2;
}

/// `CE-10` and pass 1 of one row, chunk by chunk (`kernels::pass1_capped`): the logits at
/// `src` capped as they are read, their exponentials stored at `dst`, `dz'/dz` in `dcap`;
/// `stats` gets the row's chunk statistics.
///
/// # Safety
/// `src` is valid for `plan.classes` reads and `dst` for as many writes, equal or disjoint.
unsafe fn cap_pass1(
    plan: &Plan<'_>,
    i: usize,
    cap: super::softcap::Cap,
    src: *const f32,
    dst: *mut f32,
    dcap: &mut [f32],
    stats: &mut Vec<ChunkStats>,
) {
    let c = plan.classes;
    let dcap = &mut dcap[..c];
    stats.clear();
    stats.resize(plan.nchunks, ChunkStats::default());
    for (k, st) in stats.iter_mut().enumerate() {
        let off = k * plan.chunk;
        let n = plan.chunk.min(c - off);
        // SAFETY: `off + n <= c`: `src + off` readable, `dst + off` writable for `n`
        // (contract), `dcap[off..off + n]` is a separate scratch row.
        *st = unsafe {
            kernels::pass1_capped(
                plan.level,
                plan.kind,
                src.add(off),
                dst.add(off),
                dcap[off..off + n].as_mut_ptr(),
                n,
                plan.wslice(off, n),
                plan.qslice(i, off, n),
                plan.qa,
                plan.qb,
                cap,
            )
        };
    }
}

/// Pass 2 of a capped row with the chain rule (`kernels::pass2_chain`): the gradient
/// `(us (A p_j - B_j)) dz'/dz` from the exponentials in `raw`'s `e`, written to its `out`.
#[allow(clippy::too_many_arguments)]
fn pass2_chain_range(
    plan: &Plan<'_>,
    i: usize,
    raw: &mut RowBuf<'_>,
    dcap: &[f32],
    stats: &[ChunkStats],
    row: &RowCombined,
    us: f64,
) {
    let dcap = &dcap[..raw.len];
    for (k, st) in stats.iter().enumerate() {
        let off = k * plan.chunk;
        if off >= raw.len {
            break;
        }
        let n = plan.chunk.min(raw.len - off);
        let (a, b, bq) = long::pass2_params(plan, st, row, us);
        // SAFETY: `off + n <= raw.len`: `e + off` readable and `out + off` writable for `n`
        // (`RowBuf` invariant, equal or disjoint), `dcap[off..off + n]` readable.
        unsafe {
            kernels::pass2_chain(
                plan.level,
                plan.kind,
                raw.e.add(off),
                dcap[off..off + n].as_ptr(),
                raw.out.add(off),
                n,
                a,
                b,
                bq,
                plan.wslice(off, n),
                plan.qslice(i, off, n),
                plan.qa,
                plan.qb,
            )
        };
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
