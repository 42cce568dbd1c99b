//! The long-row path: rows of more than `SHORT_MAX` classes, cut into chunks of `CHUNK`
//! columns; pass 1 and pass 2 per chunk (see the `cross_entropy` module documentation), rows
//! pipelined (pass 2 of row `r` interleaved with pass 1 of row `r + 1`) and very long rows
//! split into blocks of chunks across threads.

use super::bufs::{Bufs, RowBuf};
use super::kernels;
use super::plan::{BLOCK_CHUNKS, ChunkStats, Kind, Plan, chunk_factor, mref};
use rayon::prelude::*;
use smoothloss_core::CePlan;
use smoothloss_core::reduction::Upstream;

/// The combined statistics of one row.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowCombined {
    /// Row maximum.
    pub(super) m: f32,
    /// `sum_j exp(z_j - M)`.
    pub(super) s: f64,
    /// `S = n0 + s'` split (see [`combine`]).
    pub(super) n0: f64,
    pub(super) s1: f64,
    /// `A` of the gradient form `A p_j - B_j`.
    pub(super) a: f64,
    /// The row's loss before reduction.
    pub(super) loss: f64,
    /// False for a NaN row (NaN or `+inf` present, or every logit `-inf`).
    pub(super) finite: bool,
}

impl RowCombined {
    /// The row's log-sum-exp `M + ln S` (`CE-14`), `ln S` as [`combine`] takes it; NaN for a
    /// NaN row.
    pub(super) fn lse(&self) -> f64 {
        if !self.finite {
            return f64::NAN;
        }
        let l = if self.n0 == 1.0 {
            self.s1.ln_1p()
        } else {
            (self.n0 + self.s1).ln()
        };
        f64::from(self.m) + l
    }
}

/// Pass 1 over the chunks `first_chunk..` covering `raw` (of row `i`, starting at column
/// `first_chunk * CHUNK`).
pub(super) fn pass1_range(
    plan: &Plan<'_>,
    i: usize,
    first_chunk: usize,
    raw: &RowBuf<'_>,
    stats: &mut [ChunkStats],
) {
    let store = raw.has_grad();
    let col0 = first_chunk * plan.chunk;
    for (k, st) in stats.iter_mut().enumerate() {
        let off = k * plan.chunk;
        if off >= raw.len {
            break;
        }
        let n = plan.chunk.min(raw.len - off);
        let c0 = col0 + off;
        let w = plan.wslice(c0, n);
        let q = plan.qslice(i, c0, n);
        // SAFETY: `off + n <= raw.len`, so `src + off` is valid for `n` reads and `e + off`
        // (when storing) for `n` writes (`RowBuf` invariant); `e` is either disjoint from `src`
        // or equal to it (in place), and the kernels read each element before writing it.
        *st = unsafe {
            kernels::pass1(
                plan.level,
                plan.kind,
                store,
                raw.src.add(off),
                if store {
                    raw.e.add(off)
                } else {
                    std::ptr::null_mut()
                },
                n,
                w,
                q,
                plan.qa,
                plan.qb,
            )
        };
    }
}

