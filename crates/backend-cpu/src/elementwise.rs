//! The chunked element-wise kernel shared by the regression and binary losses: a loss
//! `f(x, y, aux) -> (loss, dloss/dx)` of one element run over one block in chunks of
//! [`CH`] elements (which the compiler vectorises), and the macro that
//! builds each loss's portable and AVX2 + FMA block functions. The per-element math of each
//! family is in `regression/math.rs` and `binary/math.rs`; the blocks are run by
//! [`crate::blocks`].

use crate::blocks::{CH, Up, accumulate, lanes_sum};

/// Items per block of the deterministic parallel split (a multiple of the chunk size).
pub(crate) const EW_BLOCK: usize = 16 * 1024;

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
    up: Up<'_>,
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
        Up::Scalar(s) => s,
        Up::Per(..) => 0.0,
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
        if let Up::Per(u, s) = up {
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

/// Declares a pair of block functions for one element-wise loss: an AVX2 + FMA build chosen
/// at run time and the portable build.
macro_rules! ew_dispatch {
    ($name:ident, $avx:ident, $plain:ident, [$($gen:tt)*], [$($garg:tt)*], ($($p:ident: $pt:ty),*), $f:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx<const G: bool, $($gen)*>(
            x: &[f32], y: &[f32], first: usize, aux: Option<&[f32]>, up: $crate::blocks::Up<'_>,
            grad: Option<&mut [f32]>, losses: Option<&mut [f64]>, $($p: $pt),*
        ) -> f64 {
            $crate::elementwise::ew_block::<G, _>(x, y, first, aux, up, grad, losses, $f)
        }

        #[allow(clippy::too_many_arguments)]
        fn $plain<const G: bool, $($gen)*>(
            x: &[f32], y: &[f32], first: usize, aux: Option<&[f32]>, up: $crate::blocks::Up<'_>,
            grad: Option<&mut [f32]>, losses: Option<&mut [f64]>, $($p: $pt),*
        ) -> f64 {
            $crate::elementwise::ew_block::<G, _>(x, y, first, aux, up, grad, losses, $f)
        }

        /// Runs one block on `level` (AVX2 + FMA or portable).
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name<const G: bool, $($gen)*>(
            level: $crate::SimdLevel, x: &[f32], y: &[f32], first: usize, aux: Option<&[f32]>, up: $crate::blocks::Up<'_>,
            grad: Option<&mut [f32]>, losses: Option<&mut [f64]>, $($p: $pt),*
        ) -> f64 {
            #[cfg(target_arch = "x86_64")]
            if level.avx2() {
                // SAFETY: `level.avx2()` only if the CPU has AVX2 and
                // FMA (`CpuBackend::with_simd_level` falls back to scalar otherwise).
                return unsafe {
                    $avx::<G, $($garg)*>(x, y, first, aux, up, grad, losses, $($p),*)
                };
            }
            let _ = level;
            $plain::<G, $($garg)*>(x, y, first, aux, up, grad, losses, $($p),*)
        }
    };
}
pub(crate) use ew_dispatch;
