//! Short rows in SIMD lanes: hard class targets (plain or class-weighted) with at most
//! [`LANES_MAX`] (32; the code handles 128) classes, eight rows at a time, one row per lane.
//!
//! On the batched short-row path (`short.rs`) every row pays a horizontal maximum and three
//! horizontal sums, the masked loads and stores of a partial vector and scalar `f64`
//! bookkeeping: about 50 cycles per row whatever `C` (issue 15). Here eight consecutive rows
//! are transposed into a `C x 8` block (column `j` of the eight rows in one vector) by
//! in-register 8x8 shuffles (`kernels/lanes_avx2.rs`: eight row loads, masked for a partial
//! last block of columns, 24 shuffles, eight column stores), so that the maximum,
//! `d_j = z_j - m`, `exp`, the sums and the gradient `a e_j - b B_j` are vertical operations,
//! once per eight rows; the `f64` part (`ln S`, the loss, the gradient constants, the target's
//! entry) runs as branch-free loops over the eight lanes; the gradient block is transposed
//! back the same way and stored row by row.
//!
//! Every lane computes its row alone, in a fixed order: per block of 8 columns the tree
//! `((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7))` (padding columns of a partial block add
//! 0), the blocks' sums added in column order (rows of fewer than 8 classes: the columns in
//! sequence), so at most `C / 8 + 3 <= 19` roundings per term
//! (the short path's bound is `C / 8 + 4`). A row's bits therefore do not depend on the other
//! rows of its block, on where blocks start or on the thread count. `S = n0 + s'` as on the
//! short path (a row whose sum is below 1.5, one dominant maximum, takes `s'` as the sum of
//! its entries below 1), `log S` by the short path's `ln_split`, the hard target's gradient
//! entry from `f64` (`p_y - 1 = -s' / S` when the target is the single maximum). Rows with a
//! non-finite logit or a non-finite upstream take the short path, one row at a time (`TOL-4`:
//! the same results as every other path); ignored rows get loss 0 and a zero gradient here.
//!
//! The AVX2 build runs every full block of eight rows of 2 to 32 classes through one kernel
//! with the class count a constant (`kernels/lanes_avx2.rs`, `block`; [`fast_rows`]): the
//! columns stay in registers (`C >= 8`: column blocks of eight, the last one ending at the
//! row's end, one 8x8 transpose each, no masks; `C < 8`: the block's `C` vectors, each column gathered by constant
//! permutes and blends), the targets, the ignore test and `w_y` as vector operations, the
//! `f64` part as `f64` vectors (`ln_split` on four lanes), the upstream factor read once when it
//! is the same for every row, and nothing stored before the block is known to hold no row that
//! leaves the lanes (such a block runs through the general block code instead); up to 5
//! classes two blocks at a time, step by step (their `f64` chains overlap); on
//! `SimdLevel::Avx512` up to 16 classes built a second time with AVX-512 VL (32 registers, the
//! same intrinsics). The same operations in the same order, so the same bits; 0.24x (2 classes) to 0.58x (16) the
//! instructions of the general block code (`BENCHMARKS.md`, "Short rows: the whole block in
//! registers").
//!
//! The scalar build runs the same lane code lane by lane (`exp_nonpos_f32` gives the bits of
//! the vector `exp`, the products and sums are the same operations in the same order, the
//! gradient the same fused multiply-add), so both builds give the same bits.

use super::bufs::Bufs;
#[cfg(target_arch = "x86_64")]
use super::kernels::lanes_avx2;
use super::plan::{Kind, KindMarker, Plan, with_kind};
use super::short::{ln_split, process_rows_short};
#[cfg(target_arch = "x86_64")]
use crate::SimdLevel;
use crate::math::exp_nonpos_f32;

/// Rows of at most this many classes (hard targets) take the lanes path. The code handles up
/// to [`CAPACITY`] (128). The general block code alone was measured slower in CPU time than the
/// batched path from 32 classes on and about 8 % slower at 20 (Zen 3, `BENCHMARKS.md`, "Issue
/// 15, short rows (session 4)"), so the limit was 16; with the AVX2 block kernel
/// ([`fast_rows`]) 17 to 32 classes take 0.39-0.67x the batched path's instructions and
/// 0.56-0.9x its wall time at 17-24 classes, about the same at 32 (Zen 4, "Short rows: the
/// whole block in registers"). The scalar build (other architectures) follows the same limit so
/// that both builds give the same bits; its speed at 17-32 classes was not measured.
pub const LANES_MAX: usize = 32;
/// The most classes the block arrays hold (a multiple of 8).
const CAPACITY: usize = 128;
#[cfg(target_arch = "x86_64")]
const _: () = assert!(CAPACITY == lanes_avx2::CAPACITY);
/// Rows per block: one per `f32` lane of an AVX2 vector; also the columns per summation block.
const L: usize = 8;

