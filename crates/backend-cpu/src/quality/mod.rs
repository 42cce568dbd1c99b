//! Varifocal and quality focal losses on the CPU (`QUAL-*`): branchless `f32` element math
//! (`math.rs`) with the polynomial `exp` / `ln` of [`crate::math`]; the varifocal loss runs on
//! the chunked element-wise kernel of the binary losses (`elementwise.rs`), the quality focal
//! loss row by row; both in fixed blocks by `blocks.rs` (bit-identical for any thread count).

use crate::blocks::{Up, accumulate, drive, lanes_sum};
use crate::elementwise::{EW_BLOCK, ew_dispatch};
use crate::{CpuBackend, loss_of, split_io};
use math::{power_of, qfl_el, vfl_el};
use smoothloss_core::backend::QualityOps;
use smoothloss_core::{
    Call, Loss, Parts, QflTargets, QualityFocal, Reduction, Result, Upstream, Varifocal,
    VarifocalTargets, VarifocalWeight,
};

pub(crate) mod math;

ew_dispatch!(
    vfl_block,
    vfl_avx2,
    vfl_plain,
    [const K: u8, const P: u8],
    [K, P],
    (alpha: f32, gamma: f32),
    |x, s, l| vfl_el::<K, P>(x, s, l, alpha, gamma)
);

/// `(reduction, upstream)` for the block runner: a `mean` over a divisor other than the item
/// count (`avg_factor`) runs as a `sum` with the scalar upstream divided by it.
fn mean_as_sum<'a>(
    reduction: Reduction,
    up: Upstream<'a>,
    den: Option<f64>,
) -> (Reduction, Upstream<'a>) {
    match (reduction, den, up) {
        (Reduction::Mean, Some(d), Upstream::Scalar(s)) => {
            (Reduction::Sum, Upstream::Scalar(s / d))
        }
        _ => (reduction, up),
    }
}

/// The varifocal loss over validated buffers of `n` elements.
fn varifocal(
    backend: &CpuBackend,
    cfg: &Varifocal,
    logits: &[f32],
    t: VarifocalTargets<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    let n = logits.len();
    let (alpha, gamma) = (cfg.alpha as f32, cfg.gamma as f32);
    let g = grad.is_some();
    let level = backend.simd_level();
    let power = power_of(cfg.gamma);
    let (red, up) = mean_as_sum(cfg.reduction, upstream, cfg.avg_factor);
    let mut v = drive(backend, n, EW_BLOCK, 1, red, up, grad, |r, up, gr, l| {
        let (x, s) = (&logits[r.clone()], &t.scores[r.clone()]);
        macro_rules! go {
            ($k:expr, $p:expr) => {
                if g {
                    vfl_block::<true, $k, $p>(
                        level, x, s, r.start, t.labels, up, gr, l, alpha, gamma,
                    )
                } else {
                    vfl_block::<false, $k, $p>(
                        level, x, s, r.start, t.labels, up, gr, l, alpha, gamma,
                    )
                }
            };
        }
        macro_rules! by_power {
            ($k:expr) => {
                match power {
                    0 => go!($k, 0),
                    2 => go!($k, 2),
                    _ => go!($k, 1),
                }
            };
        }
        // The one run-time to type dispatch of the weight and the power.
        match cfg.weight {
            VarifocalWeight::Ultralytics => by_power!(0),
            VarifocalWeight::MmdetIouWeighted => by_power!(1),
            VarifocalWeight::Mmdet => by_power!(2),
        }
    });
    if let (Reduction::Mean, Some(d)) = (cfg.reduction, cfg.avg_factor) {
        v[0] /= d;
    }
    v
}

/// Logits per chunk of the quality focal row loop (the element math runs vectorised over a
/// chunk into stack buffers; the sums follow in eight `f64` lanes).
const QFL_CH: usize = 64;

/// What a quality focal block reads.
struct QflArgs<'a> {
    logits: &'a [f32],
    labels: &'a [i64],
    scores: &'a [f32],
    classes: usize,
    beta: f32,
}

