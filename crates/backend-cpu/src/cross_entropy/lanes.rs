//! Tiny rows in SIMD lanes: hard class targets (plain or class-weighted) with at most
//! [`LANES_MAX`] (6) classes, eight rows at a time, one row per lane.
//!
//! On the batched short-row path (`short.rs`) a row of two to five classes costs about as much
//! as a row of ten (measured: 19-34 ns of CPU time per row at 2 to 10 classes), and almost none
//! of it is the exponentials: the horizontal maximum and sums, the masked loads and stores of a
//! partial vector and the per-row bookkeeping are paid once per row. Here
//! eight consecutive rows are transposed into a `C x 8` block (column `j` of the eight rows in
//! one vector), so that the maximum, `d_j = z_j - m`, `exp`, the sums and the gradient
//! `a e_j - b B_j` are vertical operations, once per eight rows, with no horizontal step; the
//! block is transposed back when the gradient is written.
//!
//! Every lane computes its row alone, in a fixed order (columns in sequence within groups of 16,
//! the groups' sums then added: at most 16 roundings per term for up to 32 classes, against
//! the `C / 8 + 4 <= 20` the short path allows), so a row's bits do not depend on the other rows of its block, on where blocks start or on the
//! thread count. `S = n0 + s'` as on the short path (a row whose sum is below 1.5, one dominant
//! maximum, takes `s'` as the sum of its entries below 1), `log S` by the short path's
//! `ln_split`, the hard target's gradient entry from `f64` (`p_y - 1 = -s' / S` when the
//! target is the single maximum). Rows with a non-finite logit or a non-finite upstream take
//! the short path, one row at a time (`TOL-4`: the same results as every other path); ignored
//! rows get loss 0 and a zero gradient here.
//!
//! The scalar build runs the same lane code lane by lane (`exp_nonpos_f32` gives the bits of
//! the vector `exp`), so both builds give the same bits.

use super::bufs::Bufs;
use super::plan::{Kind, KindMarker, Plan, with_kind};
use super::short::{ln_split, process_rows_short};
use crate::SimdLevel;
use crate::math::exp_nonpos_f32;

/// Rows of at most this many classes (hard targets) take the lanes path. Measured on the
/// project's Zen 3 VM (CPU time per call, one thread, alternating with the batched path): 1.5-1.7x
/// faster at 2, 3 and 5 classes, no faster at 8 and 10, 20-35 % slower at 16 to 32 (where the
/// transposes cost more than the per-row work they save). The code handles up to 32 classes.
pub const LANES_MAX: usize = 6;
/// The most classes the block arrays hold.
const CAPACITY: usize = 32;
/// Columns summed in sequence before the groups' sums are added (at most `GROUP - 1 + 1`
/// roundings per term for `C <= 32`).
const GROUP: usize = 16;
/// Rows per block: one per `f32` lane of an AVX2 vector.
const L: usize = 8;

/// One value per lane.
type V = [f32; L];

