//! Reference fused linear cross-entropy (`LCE-1` .. `LCE-3`): the composite
//! `cross_entropy(hidden @ weight^T + bias)` in `f64`, holding the whole `[N, V]` logits (the
//! reference is the spec, not the memory-saving algorithm).

use crate::call::{Io, Loss};
use crate::cross_entropy::{CeOutput, CeRowOutputs, CeTargets};
use crate::element::{Element, to_f64_vec};
use crate::linear_cross_entropy::{LceCall, Linear, LinearGrads};
use crate::plan::Call;

/// The gradients of the reference, in `f64`: `d hidden`, `d weight`, `d bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct LceGrads {
    /// `[N, H]`.
    pub hidden: Vec<f64>,
    /// `[V, H]`.
    pub weight: Vec<f64>,
    /// `[V]`.
    pub bias: Vec<f64>,
}

/// `LCE-1`: the logits `z = h W^T + b`, `[N, V]`, each a dot product summed in `k` order.
pub fn logits(hidden: &[f64], weight: &[f64], bias: Option<&[f64]>, h: usize) -> Vec<f64> {
    let (n, v) = (hidden.len() / h, weight.len() / h);
    let mut z = vec![0.0; n * v];
    for i in 0..n {
        let hi = &hidden[i * h..(i + 1) * h];
        for j in 0..v {
            let wj = &weight[j * h..(j + 1) * h];
            let dot: f64 = hi.iter().zip(wj).map(|(a, b)| a * b).sum();
            z[i * v + j] = dot + bias.map_or(0.0, |b| b[j]);
        }
    }
    z
}

/// `LCE-3`: from the logits' gradient `g [N, V]` (the cross-entropy's, upstream and reduction
/// applied): `dH = g W`, `dW = g^T h`, `db = sum_i g_i`, each summed in index order.
pub fn backward(g: &[f64], hidden: &[f64], weight: &[f64], h: usize) -> LceGrads {
    let (n, v) = (hidden.len() / h, weight.len() / h);
    let mut dh = vec![0.0; n * h];
    let mut dw = vec![0.0; v * h];
    let mut db = vec![0.0; v];
    for i in 0..n {
        for j in 0..v {
            let gij = g[i * v + j];
            for k in 0..h {
                dh[i * h + k] += gij * weight[j * h + k];
            }
        }
    }
    for j in 0..v {
        for i in 0..n {
            let gij = g[i * v + j];
            db[j] += gij;
            for k in 0..h {
                dw[j * h + k] += gij * hidden[i * h + k];
            }
        }
    }
    LceGrads {
        hidden: dh,
        weight: dw,
        bias: db,
    }
}

/// Reference linear cross-entropy on `f64` data: the loss, and the gradients when the call
/// wants them.
pub fn linear_cross_entropy(call: LceCall<'_, f64>) -> (Loss, Option<LceGrads>) {
    let (out, grads) = linear_cross_entropy_rows(call, CeRowOutputs::new());
    (out.loss, grads)
}

/// [`linear_cross_entropy`] with the per-row outputs of `CE-14` (of the logits `h W^T + b`)
/// and the z-loss apart (`CE-15`).
pub fn linear_cross_entropy_rows(
    call: LceCall<'_, f64>,
    rows: CeRowOutputs<'_, f64>,
) -> (CeOutput, Option<LceGrads>) {
    let (plan, input, targets) = call.into_parts();
    let h = plan.hidden;
    // LCE-1: the logits.
    let mut z = logits(input.hidden, input.weight, input.bias, h);
    // LCE-2: the cross-entropy of the logits, every CE option, on the validated CE plan; the
    // gradient (over the logits) is the upstream times d(loss)/dz, the mean's global
    // denominator included.
    let io = if plan.grads {
        Io::InPlace(&mut z[..])
    } else {
        Io::Read(&z[..])
    };
    let out = super::cross_entropy_rows(
        Call::bind(plan.ce.clone(), io, targets, input.upstream),
        rows,
    );
    let grads = plan
        .grads
        .then(|| backward(&z, input.hidden, input.weight, h));
    (out, grads)
}

/// The default body of [`LinearCrossEntropyOps::run_linear_cross_entropy_rows`]: widens to
/// `f64`, runs the reference, rounds the gradients and the per-row outputs back to `T`.
///
/// [`LinearCrossEntropyOps::run_linear_cross_entropy_rows`]: crate::LinearCrossEntropyOps::run_linear_cross_entropy_rows
pub(crate) fn widened<T: Element>(call: LceCall<'_, T>, rows: CeRowOutputs<'_, T>) -> CeOutput {
    let (plan, input, targets) = call.into_parts();
    let n = plan.rows();
    let (h64, w64) = (to_f64_vec(input.hidden), to_f64_vec(input.weight));
    let b64 = input.bias.map(to_f64_vec);
    let probs = match targets {
        CeTargets::Probs(p) => to_f64_vec(p),
        CeTargets::Classes(_) => Vec::new(),
    };
    let t64 = match targets {
        CeTargets::Classes(c) => CeTargets::Classes(c),
        CeTargets::Probs(_) => CeTargets::Probs(&probs[..]),
    };
    let mut input64 = Linear::new(&h64, &w64, input.hidden_dim).with_upstream(input.upstream);
    input64.bias = b64.as_deref();
    let mut lse64 = vec![0.0f64; if rows.lse.is_some() { n } else { 0 }];
    let mut rows64 = CeRowOutputs::new();
    if rows.lse.is_some() {
        rows64 = rows64.with_lse(&mut lse64);
    }
    if let Some(hit) = rows.hit {
        rows64 = rows64.with_hits(hit);
    }
    let (out, grads) = linear_cross_entropy_rows(LceCall::bind(plan, input64, t64), rows64);
    if let Some(l) = rows.lse {
        write(l, &lse64);
    }
    if let (
        Some(g),
        Some(LinearGrads {
            hidden,
            weight,
            bias,
        }),
    ) = (grads, input.grads)
    {
        write(hidden, &g.hidden);
        write(weight, &g.weight);
        if let Some(b) = bias {
            write(b, &g.bias);
        }
    }
    out
}

fn write<T: Element>(dst: &mut [T], src: &[f64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = T::from_f64(*s);
    }
}