/// One value per lane.
type V = [f32; L];

/// Whether a call's rows take the lanes path.
pub(super) fn takes(plan: &Plan<'_>) -> bool {
    const { assert!(LANES_MAX <= CAPACITY && CAPACITY.is_multiple_of(L)) };
    plan.classes >= 1
        && plan.classes <= LANES_MAX
        && matches!(plan.kind, Kind::Plain | Kind::Weighted)
}

/// The rows `first..first + losses.len()` held by `bufs` (whole rows), block by block.
pub(super) fn process_rows_lanes(
    plan: &Plan<'_>,
    first: usize,
    bufs: Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    losses: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    if plan.level.avx2() {
        // SAFETY: `plan.level.avx2()` only if this CPU has AVX2 and FMA
        // (`CpuBackend::with_simd_level` falls back to scalar otherwise).
        unsafe { with_kind!(plan.kind, |K| avx2::<K>(plan, first, bufs, us, losses)) };
        return;
    }
    with_kind!(plan.kind, |K| body::<K, false>(
        plan, first, bufs, us, losses
    ))
}

/// [`body`] compiled with AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<K: KindMarker>(
    plan: &Plan<'_>,
    first: usize,
    bufs: Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    losses: &mut [f64],
) {
    body::<K, true>(plan, first, bufs, us, losses)
}

/// `xt[j]` = column `j < c` of the `nb` rows of `x` (lanes past `nb` hold 0; the padding
/// columns past `c` are left as they are, never read); returns the maxima (`if x > m { x } else { m }` from column 0 on) and
/// `sum_j x_j * 0` per lane (NaN for a row with a non-finite logit).
#[inline(always)]
fn load_t<const AVX: bool>(x: &[f32], c: usize, nb: usize, xt: &mut [V]) -> (V, V) {
    // Rows of fewer than 8 classes: the lane loops below (one partial block of 8 columns
    // would load and shuffle more than it uses; measured slower at 5 classes).
    #[cfg(target_arch = "x86_64")]
    if AVX && c >= L {
        // SAFETY: `AVX` is only true inside [`avx2`] (AVX2 + FMA checked by its callers); the
        // sizes are the callers' (`x.len() == nb c`, `xt` of `CAPACITY` columns), checked
        // again inside.
        return unsafe { lanes_avx2::load_t(x, c, nb, xt) };
    }
    for (j, col) in xt[..c].iter_mut().enumerate() {
        for (l, v) in col.iter_mut().enumerate() {
            *v = if l < nb { x[l * c + j] } else { 0.0 };
        }
    }
    let mut m = xt[0];
    let mut fin = [0.0f32; L];
    for col in &xt[..c] {
        for l in 0..L {
            m[l] = if col[l] > m[l] { col[l] } else { m[l] };
            fin[l] += col[l] * 0.0;
        }
    }
    (m, fin)
}

/// `((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7))`, lane by lane.
#[inline(always)]
fn tree(v: &[V; L], l: usize) -> f32 {
    ((v[0][l] + v[1][l]) + (v[2][l] + v[3][l])) + ((v[4][l] + v[5][l]) + (v[6][l] + v[7][l]))
}