/// Rows `r` of the quality focal loss (`QUAL-5`, `QUAL-6`): per row, chunks of `QFL_CH`
/// elements through [`qfl_el`] into buffers (vectorised: the label's column is a comparison),
/// the gradient `f * d` stored, the losses summed in eight `f64` lanes of a fixed order
/// (`blocks::accumulate`), so a row's bits do not depend on the block or thread.
#[inline(always)]
fn qfl_rows<const TWO: bool>(
    a: &QflArgs<'_>,
    r: std::ops::Range<usize>,
    up: Up<'_>,
    mut g: Option<&mut [f32]>,
    mut l: Option<&mut [f64]>,
) -> f64 {
    let classes = a.classes;
    let mut total = 0.0;
    let mut lv = [0.0f32; QFL_CH];
    let mut dv = [0.0f32; QFL_CH];
    for (k, i) in r.enumerate() {
        let f = match up {
            Up::Scalar(s) => s,
            Up::Per(u, s) => (u[k] * s) as f32,
        };
        let (label, s) = (a.labels[i], a.scores[i]);
        let z = &a.logits[i * classes..(i + 1) * classes];
        let mut acc = [0.0f64; 8];
        let mut gr = g
            .as_deref_mut()
            .map(|g| &mut g[k * classes..(k + 1) * classes]);
        for (c, zc) in z.chunks(QFL_CH).enumerate() {
            let j0 = (c * QFL_CH) as i64;
            let n = zc.len();
            for (j, &x) in zc.iter().enumerate() {
                let (v, d) = qfl_el(x, label == j0 + j as i64, s, a.beta, TWO);
                lv[j] = v;
                dv[j] = d;
            }
            accumulate(&mut acc, &lv[..n], n);
            if let Some(gr) = gr.as_deref_mut() {
                for (gj, &d) in gr[c * QFL_CH..c * QFL_CH + n].iter_mut().zip(&dv) {
                    *gj = f * d;
                }
            }
        }
        let row = lanes_sum(&acc);
        if let Some(l) = l.as_deref_mut() {
            l[k] = row;
        }
        total += row;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn qfl_avx2<const TWO: bool>(
    a: &QflArgs<'_>,
    r: std::ops::Range<usize>,
    up: Up<'_>,
    g: Option<&mut [f32]>,
    l: Option<&mut [f64]>,
) -> f64 {
    qfl_rows::<TWO>(a, r, up, g, l)
}

fn qfl_plain<const TWO: bool>(
    a: &QflArgs<'_>,
    r: std::ops::Range<usize>,
    up: Up<'_>,
    g: Option<&mut [f32]>,
    l: Option<&mut [f64]>,
) -> f64 {
    qfl_rows::<TWO>(a, r, up, g, l)
}

/// [`qfl_rows`] built for the backend's level (AVX2 + FMA or portable; the same bits: the
/// element math uses separately rounded operations only).
fn qfl_dispatch<const TWO: bool>(
    level: crate::SimdLevel,
    a: &QflArgs<'_>,
    r: std::ops::Range<usize>,
    up: Up<'_>,
    g: Option<&mut [f32]>,
    l: Option<&mut [f64]>,
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if level.avx2() {
        // SAFETY: `level.avx2()` only if the CPU has AVX2 and FMA
        // (`CpuBackend::with_simd_level` falls back to scalar otherwise).
        return unsafe { qfl_avx2::<TWO>(a, r, up, g, l) };
    }
    let _ = level;
    qfl_plain::<TWO>(a, r, up, g, l)
}

/// The quality focal loss over validated buffers of `rows x classes` logits.
#[allow(clippy::too_many_arguments)]
fn quality_focal(
    backend: &CpuBackend,
    cfg: &QualityFocal,
    rows: usize,
    classes: usize,
    logits: &[f32],
    t: QflTargets<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
) -> Vec<f64> {
    let a = QflArgs {
        logits,
        labels: t.labels,
        scores: t.scores,
        classes,
        beta: cfg.beta as f32,
    };
    let two = cfg.beta == 2.0;
    let level = backend.simd_level();
    let block = (EW_BLOCK / classes).max(1);
    let (red, up) = mean_as_sum(cfg.reduction, upstream, cfg.avg_factor);
    let mut v = drive(
        backend,
        rows,
        block,
        classes,
        red,
        up,
        grad,
        |r, up: Up<'_>, g, l| {
            if two {
                qfl_dispatch::<true>(level, &a, r, up, g, l)
            } else {
                qfl_dispatch::<false>(level, &a, r, up, g, l)
            }
        },
    );
    if let (Reduction::Mean, Some(d)) = (cfg.reduction, cfg.avg_factor) {
        v[0] /= d;
    }
    v
}

impl QualityOps<f32> for CpuBackend {
    fn run_varifocal(
        &self,
        call: Call<'_, Varifocal, f32, VarifocalTargets<'_, f32>>,
    ) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let (input, grad) = split_io(io);
        let v = varifocal(self, plan.cfg, &input, with, upstream, grad);
        Ok(loss_of(plan.reduction(), v))
    }

    fn run_quality_focal(
        &self,
        call: Call<'_, QualityFocal, f32, QflTargets<'_, f32>>,
    ) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let (input, grad) = split_io(io);
        let v = quality_focal(
            self, plan.cfg, plan.items, plan.width, &input, with, upstream, grad,
        );
        Ok(loss_of(plan.reduction(), v))
    }
}