/// Combines a row's chunk statistics in chunk order.
pub(super) fn combine(
    plan: &Plan<'_>,
    stats: &[ChunkStats],
    y: Option<usize>,
    zy: f32,
) -> RowCombined {
    let c = plan.classes;
    let mut m = f32::NEG_INFINITY;
    let mut any_nan = false;
    for st in stats {
        if st.m.is_nan() {
            any_nan = true;
        } else if st.m > m {
            m = st.m;
        }
    }
    let mm = f64::from(m);
    // `S = n0 + s'`: `n0` counts the exponentials equal to 1 in the chunks whose maximum is the
    // row's (an integer), `s'` the rest (those chunks' `s'`, the other chunks' whole sums times
    // their factors), so that a small `s'` survives into `ln S` (a confident row).
    let mut n0 = 0.0;
    let mut s = 0.0;
    let mut z = 0.0;
    let mut wq = 0.0;
    for (k, st) in stats.iter().enumerate() {
        let d = f64::from(mref(st.m)) - mm;
        if f64::from(st.m) == mm {
            n0 += st.n0;
            s += st.s;
        } else {
            let t = st.n0 + st.s;
            if t != 0.0 || t.is_nan() {
                s += t * chunk_factor(st.m, mm);
            }
        }
        let wc = match plan.kind {
            Kind::Plain | Kind::Weighted => plan.w_chunk[k],
            Kind::Probs | Kind::ProbsWeighted => st.wq,
        };
        // `d = 0` (the chunks holding the maximum) adds nothing, also when `wc` is not finite
        // (a `+inf` target probability: `inf * 0` would make the loss NaN, TOL-4).
        z += st.z;
        if d != 0.0 {
            z += wc * d;
        }
        wq += st.wq;
    }
    let finite = !any_nan && m.is_finite() && s.is_finite();
    // `ln(n0 + s')`: `ln_1p` for the usual single maximum (`n0 = 1`), exact in `s'`.
    let l = if n0 == 1.0 { s.ln_1p() } else { (n0 + s).ln() };
    let s1 = s;
    let s = n0 + s1;
    if !finite {
        return RowCombined {
            m,
            n0,
            s1,
            s: f64::NAN,
            a: f64::NAN,
            loss: f64::NAN,
            finite: false,
        };
    }
    let eps = plan.eps;
    let (loss, a) = match y {
        Some(y) => {
            let wy = plan.weight(y);
            // -log p_y = log S - (z_y - M)
            let nll = wy * (l - (f64::from(zy) - mm));
            // sum_j w_j (-log p_j) = W log S - sum_j w_j (z_j - M)
            let smooth = plan.w_sum * l - z;
            // Without smoothing the term is absent (no `0 * inf`), as the reference and PyTorch.
            let loss = if eps == 0.0 {
                nll
            } else {
                (1.0 - eps) * nll + eps / c as f64 * smooth
            };
            (loss, (1.0 - eps) * wy + eps / c as f64 * plan.w_sum)
        }
        None => (wq * l - z, wq),
    };
    RowCombined {
        m,
        n0,
        s1,
        s,
        a,
        loss,
        finite,
    }
}

/// Pass 2 over the chunks covering `raw`: gradient `us (A p_j - B_j)` from the stored `e_j`.
#[allow(clippy::too_many_arguments)]
pub(super) fn pass2_range(
    plan: &Plan<'_>,
    i: usize,
    first_chunk: usize,
    raw: &mut RowBuf<'_>,
    stats: &[ChunkStats],
    row: &RowCombined,
    us: f64,
) {
    if !raw.has_grad() {
        return;
    }
    let col0 = first_chunk * plan.chunk;
    for (k, st) in stats.iter().enumerate() {
        let off = k * plan.chunk;
        if off >= raw.len {
            break;
        }
        let n = plan.chunk.min(raw.len - off);
        let c0 = col0 + off;
        let (a, b, bq) = pass2_params(plan, st, row, us);
        // SAFETY: `off + n <= raw.len`: `e + off` is valid for `n` reads and `out + off` for
        // `n` writes (`RowBuf` invariant); they are equal or disjoint.
        unsafe {
            kernels::pass2(
                plan.level,
                plan.kind,
                raw.e.add(off),
                raw.out.add(off),
                n,
                raw.nt,
                a,
                b,
                bq,
                plan.wslice(c0, n),
                plan.qslice(i, c0, n),
                plan.qa,
                plan.qb,
            )
        };
    }
}

/// The constants `(a, b, bq)` of [`kernels::pass2`] for one chunk of a row.
#[inline]
pub(super) fn pass2_params(
    plan: &Plan<'_>,
    st: &ChunkStats,
    row: &RowCombined,
    us: f64,
) -> (f32, f32, f32) {
    let f = if st.m == f32::NEG_INFINITY {
        0.0
    } else {
        chunk_factor(st.m, f64::from(row.m))
    };
    let a = (us * row.a * f / row.s) as f32;
    let (b, bq) = match plan.kind {
        Kind::Plain | Kind::Weighted => ((us * plan.eps / plan.classes as f64) as f32, 0.0),
        Kind::Probs | Kind::ProbsWeighted => ((us * f64::from(plan.qb)) as f32, us as f32),
    };
    (a, b, bq)
}