/// `e[j] = exp(xt[j] - m)` (0 for the padding columns) and the sums `(S, s', sum w_j d_j)`
/// (`s'` the entries below 1): per block of 8 columns [`tree`] (padding columns add 0), the
/// blocks' sums added in order from 0; rows of fewer than 8 classes add their columns in
/// sequence from 0 (`e` then holds only the `c` columns).
#[inline(always)]
fn exp_sums<K: KindMarker, const AVX: bool>(
    xt: &[V],
    e: &mut [V],
    c: usize,
    m: &V,
    w: &[f32],
) -> (V, V, V) {
    #[cfg(target_arch = "x86_64")]
    if AVX {
        // SAFETY: as in [`load_t`].
        return unsafe { lanes_avx2::exp_sums::<K>(xt, e, c, m, w) };
    }
    let (mut sa, mut sb, mut sz) = ([0.0f32; L], [0.0f32; L], [0.0f32; L]);
    if c < L {
        // A single partial block: the columns added in sequence (no tree over padding).
        for j in 0..c {
            for l in 0..L {
                let d = xt[j][l] - m[l];
                let ek = exp_nonpos_f32(d);
                e[j][l] = ek;
                sa[l] += ek;
                sb[l] += if ek < 1.0 { ek } else { 0.0 };
                sz[l] += if K::WEIGHTED { w[j] * d } else { d };
            }
        }
        return (sa, sb, sz);
    }
    for b in 0..c.div_ceil(L) {
        let j0 = b * L;
        let (mut ve, mut vb, mut vz) = ([[0.0f32; L]; L], [[0.0f32; L]; L], [[0.0f32; L]; L]);
        for k in 0..(c - j0).min(L) {
            let j = j0 + k;
            for l in 0..L {
                let d = xt[j][l] - m[l];
                let ek = exp_nonpos_f32(d);
                ve[k][l] = ek;
                vb[k][l] = if ek < 1.0 { ek } else { 0.0 };
                vz[k][l] = if K::WEIGHTED { w[j] * d } else { d };
            }
        }
        e[j0..j0 + L].copy_from_slice(&ve);
        for l in 0..L {
            sa[l] += tree(&ve, l);
            sb[l] += tree(&vb, l);
            sz[l] += tree(&vz, l);
        }
    }
    (sa, sb, sz)
}

/// The gradient `a e_j - b` (`-b w_j + a e_j` weighted, fused) of the block, written to the
/// rows `l < nb` with `keep[l]` (row `l` at `out[l c..(l + 1) c]`); `tmp`: the AVX2 code's
/// scratch.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn grad_store<K: KindMarker, const AVX: bool>(
    out: &mut [f32],
    c: usize,
    nb: usize,
    e: &[V],
    w: &[f32],
    a: &V,
    b: &V,
    keep: &[bool; L],
    tmp: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if AVX && c >= L {
        // SAFETY: as in [`load_t`]; `tmp` is the caller's `L * (CAPACITY + 1)` scratch.
        unsafe { lanes_avx2::grad_store::<K>(out, c, nb, e, w, a, b, keep, tmp) };
        return;
    }
    let _ = tmp;
    for (l, o) in out.chunks_exact_mut(c).enumerate().take(nb) {
        if !keep[l] {
            continue;
        }
        for (j, v) in o.iter_mut().enumerate() {
            *v = if K::WEIGHTED {
                (-b[l]).mul_add(w[j], a[l] * e[j][l])
            } else {
                a[l].mul_add(e[j][l], -b[l])
            };
        }
    }
}

/// Per-lane results of a block: the loss and how the gradient row is written.
#[derive(Clone, Copy, Default)]
struct Lane {
    /// The row takes the short path (a non-finite logit or upstream).
    special: bool,
    /// An ignored row (loss 0, zero gradient).
    ignored: bool,
    y: usize,
}

/// The block arrays of one call (allocated once per call: zeroing them per block would cost
/// more than a tiny row's arithmetic).
struct Scratch {
    /// The block's logits and exponentials, transposed.
    xt: [V; CAPACITY],
    e: [V; CAPACITY],
    /// The gradient block, row-major, before it is copied out (AVX2, `C >= 8`).
    tmp: [f32; L * (CAPACITY + 1)],
}

#[inline(always)]
fn body<K: KindMarker, const AVX: bool>(
    plan: &Plan<'_>,
    first: usize,
    mut bufs: Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    losses: &mut [f64],
) {
    let c = plan.classes;
    let rows = losses.len();
    let mut specials = Vec::new();
    let mut sc = Scratch {
        xt: [[0.0f32; L]; CAPACITY],
        e: [[0.0f32; L]; CAPACITY],
        tmp: [0.0f32; L * (CAPACITY + 1)],
    };
    let mut r0 = 0;
    #[cfg(target_arch = "x86_64")]
    if AVX {
        // SAFETY: `AVX` is only true inside [`avx2`] (AVX2 + FMA checked by its callers);
        // `SimdLevel::Avx512` only where AVX-512 F and VL are available (checked when the
        // level is chosen).
        r0 = unsafe {
            if plan.level == SimdLevel::Avx512 && c <= EVEX_MAX {
                fast_rows_any_evex::<K>(plan, first, &mut bufs, us, losses, &mut sc, &mut specials)
            } else {
                fast_rows_any::<K>(plan, first, &mut bufs, us, losses, &mut sc, &mut specials)
            }
        };
    }
    while r0 < rows {
        let nb = L.min(rows - r0);
        one_block::<K, AVX>(
            plan,
            first,
            &mut bufs,
            us,
            losses,
            r0,
            nb,
            &mut sc,
            &mut specials,
        );
        r0 += nb;
    }
    // Rows with non-finite values: the short path, one row at a time (their logits are
    // untouched above, also in place).
    for r in specials {
        let rows = r * c..(r + 1) * c;
        let one = match &mut bufs {
            Bufs::Split(x, g) => Bufs::Split(&x[rows.clone()], &mut g[rows]),
            Bufs::InPlace(g) => Bufs::InPlace(&mut g[rows]),
            Bufs::ReadOnly(x) => Bufs::ReadOnly(&x[rows]),
        };
        process_rows_short(plan, first + r, one, us, &mut losses[r..r + 1]);
    }
}

