//! Fused linear cross-entropy (`LCE-*`) on `f32` data, without the `[N, V]` logits.
//!
//! # Algorithm (`LCE-4`)
//!
//! The rows are cut into chunks of the plan's `chunk_rows` (Liger-Kernel's row chunks rather
//! than Cut Cross-Entropy's vocabulary blocks: the fused cross-entropy kernel needs whole rows,
//! and a row chunk's logits are computed by one GEMM and used once, where vocabulary blocks
//! need the logits twice, once for the log-sum-exp and again for the gradient). Per chunk, in
//! chunk order:
//!
//! 1. `z_c = h_c W^T (+ b)`, `[rows_c, V]`, one GEMM (the bias written first, then added to the
//!    product as the reference does);
//! 2. the CPU cross-entropy kernel in place on `z_c` with the chunk's configuration
//!    `LcePlan::chunk_ce` (the call's options at reduction `none`, no given denominator, the
//!    chunk's slice of the row weights; softcap and z-loss as given) and the upstream `u / D`
//!    (`mean`, `D` = `LcePlan::denominator` of the whole batch, the given one or the weighted
//!    count, computed before chunking: `LCE-2`), `u` (`sum`) or the chunk's per-row upstream (`none`): `z_c`
//!    becomes `G_c = d loss / d z_c`, and the chunk's per-row losses are kept;
//! 3. `dH_c = G_c W` (written), `dW += G_c^T h_c` (accumulated in the `f32` output, chunk after
//!    chunk), `db += sum_i G_c[i]` (in an `f64` accumulator, rounded once at the end).
//!
//! The per-row losses are reduced in row order as the reference does. Memory beyond the inputs
//! and gradients: the chunk's logits (`chunk_rows * V * 4` bytes) and `8 V` bytes for the bias
//! accumulator. Every GEMM is `matrixmultiply`'s `sgemm` over fixed output blocks (`gemm.rs`)
//! and the chunking depends on the shapes only, so the results are bit-identical for any
//! thread count.
//!
//! A `mean` whose denominator is 0 (every kept row of weight 0), or an upstream gradient that
//! the scaled `f32` cross-entropy cannot take (not finite, or beyond `f32` once divided by the
//! denominator), runs through the `f64` reference (`TOL-4`), as the cross-entropy does.

mod chunk_gemm;
mod gemm;

use crate::CpuBackend;
use gemm::{Out, Split, View, gemm};
use rayon::prelude::*;
use smoothloss_core::{
    CeOutput, CeRowOutputs, CeTargets, Input, LceCall, Linear, LinearCrossEntropyOps, Loss,
    LossError, Losses, Reduction, ReferenceBackend, Result, Upstream,
};

/// Output columns per block of the logits GEMM and rows per block of the `d weight` GEMM.
const VOCAB_BLOCK: usize = 1024;
/// Output columns per block of the `d hidden` GEMM.
const HIDDEN_BLOCK: usize = 256;

impl LinearCrossEntropyOps<f32> for CpuBackend {
    fn run_linear_cross_entropy(&self, call: LceCall<'_, f32>) -> Result<Loss> {
        linear_ce(self, call, None).map(|o| o.loss)
    }

    fn run_linear_cross_entropy_rows(
        &self,
        call: LceCall<'_, f32>,
        rows: CeRowOutputs<'_, f32>,
    ) -> Result<CeOutput> {
        linear_ce(self, call, Some(rows))
    }
}

