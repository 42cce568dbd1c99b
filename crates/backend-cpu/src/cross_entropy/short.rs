//! The short-row path of the fused cross-entropy: rows of at most [`SHORT_MAX`] classes.
//!
//! Rows are processed in batches of about [`BATCH`] logits (at least one row). Per batch:
//! (1) per row, the maximum `m` (and whether a NaN is present), `d_j = z_j - mref(m)` written
//! into a scratch buffer, and the smoothing sums `sum w_j q'_j d_j`, `sum w_j q'_j`; (2) one
//! vectorised `exp` over the whole contiguous batch, in place (the same function lane by lane
//! as the scalar one, so an element's bits do not depend on where vectors start); (3) per row,
//! `S` (a row whose sum is below 1.5, one dominant maximum, summed again as `S = n0 + s'`:
//! `n0` the entries equal to 1, `s'` the sum of the others, so that a confident row's tiny
//! `s'` is not rounded away against 1), `log S`
//! ([`ln_split`], relatively accurate in `s'`), the loss by the long path's formulas for one
//! chunk, and the gradient constants; (4) per row, the gradient `a e_j - b B_j` as one FMA
//! per element, the hard target's entry then set from `f64` (`p_y - 1 = -s' / S` when the
//! target is the single maximum). All reads of a batch's logits happen in (1),
//! before (4) writes, so the in-place variant works unchanged.
//!
//! Per-row sums use eight `f32` lanes (column `j` in lane `j mod 8`; the partial last vector
//! through masked loads) combined by a fixed `f32` tree: at most `C / 8 + 4 <= 20` roundings
//! per term (relative `1.2e-6` for terms of one sign), inside the module tolerance. Each row's
//! results depend only on the row, hence the same bits for any batching and thread count.

use super::bufs::Bufs;
#[cfg(target_arch = "x86_64")]
use super::kernels::short_avx2;
use super::plan::{Kind, KindMarker, Plan, mref, with_kind};
use crate::math::exp_nonpos_f32;

/// Rows of at most this many classes take the short-row path.
pub const SHORT_MAX: usize = 128;
/// Logits per batch.
const BATCH: usize = 1024;