/// The block of rows `r0..r0 + nb` (`nb <= 8`) of the call's rows; rows with a non-finite
/// logit or upstream are pushed to `specials` (untouched here).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn one_block<K: KindMarker, const AVX: bool>(
    plan: &Plan<'_>,
    first: usize,
    bufs: &mut Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    losses: &mut [f64],
    r0: usize,
    nb: usize,
    sc: &mut Scratch,
    specials: &mut Vec<usize>,
) {
    let c = plan.classes;
    let w: &[f32] = if K::WEIGHTED { &plan.w32[..c] } else { &[] };
    let eps = plan.eps;
    let eps_c = eps / c as f64;
    let t = plan.classes_t.unwrap_or(&[]);
    let range = r0 * c..(r0 + nb) * c;
    // The block's logits, transposed (lanes past `nb` hold 0: a finite row, discarded);
    // maximum, finiteness (`x * 0` is NaN for a non-finite `x`).
    let (m, fin) = {
        let x: &[f32] = match &bufs {
            Bufs::Split(x, _) | Bufs::ReadOnly(x) => &x[range.clone()],
            Bufs::InPlace(g) => &g[range.clone()],
        };
        load_t::<AVX>(x, c, nb, &mut sc.xt)
    };
    // `d_j`, `e_j`, the sums `S`, `s'` (entries below 1) and `sum w_j d_j`.
    let (s_all, s_below, z) = exp_sums::<K, AVX>(&sc.xt, &mut sc.e, c, &m, w);
    // Per row: `S = n0 + s'`, `ln S`, the loss and the gradient's constants (`f64`):
    // the row's own values gathered first, then branch-free loops over the eight lanes.
    let mut lanes = [Lane::default(); L];
    let (mut ui, mut wy, mut zy, mut ey) = ([0.0f64; L], [1.0f64; L], [0.0f64; L], [0.0f32; L]);
    for (l, ln) in lanes[..nb].iter_mut().enumerate() {
        let i = first + r0 + l;
        let yi = t[i];
        if plan.ignore == Some(yi) {
            ln.ignored = true;
            continue;
        }
        let y = yi as usize;
        ln.y = y;
        // Also without a gradient, so that a row leaves the lanes (and gets the short
        // path's loss bits) with or without one.
        ui[l] = us(i);
        wy[l] = plan.weight(y);
        zy[l] = f64::from(sc.xt[y][l]);
        ey[l] = sc.e[y][l];
        let ra = (1.0 - eps) * wy[l] + eps_c * plan.w_sum;
        ln.special = fin[l] != 0.0 || !(ui[l].is_finite() && ra.is_finite());
    }
    let (mut n0, mut s1) = ([0.0f64; L], [0.0f64; L]);
    for l in 0..L {
        let st = s_all[l];
        let conf = st < 1.5 && st > 0.0;
        n0[l] = if conf { 1.0 } else { 0.0 };
        s1[l] = f64::from(if conf { s_below[l] } else { st });
    }
    let mut loss = [0.0f64; L];
    let (mut a, mut b, mut gy) = ([0.0f32; L], [0.0f32; L], [0.0f32; L]);
    for l in 0..L {
        let lg = ln_split(n0[l], s1[l]);
        let inv = 1.0 / (n0[l] + s1[l]);
        let nll = wy[l] * (lg - (zy[l] - f64::from(m[l])));
        let smooth = (1.0 - eps) * nll + eps_c * (plan.w_sum * lg - f64::from(z[l]));
        loss[l] = if eps == 0.0 { nll } else { smooth };
        let ra = (1.0 - eps) * wy[l] + eps_c * plan.w_sum;
        let p = f64::from(ey[l]) * inv;
        // `p_minus_1`, branch-free.
        let pm1 = if ey[l] == 1.0 && n0[l] == 1.0 {
            -s1[l] * inv
        } else {
            p - 1.0
        };
        let g = (1.0 - eps) * wy[l] * pm1 + eps_c * (plan.w_sum * p - wy[l]);
        a[l] = (ui[l] * ra * inv) as f32;
        b[l] = (ui[l] * eps_c) as f32;
        gy[l] = (ui[l] * g) as f32;
    }
    let mut keep = [false; L];
    for (l, ln) in lanes[..nb].iter().enumerate() {
        let r = r0 + l;
        if ln.ignored {
            losses[r] = 0.0;
        } else if ln.special {
            specials.push(r);
        } else {
            losses[r] = loss[l];
            keep[l] = true;
        }
    }
    // The gradient, `a e_j - b B_j` vertically, written back row by row, then the
    // target's entry from `f64` and the ignored rows' zeros.
    if let Bufs::Split(_, g) | Bufs::InPlace(g) = bufs {
        let out = &mut g[range];
        grad_store::<K, AVX>(out, c, nb, &sc.e, w, &a, &b, &keep, &mut sc.tmp);
        for (l, (o, ln)) in out.chunks_exact_mut(c).zip(&lanes).enumerate() {
            if keep[l] {
                o[ln.y] = gy[l];
            } else if ln.ignored {
                o.fill(0.0);
            }
        }
    }
}