/// The linear cross-entropy on the CPU; with `rows`, the per-row outputs of each chunk's
/// cross-entropy (`CE-14`) and the z-loss apart (`CE-15`), else the loss alone (the z-loss
/// part left 0).
fn linear_ce(
    this: &CpuBackend,
    call: LceCall<'_, f32>,
    mut rows: Option<CeRowOutputs<'_, f32>>,
) -> Result<CeOutput> {
    let (plan, input, targets) = call.into_parts();
    let ce = &plan.cfg.ce;
    let (n, v, h) = (plan.rows(), plan.vocab(), plan.hidden);
    // LCE-2: the mean's denominator over the whole batch, before any chunk (the given one,
    // CE-13, else the class- and row-weighted count).
    let denom = plan.denominator(&targets);
    let scale = if ce.reduction == Reduction::Mean {
        1.0 / denom
    } else {
        1.0
    };
    let scaled = match input.upstream {
        Upstream::Scalar(u) => Some(u * scale),
        Upstream::PerElement(_) => None,
    };
    let degenerate = !scale.is_finite()
        || scaled.is_some_and(|s| !(s.is_finite() && s.abs() <= f64::from(f32::MAX)));
    if degenerate {
        return through_reference(plan.cfg, input, targets, rows);
    }
    let cr = plan.chunk_rows;
    let mut z = alloc(cr, v, "logits chunk")?;
    let mut db_acc = if plan.bias_grad {
        vec![0.0f64; v]
    } else {
        Vec::new()
    };
    let Linear {
        hidden,
        weight,
        bias,
        grads,
        upstream,
        ..
    } = input;
    let mut grads = grads;
    if let Some(g) = grads.as_mut() {
        g.weight.fill(0.0);
    }
    let w = View::rows(weight, v, h);
    let mut losses = Vec::with_capacity(n);
    let mut z_losses = Vec::with_capacity(if rows.is_some() { n } else { 0 });
    for r in plan.chunks() {
        let nc = r.len();
        let zc = &mut z[..nc * v];
        let hc = View::rows(&hidden[r.start * h..r.end * h], nc, h);
        // LCE-1: z_c = h_c W^T + b.
        let beta = match bias {
            Some(b) => {
                zc.chunks_exact_mut(v)
                    .for_each(|row| row.copy_from_slice(b));
                1.0
            }
            None => 0.0,
        };
        let out = Out {
            data: zc,
            rows: nc,
            cols: v,
            ld: v,
        };
        gemm(this, hc, w.t(), out, beta, Split::Cols(VOCAB_BLOCK));
        // LCE-2: the cross-entropy in place (z_c becomes G_c).
        let up = match (upstream, scaled) {
            (Upstream::PerElement(u), _) => Upstream::PerElement(&u[r.clone()]),
            (_, Some(s)) => Upstream::Scalar(s),
            (Upstream::Scalar(u), None) => Upstream::Scalar(u),
        };
        let t = match targets {
            CeTargets::Classes(t) => CeTargets::Classes(&t[r.clone()]),
            CeTargets::Probs(p) => CeTargets::Probs(&p[r.start * v..r.end * v]),
        };
        let zc = &mut z[..nc * v];
        let chunk = match grads {
            Some(_) => Input::in_place(zc).shaped(nc, v),
            None => Input::matrix(zc, nc, v),
        };
        let chunk_ce = plan.chunk_ce(r.clone());
        match rows.as_mut() {
            Some(o) => {
                let chunk_rows = CeRowOutputs {
                    lse: o.lse.as_deref_mut().map(|l| &mut l[r.clone()]),
                    hit: o.hit.as_deref_mut().map(|x| &mut x[r.clone()]),
                };
                let out =
                    this.cross_entropy_rows(&chunk_ce, chunk.with_upstream(up), t, chunk_rows)?;
                losses.extend(out.loss.into_values());
                z_losses.extend(out.z_loss.into_values());
            }
            None => losses.extend(
                this.cross_entropy(&chunk_ce, chunk.with_upstream(up), t)?
                    .into_values(),
            ),
        }
        // LCE-3: the backward GEMMs of the chunk.
        if let Some(g) = grads.as_mut() {
            let gc = View::rows(&z[..nc * v], nc, v);
            let dh = Out {
                data: &mut g.hidden[r.start * h..r.end * h],
                rows: nc,
                cols: h,
                ld: h,
            };
            gemm(this, gc, w, dh, 0.0, Split::Cols(HIDDEN_BLOCK));
            let dw = Out {
                data: &mut *g.weight,
                rows: v,
                cols: h,
                ld: h,
            };
            gemm(this, gc.t(), hc, dw, 1.0, Split::Rows(VOCAB_BLOCK));
            if plan.bias_grad {
                column_sums(this, &z[..nc * v], v, &mut db_acc);
            }
        }
    }
    if let Some(db) = grads.and_then(|g| g.bias) {
        for (d, s) in db.iter_mut().zip(&db_acc) {
            *d = *s as f32;
        }
    }
    let reduce = |l: Vec<f64>| match ce.reduction {
        Reduction::None => Loss::PerItem(l),
        Reduction::Sum => Loss::Reduced(l.iter().sum()),
        Reduction::Mean => Loss::Reduced(l.iter().sum::<f64>() / denom),
    };
    let z_loss = if rows.is_some() {
        reduce(z_losses)
    } else {
        Loss::Reduced(0.0)
    };
    Ok(CeOutput {
        loss: reduce(losses),
        z_loss,
    })
}

/// A zeroed `rows x cols` buffer, or [`LossError::TooLarge`] when it cannot be allocated.
fn alloc(rows: usize, cols: usize, what: &'static str) -> Result<Vec<f32>> {
    let len = rows.checked_mul(cols).ok_or(LossError::TooLarge {
        what,
        a: rows,
        b: cols,
    })?;
    let mut z = Vec::new();
    z.try_reserve_exact(len).map_err(|_| LossError::TooLarge {
        what,
        a: rows,
        b: cols,
    })?;
    z.resize(len, 0.0);
    Ok(z)
}

/// `acc[j] += sum_i g[i, j]` in row order, over fixed column blocks (deterministic).
fn column_sums(backend: &CpuBackend, g: &[f32], v: usize, acc: &mut [f64]) {
    let run = |(b, a): (usize, &mut [f64])| {
        let (c0, len) = (b * VOCAB_BLOCK, a.len());
        for row in g.chunks_exact(v) {
            for (s, &x) in a.iter_mut().zip(&row[c0..c0 + len]) {
                *s += f64::from(x);
            }
        }
    };
    if backend.threads() <= 1 {
        acc.chunks_mut(VOCAB_BLOCK).enumerate().for_each(run);
    } else {
        backend.install(|| acc.par_chunks_mut(VOCAB_BLOCK).enumerate().for_each(run));
    }
}

/// The whole call through the `f64` reference (degenerate scales, `TOL-4`).
fn through_reference(
    cfg: &smoothloss_core::LinearCrossEntropy,
    input: Linear<'_, f32>,
    targets: CeTargets<'_, f32>,
    rows: Option<CeRowOutputs<'_, f32>>,
) -> Result<CeOutput> {
    // The front door again on the same (valid) call: the reference's default body.
    ReferenceBackend.linear_cross_entropy_rows(cfg, input, targets, rows.unwrap_or_default())
}
