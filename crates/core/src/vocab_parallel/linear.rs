//! The vocab-parallel fused linear cross-entropy (`VP-6`): each rank holds a slice of the
//! classifier, `W_r [V_r, H]` (and `b_r [V_r]`), the rows of the vocabulary
//! `o_r .. o_r + V_r`, and the same hidden states `h [N, H]`. Chunk by chunk of rows, each
//! rank computes its logits `[rows_c, V_r]` by a GEMM of its backend ([`ChunkGemm`]), the
//! vocab-parallel cross-entropy of the chunk combines the per-row statistics through the
//! [`Collective`] (`VP-2` .. `VP-5`, in place: the logits become their gradient), then
//! `dH_c = sum_r G_c,r W_r` (a sum all-reduce) and `dW_r += G_c,r^T h_c`, `db_r += colsum`.
//! No rank ever holds more than one chunk of its logits (`[N, V]` never, nor `[N, V_r]`).

use super::{Collective, ReduceOp, ShardLayout, VocabShard, agree, check_layout};
use crate::call::{GradDest, Io, Loss};
use crate::cross_entropy::{CeOutput, CeRowOutputs, CeTargets};
use crate::element::Element;
use crate::error::{LossError, Result};
use crate::linear_cross_entropy::{
    ChunkGemm, Linear, LinearCrossEntropy, chunk_config, default_chunk_rows,
};
use crate::plan::Extent;
use crate::reduction::{Reduction, Upstream};

/// One rank's slice of a linear classifier: `linear` holds the hidden states `[N, H]` (the same
/// on every rank), this rank's weight rows `W_r [V_r, H]`, its bias `b_r [V_r]` if any, where
/// the gradients go (`d hidden [N, H]`, the sum over every rank, written on every rank;
/// `d W_r [V_r, H]`; `d b_r [V_r]`) and the upstream gradient (the same on every rank); the
/// classes `offset .. offset + V_r` of a vocabulary of `vocab`.
#[derive(Debug)]
pub struct LinearShard<'a, T> {
    /// The hidden states, this rank's classifier rows, gradients and upstream.
    pub linear: Linear<'a, T>,
    /// The whole vocabulary `V`.
    pub vocab: usize,
    /// The first class of this rank's rows.
    pub offset: usize,
}

impl<'a, T> LinearShard<'a, T> {
    /// `linear`'s weight rows are the classes `offset .. offset + V_r` of `vocab`.
    pub fn new(linear: Linear<'a, T>, vocab: usize, offset: usize) -> Self {
        Self {
            linear,
            vocab,
            offset,
        }
    }
}

/// The local checks of a linear shard, before any communication: `(rows, width, chunk rows
/// given or 0)`.
fn check_local<T: Element>(
    cfg: &LinearCrossEntropy,
    shard: &LinearShard<'_, T>,
    targets: &CeTargets<'_, T>,
    outs: &CeRowOutputs<'_, T>,
) -> Result<(usize, usize)> {
    let shape = shard.linear.shape();
    // The table of LCE's shape checks, an empty slice of the vocabulary allowed.
    let (rows, width) = shape.check(true)?;
    if cfg.chunk_rows == Some(0) {
        return Err(LossError::InvalidParameter {
            name: "chunk_rows",
            value: 0.0,
            reason: "a chunk must hold at least one row",
        });
    }
    if rows == 0 {
        return Err(LossError::EmptyInput {
            what: "hidden",
            detail: "the batch must have at least one row",
        });
    }
    let layout = ShardLayout {
        rows,
        width,
        vocab: shard.vocab,
        offset: shard.offset,
    };
    check_layout(&cfg.ce, &layout, &shard.linear.upstream, targets, outs)?;
    Ok((rows, width))
}