/// The gradient's factor of row `i`: upstream times the reduction scale.
#[inline]
pub(super) fn row_us(plan: &CePlan<'_>, upstream: &Upstream<'_>, scale: f64, i: usize) -> f64 {
    plan.item_scale(upstream, scale, i)
}

/// The degenerate-row gradient (non-finite `us`): the reference's formula, element by element,
/// over the piece `raw` that starts at column `col0`.
#[allow(clippy::too_many_arguments)]
pub(super) fn slow_grad(
    plan: &Plan<'_>,
    i: usize,
    col0: usize,
    raw: &mut RowBuf<'_>,
    stats: &[ChunkStats],
    row: &RowCombined,
    y: Option<usize>,
    us: f64,
) {
    let c = plan.classes;
    let eps = plan.eps;
    let mm = f64::from(row.m);
    for jl in 0..raw.len {
        let j = col0 + jl;
        let st = &stats[j / plan.chunk];
        let f = if st.m == f32::NEG_INFINITY {
            0.0
        } else {
            chunk_factor(st.m, mm)
        };
        let p = f64::from(raw.e_at(jl)) * f / row.s;
        let g = match y {
            Some(y) => {
                let wy = plan.weight(y);
                let hard = wy * (p - if j == y { 1.0 } else { 0.0 });
                let soft = plan.w_sum * p - plan.weight(j);
                (1.0 - eps) * hard + eps / c as f64 * soft
            }
            None => {
                let q = f64::from(plan.probs.map_or(0.0, |q| q[i * c + j]));
                let qs = (1.0 - eps) * q + eps / c as f64;
                p * row.a - plan.weight(j) * qs
            }
        };
        raw.set_out(jl, (us * g) as f32);
    }
}

/// The hard target's gradient entry from its stored `e_y` (set after pass 2, in `f64`).
pub(super) fn target_grad(
    plan: &Plan<'_>,
    stats: &[ChunkStats],
    row: &RowCombined,
    y: usize,
    ey: f32,
    us: f64,
) -> f32 {
    let st = &stats[y / plan.chunk];
    let f = chunk_factor(st.m, f64::from(row.m));
    let p = f64::from(ey) * f / row.s;
    let wy = plan.weight(y);
    // `A p - w_y (1 - eps + eps / C) = (1 - eps) w_y (p - 1) + eps / C (W p - w_y)`, with
    // `p - 1 = -s' / S` when `e_y = 1` is the row's single maximum (a confident row).
    let n0 = if f == 1.0 { row.n0 } else { 0.0 };
    let pm1 = super::short::p_minus_1(p, ey, n0, row.s1, 1.0 / row.s);
    let eps = plan.eps;
    let g = (1.0 - eps) * wy * pm1 + eps / plan.classes as f64 * (plan.w_sum * p - wy);
    (us * g) as f32
}

/// One whole row on one thread (as opposed to [`process_row_split`], one row over several threads). Returns the row's loss.
pub(super) fn process_row(
    plan: &Plan<'_>,
    i: usize,
    mut raw: RowBuf<'_>,
    us: f64,
    stats: &mut Vec<ChunkStats>,
) -> f64 {
    if plan.ignored(i) {
        raw.fill_out(0.0);
        return 0.0;
    }
    let y = plan.target(i);
    let zy = y.map_or(0.0, |y| raw.logit(y));
    stats.clear();
    stats.resize(plan.nchunks, ChunkStats::default());
    pass1_range(plan, i, 0, &raw, stats);
    let row = combine(plan, stats, y, zy);
    if !raw.has_grad() {
        return row.loss;
    }
    if !row.finite {
        raw.fill_out(f32::NAN);
    } else if !(us.is_finite() && row.a.is_finite()) {
        slow_grad(plan, i, 0, &mut raw, stats, &row, y, us);
    } else {
        let gy = y.map(|y| (y, target_grad(plan, stats, &row, y, raw.e_at(y), us)));
        pass2_range(plan, i, 0, &mut raw, stats, &row, us);
        if let Some((y, g)) = gy {
            raw.set_out(y, g);
        }
    }
    row.loss
}

