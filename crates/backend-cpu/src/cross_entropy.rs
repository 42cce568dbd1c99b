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
//! in `f64`) the chunk's `sum e_j`,
//! `sum w_j (z_j - m_c)` (the smoothing term) and, for probability targets, `sum w_j q'_j` and
//! `sum w_j q'_j (z_j - m_c)`. The per-chunk statistics are combined in `f64`, in chunk order:
//! `M = max m_c`, `S = sum_c s_c exp(m_c - M)`, `log S`, the loss. Pass 2 turns the stored
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
//! Rows of at most `SHORT_MAX` (128) classes take a batched path instead
//! (`cross_entropy_short.rs`), where the per-row costs of the chunked kernels dominate: about
//! 1024 logits' worth of rows at a time, (1) per row the maximum, `d_j = z_j - m` written into a
//! per-call scratch buffer and the smoothing sums `sum w_j q'_j d_j` (and `sum w_j q'_j`), (2)
//! one vectorised `exp` over the whole contiguous batch, (3) per row `S`, `log S` (an `f64`
//! series for `S >= 1`, absolute error below `2e-11`), the loss and the gradient constants, (4)
//! the gradient, one FMA per element, the hard target's entry set from `f64`. Per-row sums
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
//! - gradient: `|got - want| <= 1e-5 |want| + 5e-6 g_i R_i` element-wise.
//!
//! Non-finite values follow the reference exactly (`CE-1`, `CE-3`, `CE-5`, `CE-7`): NaN or
//! `+inf` in a row makes its loss and gradient NaN, `-inf` logits give `p = 0` (a finite
//! gradient; the loss is finite for `eps = 0`, where the smoothing term is absent, and `+inf`
//! for `eps > 0`, or NaN through `0 * -inf` for a zero class weight or target probability),
//! ignored rows get loss 0 and gradient exactly 0.
//! Degenerate `mean` denominators (0) use the reference's `inf * g` formula row by row.

use crate::CpuBackend;
use crate::simd::{SimdLevel, exp_nonpos_f32};
use rayon::prelude::*;
use smoothloss_core::backend::CrossEntropyOps;
use smoothloss_core::cross_entropy::{CeTargets, CrossEntropy};
use smoothloss_core::error::Result;
use smoothloss_core::{CeCall, Io, Loss, Parts};
use smoothloss_core::reduction::{Reduction, Upstream};

#[path = "cross_entropy_short.rs"]
mod short;

/// Columns per chunk: the unit of the per-chunk statistics (the chunk, its exponentials and
/// the previous row's gradient block fit L1; measured ~10% faster than 512 columns, no faster
/// at 2048).
pub const CHUNK: usize = 1024;
/// Rows of at most this many columns are one chunk (no per-chunk combination).
pub const SHORT_ROW: usize = 2048;
/// Columns per `f32` accumulation block inside a chunk (64 terms per lane).
const SUB: usize = 512;
/// Chunks per parallel block when single rows are split across threads.
const BLOCK_CHUNKS: usize = 32;
/// Target number of logits per rayon task when whole rows are distributed.
const TASK_ELEMS: usize = 1 << 20;
/// Below this many logits the call runs in the calling thread.
const PAR_MIN_ELEMS: usize = 1 << 15;

/// Statistics of one chunk (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
struct ChunkStats {
    /// The chunk's maximum (may be NaN or `-inf`).
    m: f32,
    /// `sum_j exp(z_j - mref)`.
    s: f64,
    /// `sum_j w_j q'_j (z_j - mref)` (hard targets: `q' = 1`).
    z: f64,
    /// `sum_j w_j q'_j` (probability targets only).
    wq: f64,
}

/// The reference point of a chunk's exponentials: its max, or 0 when the max is `-inf`.
#[inline]
fn mref(m: f32) -> f32 {
    if m == f32::NEG_INFINITY { 0.0 } else { m }
}

/// `exp(mref(m) - mm)` in `f64`, with the common `m == mm` case (one chunk, or the chunk
/// holding the maximum) short-cut: `exp(0) = 1` exactly, so the result is the same.
#[inline]
fn chunk_factor(m: f32, mm: f64) -> f64 {
    let d = f64::from(mref(m)) - mm;
    if d == 0.0 { 1.0 } else { d.exp() }
}

/// What pass 1 and pass 2 accumulate and subtract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Hard targets, no class weights.
    Plain,
    /// Hard targets with class weights.
    Weighted,
    /// Probability targets, no class weights.
    Probs,
    /// Probability targets with class weights.
    ProbsWeighted,
}

/// Raw view of one row (or piece of a row): the logits `src`, the buffer `e` where pass 1
/// stores the exponentials, and the gradient `out`.
///
/// Invariant (upheld by [`RowBuf::new`], the only constructor): every non-null pointer is valid
/// for `len` elements for the lifetime `'a` (it comes from a slice borrowed for `'a`), and
/// `src`, `e`, `out` are pairwise either equal or non-overlapping. `e` and `out` are null when
/// no gradient is wanted.
struct RowBuf<'a> {
    src: *const f32,
    e: *mut f32,
    out: *mut f32,
    len: usize,
    /// Write `out` with non-temporal stores (large outputs).
    nt: bool,
    _borrow: std::marker::PhantomData<&'a mut [f32]>,
}

impl<'a> RowBuf<'a> {
    /// The view of `bufs`; `scratch` (at least `bufs.len()` long) receives the exponentials
    /// instead of the gradient buffer when there is a separate gradient buffer.
    fn new(bufs: &'a mut Bufs<'_>, scratch: Option<&'a mut [f32]>, nt: bool) -> Self {
        let len = bufs.len();
        let (src, e, out, nt) = match bufs {
            Bufs::Split(x, g) => {
                assert_eq!(x.len(), g.len());
                match scratch {
                    Some(sc) => {
                        let sc = &mut sc[..len];
                        (x.as_ptr(), sc.as_mut_ptr(), g.as_mut_ptr(), nt)
                    }
                    None => (x.as_ptr(), g.as_mut_ptr(), g.as_mut_ptr(), false),
                }
            }
            Bufs::InPlace(g) => {
                let p = g.as_mut_ptr();
                (p as *const f32, p, p, false)
            }
            Bufs::ReadOnly(x) => (
                x.as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                false,
            ),
        };
        RowBuf {
            src,
            e,
            out,
            len,
            nt,
            _borrow: std::marker::PhantomData,
        }
    }

    fn has_grad(&self) -> bool {
        !self.out.is_null()
    }

    /// Logit `j` (read before pass 1 writes anything).
    fn logit(&self, j: usize) -> f32 {
        assert!(j < self.len);
        // SAFETY: `j < len` and `src` is valid for `len` reads (type invariant).
        unsafe { *self.src.add(j) }
    }

