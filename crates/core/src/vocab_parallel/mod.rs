//! Vocab-parallel cross-entropy (formulas `VP-1` .. `VP-4`): each rank holds the logits of a
//! contiguous slice of the vocabulary, `[N, V_r]`; the per-row maximum, sum of exponentials,
//! target logit and smoothing sums are combined by all-reduces through a [`Collective`]
//! (Megatron-LM's `vocab_parallel_cross_entropy`, torchtitan's loss-parallel), so that every
//! rank returns the loss of the whole vocabulary and writes the gradient of its own slice.
//! [`linear_cross_entropy`] combines it with the fused linear cross-entropy (`VP-6`): each rank
//! holds a slice of the classifier's rows and never more than a chunk of its logits.
//!
//! ```
//! use smoothloss_core::vocab_parallel::{self, InProcessGroup, VocabShard};
//! use smoothloss_core::CrossEntropy;
//! // Two ranks, V = 3 split as [2 | 1]: the loss of the unsharded row [2.0, 0.5, -1.0].
//! let cfg = CrossEntropy::smooth_loss(0.1);
//! let losses = InProcessGroup::run(2, |comm| {
//!     let (z, offset): (&[f32], usize) = if comm.rank == 0 { (&[2.0, 0.5], 0) } else { (&[-1.0], 2) };
//!     vocab_parallel::cross_entropy(comm, &cfg, VocabShard::new(z, 1, 3, offset), &[0]).map(|l| l.value())
//! });
//! assert_eq!(losses[0], losses[1]);
//! # Ok::<(), smoothloss_core::LossError>(())
//! ```

use crate::call::{GradDest, Io, Loss};
use crate::cross_entropy::{CeOutput, CeRowOutputs, CeTargets, CrossEntropy};
use crate::element::Element;
use crate::error::{LossError, Result, check_len};
use crate::plan::Extent;
use crate::reduction::Upstream;
use std::sync::{Arc, Barrier, Mutex};

mod linear;
pub use linear::{LinearShard, linear_cross_entropy, linear_cross_entropy_rows};

/// The reduction of an all-reduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise maximum.
    Max,
}

/// A small collective: all-reduces over the ranks of a group. Every rank calls the same
/// sequence of all-reduces with buffers of the same length; each returns with every rank's
/// buffer replaced by the reduction. Implementations state their summation order; the
/// in-process one combines in rank order `0, 1, ..`, so every rank gets the same bits.
pub trait Collective {
    /// This rank, in `0..world_size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world_size(&self) -> usize;
    /// All-reduces `buf` (`f64`).
    fn all_reduce_f64(&self, op: ReduceOp, buf: &mut [f64]) -> Result<()>;
    /// All-reduces `buf` (`f32`).
    fn all_reduce_f32(&self, op: ReduceOp, buf: &mut [f32]) -> Result<()>;
}

/// One rank alone: every all-reduce is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleRank;