/// Vocab-parallel linear cross-entropy on this rank (`VP-6`): every rank of `comm` calls it
/// with its slice of the classifier, the same configuration (class weights of the whole
/// vocabulary), the same hidden states, class targets `[N]` (or its slice `[N, V_r]` of the
/// probabilities) and upstream; each returns the loss of the whole vocabulary (the same bits on
/// every rank), writes `d hidden` (the same on every rank) and the gradients of its own rows.
/// The products run on `backend` ([`ChunkGemm`]: the CPU backend's GEMM, the CUDA backend's
/// cuBLAS `sgemm`, or the reference's `f64` loops); the per-row statistics are `f64` (`VP-2` .. `VP-5`).
///
/// The shards tile `0..V` in rank order (widths may differ, 0 included). A call one rank
/// refuses is refused by every rank, as `VP-1`; the ranks must also agree on `N` and the
/// chunk size (`LinearCrossEntropy::chunk_rows`, default: `LCE-4`'s for the widest shard).
///
/// ```
/// use smoothloss_core::vocab_parallel::{self, InProcessGroup, LinearShard};
/// use smoothloss_core::{CrossEntropy, Linear, LinearCrossEntropy, ReferenceBackend};
/// // N = 1, H = 2, V = 3 split as [2 | 1].
/// let (h, w) = ([0.5_f64, -1.0], [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
/// let lce = LinearCrossEntropy::new(CrossEntropy::new());
/// let losses = InProcessGroup::run(2, |comm| {
///     let (rows, offset) = if comm.rank == 0 { (&w[..4], 0) } else { (&w[4..], 2) };
///     let shard = LinearShard::new(Linear::new(&h, rows, 2), 3, offset);
///     vocab_parallel::linear_cross_entropy(&ReferenceBackend, comm, &lce, shard, &[1]).map(|l| l.value())
/// });
/// assert_eq!(losses[0], losses[1]);
/// # Ok::<(), smoothloss_core::LossError>(())
/// ```
pub fn linear_cross_entropy<'a, T, B, C>(
    backend: &B,
    comm: &C,
    cfg: &LinearCrossEntropy,
    shard: LinearShard<'a, T>,
    targets: impl Into<CeTargets<'a, T>>,
) -> Result<Loss>
where
    T: Element,
    B: ChunkGemm<T> + ?Sized,
    C: Collective + ?Sized,
{
    linear_cross_entropy_rows(backend, comm, cfg, shard, targets, CeRowOutputs::new())
        .map(|o| o.loss)
}