    /// The stored exponential `j` (after pass 1, before pass 2).
    fn e_at(&self, j: usize) -> f32 {
        assert!(j < self.len && !self.e.is_null());
        // SAFETY: `j < len`, `e` non-null and valid for `len` elements (type invariant).
        unsafe { *self.e.add(j) }
    }

    /// Writes gradient entry `j`.
    fn set_out(&mut self, j: usize, v: f32) {
        if self.out.is_null() {
            return;
        }
        assert!(j < self.len);
        // SAFETY: `j < len`, `out` valid for `len` writes (type invariant); no reference to
        // the buffer is alive while `self` is borrowed mutably.
        unsafe { *self.out.add(j) = v };
    }

    /// The view of elements `off..off + n`.
    fn sub(&self, off: usize, n: usize) -> RowBuf<'_> {
        assert!(off + n <= self.len);
        let at = |p: *mut f32| {
            if p.is_null() {
                p
            } else {
                // SAFETY: `off <= len` and `p` is valid for `len` elements (type invariant), so
                // `p + off` stays inside (or one past) the same allocation.
                unsafe { p.add(off) }
            }
        };
        RowBuf {
            // SAFETY: as above; `src` is never null.
            src: unsafe { self.src.add(off) },
            e: at(self.e),
            out: at(self.out),
            len: n,
            nt: self.nt,
            _borrow: std::marker::PhantomData,
        }
    }

    /// Fills the gradient with `v`.
    fn fill_out(&mut self, v: f32) {
        for j in 0..self.len {
            self.set_out(j, v);
        }
    }
}

/// Disjoint borrowed buffers of one task.
#[derive(Debug)]
enum Bufs<'a> {
    /// Logits and a separate gradient buffer of the same length.
    Split(&'a [f32], &'a mut [f32]),
    /// The gradient is written over the logits.
    InPlace(&'a mut [f32]),
    /// No gradient.
    ReadOnly(&'a [f32]),
}

impl<'a> Bufs<'a> {
    fn len(&self) -> usize {
        match self {
            Bufs::Split(x, _) | Bufs::ReadOnly(x) => x.len(),
            Bufs::InPlace(g) => g.len(),
        }
    }

    fn has_grad(&self) -> bool {
        !matches!(self, Bufs::ReadOnly(_))
    }

    /// Splits into consecutive pieces of `piece` elements (the last may be shorter).
    fn pieces(self, piece: usize) -> Vec<Bufs<'a>> {
        let piece = piece.max(1);
        match self {
            Bufs::Split(x, g) => x
                .chunks(piece)
                .zip(g.chunks_mut(piece))
                .map(|(x, g)| Bufs::Split(x, g))
                .collect(),
            Bufs::InPlace(g) => g.chunks_mut(piece).map(Bufs::InPlace).collect(),
            Bufs::ReadOnly(x) => x.chunks(piece).map(Bufs::ReadOnly).collect(),
        }
    }

    /// Fills the gradient part (if any) with `v`.
    fn fill_grad(&mut self, v: f32) {
        match self {
            Bufs::Split(_, g) | Bufs::InPlace(g) => g.fill(v),
            Bufs::ReadOnly(_) => {}
        }
    }
}

/// Per-call constants.
struct Plan<'a> {
    level: SimdLevel,
    classes: usize,
    eps: f64,
    kind: Kind,
    classes_t: Option<&'a [i64]>,
    probs: Option<&'a [f32]>,
    ignore: Option<i64>,
    w64: Option<&'a [f64]>,
    w32: Vec<f32>,
    /// `sum_j w_j` (exact `f64`, in class order as the reference).
    w_sum: f64,
    /// Per chunk: `sum_j w_j` over the chunk's columns (hard targets).
    w_chunk: Vec<f64>,
    /// `1 - eps` and `eps / C` as `f32` for the probability-target kernels.
    qa: f32,
    qb: f32,
    /// Columns per chunk: the row length for rows of at most [`SHORT_ROW`] columns, else
    /// [`CHUNK`].
    chunk: usize,
    /// Number of chunks per row.
    nchunks: usize,
}

impl Plan<'_> {
    #[inline]
    fn weight(&self, j: usize) -> f64 {
        self.w64.map_or(1.0, |w| w[j])
    }

    /// The class target of row `i` (None for an ignored row); probability rows return
    /// `Some(None)`-like via `is_probs`.
    #[inline]
    fn target(&self, i: usize) -> Option<usize> {
        let t = self.classes_t?;
        let y = t[i];
        if self.ignore == Some(y) {
            None
        } else {
            Some(y as usize)
        }
    }

    #[inline]
    fn ignored(&self, i: usize) -> bool {
        match self.classes_t {
            Some(t) => self.ignore == Some(t[i]),
            None => false,
        }
    }

    /// The chunk's weights (empty when unweighted).
    #[inline]
    fn wslice(&self, col0: usize, n: usize) -> &[f32] {
        if self.w32.is_empty() {
            &[]
        } else {
            &self.w32[col0..col0 + n]
        }
    }

    /// Row `i`'s target probabilities for columns `col0..col0 + n` (empty for hard targets).
    #[inline]
    fn qslice(&self, i: usize, col0: usize, n: usize) -> &[f32] {
        match self.probs {
            Some(q) => {
                let at = i * self.classes + col0;
                &q[at..at + n]
            }
            None => &[],
        }
    }
}

/// The combined statistics of one row.
#[derive(Debug, Clone, Copy)]
struct RowCombined {
    /// Row maximum.
    m: f32,
    /// `sum_j exp(z_j - M)`.
    s: f64,
    /// `A` of the gradient form `A p_j - B_j`.
    a: f64,
    /// The row's loss before reduction.
    loss: f64,
    /// False for a NaN row (NaN or `+inf` present, or every logit `-inf`).
    finite: bool,
}

/// Pass 1 over the chunks `first_chunk..` covering `raw` (of row `i`, starting at column
/// `first_chunk * CHUNK`).
fn pass1_range(
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
fn combine(plan: &Plan<'_>, stats: &[ChunkStats], y: Option<usize>, zy: f32) -> RowCombined {
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
    let mut s = 0.0;
    let mut z = 0.0;
    let mut wq = 0.0;
    for (k, st) in stats.iter().enumerate() {
        let d = f64::from(mref(st.m)) - mm;
        if st.s != 0.0 || st.s.is_nan() {
            s += st.s * chunk_factor(st.m, mm);
        }
        let wc = match plan.kind {
            Kind::Plain | Kind::Weighted => plan.w_chunk[k],
            Kind::Probs | Kind::ProbsWeighted => st.wq,
        };
        z += st.z + wc * d;
        wq += st.wq;
    }
    let finite = !any_nan && m.is_finite() && s.is_finite();
    if !finite {
        return RowCombined {
            m,
            s: f64::NAN,
            a: f64::NAN,
            loss: f64::NAN,
            finite: false,
        };
    }
    let l = s.ln();
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
        s,
        a,
        loss,
        finite,
    }
}