/// [`one_block`] of the AVX2 build, out of line (the fallback of [`fast_rows`] for a block with
/// a row that leaves the lanes: one copy, not one per class count).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline(never)]
#[target_feature(enable = "avx2,fma")]
unsafe fn one_block_avx2<K: KindMarker>(
    plan: &Plan<'_>,
    first: usize,
    bufs: &mut Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    losses: &mut [f64],
    r0: usize,
    sc: &mut Scratch,
    specials: &mut Vec<usize>,
) {
    one_block::<K, true>(plan, first, bufs, us, losses, r0, L, sc, specials)
}

/// `NB` blocks of eight rows from row `r0` through [`lanes_avx2::block`]: `false` (nothing
/// written) if one of them has a row that leaves the lanes.
///
/// # Safety
/// The CPU must support AVX2 and FMA (inlined into the callers' builds).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn blocks<K: KindMarker, const C: usize, const NB: usize>(
    plan: &Plan<'_>,
    first: usize,
    bufs: &mut Bufs<'_>,
    us: &dyn Fn(usize) -> f64,
    losses: &mut [f64],
    k: &lanes_avx2::BlockConsts<'_>,
    r0: usize,
) -> bool {
    let n = NB * L;
    let t = plan.classes_t.unwrap_or(&[]);
    let range = r0 * C..(r0 + n) * C;
    let i = first + r0;
    let mut ui = [0.0f64; 2 * L];
    let ui: &[f64] = if k.uniform_us.is_some() {
        &[]
    } else {
        for (l, v) in ui[..n].iter_mut().enumerate() {
            *v = us(i + l);
        }
        &ui[..n]
    };
    let grad = !matches!(bufs, Bufs::ReadOnly(_));
    let x: &[f32] = match &*bufs {
        Bufs::Split(x, _) | Bufs::ReadOnly(x) => &x[range.clone()],
        Bufs::InPlace(g) => &g[range.clone()],
    };
    // SAFETY: AVX2 + FMA (this function's contract); the sizes are checked inside.
    let g = unsafe {
        lanes_avx2::block::<K, C, NB>(x, &t[i..i + n], ui, k, &mut losses[r0..r0 + n], grad)
    };
    let Some(g) = g else { return false };
    if let Bufs::Split(_, out) | Bufs::InPlace(out) = bufs {
        for (b, gb) in g.iter().enumerate() {
            let o = &mut out[(r0 + b * L) * C..(r0 + (b + 1) * L) * C];
            // SAFETY: as above.
            unsafe { lanes_avx2::store_block::<C>(o, gb) };
        }
    }
    true
}