/// [`linear_cross_entropy`] with the per-row outputs of `CE-14` (log-sum-exp of the whole
/// capped vocabulary, argmax hits; `[N]` each, the same on every rank) and the z-loss apart
/// (`CE-15`), from the statistics the loss combines anyway (`VP-5`).
pub fn linear_cross_entropy_rows<'a, T, B, C>(
    backend: &B,
    comm: &C,
    cfg: &LinearCrossEntropy,
    shard: LinearShard<'a, T>,
    targets: impl Into<CeTargets<'a, T>>,
    mut outs: CeRowOutputs<'_, T>,
) -> Result<CeOutput>
where
    T: Element,
    B: ChunkGemm<T> + ?Sized,
    C: Collective + ?Sized,
{
    let targets = targets.into();
    let local = check_local(cfg, &shard, &targets, &outs);
    // VP-6: VP-1's verdicts and layout, and the rows and the given chunk size, which every
    // rank must share (they fix the sequence of all-reduces).
    let extras = match &local {
        Ok((rows, _)) => [*rows as f64, cfg.chunk_rows.map_or(0.0, |c| c as f64)],
        Err(_) => [0.0; 2],
    };
    let widths = agree(
        comm,
        local.as_ref().ok().map(|&(_, w)| (shard.offset, w)),
        shard.vocab,
        &extras,
    )?;
    let (n, width) = local?;
    let (vocab, offset) = (shard.vocab, shard.offset);
    let widest = widths.iter().copied().max().unwrap_or(0);
    let chunk_rows = cfg
        .chunk_rows
        .unwrap_or_else(|| default_chunk_rows(widest))
        .clamp(1, n);
    let Linear {
        hidden,
        weight,
        bias,
        hidden_dim: h,
        grads,
        upstream,
        ..
    } = shard.linear;
    let ce = &cfg.ce;
    // LCE-2: the whole batch's mean denominator, before any chunk (from the targets every
    // rank holds: the same on every rank).
    let denom = ce.reduction_denominator(&targets, n);
    let scale = if ce.reduction == Reduction::Mean {
        1.0 / denom
    } else {
        1.0
    };
    let mut grads = grads;
    if let Some(g) = grads.as_mut() {
        g.weight.fill(T::from_f64(0.0));
    }
    let bias_grad = grads.as_ref().is_some_and(|g| g.bias.is_some());
    let mut db_acc = if bias_grad {
        vec![0.0; width]
    } else {
        Vec::new()
    };
    let mut z = alloc::<T>(chunk_rows, width)?;
    let mut dh_wide = if grads.is_some() {
        vec![0.0f64; chunk_rows * h]
    } else {
        Vec::new()
    };
    let (mut losses, mut z_losses) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for c in 0..n.div_ceil(chunk_rows) {
        let r = c * chunk_rows..n.min((c + 1) * chunk_rows);
        let nc = r.len();
        let hc = &hidden[r.start * h..r.end * h];
        let zc = &mut z[..nc * width];
        // LCE-1 on this rank's rows: z_c = h_c W_r^T + b_r.
        backend.chunk_logits(hc, weight, bias, h, zc)?;
        // VP-2 .. VP-5 on the chunk, in place (z_c becomes G_c): LCE-4's chunk configuration,
        // the whole batch's 1 / D in the upstream (LCE-2).
        let chunk_ce = chunk_config(ce, r.clone());
        let up = match upstream {
            Upstream::PerElement(u) => Upstream::PerElement(&u[r.clone()]),
            Upstream::Scalar(u) => Upstream::Scalar(u * scale),
        };
        let (t, t_shape) = match targets {
            CeTargets::Classes(t) => (
                CeTargets::Classes(&t[r.clone()]),
                crate::CeTargetsShape::Classes(nc),
            ),
            CeTargets::Probs(p) => (
                CeTargets::Probs(&p[r.start * width..r.end * width]),
                crate::CeTargetsShape::Probs(nc * vocab),
            ),
        };
        let plan = chunk_ce.plan(
            &Extent {
                len: nc * vocab,
                shape: Some([nc, vocab]),
                grad: GradDest::None,
                upstream: up.shape(),
            },
            t_shape,
        )?;
        let io = if grads.is_some() {
            Io::InPlace(&mut *zc)
        } else {
            Io::Read(&*zc)
        };
        let chunk_shard = VocabShard {
            io,
            rows: nc,
            vocab,
            offset,
            upstream: up,
        };
        let chunk_outs = CeRowOutputs {
            lse: outs.lse.as_deref_mut().map(|l| &mut l[r.clone()]),
            hit: outs.hit.as_deref_mut().map(|x| &mut x[r.clone()]),
        };
        let out = crate::reference::vocab_parallel::rank_cross_entropy(
            comm,
            &plan,
            chunk_shard,
            width,
            t,
            chunk_outs,
        )?;
        losses.extend(out.loss.into_values());
        z_losses.extend(out.z_loss.into_values());
        // LCE-3 on this rank's rows, dH summed over the ranks.
        if let Some(g) = grads.as_mut() {
            let gc = &z[..nc * width];
            let dh = &mut g.hidden[r.start * h..r.end * h];
            backend.chunk_grad_hidden(gc, weight, h, dh)?;
            let wide = &mut dh_wide[..nc * h];
            for (w, x) in wide.iter_mut().zip(dh.iter()) {
                *w = x.to_f64();
            }
            comm.all_reduce_f64(ReduceOp::Sum, wide)?;
            for (x, w) in dh.iter_mut().zip(wide.iter()) {
                *x = T::from_f64(*w);
            }
            backend.chunk_grad_weight(gc, hc, h, g.weight)?;
            if bias_grad {
                for row in gc.chunks_exact(width.max(1)) {
                    for (s, x) in db_acc.iter_mut().zip(row) {
                        *s += x.to_f64();
                    }
                }
            }
        }
    }
    if let Some(db) = grads.and_then(|g| g.bias) {
        for (d, s) in db.iter_mut().zip(&db_acc) {
            *d = T::from_f64(*s);
        }
    }
    let reduce = |l: Vec<f64>| match ce.reduction {
        Reduction::None => Loss::PerItem(l),
        Reduction::Sum => Loss::Reduced(l.iter().sum()),
        Reduction::Mean => Loss::Reduced(l.iter().sum::<f64>() / denom),
    };
    Ok(CeOutput {
        loss: reduce(losses),
        z_loss: reduce(z_losses),
    })
}

/// A zeroed `rows x cols` buffer, or [`LossError::TooLarge`] when it cannot be allocated.
fn alloc<T: Element>(rows: usize, cols: usize) -> Result<Vec<T>> {
    let too_large = LossError::TooLarge {
        what: "logits chunk",
        a: rows,
        b: cols,
    };
    let len = rows.checked_mul(cols).ok_or(too_large.clone())?;
    let mut z = Vec::new();
    z.try_reserve_exact(len).map_err(|_| too_large)?;
    z.resize(len, T::from_f64(0.0));
    Ok(z)
}