/// Mode B: one long row split into blocks of chunks processed in parallel.
pub(super) fn process_row_split(plan: &Plan<'_>, i: usize, mut bufs: Bufs<'_>, us: f64) -> f64 {
    if plan.ignored(i) {
        bufs.fill_grad(0.0);
        return 0.0;
    }
    let y = plan.target(i);
    let block = BLOCK_CHUNKS * plan.chunk;
    let has_grad = bufs.has_grad();
    let mut pieces = bufs.pieces(block);
    let zy = y.map_or(0.0, |y| {
        RowBuf::new(&mut pieces[y / block], None, false).logit(y % block)
    });
    let mut stats = vec![ChunkStats::default(); plan.nchunks];
    pieces
        .par_iter_mut()
        .zip(stats.par_chunks_mut(BLOCK_CHUNKS))
        .enumerate()
        .for_each(|(b, (p, st))| {
            pass1_range(plan, i, b * BLOCK_CHUNKS, &RowBuf::new(p, None, false), st)
        });
    let row = combine(plan, &stats, y, zy);
    if !has_grad {
        return row.loss;
    }
    if !row.finite {
        pieces.iter_mut().for_each(|p| p.fill_grad(f32::NAN));
    } else if !(us.is_finite() && row.a.is_finite()) {
        for (b, p) in pieces.iter_mut().enumerate() {
            slow_grad(
                plan,
                i,
                b * block,
                &mut RowBuf::new(p, None, false),
                &stats,
                &row,
                y,
                us,
            );
        }
    } else {
        let gy = y.map(|y| {
            let ey = RowBuf::new(&mut pieces[y / block], None, false).e_at(y % block);
            (y, target_grad(plan, &stats, &row, y, ey, us))
        });
        pieces
            .par_iter_mut()
            .zip(stats.par_chunks(BLOCK_CHUNKS))
            .enumerate()
            .for_each(|(b, (p, st))| {
                let mut raw = RowBuf::new(p, None, false);
                pass2_range(plan, i, b * BLOCK_CHUNKS, &mut raw, st, &row, us)
            });
        if let Some((y, g)) = gy {
            RowBuf::new(&mut pieces[y / block], None, false).set_out(y % block, g);
        }
    }
    row.loss
}

/// A row whose pass 2 is still to run (software pipelining of [`process_rows_pipelined`]).
pub(super) struct Pending<'a> {
    i: usize,
    raw: RowBuf<'a>,
    stats: Vec<ChunkStats>,
    row: RowCombined,
    us: f64,
    /// The hard target's gradient entry, written after pass 2.
    gy: Option<(usize, f32)>,
}