impl Collective for SingleRank {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_f64(&self, _op: ReduceOp, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_f32(&self, _op: ReduceOp, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct Shared {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f64>>>,
}

/// A group of ranks inside one process (threads), for tests and CPU use: all-reduces through
/// shared memory and a barrier, combined in rank order (deterministic: every rank gets the
/// same bits, whatever the threads' timing). Each rank must run on its own thread (a rank
/// that never calls blocks the others; [`InProcessGroup::run`] runs them on scoped threads).
#[derive(Debug)]
pub struct InProcessGroup;

/// One rank's handle of an [`InProcessGroup`].
#[derive(Debug, Clone)]
pub struct InProcessComm {
    /// This rank.
    pub rank: usize,
    /// The number of ranks.
    pub world: usize,
    shared: Arc<Shared>,
}

impl InProcessGroup {
    /// The handles of a new group of `world` ranks (at least 1), rank order.
    pub fn ranks(world: usize) -> Vec<InProcessComm> {
        let world = world.max(1);
        let shared = Arc::new(Shared {
            barrier: Barrier::new(world),
            slots: Mutex::new(vec![Vec::new(); world]),
        });
        (0..world)
            .map(|rank| InProcessComm {
                rank,
                world,
                shared: Arc::clone(&shared),
            })
            .collect()
    }

    /// Runs `f` on every rank of a new group of `world` ranks, each on its own scoped thread,
    /// and returns the results in rank order.
    pub fn run<R: Send>(world: usize, f: impl Fn(&InProcessComm) -> R + Sync) -> Vec<R> {
        let comms = Self::ranks(world);
        std::thread::scope(|s| {
            let handles: Vec<_> = comms.iter().map(|c| s.spawn(|| f(c))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }
}

impl InProcessComm {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<Vec<f64>>>> {
        self.shared
            .slots
            .lock()
            .map_err(|_| LossError::Collective("a rank of the in-process group panicked".into()))
    }

    /// Deposits `buf`, waits for every rank, combines the deposits in rank order with `f`.
    fn exchange(&self, buf: &[f64], combine: impl FnMut(usize, &[Vec<f64>])) -> Result<()> {
        let mut combine = combine;
        self.lock()?[self.rank] = buf.to_vec();
        self.shared.barrier.wait();
        let result = (|| {
            let slots = self.lock()?;
            if let Some(r) = slots.iter().position(|s| s.len() != buf.len()) {
                return Err(LossError::Collective(format!(
                    "all-reduce of {} values on rank {}, {} on rank {r}",
                    buf.len(),
                    self.rank,
                    slots[r].len()
                )));
            }
            for i in 0..buf.len() {
                combine(i, &slots);
            }
            Ok(())
        })();
        // Everyone has read before anyone deposits again.
        self.shared.barrier.wait();
        result
    }
}

/// `max` that propagates NaN (as the reference's row maximum, `CE-1`).
fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

impl Collective for InProcessComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_reduce_f64(&self, op: ReduceOp, buf: &mut [f64]) -> Result<()> {
        let mut out = vec![0.0; buf.len()];
        self.exchange(buf, |i, s| {
            out[i] = s[1..].iter().fold(s[0][i], |acc, r| match op {
                ReduceOp::Sum => acc + r[i],
                ReduceOp::Max => max_nan(acc, r[i]),
            });
        })?;
        buf.copy_from_slice(&out);
        Ok(())
    }
    fn all_reduce_f32(&self, op: ReduceOp, buf: &mut [f32]) -> Result<()> {
        let wide: Vec<f64> = buf.iter().map(|&x| f64::from(x)).collect();
        let mut out = vec![0.0f32; buf.len()];
        // f32 -> f64 is exact; the combination is in f32 arithmetic, in rank order.
        self.exchange(&wide, |i, s| {
            out[i] = s[1..].iter().fold(s[0][i] as f32, |acc, r| match op {
                ReduceOp::Sum => acc + r[i] as f32,
                ReduceOp::Max => max_nan(f64::from(acc), r[i]) as f32,
            });
        })?;
        buf.copy_from_slice(&out);
        Ok(())
    }
}

/// One rank's slice of the logits: `[rows, width]` row-major, the classes
/// `offset .. offset + width` of a vocabulary of `vocab`, where its gradient goes and the
/// upstream gradient (the same on every rank).
#[derive(Debug)]
pub struct VocabShard<'a, T> {
    /// The local logits and where their gradient goes.
    pub io: Io<'a, [T]>,
    /// Rows `N` (the same on every rank).
    pub rows: usize,
    /// The whole vocabulary `V`.
    pub vocab: usize,
    /// The first class of this shard.
    pub offset: usize,
    /// The upstream gradient of the returned loss values.
    pub upstream: Upstream<'a>,
}

impl<'a, T> VocabShard<'a, T> {
    /// `logits` `[rows, width]` of classes `offset..offset + width` of `vocab`, forward only.
    pub fn new(logits: &'a [T], rows: usize, vocab: usize, offset: usize) -> Self {
        Self {
            io: Io::Read(logits),
            rows,
            vocab,
            offset,
            upstream: Upstream::ONE,
        }
    }

    /// Writes the gradient of the local logits into `grad` (their length).
    pub fn with_grad(mut self, grad: &'a mut [T]) -> Self {
        let input: &'a [T] = match self.io {
            Io::Read(x) | Io::Separate { input: x, .. } => x,
            Io::InPlace(x) => x,
        };
        self.io = Io::Separate { input, grad };
        self
    }

    /// Scales the gradient by an upstream gradient (one per row for reduction `none`).
    pub fn with_upstream(mut self, upstream: Upstream<'a>) -> Self {
        self.upstream = upstream;
        self
    }
}

/// The local checks of a shard (shapes, parameters, targets), before any communication.
fn check_local<T: Element>(
    cfg: &CrossEntropy,
    shard: &VocabShard<'_, T>,
    targets: &CeTargets<'_, T>,
    outs: &CeRowOutputs<'_, T>,
) -> Result<usize> {
    let rows = shard.rows;
    let len = shard.io.input().len();
    if rows == 0 {
        return Err(LossError::EmptyInput {
            what: "logits",
            detail: "the batch must have at least one row",
        });
    }
    if !len.is_multiple_of(rows) {
        return Err(LossError::ShapeMismatch {
            what: "logits",
            expected: len.div_ceil(rows) * rows,
            got: len,
        });
    }
    let width = len / rows;
    if let GradDest::Separate(g) = shard.io.grad_dest() {
        check_len("grad", len, g)?;
    }
    let layout = ShardLayout {
        rows,
        width,
        vocab: shard.vocab,
        offset: shard.offset,
    };
    check_layout(cfg, &layout, &shard.upstream, targets, outs)?;
    Ok(width)
}

/// The shape of one rank's slice: `rows` rows of the classes `offset .. offset + width` of a
/// vocabulary of `vocab`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardLayout {
    pub rows: usize,
    pub width: usize,
    pub vocab: usize,
    pub offset: usize,
}

/// The checks of a shard's layout against the cross-entropy of the whole `[N, V]`: the slice
/// inside the vocabulary, every CE check (smoothing, class weights of length V, targets,
/// upstream, per-row outputs), the `f32` domain and the targets' values.
pub(crate) fn check_layout<T: Element>(
    cfg: &CrossEntropy,
    s: &ShardLayout,
    upstream: &Upstream<'_>,
    targets: &CeTargets<'_, T>,
    outs: &CeRowOutputs<'_, T>,
) -> Result<()> {
    let (rows, vocab) = (s.rows, s.vocab);
    if s.offset.checked_add(s.width).is_none_or(|end| end > vocab) {
        return Err(LossError::InvalidParameter {
            name: "offset",
            value: s.offset as f64,
            reason: "the shard's classes offset..offset + width must lie in 0..vocab",
        });
    }
    let global_targets = match targets {
        CeTargets::Classes(t) => crate::CeTargetsShape::Classes(t.len()),
        CeTargets::Probs(p) => {
            check_len("target_probs", rows.saturating_mul(s.width), p.len())?;
            crate::CeTargetsShape::Probs(rows.saturating_mul(vocab))
        }
    };
    // Every CE check on the whole [N, V] (smoothing, class weights of length V, targets, upstream).
    let ext = Extent {
        len: crate::error::checked_size("logits", rows, vocab)?,
        shape: Some([rows, vocab]),
        grad: GradDest::None,
        upstream: upstream.shape(),
    };
    cfg.plan(&ext, global_targets)?.check_row_outputs(
        outs.lse.as_ref().map(|l| l.len()),
        outs.hit.as_ref().map(|h| h.len()),
        global_targets,
    )?;
    if crate::plan::is_f32::<T>() {
        cfg.check_f32()?;
    }
    upstream.check_values(crate::plan::is_f32::<T>())?;
    if let CeTargets::Classes(t) = targets {
        cfg.check_targets(t, vocab)?;
    }
    Ok(())
}

/// `VP-1` (and `VP-6`'s extension): one sum all-reduce of every rank's verdict, layout and
/// `extras` (values that must agree on every rank, e.g. the rows and the chunk size of the
/// linear cross-entropy). Returns every rank's width, rank order.
pub(crate) fn agree<C: Collective + ?Sized>(
    comm: &C,
    local: Option<(usize, usize)>,
    vocab: usize,
    extras: &[f64],
) -> Result<Vec<usize>> {
    let (world, rank) = (comm.world_size(), comm.rank());
    let per = 3 + extras.len();
    let mut v = vec![0.0; per * world];
    match local {
        Some((offset, width)) => {
            v[world + rank] = offset as f64;
            v[2 * world + rank] = width as f64;
            for (k, &e) in extras.iter().enumerate() {
                v[(3 + k) * world + rank] = e;
            }
        }
        None => v[rank] = 1.0,
    }
    comm.all_reduce_f64(ReduceOp::Sum, &mut v)?;
    if local.is_none() {
        // This rank's own error is returned by the caller.
        return Ok(Vec::new());
    }
    if let Some(r) = v[..world].iter().position(|&e| e != 0.0) {
        return Err(LossError::Collective(format!(
            "rank {r} refused the call (its own error is returned there)"
        )));
    }
    let mut start = 0.0;
    for r in 0..world {
        if v[world + r] != start {
            return Err(LossError::InvalidParameter {
                name: "offset",
                value: v[world + r],
                reason: "the shards must tile 0..vocab in rank order (rank r starts where rank r - 1 ends)",
            });
        }
        start += v[2 * world + r];
    }
    if start != vocab as f64 {
        return Err(LossError::InvalidParameter {
            name: "vocab",
            value: start,
            reason: "the shards' widths must add up to the vocabulary",
        });
    }
    for (k, &e) in extras.iter().enumerate() {
        if let Some(r) = (0..world).find(|&r| v[(3 + k) * world + r] != e) {
            return Err(LossError::Collective(format!(
                "rank {r} disagrees on a value every rank must share ({} there, {e} on rank {rank})",
                v[(3 + k) * world + r]
            )));
        }
    }
    Ok(v[2 * world..3 * world]
        .iter()
        .map(|&w| w as usize)
        .collect())
}

/// Vocab-parallel cross-entropy on this rank (`VP-1` .. `VP-4`): every rank of `comm` calls it
/// with its shard, the same configuration (class weights of the whole vocabulary), the same
/// class targets `[N]` (or its slice `[N, V_r]` of the probabilities) and the same upstream;
/// each returns the loss of the whole vocabulary (the same bits on every rank) and writes the
/// gradient of its slice. The shards must tile `0..V` in rank order (rank 0 first; widths may
/// differ, 0 included). A call one rank refuses is refused by every rank (after one
/// all-reduce of the ranks' verdicts), so no rank is left waiting.
///
/// Per-row statistics are `f64` on every element type; the gradient is written in `T`.
pub fn cross_entropy<'a, T: Element, C: Collective + ?Sized>(
    comm: &C,
    cfg: &CrossEntropy,
    shard: VocabShard<'a, T>,
    targets: impl Into<CeTargets<'a, T>>,
) -> Result<Loss> {
    cross_entropy_rows(comm, cfg, shard, targets, CeRowOutputs::new()).map(|o| o.loss)
}

/// [`cross_entropy`] with the per-row outputs of `CE-14` and the z-loss apart (`CE-15`), as
/// [`Losses::cross_entropy_rows`](crate::Losses::cross_entropy_rows): each rank may ask for the
/// log-sum-exp of the whole (capped) vocabulary and the argmax hits of the rows (`[N]` each,
/// the same values on every rank), from the statistics the loss combines anyway (`VP-5`: no
/// extra all-reduce).
pub fn cross_entropy_rows<'a, T: Element, C: Collective + ?Sized>(
    comm: &C,
    cfg: &CrossEntropy,
    shard: VocabShard<'a, T>,
    targets: impl Into<CeTargets<'a, T>>,
    rows: CeRowOutputs<'_, T>,
) -> Result<CeOutput> {
    let targets = targets.into();
    let local = check_local(cfg, &shard, &targets, &rows);
    // VP-1: the verdicts and the layout of every rank, in one all-reduce.
    agree(
        comm,
        local.as_ref().ok().map(|&w| (shard.offset, w)),
        shard.vocab,
        &[],
    )?;
    let width = local?;
    let plan = cfg.plan(
        &Extent {
            len: shard.rows * shard.vocab,
            shape: Some([shard.rows, shard.vocab]),
            grad: GradDest::None,
            upstream: shard.upstream.shape(),
        },
        match targets {
            CeTargets::Classes(t) => crate::CeTargetsShape::Classes(t.len()),
            CeTargets::Probs(_) => crate::CeTargetsShape::Probs(shard.rows * shard.vocab),
        },
    )?;
    crate::reference::vocab_parallel::rank_cross_entropy(comm, &plan, shard, width, targets, rows)
}
