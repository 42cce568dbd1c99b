//! Branchless `f32` elementary functions and the chunked element-wise kernels of the regression
//! and binary losses, plus the deterministic block runner shared with the box losses.
//!
//! # Accuracy (tested against `f64` in `tests/elementwise.rs`)
//!
//! * [`exp_f32`]: relative error `<= 3e-7` for results in the normal range; results below
//!   `2^-126` are correct to within `2^-149` absolute (gradual underflow), `exp(x) = 0` for
//!   `x < -104`, `+inf` for `x > 88.73`, NaN for NaN.
//! * [`log1p_unit_f32`] (`log1p(e)` for `e` in `[0, 1]`): relative error `<= 3e-7`.
//! * [`ln_f32`] (`ln(x)` for `x > 0`, subnormals included): absolute error `<= 2e-7 * max(1,
//!   |ln x|)`.
//!
//! # Determinism
//!
//! Work is split into blocks of a fixed number of items (independent of the thread count); each
//! block sums its losses into eight `f64` lanes in a fixed order, and the block partials are
//! added in block order. Results are therefore bit-identical for any number of threads.

use crate::CpuBackend;
use crate::box_math::{CH, accumulate, lanes_sum, sel};
use rayon::prelude::*;

/// Branchless single-precision `exp(x)` (Cephes polynomial, two-step scaling for gradual
/// underflow). See the module documentation for the error bound.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: round to nearest integer.
    let xc = sel(x > 88.73, 88.73, sel(x < -104.0, -104.0, x));
    let n = (xc * LOG2E + MAGIC) - MAGIC;
    let r = xc - n * C1 - n * C2;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * z
        + r
        + 1.0;
    let ni = n as i32;
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    let y = p * s1 * s2;
    let y = sel(x > 88.73, f32::INFINITY, sel(x < -104.0, 0.0, y));
    // NaN in, NaN out (comparisons above are false for NaN; xc is NaN then, so is y).
    y
}

/// `log1p(e)` for `e` in `[0, 1]` via `2 atanh(e / (2 + e))`: accurate for tiny `e`.
#[inline(always)]
pub fn log1p_unit_f32(e: f32) -> f32 {
    let r = 1.0 / (2.0 + e);
    let s = e * r;
    let s2 = (2.0 * e) * r; // 2 s without underflow for tiny e
    let z = s * s;
    // 2 s (1 + z/3 + z^2/5 + ... + z^7/15); |z| <= 1/9.
    let p = ((((((z * (1.0 / 15.0) + 1.0 / 13.0) * z + 1.0 / 11.0) * z + 1.0 / 9.0) * z
        + 1.0 / 7.0)
        * z
        + 1.0 / 5.0)
        * z
        + 1.0 / 3.0)
        * z;
    s2 + s2 * p
}

/// Natural logarithm for `x > 0` (subnormals included); `ln 0 = -inf`, NaN for NaN or negative.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let tiny = x < f32::MIN_POSITIVE;
    let xs = sel(tiny, x * 8_388_608.0, x); // 2^23
    let bits = xs.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    m = sel(big, 0.5 * m, m);
    e += i32::from(big);
    let ef = e as f32 - sel(tiny, 23.0, 0.0);
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let p = (((z * (1.0 / 9.0) + 1.0 / 7.0) * z + 1.0 / 5.0) * z + 1.0 / 3.0) * z;
    let lm = 2.0 * s + 2.0 * s * p;
    let r = ef * LN2_LO + lm + ef * LN2_HI;
    let r = sel(x == 0.0, f32::NEG_INFINITY, r);
    let r = sel(x == f32::INFINITY, f32::INFINITY, r);
    sel(x >= 0.0, r, f32::NAN)
}

/// Items per block of the deterministic parallel split (a multiple of the chunk size).
pub(crate) const EW_BLOCK: usize = 16 * 1024;