/// Pass 2 over the chunks covering `raw`: gradient `us (A p_j - B_j)` from the stored `e_j`.
#[allow(clippy::too_many_arguments)]
fn pass2_range(
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
fn pass2_params(plan: &Plan<'_>, st: &ChunkStats, row: &RowCombined, us: f64) -> (f32, f32, f32) {
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
fn row_us(cfg: &CrossEntropy, upstream: &Upstream<'_>, scale: f64, i: usize) -> f64 {
    let u = match cfg.reduction {
        Reduction::None => upstream.at(i),
        _ => upstream.at(0),
    };
    u * scale
}

/// The degenerate-row gradient (non-finite `us`): the reference's formula, element by element,
/// over the piece `raw` that starts at column `col0`.
#[allow(clippy::too_many_arguments)]
fn slow_grad(
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
fn target_grad(
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
    let g = row.a * p - (1.0 - plan.eps) * wy - plan.eps / plan.classes as f64 * wy;
    (us * g) as f32
}

/// One whole row (mode A). Returns the row's loss.
fn process_row(
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
    } else if !us.is_finite() {
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
fn process_row_split(plan: &Plan<'_>, i: usize, mut bufs: Bufs<'_>, us: f64) -> f64 {
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
    } else if !us.is_finite() {
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
struct Pending<'a> {
    i: usize,
    raw: RowBuf<'a>,
    stats: Vec<ChunkStats>,
    row: RowCombined,
    us: f64,
    /// The hard target's gradient entry, written after pass 2.
    gy: Option<(usize, f32)>,
}

/// Mode A with a separate gradient buffer: pass 1 of row `r + 1` runs chunk by chunk
/// interleaved with pass 2 of row `r`, so the streaming gradient writes of one row overlap the
/// reads and the `exp` work of the next. Each chunk is computed exactly as in [`process_row`]
/// (same kernels, same combination), so the results are the same bits.
#[allow(clippy::too_many_arguments)]
fn process_rows_pipelined(
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
        } else if !ui.is_finite() {
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
    /// Per-thread buffer for the exponentials of one row (mode A with a separate gradient).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Mode A over consecutive rows `first..` held by `bufs` (whole rows).
fn process_rows(
    plan: &Plan<'_>,
    first: usize,
    bufs: Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    losses: &mut [f64],
    nt: bool,
) {
    if plan.classes <= short::SHORT_MAX {
        // Short rows: batches of rows, one vectorised `exp` per batch (no streaming stores).
        short::process_rows_short(plan, first, bufs, us, losses);
        return;
    }
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
    if nt {
        kernels::store_fence(plan.level);
    }
}

/// Runs the fused kernel over validated buffers; returns the reduced losses.
#[allow(clippy::too_many_arguments)]
fn run(
    backend: &CpuBackend,
    level: SimdLevel,
    cfg: &CrossEntropy,
    bufs: Bufs<'_>,
    rows: usize,
    classes: usize,
    targets: CeTargets<'_, f32>,
    upstream: Upstream<'_>,
) -> Vec<f64> {
    let c = classes;
    let eps = cfg.label_smoothing;
    let w64 = cfg.class_weights.as_deref();
    let w_sum: f64 = match w64 {
        Some(w) => w.iter().sum(),
        // Exact: `c` ones sum to `c` in `f64` (c < 2^53).
        None => c as f64,
    };
    let chunk = if c <= SHORT_ROW { c.max(1) } else { CHUNK };
    let nchunks = c.div_ceil(chunk);
    let w_chunk: Vec<f64> = (0..nchunks)
        .map(|k| {
            let (a, b) = (k * chunk, ((k + 1) * chunk).min(c));
            match w64 {
                Some(w) => w[a..b].iter().sum(),
                None => (b - a) as f64,
            }
        })
        .collect();
    let (kind, classes_t, probs) = match targets {
        CeTargets::Classes(t) => (
            if w64.is_some() {
                Kind::Weighted
            } else {
                Kind::Plain
            },
            Some(t),
            None,
        ),
        CeTargets::Probs(q) => (
            if w64.is_some() {
                Kind::ProbsWeighted
            } else {
                Kind::Probs
            },
            None,
            Some(q),
        ),
    };
    let plan = Plan {
        level,
        classes: c,
        eps,
        kind,
        classes_t,
        probs,
        ignore: cfg.ignore_index,
        w64,
        w32: w64.map_or_else(Vec::new, |w| w.iter().map(|&v| v as f32).collect()),
        w_sum,
        w_chunk,
        qa: (1.0 - eps) as f32,
        qb: (eps / c as f64) as f32,
        chunk,
        nchunks,
    };
    // CE-7: the mean denominator, in row order as the reference.
    let mut denom = 0.0;
    for i in 0..rows {
        match plan.classes_t {
            Some(_) => {
                if let Some(y) = plan.target(i) {
                    denom += plan.weight(y);
                }
            }
            None => denom += 1.0,
        }
    }
    let scale = if cfg.reduction == Reduction::Mean {
        1.0 / denom
    } else {
        1.0
    };
    let us = |i: usize| row_us(cfg, &upstream, scale, i);
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
                    *loss = process_row_split(&plan, i, piece, us(i));
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
    match cfg.reduction {
        Reduction::None => losses,
        Reduction::Sum => vec![losses.iter().sum()],
        Reduction::Mean => vec![losses.iter().sum::<f64>() / denom],
    }
}

/// A validated cross-entropy call on a chosen SIMD level (the trait method uses
/// [`SimdLevel::detect`]; a level this CPU lacks falls back to scalar). Used by tests to cover
/// the portable path.
pub fn cross_entropy_with_level(
    backend: &CpuBackend,
    level: SimdLevel,
    call: CeCall<'_, f32>,
) -> Result<Loss> {
    let Parts {
        plan,
        io,
        with: targets,
        upstream,
    } = call.into_parts();
    let level = if level.is_available() {
        level
    } else {
        SimdLevel::Scalar
    };
    let bufs = match io {
        Io::Read(z) => Bufs::ReadOnly(z),
        Io::Separate { input, grad } => Bufs::Split(input, grad),
        Io::InPlace(z) => Bufs::InPlace(z),
    };
    let cfg = plan.cfg;
    let values = run(
        backend,
        level,
        cfg,
        bufs,
        plan.rows(),
        plan.classes(),
        targets,
        upstream,
    );
    Ok(crate::loss_of(cfg.reduction, values))
}

impl CrossEntropyOps<f32> for CpuBackend {
    fn run_cross_entropy(&self, call: CeCall<'_, f32>) -> Result<Loss> {
        cross_entropy_with_level(self, SimdLevel::detect(), call)
    }
}

/// The per-chunk kernels: dispatch, the portable scalar code and the AVX2 + FMA code.
mod kernels {
    use super::{ChunkStats, Kind, exp_nonpos_f32, mref};
    use crate::simd::SimdLevel;

    /// Pass 1 over one chunk of `n` logits; see the module documentation.
    ///
    /// # Safety
    /// `src` is valid for `n` reads; when `store`, `dst` is valid for `n` writes and is either
    /// equal to `src` or does not overlap it. `w` (weighted kinds) and `q` (probability kinds)
    /// hold at least `n` values. `level` must be available on this CPU.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn pass1(
        level: SimdLevel,
        kind: Kind,
        store: bool,
        src: *const f32,
        dst: *mut f32,
        n: usize,
        w: &[f32],
        q: &[f32],
        qa: f32,
        qb: f32,
    ) -> ChunkStats {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2Fma => {
                // SAFETY: forwarded contract; AVX2 + FMA availability is the caller's
                // precondition (`level` comes from detection).
                unsafe { avx2::pass1_dispatch(kind, store, src, dst, n, w, q, qa, qb) }
            }
            // SAFETY: forwarded contract.
            _ => unsafe { scalar_pass1(kind, store, src, dst, n, w, q, qa, qb) },
        }
    }

    /// Pass 2 over one chunk: `out[j] = a e[j] - B_j` with `B_j = b` (plain), `b w_j`
    /// (weighted), `bq q'_j` (probabilities), `bq w_j q'_j` (weighted probabilities),
    /// `q'_j = qa q_j + qb`; `nt` asks for non-temporal stores.
    ///
    /// # Safety
    /// `e` is valid for `n` reads and `out` for `n` writes, equal or non-overlapping; `w`, `q`
    /// as in [`pass1`]; `level` available.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn pass2(
        level: SimdLevel,
        kind: Kind,
        e: *const f32,
        out: *mut f32,
        n: usize,
        nt: bool,
        a: f32,
        b: f32,
        bq: f32,
        w: &[f32],
        q: &[f32],
        qa: f32,
        qb: f32,
    ) {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2Fma => {
                // SAFETY: forwarded contract; AVX2 + FMA available by precondition.
                unsafe { avx2::pass2_dispatch(kind, e, out, n, nt, a, b, bq, w, q, qa, qb) }
            }
            _ => {
                let _ = nt;
                // SAFETY: forwarded contract.
                unsafe { scalar_pass2(kind, e, out, n, a, b, bq, w, q, qa, qb) }
            }
        }
    }

    /// [`pass1`] (storing into `dst`) of one chunk and [`pass2`] (`e2` to `out2`, with the
    /// same `n` and `w`, targets `q2`) of the same chunk of the previous row, interleaved; the
    /// results are those of the two calls.
    ///
    /// # Safety
    /// As [`pass1`] with `store` for `src`, `dst`, `w`, `q`, and as [`pass2`] for `e2`,
    /// `out2`, `w`, `q2`; `e2` and `out2` are disjoint from `src` and `dst`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn pass1_fused(
        level: SimdLevel,
        kind: Kind,
        src: *const f32,
        dst: *mut f32,
        n: usize,
        w: &[f32],
        q: &[f32],
        qa: f32,
        qb: f32,
        e2: *const f32,
        out2: *mut f32,
        nt: bool,
        a: f32,
        b: f32,
        bq: f32,
        q2: &[f32],
    ) -> ChunkStats {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2Fma => {
                // SAFETY: forwarded contract; AVX2 + FMA available by precondition.
                unsafe {
                    avx2::fused_dispatch(
                        kind, src, dst, n, w, q, qa, qb, e2, out2, nt, a, b, bq, q2,
                    )
                }
            }
            _ => {
                // SAFETY: forwarded contract.
                unsafe {
                    let st = pass1(level, kind, true, src, dst, n, w, q, qa, qb);
                    pass2(level, kind, e2, out2, n, nt, a, b, bq, w, q2, qa, qb);
                    st
                }
            }
        }
    }

    /// Orders earlier non-temporal stores before later stores (called once per task that used
    /// them, before the results are handed to another thread).
    pub(super) fn store_fence(level: SimdLevel) {
        #[cfg(target_arch = "x86_64")]
        if level == SimdLevel::Avx2Fma {
            // SAFETY: `sfence` is SSE (part of the x86_64 baseline); no memory is accessed.
            unsafe { std::arch::x86_64::_mm_sfence() };
        }
        let _ = level;
    }

    /// `B_j` of pass 2 for one element (shared by the scalar code and the vector tails).
    #[inline(always)]
    fn b_of(kind: Kind, j: usize, b: f32, bq: f32, w: &[f32], q: &[f32], qa: f32, qb: f32) -> f32 {
        match kind {
            Kind::Plain => b,
            Kind::Weighted => b * w[j],
            Kind::Probs => bq * qa.mul_add(q[j], qb),
            Kind::ProbsWeighted => bq * (qa.mul_add(q[j], qb) * w[j]),
        }
    }

    /// `w_j q'_j` of pass 1 for one element (1 for the plain kind).
    #[inline(always)]
    fn wq_of(kind: Kind, j: usize, w: &[f32], q: &[f32], qa: f32, qb: f32) -> f32 {
        match kind {
            Kind::Plain => 1.0,
            Kind::Weighted => w[j],
            Kind::Probs => qa.mul_add(q[j], qb),
            Kind::ProbsWeighted => qa.mul_add(q[j], qb) * w[j],
        }
    }

    /// Portable pass 1 (`f64` accumulation).
    ///
    /// # Safety
    /// As [`pass1`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn scalar_pass1(
        kind: Kind,
        store: bool,
        src: *const f32,
        dst: *mut f32,
        n: usize,
        w: &[f32],
        q: &[f32],
        qa: f32,
        qb: f32,
    ) -> ChunkStats {
        let mut m = f32::NEG_INFINITY;
        let mut nan = false;
        for j in 0..n {
            // SAFETY: `j < n` and `src` is valid for `n` reads.
            let v = unsafe { *src.add(j) };
            nan |= v.is_nan();
            if v > m {
                m = v;
            }
        }
        if nan {
            m = f32::NAN;
        }
        let mr = mref(m);
        let (mut s, mut z, mut wq) = (0.0f64, 0.0f64, 0.0f64);
        for j in 0..n {
            // SAFETY: `j < n`; `src` valid for `n` reads.
            let v = unsafe { *src.add(j) };
            let d = v - mr;
            let e = exp_nonpos_f32(d);
            if store {
                // SAFETY: `j < n`; `dst` valid for `n` writes, equal to or disjoint from `src`,
                // and element `j` of `src` was read above.
                unsafe { *dst.add(j) = e };
            }
            s += f64::from(e);
            let c = wq_of(kind, j, w, q, qa, qb);
            z += f64::from(c) * f64::from(d);
            wq += f64::from(c);
        }
        ChunkStats { m, s, z, wq }
    }

    /// Portable pass 2.
    ///
    /// # Safety
    /// As [`pass2`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn scalar_pass2(
        kind: Kind,
        e: *const f32,
        out: *mut f32,
        n: usize,
        a: f32,
        b: f32,
        bq: f32,
        w: &[f32],
        q: &[f32],
        qa: f32,
        qb: f32,
    ) {
        for j in 0..n {
            // SAFETY: `j < n`; `e` valid for `n` reads, `out` for `n` writes; element `j` of
            // `e` is read before `out[j]` is written (they may be the same memory).
            unsafe {
                let v = *e.add(j);
                *out.add(j) = a.mul_add(v, -b_of(kind, j, b, bq, w, q, qa, qb));
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use super::super::{ChunkStats, Kind, exp_nonpos_f32, mref};
        use super::wq_of;
        use crate::simd::avx2::{exp8_nonpos, exp8x2_nonpos, hmax, hsum_f64};
        use std::arch::x86_64::*;

        const PLAIN: u8 = 0;
        const WEIGHTED: u8 = 1;
        const PROBS: u8 = 2;
        const PROBS_W: u8 = 3;

        fn kind_of(k: u8) -> Kind {
            match k {
                PLAIN => Kind::Plain,
                WEIGHTED => Kind::Weighted,
                PROBS => Kind::Probs,
                _ => Kind::ProbsWeighted,
            }
        }

        /// # Safety
        /// As `kernels::pass1`, with AVX2 + FMA available.
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn pass1_dispatch(
            kind: Kind,
            store: bool,
            src: *const f32,
            dst: *mut f32,
            n: usize,
            w: &[f32],
            q: &[f32],
            qa: f32,
            qb: f32,
        ) -> ChunkStats {
            // Pass 1 alone (no pass-2 job, ordinary stores), monomorphised per kind and store.
            let p1 = (src, dst, n, w, q, qa, qb);
            // SAFETY: (all arms) forwarded contract of `kernels::pass1`.
            unsafe {
                match (kind, store) {
                    (Kind::Plain, true) => alone::<PLAIN, true>(p1),
                    (Kind::Plain, false) => alone::<PLAIN, false>(p1),
                    (Kind::Weighted, true) => alone::<WEIGHTED, true>(p1),
                    (Kind::Weighted, false) => alone::<WEIGHTED, false>(p1),
                    (Kind::Probs, true) => alone::<PROBS, true>(p1),
                    (Kind::Probs, false) => alone::<PROBS, false>(p1),
                    (Kind::ProbsWeighted, true) => alone::<PROBS_W, true>(p1),
                    (Kind::ProbsWeighted, false) => alone::<PROBS_W, false>(p1),
                }
            }
        }

        /// [`pass1`] without a pass-2 job and without streaming stores.
        ///
        /// # Safety
        /// As `kernels::pass1`, with AVX2 + FMA available.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn alone<const K: u8, const STORE: bool>(p1: P1Args<'_>) -> ChunkStats {
            let (src, dst, n, w, q, qa, qb) = p1;
            // SAFETY: forwarded contract; without `JOB` the job is not touched.
            unsafe { pass1::<K, STORE, false, false>(src, dst, n, w, q, qa, qb, &mut P2::none()) }
        }

        /// # Safety
        /// As `kernels::pass1_fused`, with AVX2 + FMA available.
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn fused_dispatch(
            kind: Kind,
            src: *const f32,
            dst: *mut f32,
            n: usize,
            w: &[f32],
            q: &[f32],
            qa: f32,
            qb: f32,
            e2: *const f32,
            out2: *mut f32,
            nt: bool,
            a: f32,
            b: f32,
            bq: f32,
            q2: &[f32],
        ) -> ChunkStats {
            let p1 = (src, dst, n, w, q, qa, qb);
            let p2 = (e2, out2, a, b, bq, q2);
            // SAFETY: (all arms) forwarded contract of `kernels::pass1_fused`.
            unsafe {
                match (kind, nt) {
                    (Kind::Plain, false) => fused::<PLAIN, false>(p1, p2),
                    (Kind::Plain, true) => fused::<PLAIN, true>(p1, p2),
                    (Kind::Weighted, false) => fused::<WEIGHTED, false>(p1, p2),
                    (Kind::Weighted, true) => fused::<WEIGHTED, true>(p1, p2),
                    (Kind::Probs, false) => fused::<PROBS, false>(p1, p2),
                    (Kind::Probs, true) => fused::<PROBS, true>(p1, p2),
                    (Kind::ProbsWeighted, false) => fused::<PROBS_W, false>(p1, p2),
                    (Kind::ProbsWeighted, true) => fused::<PROBS_W, true>(p1, p2),
                }
            }
        }

        /// Pass-1 arguments `(src, dst, n, w, q, qa, qb)` of [`fused`].
        type P1Args<'a> = (*const f32, *mut f32, usize, &'a [f32], &'a [f32], f32, f32);
        /// Pass-2 arguments `(e, out, a, b, bq, q)` of [`fused`].
        type P2Args<'a> = (*const f32, *mut f32, f32, f32, f32, &'a [f32]);

        /// # Safety
        /// As `kernels::pass1_fused`, with AVX2 + FMA available.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn fused<const K: u8, const NT: bool>(p1: P1Args<'_>, p2: P2Args<'_>) -> ChunkStats {
            let (src, dst, n, w, q, qa, qb) = p1;
            let (e2, out2, a, b, bq, q2) = p2;
            // SAFETY: forwarded contract (pass 2 over `n` elements of `e2` / `out2`, with the
            // chunk's weights `w` and the pending row's targets `q2`).
            let mut job = unsafe { P2::new::<K, NT>(e2, out2, n, a, b, bq, w, q2, qa, qb) };
            if NT {
                // Streaming stores: the previous row's chunk first, as one tight loop of whole
                // lines, then pass 1 (paired A/B: 5-6 % less time than spreading the streaming
                // stores over pass 1, which was slower than ordinary stores).
                job.finish::<K, NT>();
                // SAFETY: forwarded contract (pass 1, storing into `dst`; `job` untouched).
                unsafe { pass1::<K, true, NT, false>(src, dst, n, w, q, qa, qb, &mut job) }
            } else {
                // SAFETY: forwarded contract (pass 1, storing into `dst`, advancing `job`, a
                // pass-2 job over the same `n` elements).
                let st = unsafe { pass1::<K, true, NT, true>(src, dst, n, w, q, qa, qb, &mut job) };
                job.finish::<K, NT>();
                st
            }
        }

        /// # Safety
        /// As `kernels::pass2`, with AVX2 + FMA available.
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn pass2_dispatch(
            kind: Kind,
            e: *const f32,
            out: *mut f32,
            n: usize,
            nt: bool,
            a: f32,
            b: f32,
            bq: f32,
            w: &[f32],
            q: &[f32],
            qa: f32,
            qb: f32,
        ) {
            // SAFETY: (all arms) forwarded contract of `kernels::pass2`.
            unsafe {
                match (kind, nt) {
                    (Kind::Plain, false) => {
                        pass2::<PLAIN, false>(e, out, n, a, b, bq, w, q, qa, qb)
                    }
                    (Kind::Plain, true) => pass2::<PLAIN, true>(e, out, n, a, b, bq, w, q, qa, qb),
                    (Kind::Weighted, false) => {
                        pass2::<WEIGHTED, false>(e, out, n, a, b, bq, w, q, qa, qb)
                    }
                    (Kind::Weighted, true) => {
                        pass2::<WEIGHTED, true>(e, out, n, a, b, bq, w, q, qa, qb)
                    }
                    (Kind::Probs, false) => {
                        pass2::<PROBS, false>(e, out, n, a, b, bq, w, q, qa, qb)
                    }
                    (Kind::Probs, true) => pass2::<PROBS, true>(e, out, n, a, b, bq, w, q, qa, qb),
                    (Kind::ProbsWeighted, false) => {
                        pass2::<PROBS_W, false>(e, out, n, a, b, bq, w, q, qa, qb)
                    }
                    (Kind::ProbsWeighted, true) => {
                        pass2::<PROBS_W, true>(e, out, n, a, b, bq, w, q, qa, qb)
                    }
                }
            }
        }

        /// `w_j q'_j` for eight lanes at `j`.
        ///
        /// # Safety
        /// `w` / `q` (as used by `K`) hold at least `j + 8` values.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wq8<const K: u8>(
            j: usize,
            w: *const f32,
            q: *const f32,
            qa: __m256,
            qb: __m256,
        ) -> __m256 {
            // SAFETY: caller guarantees `j + 8` readable values in the used buffers.
            unsafe {
                match K {
                    PLAIN => _mm256_set1_ps(1.0),
                    WEIGHTED => _mm256_loadu_ps(w.add(j)),
                    PROBS => _mm256_fmadd_ps(qa, _mm256_loadu_ps(q.add(j)), qb),
                    _ => _mm256_mul_ps(
                        _mm256_fmadd_ps(qa, _mm256_loadu_ps(q.add(j)), qb),
                        _mm256_loadu_ps(w.add(j)),
                    ),
                }
            }
        }

        /// # Safety
        /// As `kernels::pass1`, with AVX2 + FMA available. With `JOB`, `p2` is a pass-2 job over
        /// exactly `n` elements (`p2.n == n`, position 0) that pass 1 advances between its own
        /// vectors; without `JOB`, `p2` is not touched.
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn pass1<const K: u8, const STORE: bool, const NT: bool, const JOB: bool>(
            src: *const f32,
            dst: *mut f32,
            n: usize,
            w: &[f32],
            q: &[f32],
            qa: f32,
            qb: f32,
            p2: &mut P2,
        ) -> ChunkStats {
            if K == WEIGHTED || K == PROBS_W {
                assert!(w.len() >= n);
            }
            if K == PROBS || K == PROBS_W {
                assert!(q.len() >= n);
            }
            let (wp, qp) = (w.as_ptr(), q.as_ptr());
            // A local copy of the pass-2 job: its fields stay in registers (the caller's copy
            // could alias `dst` as far as the compiler knows, forcing a reload after each store).
            let mut job = *p2;
            if JOB && !NT {
                // `step_at` below relies on this (checked once per chunk, not per block).
                assert!(
                    job.n == n && job.pos == 0,
                    "pass-2 job must cover this chunk"
                );
            }
            // Max over the chunk (four accumulators).
            let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
            let (mut m0, mut m1, mut m2, mut m3) = (ninf, ninf, ninf, ninf);
            let mut i = 0;
            while i + 32 <= n {
                // SAFETY: `i + 32 <= n` and `src` is valid for `n` reads.
                unsafe {
                    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(src.add(i)));
                    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(src.add(i + 8)));
                    m2 = _mm256_max_ps(m2, _mm256_loadu_ps(src.add(i + 16)));
                    m3 = _mm256_max_ps(m3, _mm256_loadu_ps(src.add(i + 24)));
                }
                i += 32;
            }
            while i + 8 <= n {
                // SAFETY: `i + 8 <= n`.
                m0 = _mm256_max_ps(m0, unsafe { _mm256_loadu_ps(src.add(i)) });
                i += 8;
            }
            let mut m = hmax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
            while i < n {
                // SAFETY: `i < n`.
                let v = unsafe { *src.add(i) };
                if v > m || v.is_nan() {
                    m = v;
                }
                i += 1;
            }
            let mr = mref(m);
            let mv = _mm256_set1_ps(mr);
            let qav = _mm256_set1_ps(qa);
            let qbv = _mm256_set1_ps(qb);
            let zero = _mm256_setzero_ps();
            let (mut s, mut z, mut wq) = (0.0f64, 0.0f64, 0.0f64);
            let nv = n & !7;
            let mut i = 0;
            // Blocks of `SUB` columns accumulate in `f32` lanes (64 terms per lane), then in
            // `f64`: long single-chunk rows keep the accuracy of `CHUNK`-column chunks.
            while i < nv {
                let end = (i + super::super::SUB).min(nv);
                let (mut s0, mut z0, mut c0) = (zero, zero, zero);
                // Two vectors per iteration (16 columns), their `exp` chains interleaved, and
                // one pass-2 block of the previous row (`JOB`); a last single vector when `end`
                // is an odd multiple of 8.
                while i + 16 <= end {
                    // Bring the next chunk towards L1 while this one is computed, so the next
                    // max loop does not stall on memory (a prefetch never faults; the address
                    // is computed with wrapping arithmetic and may lie past the buffer).
                    _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(n + i) as *const i8);
                    if JOB {
                        if NT {
                            job.step::<K, NT>();
                        } else {
                            // SAFETY: `i + 16 <= end <= n == job.n` (`JOB` contract), and
                            // without `NT` the job's blocks start at 0 and advance by 16 with
                            // `i` (SUB is a multiple of 16), so `job.pos == i`.
                            unsafe { job.step_at::<K>(i) };
                        }
                    }
                    // SAFETY: `i + 16 <= nv <= n`: `src` readable, `dst` (when STORE) writable
                    // there; each element is read before the same index is written.
                    unsafe {
                        let d0 = _mm256_sub_ps(_mm256_loadu_ps(src.add(i)), mv);
                        let d1 = _mm256_sub_ps(_mm256_loadu_ps(src.add(i + 8)), mv);
                        let (e0, e1) = exp8x2_nonpos(d0, d1);
                        if STORE {
                            _mm256_storeu_ps(dst.add(i), e0);
                            _mm256_storeu_ps(dst.add(i + 8), e1);
                        }
                        s0 = _mm256_add_ps(s0, _mm256_add_ps(e0, e1));
                        if K == PLAIN {
                            z0 = _mm256_add_ps(z0, _mm256_add_ps(d0, d1));
                        } else {
                            let a0 = wq8::<K>(i, wp, qp, qav, qbv);
                            let a1 = wq8::<K>(i + 8, wp, qp, qav, qbv);
                            z0 = _mm256_fmadd_ps(a0, d0, z0);
                            z0 = _mm256_fmadd_ps(a1, d1, z0);
                            if K == PROBS || K == PROBS_W {
                                c0 = _mm256_add_ps(c0, _mm256_add_ps(a0, a1));
                            }
                        }
                    }
                    i += 16;
                }
                if i < end {
                    _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(n + i) as *const i8);
                    if JOB && NT {
                        job.step::<K, NT>();
                    }
                    // SAFETY: `i + 8 <= end <= nv <= n`, as above.
                    unsafe {
                        let d0 = _mm256_sub_ps(_mm256_loadu_ps(src.add(i)), mv);
                        let e0 = exp8_nonpos(d0);
                        if STORE {
                            _mm256_storeu_ps(dst.add(i), e0);
                        }
                        s0 = _mm256_add_ps(s0, e0);
                        if K == PLAIN {
                            z0 = _mm256_add_ps(z0, d0);
                        } else {
                            let a0 = wq8::<K>(i, wp, qp, qav, qbv);
                            z0 = _mm256_fmadd_ps(a0, d0, z0);
                            if K == PROBS || K == PROBS_W {
                                c0 = _mm256_add_ps(c0, a0);
                            }
                        }
                    }
                    i += 8;
                }
                s += hsum_f64(s0);
                z += hsum_f64(z0);
                wq += hsum_f64(c0);
            }
            let kind = kind_of(K);
            while i < n {
                // SAFETY: `i < n`, as above.
                let v = unsafe { *src.add(i) };
                let d = v - mr;
                let e = exp_nonpos_f32(d);
                if STORE {
                    // SAFETY: `i < n`; element `i` was read just above.
                    unsafe { *dst.add(i) = e };
                }
                s += f64::from(e);
                let c = wq_of(kind, i, w, q, qa, qb);
                z += f64::from(c * d);
                if K == PROBS || K == PROBS_W {
                    wq += f64::from(c);
                }
                i += 1;
            }
            *p2 = job;
            ChunkStats { m, s, z, wq }
        }

        /// Eight gradient lanes at `i`: `a e_i - B_i`.
        ///
        /// # Safety
        /// `e` and (as used by `K`) `w` / `q` hold at least `i + 8` readable values.
        #[allow(clippy::too_many_arguments)]
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn grad8<const K: u8>(
            e: *const f32,
            wp: *const f32,
            qp: *const f32,
            i: usize,
            av: __m256,
            bv: __m256,
            bqv: __m256,
            qav: __m256,
            qbv: __m256,
        ) -> __m256 {
            // SAFETY: caller guarantees `i + 8` readable values in the used buffers.
            unsafe {
                let v = _mm256_loadu_ps(e.add(i));
                match K {
                    PLAIN => _mm256_fmsub_ps(av, v, bv),
                    WEIGHTED => {
                        _mm256_fnmadd_ps(bv, _mm256_loadu_ps(wp.add(i)), _mm256_mul_ps(av, v))
                    }
                    _ => _mm256_fnmadd_ps(bqv, wq8::<K>(i, wp, qp, qav, qbv), _mm256_mul_ps(av, v)),
                }
            }
        }

        /// `cnt` (1..=8) gradient lanes at `i`, as [`grad8`], with masked loads and store.
        ///
        /// # Safety
        /// `e` and (as used by `K`) `w` / `q` hold at least `i + cnt` readable values and `out`
        /// `i + cnt` writable ones; `e` and `out` are equal or disjoint.
        #[allow(clippy::too_many_arguments)]
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn grad_part<const K: u8>(
            e: *const f32,
            out: *mut f32,
            wp: *const f32,
            qp: *const f32,
            i: usize,
            cnt: usize,
            av: __m256,
            bv: __m256,
            bqv: __m256,
            qav: __m256,
            qbv: __m256,
        ) {
            let mask = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(cnt as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            // SAFETY: the masked loads and store touch lanes `0..cnt` only, all inside the
            // buffers by the caller's contract (masked-off lanes are never accessed).
            unsafe {
                let v = _mm256_maskload_ps(e.add(i), mask);
                let g = match K {
                    PLAIN => _mm256_fmsub_ps(av, v, bv),
                    WEIGHTED => _mm256_fnmadd_ps(
                        bv,
                        _mm256_maskload_ps(wp.add(i), mask),
                        _mm256_mul_ps(av, v),
                    ),
                    _ => {
                        let qv = _mm256_fmadd_ps(qav, _mm256_maskload_ps(qp.add(i), mask), qbv);
                        let c = if K == PROBS {
                            qv
                        } else {
                            _mm256_mul_ps(qv, _mm256_maskload_ps(wp.add(i), mask))
                        };
                        _mm256_fnmadd_ps(bqv, c, _mm256_mul_ps(av, v))
                    }
                };
                _mm256_maskstore_ps(out.add(i), mask, g);
            }
        }

        /// Pass 2 of one chunk as a resumable job: [`P2::new`] writes the head (up to the first
        /// 64-byte line of `out` when streaming), [`P2::step`] one block of 16 elements (a whole
        /// line when streaming), [`P2::finish`] the rest. Pass 1 of the next row runs the steps
        /// between its own vectors, so the gradient stores spread over its `exp` work.
        ///
        /// Invariant (upheld by `new`'s contract): `e` is valid for `n` reads and `out` for `n`
        /// writes (equal or disjoint), `wp` / `qp` for `n` reads when `K` uses them.
        #[derive(Clone, Copy)]
        pub(super) struct P2 {
            e: *const f32,
            out: *mut f32,
            n: usize,
            pos: usize,
            wp: *const f32,
            qp: *const f32,
            av: __m256,
            bv: __m256,
            bqv: __m256,
            qav: __m256,
            qbv: __m256,
        }

        impl P2 {
            /// A job that does nothing (`n = 0`).
            #[inline]
            #[target_feature(enable = "avx2,fma")]
            pub(super) fn none() -> P2 {
                let z = _mm256_setzero_ps();
                P2 {
                    e: std::ptr::null(),
                    out: std::ptr::null_mut(),
                    n: 0,
                    pos: 0,
                    wp: std::ptr::null(),
                    qp: std::ptr::null(),
                    av: z,
                    bv: z,
                    bqv: z,
                    qav: z,
                    qbv: z,
                }
            }

            /// Starts the job and writes the head.
            ///
            /// # Safety
            /// As `kernels::pass2` (`e`, `out`, `w`, `q` for `n` elements), AVX2 + FMA
            /// available.
            #[allow(clippy::too_many_arguments)]
            #[inline]
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn new<const K: u8, const NT: bool>(
                e: *const f32,
                out: *mut f32,
                n: usize,
                a: f32,
                b: f32,
                bq: f32,
                w: &[f32],
                q: &[f32],
                qa: f32,
                qb: f32,
            ) -> P2 {
                if K == WEIGHTED || K == PROBS_W {
                    assert!(w.len() >= n);
                }
                if K == PROBS || K == PROBS_W {
                    assert!(q.len() >= n);
                }
                let mut p = P2 {
                    e,
                    out,
                    n,
                    pos: 0,
                    wp: w.as_ptr(),
                    qp: q.as_ptr(),
                    av: _mm256_set1_ps(a),
                    bv: _mm256_set1_ps(b),
                    bqv: _mm256_set1_ps(bq),
                    qav: _mm256_set1_ps(qa),
                    qbv: _mm256_set1_ps(qb),
                };
                if NT {
                    // Streaming stores only for whole 64-byte lines of `out`: a line shared
                    // with the neighbouring call (row or chunk boundary) would be written by
                    // two streaming stores far apart in time, and the write-combining buffer
                    // flushes such a half line as a slow partial write. Those lines get
                    // ordinary stores (from both sides, so every line is written by one kind
                    // of store only).
                    let mis = (out as usize % 64) / 4;
                    let head = if mis == 0 { 0 } else { (16 - mis).min(n) };
                    while p.pos < head {
                        let cnt = (head - p.pos).min(8);
                        // SAFETY: `pos + cnt <= head <= n` (type invariant for the buffers).
                        unsafe { p.part::<K>(cnt) };
                    }
                }
                p
            }

            /// `cnt` (1..=8) lanes at `pos` with masked loads and stores, the same formula as
            /// the full vectors (so every element's bits are independent of where the vector
            /// boundaries fall).
            ///
            /// # Safety
            /// `pos + cnt <= n`; AVX2 + FMA available.
            #[inline]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn part<const K: u8>(&mut self, cnt: usize) {
                let p = &*self;
                // SAFETY: `pos + cnt <= n` (caller); the masked loads and store touch only
                // those `cnt` elements of `e`, `w`, `q` (when used) and `out` (type
                // invariant), and all lanes are loaded before the store.
                unsafe {
                    grad_part::<K>(
                        p.e, p.out, p.wp, p.qp, p.pos, cnt, p.av, p.bv, p.bqv, p.qav, p.qbv,
                    )
                };
                self.pos += cnt;
            }

            /// One block of 16 elements, if that many remain.
            #[inline]
            #[target_feature(enable = "avx2,fma")]
            pub(super) fn step<const K: u8, const NT: bool>(&mut self) {
                let (i, p) = (self.pos, &*self);
                if i + 16 > p.n {
                    return;
                }
                if !NT {
                    // SAFETY: `i == pos` and `i + 16 <= n`, checked just above.
                    unsafe { self.step_at::<K>(i) };
                    return;
                }
                // SAFETY: `i + 16 <= n`: `e` readable, `out` writable, `w` / `q` readable
                // there (type invariant); `out + i` is 64-byte aligned (the head was peeled in
                // `new`, and `pos` advances by 16 floats since).
                unsafe {
                    let g0 = grad8::<K>(p.e, p.wp, p.qp, i, p.av, p.bv, p.bqv, p.qav, p.qbv);
                    let g1 = grad8::<K>(p.e, p.wp, p.qp, i + 8, p.av, p.bv, p.bqv, p.qav, p.qbv);
                    _mm256_stream_ps(p.out.add(i), g0);
                    _mm256_stream_ps(p.out.add(i + 8), g1);
                }
                self.pos = i + 16;
            }

            /// The block of 16 elements at `i` (which must be `pos`), without the bounds
            /// check of [`P2::step`]; ordinary stores.
            ///
            /// # Safety
            /// `i == pos` and `i + 16 <= n`.
            #[inline]
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn step_at<const K: u8>(&mut self, i: usize) {
                debug_assert!(i == self.pos && i + 16 <= self.n);
                let p = &*self;
                // Start the read-for-ownership of the gradient line one chunk ahead, so the
                // stores do not wait on memory (paired A/B: ~9% less time per call at
                // 1024x32000 and 16384x1000; `prefetchw` or two chunks ahead: no better).
                // A prefetch never faults; the address may lie past the buffer.
                _mm_prefetch::<_MM_HINT_T0>(p.out.wrapping_add(p.n + i) as *const i8);
                // SAFETY: `i + 16 <= n` (caller): `e` readable, `out` writable, `w` / `q`
                // readable there (type invariant).
                unsafe {
                    let g0 = grad8::<K>(p.e, p.wp, p.qp, i, p.av, p.bv, p.bqv, p.qav, p.qbv);
                    let g1 = grad8::<K>(p.e, p.wp, p.qp, i + 8, p.av, p.bv, p.bqv, p.qav, p.qbv);
                    _mm256_storeu_ps(p.out.add(i), g0);
                    _mm256_storeu_ps(p.out.add(i + 8), g1);
                }
                self.pos = i + 16;
            }

            /// Writes everything left.
            #[inline]
            #[target_feature(enable = "avx2,fma")]
            pub(super) fn finish<const K: u8, const NT: bool>(&mut self) {
                while self.pos + 16 <= self.n {
                    self.step::<K, NT>();
                }
                while self.pos + 8 <= self.n {
                    let (i, p) = (self.pos, &*self);
                    // SAFETY: `i + 8 <= n` (type invariant for the buffers).
                    unsafe {
                        let g = grad8::<K>(p.e, p.wp, p.qp, i, p.av, p.bv, p.bqv, p.qav, p.qbv);
                        _mm256_storeu_ps(p.out.add(i), g);
                    }
                    self.pos = i + 8;
                }
                if self.pos < self.n {
                    let cnt = self.n - self.pos;
                    // SAFETY: `pos + cnt == n`.
                    unsafe { self.part::<K>(cnt) };
                }
            }
        }

        /// # Safety
        /// As `kernels::pass2`, with AVX2 + FMA available.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn pass2<const K: u8, const NT: bool>(
            e: *const f32,
            out: *mut f32,
            n: usize,
            a: f32,
            b: f32,
            bq: f32,
            w: &[f32],
            q: &[f32],
            qa: f32,
            qb: f32,
        ) {
            // SAFETY: forwarded contract.
            let mut p = unsafe { P2::new::<K, NT>(e, out, n, a, b, bq, w, q, qa, qb) };
            p.finish::<K, NT>();
        }
    }
}