/// `match classes { 2 => f::<K, 2>(args), ..., 32 => f::<K, 32>(args), _ => 0 }`.
#[cfg(target_arch = "x86_64")]
macro_rules! per_class_count {
    ($classes:expr, $f:ident::<$k:ident>($($arg:expr),*)) => {
        per_class_count!(@ $classes, $f, $k, ($($arg),*),
            2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32)
    };
    (@ $classes:expr, $f:ident, $k:ident, $args:tt, $($c:literal)*) => {
        match $classes {
            $($c => per_class_count!(@call $f, $k, $c, $args),)*
            _ => 0,
        }
    };
    (@call $f:ident, $k:ident, $c:literal, ($($arg:expr),*)) => {
        $f::<$k, $c>($($arg),*)
    };
}

/// The fast-path functions of one build: `$any` dispatches on the class count to `$rows`.
#[cfg(target_arch = "x86_64")]
macro_rules! fast_rows_fns {
    ($any:ident, $rows:ident, $features:literal) => {
        /// The full blocks of eight rows from row 0 on through [`lanes_avx2::block`] (the
        /// class count a constant); returns the rows done (a multiple of 8). `0` for a class
        /// count the block kernel does not take (1, or more than `lanes_avx2::MAX_C`).
        ///
        /// # Safety
        /// The CPU must support this build's target features.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
        unsafe fn $any<K: KindMarker>(
            plan: &Plan<'_>,
            first: usize,
            bufs: &mut Bufs<'_>,
            us: &dyn Fn(usize) -> f64,
            losses: &mut [f64],
            sc: &mut Scratch,
            specials: &mut Vec<usize>,
        ) -> usize {
            // SAFETY: this function's target features.
            unsafe {
                per_class_count!(
                    plan.classes,
                    $rows::<K>(plan, first, bufs, us, losses, sc, specials)
                )
            }
        }

        /// The function above for `C` classes: two blocks at a time (their dependency chains
        /// overlap) where that was measured faster, else one.
        ///
        /// # Safety
        /// The CPU must support this build's target features.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
        unsafe fn $rows<K: KindMarker, const C: usize>(
            plan: &Plan<'_>,
            first: usize,
            bufs: &mut Bufs<'_>,
            us: &dyn Fn(usize) -> f64,
            losses: &mut [f64],
            sc: &mut Scratch,
            specials: &mut Vec<usize>,
        ) -> usize {
            assert_eq!(plan.classes, C);
            let k = lanes_avx2::BlockConsts {
                eps: plan.eps,
                eps_c: plan.eps / C as f64,
                w_sum: plan.w_sum,
                ignore: plan.ignore,
                uniform_us: plan.uniform_us,
                w64: plan.w64.unwrap_or(&[]),
                w32: &plan.w32,
            };
            let full = losses.len() / L * L;
            let mut r0 = 0;
            while r0 < full {
                let left = (full - r0).min(2 * L);
                let mut pair = false;
                if pair_blocks(C) && left == 2 * L {
                    // SAFETY: this function's target features (AVX2 + FMA at least).
                    pair = unsafe { blocks::<K, C, 2>(plan, first, bufs, us, losses, &k, r0) };
                }
                if !pair {
                    // One at a time: a pair with a row that leaves the lanes, the last block.
                    for rb in (r0..r0 + left).step_by(L) {
                        // SAFETY: as above.
                        unsafe {
                            if !blocks::<K, C, 1>(plan, first, bufs, us, losses, &k, rb) {
                                one_block_avx2::<K>(
                                    plan, first, bufs, us, losses, rb, sc, specials,
                                );
                            }
                        }
                    }
                }
                r0 += left;
            }
            full
        }
    };
}

#[cfg(target_arch = "x86_64")]
fast_rows_fns!(fast_rows_any, fast_rows, "avx2,fma");
#[cfg(target_arch = "x86_64")]
fast_rows_fns!(
    fast_rows_any_evex,
    fast_rows_evex,
    "avx2,fma,avx512f,avx512vl"
);

/// Whether rows of `c` classes go through the block kernel two blocks at a time: measured
/// faster up to 5 classes (0.88-0.92x the time at 2-3 classes, 0.95x at 5), level at 10-16 and
/// slower at 20 in the AVX2 build (Zen 4, `BENCHMARKS.md`, "Short rows: two blocks at a time,
/// and the AVX-512 build").
#[cfg(target_arch = "x86_64")]
const fn pair_blocks(c: usize) -> bool {
    c <= 5
}

/// The most classes the AVX-512 level runs through the block kernel's AVX-512 VL build: 0.93-0.98x
/// the AVX2 build's time up to 16 classes, 1.07-1.2x at 20 (one block at a time; same section).
#[cfg(target_arch = "x86_64")]
const EVEX_MAX: usize = 16;