/// Runs `f(range, grad_block, losses_block)` over fixed blocks of `block` items (grad has
/// `stride` values per item) on the backend's pool and returns the partial sums added in
/// block order.
pub(crate) fn run_blocks<F>(
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

/// Where the per-element upstream factor comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UpE<'a> {
    /// One factor for every element.
    Scalar(f32),
    /// `upstream[i]` per element (the block's slice), times `scale`.
    Per(&'a [f64], f64),
}

/// Runs an element-wise loss `f(x, y, aux) -> (loss, dloss/dx)` over one block: returns the
/// lane-ordered loss sum, writes `c * dloss/dx` into `grad` when `G`, per-element losses into
/// `losses` when given. `aux` is `aux[(first + i) % aux.len()]` (pos_weight) or 1.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn ew_block<const G: bool, Fn3>(
    x: &[f32],
    y: &[f32],
    first: usize,
    aux: Option<&[f32]>,
    up: UpE<'_>,
    mut grad: Option<&mut [f32]>,
    mut losses: Option<&mut [f64]>,
    f: Fn3,
) -> f64
where
    Fn3: Fn(f32, f32, f32) -> (f32, f32),
{
    let n = x.len();
    let mut acc = [0.0f64; 8];
    let mut c = [match up {
        UpE::Scalar(s) => s,
        UpE::Per(..) => 0.0,
    }; CH];
    let mut a = [1.0f32; CH];
    let mut ai = aux.map_or(0, |p| first % p.len());
    let mut l = [0.0f32; CH];
    let mut g = [0.0f32; CH];
    let mut off = 0;
    while off < n {
        let r = CH.min(n - off);
        let mut xb = [0.0f32; CH];
        let mut yb = [0.0f32; CH];
        xb[..r].copy_from_slice(&x[off..off + r]);
        yb[..r].copy_from_slice(&y[off..off + r]);
        if let UpE::Per(u, s) = up {
            for j in 0..r {
                c[j] = (u[off + j] * s) as f32;
            }
        }
        if let Some(pw) = aux {
            for v in a.iter_mut().take(r) {
                *v = pw[ai];
                ai += 1;
                if ai == pw.len() {
                    ai = 0;
                }
            }
        }
        for j in 0..CH {
            let (lv, gv) = f(xb[j], yb[j], a[j]);
            l[j] = lv;
            if G {
                g[j] = gv * c[j];
            }
        }
        accumulate(&mut acc, &l, r);
        if G && let Some(gr) = grad.as_deref_mut() {
            gr[off..off + r].copy_from_slice(&g[..r]);
        }
        if let Some(out) = losses.as_deref_mut() {
            for (o, v) in out[off..off + r].iter_mut().zip(&l[..r]) {
                *o = f64::from(*v);
            }
        }
        off += r;
    }
    lanes_sum(&acc)
}

/// PyTorch's sign: -1, 0 or 1 (NaN stays NaN, zero keeps its sign).
#[inline(always)]
fn sign(d: f32) -> f32 {
    sel(d > 0.0, 1.0, sel(d < 0.0, -1.0, d * 0.0))
}

/// Smooth L1 of one element: `(loss, dloss/dpred)`; `inv_beta = 1 / beta` (unused when
/// `beta == 0`).
#[inline(always)]
pub(crate) fn smooth_l1_el(p: f32, t: f32, beta: f32, inv_beta: f32) -> (f32, f32) {
    let d = p - t;
    let z = d.abs();
    let quad = z < beta;
    let loss = sel(quad, 0.5 * d * d * inv_beta, z - 0.5 * beta);
    let g = sel(quad, d * inv_beta, sign(d));
    (loss, g)
}

/// Huber of one element: `(loss, dloss/dpred)`.
#[inline(always)]
pub(crate) fn huber_el(p: f32, t: f32, delta: f32) -> (f32, f32) {
    let d = p - t;
    let z = d.abs();
    let quad = z < delta;
    let loss = sel(quad, 0.5 * d * d, delta * (z - 0.5 * delta));
    let g = sel(quad, d, delta * sign(d));
    (loss, g)
}

/// `(p, q, L)` = `(sigmoid(x), 1 - sigmoid(x), log1p(exp(-|x|)))`, each accurate.
#[inline(always)]
fn sigmoid_parts(x: f32) -> (f32, f32, f32) {
    let e = exp_f32(-x.abs());
    let r = 1.0 / (1.0 + e);
    let er = e * r;
    let pos = x >= 0.0;
    (sel(pos, r, er), sel(pos, er, r), log1p_unit_f32(e))
}

/// BCE with logits of one element with positive weight `pw` (`BIN-1`, `BIN-2`), rewritten
/// without cancellation: `loss = pw y softplus(-x) + (1 - y) softplus(x)
/// = [x >= 0 ? (1 - y) x : -pw y x] + (pw y + 1 - y) L` (a zero coefficient contributes 0),
/// `dloss/dx = p (1 - y) - pw y q`.
#[inline(always)]
pub(crate) fn bce_el(x: f32, y: f32, pw: f32) -> (f32, f32) {
    let (p, q, lg) = sigmoid_parts(x);
    // A zero coefficient gives 0 even for an infinite logit (the reference's rule).
    let (cn, cp) = (1.0 - y, pw * y);
    let lin = sel(
        x >= 0.0,
        sel(cn == 0.0, 0.0, cn * x),
        sel(cp == 0.0, 0.0, -cp * x),
    );
    let cl = cp + cn;
    let loss = lin + sel(cl == 0.0, 0.0, cl * lg);
    let d = p * (1.0 - y) - pw * y * q;
    (loss, d)
}