/// Whole rows on one thread, with a separate gradient buffer: pass 1 of row `r + 1` runs chunk by chunk
/// interleaved with pass 2 of row `r`, so the streaming gradient writes of one row overlap the
/// reads and the `exp` work of the next. Each chunk is computed exactly as in [`process_row`]
/// (same kernels, same combination), so the results are the same bits.
#[allow(clippy::too_many_arguments)]
pub(super) fn process_rows_pipelined(
    plan: &Plan<'_>,
    first: usize,
    bufs: Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    losses: &mut [f64],
    nt: bool,
    scratch: &mut Vec<f32>,
) {
    let c = plan.classes;
    if scratch.len() < 2 * c {
        scratch.resize(2 * c, 0.0);
    }
    let (half_a, half_b) = scratch.split_at_mut(c);
    let halves = [half_a.as_mut_ptr(), half_b.as_mut_ptr()];
    let mut next_half = 0;
    let mut pool: [Vec<ChunkStats>; 2] = [Vec::new(), Vec::new()];
    let mut pieces = bufs.pieces(c);
    let mut pending: Option<Pending<'_>> = None;
    let finish = |p: Pending<'_>, pool: &mut Vec<ChunkStats>| {
        let mut raw = p.raw;
        if let Some((y, g)) = p.gy {
            raw.set_out(y, g);
        }
        *pool = p.stats;
    };
    for (r, (piece, l)) in pieces.iter_mut().zip(losses.iter_mut()).enumerate() {
        let i = first + r;
        if plan.ignored(i) {
            piece.fill_grad(0.0);
            *l = 0.0;
            continue;
        }
        // SAFETY: `halves[next_half]` points to `c` floats of `scratch` (split above, both
        // halves at least `c` long) that no live view uses: the pending row, if any, uses the
        // other half, and the view of two rows ago on this half has been dropped (finished).
        let sc = unsafe { std::slice::from_raw_parts_mut(halves[next_half], c) };
        // The exponentials go to the scratch half, the gradient is written once by pass 2
        // (writing them into the row's own gradient buffer instead measured no faster: paired
        // A/B 0 % / +3.5 % / -4 % depending on the shape).
        let mut raw = RowBuf::new(piece, Some(sc), nt);
        let y = plan.target(i);
        let zy = y.map_or(0.0, |y| raw.logit(y));
        let mut stats = std::mem::take(&mut pool[next_half]);
        stats.clear();
        stats.resize(plan.nchunks, ChunkStats::default());
        for k in 0..plan.nchunks {
            let off = k * plan.chunk;
            let n = plan.chunk.min(c - off);
            match pending.as_mut() {
                Some(p) => {
                    // Pass 1 of this chunk and pass 2 of the pending row's chunk in one loop:
                    // the gradient stores spread over the `exp` work.
                    let (a, b, bq) = pass2_params(plan, &p.stats[k], &p.row, p.us);
                    let (one, two) = (raw.sub(off, n), p.raw.sub(off, n));
                    let c0 = k * plan.chunk;
                    // SAFETY: `off + n <= c`: both views hold `n` elements; `one.src` is valid
                    // for `n` reads and `one.e` (the scratch half of this row) for `n` writes,
                    // disjoint; `two.e` (the other scratch half) for `n` reads and `two.out` (the
                    // pending row's gradient) for `n` writes, disjoint from each other and from
                    // `one`'s buffers (`RowBuf` invariant, distinct rows and scratch halves).
                    stats[k] = unsafe {
                        kernels::pass1_fused(
                            plan.level,
                            plan.kind,
                            one.src,
                            one.e,
                            n,
                            plan.wslice(c0, n),
                            plan.qslice(i, c0, n),
                            plan.qa,
                            plan.qb,
                            two.e,
                            two.out,
                            two.nt,
                            a,
                            b,
                            bq,
                            plan.qslice(p.i, c0, n),
                        )
                    };
                }
                None => pass1_range(plan, i, k, &raw.sub(off, n), &mut stats[k..k + 1]),
            }
        }
        if let Some(p) = pending.take() {
            finish(p, &mut pool[next_half ^ 1]);
        }
        let row = combine(plan, &stats, y, zy);
        *l = row.loss;
        let ui = us(i);
        if !row.finite {
            raw.fill_out(f32::NAN);
        } else if !(ui.is_finite() && row.a.is_finite()) {
            slow_grad(plan, i, 0, &mut raw, &stats, &row, y, ui);
        } else {
            let gy = y.map(|y| (y, target_grad(plan, &stats, &row, y, raw.e_at(y), ui)));
            pending = Some(Pending {
                i,
                raw,
                stats,
                row,
                us: ui,
                gy,
            });
            next_half ^= 1;
            continue;
        }
        pool[next_half] = stats;
    }
    if let Some(mut p) = pending.take() {
        pass2_range(plan, p.i, 0, &mut p.raw, &p.stats, &p.row, p.us);
        finish(p, &mut pool[0]);
    }
}

thread_local! {
    /// Per-thread buffer for the exponentials of one row (whole rows on one thread, separate gradient).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}
/// Whole rows on one thread, over consecutive rows `first..` held by `bufs` (whole rows of more than
/// `SHORT_MAX` classes).
pub(super) fn process_rows_long(
    plan: &Plan<'_>,
    first: usize,
    bufs: Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    losses: &mut [f64],
    nt: bool,
) {
    if matches!(bufs, Bufs::Split(..)) {
        // Exponentials go to a per-thread scratch row; the gradient is written once.
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => process_rows_pipelined(plan, first, bufs, us, losses, nt, &mut s),
            Err(_) => process_rows_pipelined(plan, first, bufs, us, losses, nt, &mut Vec::new()),
        });
    } else {
        let mut stats = Vec::new();
        for (r, (mut rowbuf, l)) in bufs
            .pieces(plan.classes)
            .into_iter()
            .zip(losses.iter_mut())
            .enumerate()
        {
            let i = first + r;
            let raw = RowBuf::new(&mut rowbuf, None, false);
            *l = process_row(plan, i, raw, us(i), &mut stats);
        }
    }
}