/// Sum of `f(j)` over `0..n` in eight `f32` lanes (`j mod 8`), the lanes added as a fixed
/// `f32` tree (at most `n / 8 + 4` roundings per term).
#[inline(always)]
fn lanes_sum(n: usize, mut f: impl FnMut(usize) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let nv = n & !7;
    let mut j = 0;
    while j < nv {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(j + l);
        }
        j += 8;
    }
    for (l, a) in acc.iter_mut().enumerate().take(n - nv) {
        *a += f(nv + l);
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// Maximum of `x` (`-inf` when empty) and whether `x` holds a NaN; eight lanes.
#[inline(always)]
fn lanes_max(x: &[f32]) -> (f32, bool) {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut nan = [false; 8];
    let mut ch = x.chunks_exact(8);
    for c in &mut ch {
        for l in 0..8 {
            let v = c[l];
            nan[l] |= v.is_nan();
            acc[l] = if v > acc[l] { v } else { acc[l] };
        }
    }
    for (l, &v) in ch.remainder().iter().enumerate() {
        nan[l] |= v.is_nan();
        acc[l] = if v > acc[l] { v } else { acc[l] };
    }
    let mx = |a: f32, b: f32| if a > b { a } else { b };
    let m = mx(
        mx(mx(acc[0], acc[4]), mx(acc[2], acc[6])),
        mx(mx(acc[1], acc[5]), mx(acc[3], acc[7])),
    );
    (m, nan.iter().any(|&b| b))
}

/// `s'` of a confident row (`S < 1.5`, so exactly one exponential equals 1: the maximum,
/// `exp(0)`): the sum of the entries below 1, in two sets of eight `f32` lanes (column `j` in
/// set `(j / 8) mod 2`, lane `j mod 8`: two independent chains), the sets added lane by lane,
/// then the lanes as [`lanes_sum`]'s tree. Summed as one `f32` value with the 1, `S = 1 + s'`
/// would keep only `2^-24 / s'` of `s'` and its `ln S`, the row's loss, that relative error
/// (1.5e-3 at `s' = 3.8e-5`).
#[inline(always)]
fn lanes_sum_below_one(x: &[f32]) -> f32 {
    let n = x.len();
    let mut acc = [[0.0f32; 8]; 2];
    let mut j = 0;
    while j < n {
        let a = &mut acc[(j / 8) % 2];
        for l in 0..(n - j).min(8) {
            let v = x[j + l];
            a[l] += if v < 1.0 { v } else { 0.0 };
        }
        j += 8;
    }
    let a: [f32; 8] = std::array::from_fn(|l| acc[0][l] + acc[1][l]);
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `ln(n0 + s)` for an integer `n0 >= 1` and finite `s >= 0`, or `n0 = 0` and `s >= sqrt(2)` (the short path's `S = n0 + s'`;
/// any input gives some value, never a panic): `n0 + s = 2^k t` with `t` in `[sqrt(1/2),
/// sqrt(2))`, `ln t = 2 atanh(f)`, `f = (t - 1) / (t + 1)`, `|f| <= 0.1716`, by its series to
/// `f^11` (truncation below `2e-11` absolute, and relative `5e-11`). When `k = 0` (so `n0 = 1`
/// and `t = 1 + s`) `t - 1` is taken as `s` itself, not the rounded `(1 + s) - 1`: `ln(1 + s)`
/// keeps the relative accuracy of `s` however small `s` is (the loss of a confident row).
#[inline(always)]
pub(super) fn ln_split(n0: f64, s: f64) -> f64 {
    // Branch-free reduction (as musl's `log`): offset the bits so that the exponent field
    // counts from `sqrt(1/2)`, then rebuild `t` from the mantissa around `sqrt(1/2)`.
    const SQRT_HALF_BITS: u64 = 0x3fe6_a09e_667f_3bcd;
    let hi = n0 + s;
    let ix = hi
        .to_bits()
        .wrapping_add(0x3ff0_0000_0000_0000 - SQRT_HALF_BITS);
    // `k = (ix >> 52) - 1023` as `f64` through the `2^52` trick (integer ops only).
    let k = f64::from_bits((ix >> 52) | 0x4330_0000_0000_0000) - (4_503_599_627_370_496.0 + 1023.0);
    let t = f64::from_bits((ix & 0x000f_ffff_ffff_ffff) + SQRT_HALF_BITS);
    // `k = 0` means `hi < sqrt(2)`, so `n0 = 1` and `t = hi = 1 + s`: `t - 1` is `s`.
    let num = if k == 0.0 { s } else { t - 1.0 };
    let f = num / (t + 1.0);
    let f2 = f * f;
    let p = 1.0
        + f2 * (1.0 / 3.0
            + f2 * (1.0 / 5.0 + f2 * (1.0 / 7.0 + f2 * (1.0 / 9.0 + f2 * (1.0 / 11.0)))));
    k * std::f64::consts::LN_2 + 2.0 * f * p
}

/// `w_j q'_j` of column `j` (1 for plain rows).
#[inline(always)]
fn wq<K: KindMarker>(j: usize, w: &[f32], q: &[f32], qa: f32, qb: f32) -> f32 {
    match K::KIND {
        Kind::Plain => 1.0,
        Kind::Weighted => w[j],
        Kind::Probs => qa.mul_add(q[j], qb),
        _ => qa.mul_add(q[j], qb) * w[j],
    }
}

/// The rows `first..first + losses.len()` held by `bufs` (whole rows), batch by batch.
pub(super) fn process_rows_short(
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

/// Per-row state between the batch's steps.
#[derive(Clone, Copy, Default)]
struct RowState {
    m: f32,
    z: f32,
    wq: f32,
    zy: f32,
    /// The hard target (0 for probability targets).
    y: usize,
    /// How step 4 writes the row's gradient.
    mode: GradMode,
    /// `S` and `A` (for the slow gradient).
    ssum: f64,
    ra: f64,
    /// The gradient's `a e_j - b B_j` constants and the target's entry.
    a: f32,
    b: f32,
    gy: f32,
}

/// How step 4 writes a row's gradient.
#[derive(Clone, Copy, Default)]
enum GradMode {
    /// `a e_j - b B_j`, one FMA per element.
    #[default]
    Fma,
    /// All zeros (an ignored row).
    Zero,
    /// All NaN (a NaN row).
    Nan,
    /// The reference's formula per element (non-finite upstream).
    Slow,
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
    let per = (BATCH / c).max(1);
    let (qa, qb) = (plan.qa, plan.qb);
    let w: &[f32] = if K::WEIGHTED { &plan.w32[..c] } else { &[] };
    let eps = plan.eps;
    let eps_c = eps / c as f64;
    let mut e = vec![0.0f32; per * c];
    let mut st = vec![RowState::default(); per];
    let has_grad = bufs.has_grad();
    let (mut ssum_v, mut ln_v) = (vec![0.0f64; per], vec![0.0f64; per]);
    let (mut inv_v, mut n0_v, mut s1_v) = (vec![0.0f64; per], vec![0.0f64; per], vec![0.0f64; per]);
    let mut r0 = 0;
    while r0 < rows {
        let nb = per.min(rows - r0);
        let range = r0 * c..(r0 + nb) * c;
        // Step 1: maxima, shifted logits, smoothing sums (all reads of the batch's logits).
        {
            let x: &[f32] = match &bufs {
                Bufs::Split(x, _) | Bufs::ReadOnly(x) => &x[range.clone()],
                Bufs::InPlace(g) => &g[range.clone()],
            };
            for (r, ((s, xr), dr)) in st[..nb]
                .iter_mut()
                .zip(x.chunks_exact(c))
                .zip(e.chunks_exact_mut(c))
                .enumerate()
            {
                let (mut m, nan) = row_max::<AVX>(xr);
                if nan {
                    m = f32::NAN;
                }
                let mr = mref(m);
                let q: &[f32] = match plan.probs {
                    Some(q) if K::PROBS => {
                        let i = first + r0 + r;
                        &q[i * c..(i + 1) * c]
                    }
                    _ => &[],
                };
                let (z, wqs) = row_shift::<K, AVX>(xr, dr, mr, w, q, qa, qb);
                *s = RowState {
                    m,
                    z,
                    wq: wqs,
                    ..RowState::default()
                };
            }
            if let Some(t) = plan.classes_t {
                for (r, s) in st[..nb].iter_mut().enumerate() {
                    let y = t[first + r0 + r];
                    if plan.ignore != Some(y) {
                        s.y = y as usize;
                        s.zy = x[r * c + s.y];
                    }
                }
            }
        }
        // Step 2: one `exp` over the batch, in place.
        exp_batch::<AVX>(&mut e[..nb * c]);
        // Step 3: per row, `S` and `log S` (a branch-free loop over the batch), the loss and
        // the gradient's constants (independent rows).
        for ((n0, s1), er) in n0_v[..nb]
            .iter_mut()
            .zip(&mut s1_v[..nb])
            .zip(e.chunks_exact(c))
        {
            // A confident row (`S < 1.5`: one maximum, `S = 1 + s'`, `s' < 1/2`) is summed
            // again with the entries equal to 1 counted apart; other rows keep `S` as summed
            // (`n0 = 0`; `S >= 1.5`, so its rounding is relative to `ln S` too). Counting apart
            // in every row measured 6 % slower at 128x10.
            let t = row_sum::<AVX>(er);
            (*n0, *s1) = if t < 1.5 && t > 0.0 {
                (1.0, f64::from(row_sum_below_one::<AVX>(er)))
            } else {
                (0.0, f64::from(t))
            };
        }
        for ((((lv, iv), sv), &n0), &s1) in ln_v[..nb]
            .iter_mut()
            .zip(&mut inv_v[..nb])
            .zip(&mut ssum_v[..nb])
            .zip(&n0_v[..nb])
            .zip(&s1_v[..nb])
        {
            // `S = n0 + s'`, and `ln S` from the two parts.
            *sv = n0 + s1;
            *lv = ln_split(n0, s1);
            *iv = 1.0 / *sv;
        }
        for (r, s) in st[..nb].iter_mut().enumerate() {
            let i = first + r0 + r;
            let lr = &mut losses[r0 + r];
            let y = match plan.classes_t {
                Some(t) => {
                    let y = t[i];
                    if plan.ignore == Some(y) {
                        *lr = 0.0;
                        s.mode = GradMode::Zero;
                        continue;
                    }
                    Some(y as usize)
                }
                None => None,
            };
            let er = &e[r * c..(r + 1) * c];
            let ssum = ssum_v[r];
            let (z, wq_sum) = (f64::from(s.z), f64::from(s.wq));
            // The long path's combination for one chunk (`M = m`, chunk factor 1).
            if !(s.m.is_finite() && ssum.is_finite()) {
                *lr = f64::NAN;
                s.mode = GradMode::Nan;
                continue;
            }
            let l = ln_v[r];
            let mm = f64::from(s.m);
            let (loss, ra) = match y {
                Some(y) => {
                    let wy = plan.weight(y);
                    let nll = wy * (l - (f64::from(s.zy) - mm));
                    let loss = if eps == 0.0 {
                        nll
                    } else {
                        (1.0 - eps) * nll + eps_c * (plan.w_sum * l - z)
                    };
                    (loss, (1.0 - eps) * wy + eps_c * plan.w_sum)
                }
                None => (wq_sum * l - z, wq_sum),
            };
            *lr = loss;
            if !has_grad {
                continue;
            }
            let ui = us(i);
            // A non-finite upstream or target mass (a `+-inf` target probability, TOL-4): the
            // reference's formula per element.
            if !(ui.is_finite() && ra.is_finite()) {
                s.mode = GradMode::Slow;
                s.ssum = ssum;
                s.ra = ra;
                continue;
            }
            let inv = inv_v[r];
            s.mode = GradMode::Fma;
            s.a = (ui * ra * inv) as f32;
            s.b = if !K::PROBS {
                (ui * eps_c) as f32
            } else {
                ui as f32
            };
            if let Some(y) = y {
                // The target entry from `f64`: `A p_y - w_y (1 - eps + eps / C)`.
                let wy = plan.weight(y);
                let p = f64::from(er[y]) * inv;
                let g = (1.0 - eps) * wy * p_minus_1(p, er[y], n0_v[r], s1_v[r], inv)
                    + eps_c * (plan.w_sum * p - wy);
                s.gy = (ui * g) as f32;
            }
        }
        // Step 4: the gradient.
        let out: &mut [f32] = match &mut bufs {
            Bufs::Split(_, g) | Bufs::InPlace(g) => &mut g[range.clone()],
            Bufs::ReadOnly(_) => {
                r0 += nb;
                continue;
            }
        };
        for (r, ((s, o), er)) in st[..nb]
            .iter()
            .zip(out.chunks_exact_mut(c))
            .zip(e.chunks_exact(c))
            .enumerate()
        {
            let i = first + r0 + r;
            match s.mode {
                GradMode::Fma => {}
                GradMode::Zero => {
                    o.fill(0.0);
                    continue;
                }
                GradMode::Nan => {
                    o.fill(f32::NAN);
                    continue;
                }
                GradMode::Slow => {
                    let y = plan.target(i);
                    slow_row(plan, i, o, er, s.ssum, s.ra, y, us(i));
                    continue;
                }
            }
            let (a, b) = (s.a, s.b);
            match K::KIND {
                Kind::Plain | Kind::Weighted => grad_row::<K, AVX>(o, er, w, a, b),
                _ => {
                    let q = &plan.probs.unwrap_or(&[])[i * c..(i + 1) * c];
                    for (j, (g, &v)) in o.iter_mut().zip(er).enumerate() {
                        *g = (-b).mul_add(wq::<K>(j, w, q, qa, qb), a * v);
                    }
                }
            }
            if !K::PROBS {
                o[s.y] = s.gy;
            }
        }
        r0 += nb;
    }
}

/// `p_y - 1` of a hard target with `p = e_y / S`: `-s' / S` exactly when `e_y = 1` is the
/// row's single maximum (`n0 = 1`, `S = 1 + s'`), not the rounded `p - 1` (a confident row's
/// target gradient is as relatively accurate as its loss). Shared with the long path.
#[inline(always)]
pub(super) fn p_minus_1(p: f64, ey: f32, n0: f64, s1: f64, inv: f64) -> f64 {
    if ey == 1.0 && n0 == 1.0 {
        -s1 * inv
    } else {
        p - 1.0
    }
}

/// [`lanes_max`], vectorised when `AVX` (same result).
#[inline(always)]
fn row_max<const AVX: bool>(x: &[f32]) -> (f32, bool) {
    #[cfg(target_arch = "x86_64")]
    if AVX {
        // SAFETY: `AVX` is only true inside [`avx2`] (AVX2 + FMA checked by its callers).
        return unsafe { short_avx2::row_max(x) };
    }
    lanes_max(x)
}

/// Sum of `x` as [`lanes_sum`], vectorised when `AVX` (same result).
#[inline(always)]
fn row_sum<const AVX: bool>(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if AVX {
        // SAFETY: as in [`row_max`].
        return unsafe { short_avx2::row_sum(x) };
    }
    lanes_sum(x.len(), |j| x[j])
}

/// `s'` of `x` as [`lanes_sum_below_one`], vectorised when `AVX` (same result).
#[inline(always)]
fn row_sum_below_one<const AVX: bool>(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if AVX {
        // SAFETY: as in [`row_max`].
        return unsafe { short_avx2::row_sum_below_one(x) };
    }
    lanes_sum_below_one(x)
}

/// `d_j = x_j - mr` into `d`; returns `(sum w_j q'_j d_j, sum w_j q'_j)` as [`lanes_sum`]
/// (the second 0 for hard targets), vectorised when `AVX` (same result).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row_shift<K: KindMarker, const AVX: bool>(
    x: &[f32],
    d: &mut [f32],
    mr: f32,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if AVX {
        // SAFETY: as in [`row_max`].
        return unsafe { short_avx2::row_shift::<K>(x, d, mr, w, q, qa, qb) };
    }
    let c = x.len();
    for (o, &v) in d.iter_mut().zip(x) {
        *o = v - mr;
    }
    let d = &*d;
    let z = if matches!(K::KIND, Kind::Plain) {
        lanes_sum(c, |j| d[j])
    } else {
        // Terms with `d_j = 0` (the maximum) are 0, also for a non-finite `w_j q'_j` (TOL-4:
        // an infinite target probability on the maximum gives the reference's `+inf`, not the
        // `inf * 0 = NaN` of the product); plain and weighted terms are finite.
        lanes_sum(c, |j| {
            let t = wq::<K>(j, w, q, qa, qb) * d[j];
            if K::PROBS && d[j] == 0.0 { 0.0 } else { t }
        })
    };
    let wqs = if K::PROBS {
        lanes_sum(c, |j| wq::<K>(j, w, q, qa, qb))
    } else {
        0.0
    };
    (z, wqs)
}

/// `o_j = a e_j - b` (plain) or `a e_j - b w_j` (weighted), vectorised when `AVX` (same
/// result).
#[inline(always)]
fn grad_row<K: KindMarker, const AVX: bool>(o: &mut [f32], er: &[f32], w: &[f32], a: f32, b: f32) {
    #[cfg(target_arch = "x86_64")]
    if AVX {
        // SAFETY: as in [`row_max`].
        unsafe { short_avx2::grad_row::<K>(o, er, w, a, b) };
        return;
    }
    if matches!(K::KIND, Kind::Plain) {
        for (g, &v) in o.iter_mut().zip(er) {
            *g = a.mul_add(v, -b);
        }
    } else {
        for ((g, &v), &wj) in o.iter_mut().zip(er).zip(w) {
            *g = (-b).mul_add(wj, a * v);
        }
    }
}

/// `x = exp(x)` for `x <= 0` (NaN passes), vectorised when `AVX`.
#[inline(always)]
fn exp_batch<const AVX: bool>(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if AVX {
        use crate::math::avx2::exp8_nonpos;
        use crate::simd::avx2::{load, store};
        let nv = x.len() & !7;
        let mut j = 0;
        while j < nv {
            // SAFETY: `AVX` is only true inside [`avx2`], whose callers checked that AVX2 and
            // FMA are available.
            unsafe { store(x, j, exp8_nonpos(load(x, j))) };
            j += 8;
        }
        for v in &mut x[nv..] {
            *v = exp_nonpos_f32(*v);
        }
        return;
    }
    for v in x.iter_mut() {
        *v = exp_nonpos_f32(*v);
    }
}

/// The degenerate-row gradient (non-finite upstream): the reference's formula per element.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn slow_row(
    plan: &Plan<'_>,
    i: usize,
    o: &mut [f32],
    er: &[f32],
    s: f64,
    a: f64,
    y: Option<usize>,
    us: f64,
) {
    let c = plan.classes;
    let eps = plan.eps;
    for (j, g) in o.iter_mut().enumerate() {
        let p = f64::from(er[j]) / s;
        let v = match y {
            Some(y) => {
                let wy = plan.weight(y);
                let hard = wy * (p - if j == y { 1.0 } else { 0.0 });
                let soft = plan.w_sum * p - plan.weight(j);
                (1.0 - eps) * hard + eps / c as f64 * soft
            }
            None => {
                let q = f64::from(plan.probs.map_or(0.0, |q| q[i * c + j]));
                let qs = (1.0 - eps) * q + eps / c as f64;
                p * a - plan.weight(j) * qs
            }
        };
        *g = (us * v) as f32;
    }
}