/// How the focal modulator `(1 - p_t)^gamma` is computed.
pub(crate) const GM_ZERO: u8 = 0;
pub(crate) const GM_ONE: u8 = 1;
pub(crate) const GM_TWO: u8 = 2;
pub(crate) const GM_GENERAL: u8 = 3;

/// Sigmoid focal loss of one element (`BIN-3`, `BIN-4`); `alpha < 0` disables the alpha
/// weighting. `GM` selects the power: gamma 0, 1, 2 or general (`exp(gamma ln(1 - p_t))`).
#[inline(always)]
pub(crate) fn focal_el<const GM: u8>(x: f32, y: f32, alpha: f32, gamma: f32) -> (f32, f32) {
    let (p, q, lg) = sigmoid_parts(x);
    let ce = sel(
        x >= 0.0,
        sel(y == 1.0, 0.0, (1.0 - y) * x),
        sel(y == 0.0, 0.0, -y * x),
    ) + lg;
    let dce = p * (1.0 - y) - y * q;
    // 1 - p_t = q y + p (1 - y), computed without cancellation.
    let one_m = q * y + p * (1.0 - y);
    let modulator = match GM {
        GM_ZERO => 1.0,
        GM_ONE => one_m,
        GM_TWO => one_m * one_m,
        _ => sel(one_m == 0.0, 0.0, exp_f32(gamma * ln_f32(one_m))),
    };
    // d(1 - p_t)/dx = -(2y - 1) p q; d(one_m^gamma) = gamma one_m^(gamma - 1) d(one_m), taken
    // as 0 where gamma = 0 or one_m = 0 (as the reference).
    let dm = -(2.0 * y - 1.0) * p * q;
    let dmod = match GM {
        GM_ZERO => 0.0,
        GM_ONE => dm,
        GM_TWO => 2.0 * one_m * dm,
        _ => sel(one_m == 0.0, 0.0, gamma * (modulator / one_m) * dm),
    };
    let mut loss = ce * modulator;
    let mut d = dce * modulator + ce * dmod;
    let at = sel(alpha >= 0.0, alpha * y + (1.0 - alpha) * (1.0 - y), 1.0);
    loss *= at;
    d *= at;
    (loss, d)
}

/// Declares a pair of block functions for one element-wise loss: an AVX2 + FMA build chosen
/// at run time and the portable build.
macro_rules! ew_dispatch {
    ($name:ident, $avx:ident, $plain:ident, [$($gen:tt)*], [$($garg:tt)*], ($($p:ident: $pt:ty),*), $f:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx<const G: bool, $($gen)*>(
            x: &[f32], y: &[f32], first: usize, aux: Option<&[f32]>, up: UpE<'_>,
            grad: Option<&mut [f32]>, losses: Option<&mut [f64]>, $($p: $pt),*
        ) -> f64 {
            ew_block::<G, _>(x, y, first, aux, up, grad, losses, $f)
        }

        #[allow(clippy::too_many_arguments)]
        fn $plain<const G: bool, $($gen)*>(
            x: &[f32], y: &[f32], first: usize, aux: Option<&[f32]>, up: UpE<'_>,
            grad: Option<&mut [f32]>, losses: Option<&mut [f64]>, $($p: $pt),*
        ) -> f64 {
            ew_block::<G, _>(x, y, first, aux, up, grad, losses, $f)
        }

        /// Runs one block, AVX2 + FMA when the CPU has them.
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name<const G: bool, $($gen)*>(
            x: &[f32], y: &[f32], first: usize, aux: Option<&[f32]>, up: UpE<'_>,
            grad: Option<&mut [f32]>, losses: Option<&mut [f64]>, $($p: $pt),*
        ) -> f64 {
            #[cfg(target_arch = "x86_64")]
            if crate::box_loss::has_avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
                return unsafe {
                    $avx::<G, $($garg)*>(x, y, first, aux, up, grad, losses, $($p),*)
                };
            }
            $plain::<G, $($garg)*>(x, y, first, aux, up, grad, losses, $($p),*)
        }
    };
}

ew_dispatch!(
    smooth_l1_block,
    smooth_l1_avx2,
    smooth_l1_plain,
    [],
    [],
    (beta: f32, inv_beta: f32),
    |p, t, _| smooth_l1_el(p, t, beta, inv_beta)
);
ew_dispatch!(
    huber_block,
    huber_avx2,
    huber_plain,
    [],
    [],
    (delta: f32),
    |p, t, _| huber_el(p, t, delta)
);
ew_dispatch!(bce_block, bce_avx2, bce_plain, [], [], (), bce_el);
ew_dispatch!(
    focal_block,
    focal_avx2,
    focal_plain,
    [const GM: u8],
    [GM],
    (alpha: f32, gamma: f32),
    |x, y, _| focal_el::<GM>(x, y, alpha, gamma)
);