/// Whether a call's rows take the lanes path.
pub(super) fn takes(plan: &Plan<'_>) -> bool {
    const { assert!(LANES_MAX <= CAPACITY) };
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
    if plan.level == SimdLevel::Avx2Fma {
        // SAFETY: `plan.level` is only `Avx2Fma` when AVX2 and FMA were detected on this CPU
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

/// `exp` of every lane (`x <= 0` or NaN), as `exp_nonpos_f32` lane by lane.
#[inline(always)]
fn exp_v<const AVX: bool>(x: &V) -> V {
    #[cfg(target_arch = "x86_64")]
    if AVX {
        use crate::math::avx2::exp8_nonpos;
        use std::arch::x86_64::{_mm256_loadu_ps, _mm256_storeu_ps};
        let mut out = [0.0f32; L];
        // SAFETY: `AVX` is only true inside [`avx2`] (AVX2 + FMA checked by its callers);
        // `x` and `out` hold eight `f32` each.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp8_nonpos(_mm256_loadu_ps(x.as_ptr()))) };
        return out;
    }
    x.map(exp_nonpos_f32)
}

/// Per-lane results of a block: the loss and how the gradient row is written.
#[derive(Clone, Copy, Default)]
struct Lane {
    /// The row takes the short path (a non-finite logit or upstream).
    special: bool,
    /// An ignored row (loss 0, zero gradient).
    ignored: bool,
    y: usize,
    a: f32,
    b: f32,
    gy: f32,
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
    let w: &[f32] = if K::WEIGHTED { &plan.w32[..c] } else { &[] };
    let eps = plan.eps;
    let eps_c = eps / c as f64;
    let t = plan.classes_t.unwrap_or(&[]);
    let mut specials = Vec::new();
    // The block's logits, exponentials and gradient, transposed (once per call: zeroing them
    // per block would cost more than a tiny row's arithmetic).
    let mut xt = [[0.0f32; L]; CAPACITY];
    let mut e = [[0.0f32; L]; CAPACITY];
    let mut gt = [[0.0f32; L]; CAPACITY];
    let mut r0 = 0;
    while r0 < rows {
        let nb = L.min(rows - r0);
        let range = r0 * c..(r0 + nb) * c;
        // The block's logits, transposed (lanes past `nb` hold 0: a finite row, discarded).
        {
            let x: &[f32] = match &bufs {
                Bufs::Split(x, _) | Bufs::ReadOnly(x) => &x[range.clone()],
                Bufs::InPlace(g) => &g[range.clone()],
            };
            for (j, col) in xt[..c].iter_mut().enumerate() {
                for (l, v) in col.iter_mut().enumerate() {
                    *v = if l < nb { x[l * c + j] } else { 0.0 };
                }
            }
        }
        let xt = &xt[..c];
        // Maximum, finiteness (`x * 0` is NaN for a non-finite `x`).
        let mut m = xt[0];
        let mut fin = [0.0f32; L];
        for col in xt {
            for l in 0..L {
                m[l] = if col[l] > m[l] { col[l] } else { m[l] };
                fin[l] += col[l] * 0.0;
            }
        }
        // `d_j`, `e_j`, the sums `S`, `s'` (entries below 1) and `sum w_j d_j`: in sequence
        // over each group of [`GROUP`] columns, the groups' sums then added in order.
        let (mut s_all, mut s_below, mut z) = ([0.0f32; L], [0.0f32; L], [0.0f32; L]);
        for (g, (xg, eg)) in xt.chunks(GROUP).zip(e.chunks_mut(GROUP)).enumerate() {
            let (mut sa, mut sb, mut sz) = ([0.0f32; L], [0.0f32; L], [0.0f32; L]);
            for (jg, (col, ej)) in xg.iter().zip(eg.iter_mut()).enumerate() {
                let mut d = [0.0f32; L];
                for l in 0..L {
                    d[l] = col[l] - m[l];
                }
                *ej = exp_v::<AVX>(&d);
                let wj = if K::WEIGHTED { w[g * GROUP + jg] } else { 1.0 };
                for l in 0..L {
                    sa[l] += ej[l];
                    sb[l] += if ej[l] < 1.0 { ej[l] } else { 0.0 };
                    sz[l] += if K::WEIGHTED { wj * d[l] } else { d[l] };
                }
            }
            for l in 0..L {
                s_all[l] += sa[l];
                s_below[l] += sb[l];
                z[l] += sz[l];
            }
        }
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
            zy[l] = f64::from(xt[y][l]);
            ey[l] = e[y][l];
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
        for (l, ln) in lanes[..nb].iter_mut().enumerate() {
            let r = r0 + l;
            if ln.ignored {
                losses[r] = 0.0;
            } else if ln.special {
                specials.push(r);
            } else {
                losses[r] = loss[l];
                (ln.a, ln.b, ln.gy) = (a[l], b[l], gy[l]);
            }
        }
        // The gradient, `a e_j - b B_j` vertically, written back row by row.
        if let Bufs::Split(_, g) | Bufs::InPlace(g) = &mut bufs {
            let out = &mut g[range];
            let (a, b): (V, V) = (lanes.map(|s| s.a), lanes.map(|s| s.b));
            for (j, (gj, ej)) in gt[..c].iter_mut().zip(&e[..c]).enumerate() {
                for l in 0..L {
                    gj[l] = if K::WEIGHTED {
                        (-b[l]).mul_add(w[j], a[l] * ej[l])
                    } else {
                        a[l].mul_add(ej[l], -b[l])
                    };
                }
            }
            for (l, (o, s)) in out.chunks_exact_mut(c).zip(&lanes).enumerate() {
                if s.special {
                    continue;
                }
                if s.ignored {
                    o.fill(0.0);
                    continue;
                }
                for (j, v) in o.iter_mut().enumerate() {
                    *v = gt[j][l];
                }
                o[s.y] = s.gy;
            }
        }
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
