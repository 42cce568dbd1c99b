//! Fused linear cross-entropy (formulas `LCE-1` .. `LCE-5`): the cross-entropy of the logits
//! `hidden [N, H] @ weight[V, H]^T + bias [V]` with every option of [`CrossEntropy`], and its
//! gradients with respect to the hidden states, the classifier weight and the bias, computed by
//! a backend without holding the `[N, V]` logits (chunks of rows; see
//! `spec/formulas/linear_cross_entropy.md`).
//!
//! ```
//! use smoothloss_core::{CrossEntropy, Linear, LinearCrossEntropy, Losses, ReferenceBackend};
//! let (h, w) = ([0.5_f64, -1.0, 2.0, 0.25], [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]); // N=2, H=2, V=3
//! let (mut dh, mut dw) = ([0.0; 4], [0.0; 6]);
//! let lce = LinearCrossEntropy::new(CrossEntropy::smooth_loss(0.1));
//! let loss = ReferenceBackend.linear_cross_entropy(&lce, Linear::new(&h, &w, 2).with_grads(&mut dh, &mut dw), &[0, 2])?;
//! assert!(loss.value() > 0.0);
//! # Ok::<(), smoothloss_core::LossError>(())
//! ```

use crate::call::GradDest;
use crate::cross_entropy::{CePlan, CeTargets, CrossEntropy};
use crate::element::Element;
use crate::error::{LossError, Result, check_len, checked_size};
use crate::plan::Extent;
use crate::reduction::Upstream;

/// The logits a backend holds at once, by default: chunks of rows whose `[rows, V]` logits
/// take at most this many bytes of `f32` (64 MiB: 512 rows of a 32,000-word vocabulary).
pub const DEFAULT_CHUNK_BYTES: usize = 64 << 20;

/// Fused linear cross-entropy: the cross-entropy configuration of the logits
/// `hidden @ weight^T + bias` and the number of rows computed at once.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearCrossEntropy {
    /// The cross-entropy of the logits, every option included (class weights have length V).
    pub ce: CrossEntropy,
    /// Rows per chunk; `None` chooses from [`DEFAULT_CHUNK_BYTES`] (`LCE-4`). The chunking
    /// never depends on the thread count, so neither do the results.
    pub chunk_rows: Option<usize>,
}

impl LinearCrossEntropy {
    /// The linear cross-entropy of `ce`, chunk size chosen.
    pub fn new(ce: CrossEntropy) -> Self {
        Self {
            ce,
            chunk_rows: None,
        }
    }

    /// Computes `rows` rows of logits at a time (at least 1).
    pub fn with_chunk_rows(mut self, rows: usize) -> Self {
        self.chunk_rows = Some(rows);
        self
    }

    /// Validates a call's shapes and parameters (the cross-entropy's through
    /// [`CrossEntropy::plan`] on the `[N, V]` logits it implies) and returns its plan.
    pub fn plan(&self, shape: &LinearShape, targets: crate::CeTargetsShape) -> Result<LcePlan<'_>> {
        let (rows, vocab) = shape.check(false)?;
        let h = shape.hidden_dim;
        if self.chunk_rows == Some(0) {
            return Err(LossError::InvalidParameter {
                name: "chunk_rows",
                value: 0.0,
                reason: "a chunk must hold at least one row",
            });
        }
        // The logits this call implies, through the cross-entropy's own planner: every CE check
        // (smoothing, class weights of length V, targets, upstream) in its one place.
        let logits = checked_size("logits", rows, vocab)?;
        let ext = Extent {
            len: logits,
            shape: Some([rows, vocab]),
            grad: if shape.grads.is_some() {
                GradDest::InPlace
            } else {
                GradDest::None
            },
            upstream: shape.upstream,
        };
        let ce = self.ce.plan(&ext, targets)?;
        let chunk_rows = self
            .chunk_rows
            .unwrap_or_else(|| default_chunk_rows(vocab))
            .min(rows);
        Ok(LcePlan {
            cfg: self,
            ce,
            hidden: h,
            chunk_rows,
            has_bias: shape.bias_len.is_some(),
            grads: shape.grads.is_some(),
            bias_grad: shape.grads.is_some_and(|g| g.bias.is_some()),
        })
    }
}

/// `LCE-4`: rows per chunk from [`DEFAULT_CHUNK_BYTES`], a multiple of 16 where that fits
/// (the GEMMs' row tiles), at least 1.
pub fn default_chunk_rows(vocab: usize) -> usize {
    let rows = DEFAULT_CHUNK_BYTES / (vocab.max(1) * 4);
    if rows >= 16 {
        rows / 16 * 16
    } else {
        rows.max(1)
    }
}

/// The lengths of a linear cross-entropy call, as the planner sees them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearShape {
    /// Elements of `hidden` (`N * H`).
    pub hidden_len: usize,
    /// Elements of `weight` (`V * H`).
    pub weight_len: usize,
    /// The hidden dimension `H`.
    pub hidden_dim: usize,
    /// Elements of the bias, if any.
    pub bias_len: Option<usize>,
    /// Lengths of the gradient buffers, if gradients are wanted.
    pub grads: Option<GradLens>,
    /// The upstream gradient's shape (one per row for `none`).
    pub upstream: crate::UpstreamShape,
}

impl LinearShape {
    /// The shape checks of the table of `spec/formulas/linear_cross_entropy.md` (H, the
    /// hidden, weight and bias lengths, the gradient buffers); returns `(N, V)`. A vocabulary
    /// shard may be empty (`empty_vocab`, `VP-6`); a whole classifier may not.
    pub(crate) fn check(&self, empty_vocab: bool) -> Result<(usize, usize)> {
        let h = self.hidden_dim;
        if h == 0 {
            return Err(LossError::EmptyInput {
                what: "hidden",
                detail: "the hidden dimension H must be at least 1",
            });
        }
        if !self.hidden_len.is_multiple_of(h) {
            return Err(LossError::ShapeMismatch {
                what: "hidden",
                expected: self.hidden_len.div_ceil(h) * h,
                got: self.hidden_len,
            });
        }
        if !self.weight_len.is_multiple_of(h) {
            return Err(LossError::ShapeMismatch {
                what: "weight",
                expected: self.weight_len.div_ceil(h) * h,
                got: self.weight_len,
            });
        }
        let (rows, vocab) = (self.hidden_len / h, self.weight_len / h);
        if vocab == 0 && !empty_vocab {
            return Err(LossError::EmptyInput {
                what: "weight",
                detail: "the classifier must have at least one row (V >= 1)",
            });
        }
        if let Some(b) = self.bias_len {
            check_len("bias", vocab, b)?;
        }
        if let Some(g) = self.grads {
            check_len("hidden_grad", self.hidden_len, g.hidden)?;
            check_len("weight_grad", self.weight_len, g.weight)?;
            match (g.bias, self.bias_len) {
                (Some(_), None) => {
                    return Err(LossError::ShapeMismatch {
                        what: "bias",
                        expected: vocab,
                        got: 0,
                    });
                }
                (Some(db), Some(_)) => check_len("bias_grad", vocab, db)?,
                _ => {}
            }
        }
        Ok((rows, vocab))
    }
}

/// Lengths of the gradient buffers of a linear cross-entropy call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradLens {
    /// `d hidden`.
    pub hidden: usize,
    /// `d weight`.
    pub weight: usize,
    /// `d bias`, if wanted.
    pub bias: Option<usize>,
}

/// A validated linear cross-entropy call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LcePlan<'c> {
    /// The configuration.
    pub cfg: &'c LinearCrossEntropy,
    /// The plan of the cross-entropy over the `[N, V]` logits.
    pub ce: CePlan<'c>,
    /// The hidden dimension `H`.
    pub hidden: usize,
    /// Rows per chunk (at most N).
    pub chunk_rows: usize,
    /// Whether a bias is added.
    pub has_bias: bool,
    /// Whether `d hidden` and `d weight` are written.
    pub grads: bool,
    /// Whether `d bias` is written.
    pub bias_grad: bool,
}

impl LcePlan<'_> {
    /// Rows `N`.
    pub fn rows(&self) -> usize {
        self.ce.rows()
    }

    /// Vocabulary `V`.
    pub fn vocab(&self) -> usize {
        self.ce.classes()
    }

    /// `LCE-2`: the denominator of the whole batch's `mean`, computed before any chunk: the
    /// given one (`CE-13`), else the batch's own (class- and row-weighted count, `CE-7`,
    /// `CE-12`). Only read under reduction `mean`.
    pub fn denominator<T>(&self, targets: &CeTargets<'_, T>) -> f64 {
        self.cfg.ce.reduction_denominator(targets, self.rows())
    }

    /// `LCE-4`: the cross-entropy a backend runs on the chunk of `rows` (one of
    /// [`LcePlan::chunks`]): the call's configuration at reduction `none`, without a given
    /// denominator (the backend scales by [`LcePlan::denominator`] of the whole batch), with
    /// the chunk's slice of the row weights; softcap, z-loss, smoothing, class weights and the
    /// ignore index unchanged. Every backend builds its chunks from this one function.
    pub fn chunk_ce(&self, rows: std::ops::Range<usize>) -> CrossEntropy {
        chunk_config(&self.cfg.ce, rows)
    }

    /// The row ranges of the chunks, in order (`LCE-4`).
    pub fn chunks(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let (n, c) = (self.rows(), self.chunk_rows.max(1));
        (0..n.div_ceil(c)).map(move |k| k * c..n.min((k + 1) * c))
    }
}

/// `LCE-4`: the configuration of the chunk of `rows` of a call configured by `ce` (see
/// [`LcePlan::chunk_ce`]; the vocab-parallel linear cross-entropy's chunks too, `VP-6`).
pub(crate) fn chunk_config(ce: &CrossEntropy, rows: std::ops::Range<usize>) -> CrossEntropy {
    CrossEntropy {
        reduction: crate::Reduction::None,
        denominator: None,
        row_weights: ce
            .row_weights
            .as_ref()
            .map(|w| w.get(rows).map_or_else(Vec::new, <[f64]>::to_vec)),
        ..ce.clone()
    }
}

/// Rows of a row-major `[rows, k]` matrix of `len` values (`k >= 1`, `len` a multiple of it).
fn rows_of(what: &'static str, len: usize, k: usize) -> Result<usize> {
    if k == 0 {
        return Err(LossError::EmptyInput {
            what: "hidden",
            detail: "the hidden dimension H must be at least 1",
        });
    }
    if !len.is_multiple_of(k) {
        return Err(LossError::ShapeMismatch {
            what,
            expected: len.div_ceil(k) * k,
            got: len,
        });
    }
    Ok(len / k)
}

/// Checks that the `[m, n]` operand `what` holds `len` values.
fn check_mn(what: &'static str, m: usize, n: usize, len: usize) -> Result<()> {
    check_len(what, checked_size(what, m, n)?, len)
}

/// The operand shapes of the three [`ChunkGemm`] products, every length checked (typed
/// errors): the one check behind the default bodies and every backend's products (the CPU's
/// GEMM, cuBLAS), run before any work. Matrices are row-major, `k` is the hidden dimension.
#[derive(Debug, Clone, Copy)]
pub struct ChunkDims;

impl ChunkDims {
    /// `(m, n)` of `z [m, n] = h [m, k] w [n, k]^T + b [n]` from the lengths of `h`, `w`, the
    /// bias (when given) and `z`.
    pub fn logits(
        h: usize,
        w: usize,
        b: Option<usize>,
        k: usize,
        z: usize,
    ) -> Result<(usize, usize)> {
        let (m, n) = (rows_of("hidden", h, k)?, rows_of("weight", w, k)?);
        check_mn("logits", m, n, z)?;
        if let Some(b) = b {
            check_len("bias", n, b)?;
        }
        Ok((m, n))
    }

    /// `(m, n)` of `dh [m, k] = g [m, n] w [n, k]` from the lengths of `g`, `w` and `dh`.
    pub fn grad_hidden(g: usize, w: usize, k: usize, dh: usize) -> Result<(usize, usize)> {
        let (m, n) = (rows_of("hidden_grad", dh, k)?, rows_of("weight", w, k)?);
        check_mn("logits_grad", m, n, g)?;
        Ok((m, n))
    }

    /// `(m, n)` of `dw [n, k] += g [m, n]^T h [m, k]` from the lengths of `g`, `h` and `dw`.
    pub fn grad_weight(g: usize, h: usize, k: usize, dw: usize) -> Result<(usize, usize)> {
        let (m, n) = (rows_of("hidden", h, k)?, rows_of("weight_grad", dw, k)?);
        check_mn("logits_grad", m, n, g)?;
        Ok((m, n))
    }
}

/// The three products of a chunk of the linear cross-entropy (`LCE-1`, `LCE-3`), as a backend
/// computes them: what the vocab-parallel linear cross-entropy (`VP-6`) asks of a backend,
/// the rest (the cross-entropy of the chunk, the collective) being the same everywhere.
/// Matrices are row-major; `k` is the hidden dimension `H`; every length is checked (typed
/// errors, nothing computed on a mismatch).
///
/// The default bodies sum in `f64` in index order (the reference's `LCE-1` / `LCE-3`); a
/// backend overrides them with its GEMM. Results must not depend on the thread count.
pub trait ChunkGemm<T: Element> {
    /// `z [m, n] = h [m, k] w [n, k]^T + b [n]` (no bias: `b = 0`), written.
    fn chunk_logits(&self, h: &[T], w: &[T], b: Option<&[T]>, k: usize, z: &mut [T]) -> Result<()> {
        let (m, n) = ChunkDims::logits(h.len(), w.len(), b.map(<[T]>::len), k, z.len())?;
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|c| h[i * k + c].to_f64() * w[j * k + c].to_f64())
                    .sum();
                z[i * n + j] = T::from_f64(dot + b.map_or(0.0, |b| b[j].to_f64()));
            }
        }
        Ok(())
    }

    /// `dh [m, k] = g [m, n] w [n, k]`, written (zeros when `n = 0`).
    fn chunk_grad_hidden(&self, g: &[T], w: &[T], k: usize, dh: &mut [T]) -> Result<()> {
        let (m, n) = ChunkDims::grad_hidden(g.len(), w.len(), k, dh.len())?;
        for i in 0..m {
            for c in 0..k {
                let s: f64 = (0..n)
                    .map(|j| g[i * n + j].to_f64() * w[j * k + c].to_f64())
                    .sum();
                dh[i * k + c] = T::from_f64(s);
            }
        }
        Ok(())
    }

    /// `dw [n, k] += g [m, n]^T h [m, k]`, accumulated into `dw`.
    fn chunk_grad_weight(&self, g: &[T], h: &[T], k: usize, dw: &mut [T]) -> Result<()> {
        let (m, n) = ChunkDims::grad_weight(g.len(), h.len(), k, dw.len())?;
        for j in 0..n {
            for c in 0..k {
                let s: f64 = (0..m)
                    .map(|i| g[i * n + j].to_f64() * h[i * k + c].to_f64())
                    .sum();
                dw[j * k + c] = T::from_f64(dw[j * k + c].to_f64() + s);
            }
        }
        Ok(())
    }
}

impl<T: Element> ChunkGemm<T> for crate::ReferenceBackend {}

/// Where the gradients of a linear cross-entropy go: `d hidden [N, H]`, `d weight [V, H]`
/// (overwritten, not accumulated into) and optionally `d bias [V]`.
#[derive(Debug)]
pub struct LinearGrads<'a, T> {
    /// `d loss / d hidden`, `[N, H]`.
    pub hidden: &'a mut [T],
    /// `d loss / d weight`, `[V, H]`.
    pub weight: &'a mut [T],
    /// `d loss / d bias`, `[V]`.
    pub bias: Option<&'a mut [T]>,
}

/// The inputs of a linear cross-entropy call: `hidden [N, H]`, `weight [V, H]` (row-major,
/// PyTorch's `nn.Linear` layout), an optional bias `[V]`, where the gradients go and the
/// upstream gradient.
#[derive(Debug)]
pub struct Linear<'a, T> {
    /// Hidden states `[N, H]`.
    pub hidden: &'a [T],
    /// Classifier weight `[V, H]`.
    pub weight: &'a [T],
    /// Classifier bias `[V]`.
    pub bias: Option<&'a [T]>,
    /// The hidden dimension `H`.
    pub hidden_dim: usize,
    /// The gradients' destinations (none: forward only).
    pub grads: Option<LinearGrads<'a, T>>,
    /// The upstream gradient of the returned loss values.
    pub upstream: Upstream<'a>,
    /// A bias gradient given before [`Linear::with_grads`] (moved into `grads` by it; alone,
    /// the planner refuses the call: a bias gradient needs the other two).
    orphan_bias_grad: Option<&'a mut [T]>,
}

impl<'a, T> Linear<'a, T> {
    /// `hidden [N, H]` and `weight [V, H]` with `H = hidden_dim`, forward only.
    pub fn new(hidden: &'a [T], weight: &'a [T], hidden_dim: usize) -> Self {
        Self {
            hidden,
            weight,
            bias: None,
            hidden_dim,
            grads: None,
            upstream: Upstream::ONE,
            orphan_bias_grad: None,
        }
    }

    /// Adds the bias `[V]`.
    pub fn with_bias(mut self, bias: &'a [T]) -> Self {
        self.bias = Some(bias);
        self
    }

    /// Writes `d hidden` and `d weight`.
    pub fn with_grads(mut self, hidden: &'a mut [T], weight: &'a mut [T]) -> Self {
        let bias = self
            .grads
            .take()
            .and_then(|g| g.bias)
            .or(self.orphan_bias_grad.take());
        self.grads = Some(LinearGrads {
            hidden,
            weight,
            bias,
        });
        self
    }

    /// Also writes `d bias` (needs [`Linear::with_bias`] and, before or after this call,
    /// [`Linear::with_grads`]: without them the call is refused, never silently left
    /// unwritten).
    pub fn with_bias_grad(mut self, bias: &'a mut [T]) -> Self {
        match self.grads.as_mut() {
            Some(g) => g.bias = Some(bias),
            None => self.orphan_bias_grad = Some(bias),
        }
        self
    }

    /// Scales the gradients by an upstream gradient (one per row for reduction `none`).
    pub fn with_upstream(mut self, upstream: Upstream<'a>) -> Self {
        self.upstream = upstream;
        self
    }

    /// The lengths the planner checks.
    pub fn shape(&self) -> LinearShape {
        LinearShape {
            hidden_len: self.hidden.len(),
            weight_len: self.weight.len(),
            hidden_dim: self.hidden_dim,
            bias_len: self.bias.map(<[T]>::len),
            grads: match (&self.grads, &self.orphan_bias_grad) {
                (Some(g), _) => Some(GradLens {
                    hidden: g.hidden.len(),
                    weight: g.weight.len(),
                    bias: g.bias.as_ref().map(|b| b.len()),
                }),
                // A bias gradient alone: refused as missing `d hidden` (0 elements).
                (None, Some(b)) => Some(GradLens {
                    hidden: 0,
                    weight: 0,
                    bias: Some(b.len()),
                }),
                (None, None) => None,
            },
            upstream: self.upstream.shape(),
        }
    }
}

/// A validated linear cross-entropy call on host slices: the plan bound to its buffers (only
/// the front door, [`Losses::linear_cross_entropy`](crate::Losses::linear_cross_entropy),
/// makes one).
#[derive(Debug)]
pub struct LceCall<'a, T> {
    plan: LcePlan<'a>,
    input: Linear<'a, T>,
    targets: CeTargets<'a, T>,
}

impl<'a, T: Element> LceCall<'a, T> {
    pub(crate) fn bind(plan: LcePlan<'a>, input: Linear<'a, T>, targets: CeTargets<'a, T>) -> Self {
        Self {
            plan,
            input,
            targets,
        }
    }

    /// The plan.
    pub fn plan(&self) -> &LcePlan<'a> {
        &self.plan
    }

    /// The plan, the inputs with the gradient buffers, and the targets.
    pub fn into_parts(self) -> (LcePlan<'a>, Linear<'a, T>, CeTargets<'a, T>) {
        (self.plan, self.input, self.targets)
    }
}

/// Fused linear cross-entropy (`LCE-*`). The default body widens to `f64` and runs the
/// reference (which does hold the `[N, V]` logits).
pub trait LinearCrossEntropyOps<T: Element> {
    /// Runs a validated linear cross-entropy call.
    fn run_linear_cross_entropy(&self, call: LceCall<'_, T>) -> Result<crate::Loss> {
        self.run_linear_cross_entropy_rows(call, crate::CeRowOutputs::new())
            .map(|o| o.loss)
    }

    /// Runs a validated linear cross-entropy call with the per-row outputs of `CE-14` (their
    /// lengths checked by the front door) and the z-loss apart (`CE-15`). The default runs the
    /// reference in `f64` (holding the `[N, V]` logits) and rounds the outputs to `T`.
    fn run_linear_cross_entropy_rows(
        &self,
        call: LceCall<'_, T>,
        rows: crate::CeRowOutputs<'_, T>,
    ) -> Result<crate::CeOutput> {
        Ok(crate::reference::linear_cross_entropy::widened(call, rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The length checks every backend's chunk products run before any work (the CUDA ones
    /// before touching the device, so these hold without a GPU): the
    /// shapes of the three products, a zero hidden dimension, lengths that are not multiples
    /// of `k`, a wrong bias, a product that overflows `usize`.
    #[test]
    fn chunk_products_check_every_length_before_any_work() {
        assert_eq!(ChunkDims::logits(6, 9, Some(3), 3, 6).unwrap(), (2, 3));
        assert_eq!(ChunkDims::logits(6, 0, None, 3, 0).unwrap(), (2, 0));
        assert!(matches!(
            ChunkDims::logits(6, 9, None, 0, 6),
            Err(LossError::EmptyInput { .. })
        ));
        assert!(matches!(
            ChunkDims::logits(7, 9, None, 3, 6),
            Err(LossError::ShapeMismatch {
                what: "hidden",
                expected: 9,
                got: 7
            })
        ));
        assert!(matches!(
            ChunkDims::logits(6, 9, Some(2), 3, 6),
            Err(LossError::ShapeMismatch { what: "bias", .. })
        ));
        assert!(matches!(
            ChunkDims::logits(6, 9, None, 3, 5),
            Err(LossError::ShapeMismatch {
                what: "logits",
                expected: 6,
                got: 5
            })
        ));
        assert_eq!(ChunkDims::grad_hidden(6, 9, 3, 6).unwrap(), (2, 3));
        assert!(matches!(
            ChunkDims::grad_hidden(5, 9, 3, 6),
            Err(LossError::ShapeMismatch {
                what: "logits_grad",
                ..
            })
        ));
        assert_eq!(ChunkDims::grad_weight(6, 6, 3, 9).unwrap(), (2, 3));
        assert!(matches!(
            ChunkDims::grad_weight(6, 6, 3, 10),
            Err(LossError::ShapeMismatch {
                what: "weight_grad",
                ..
            })
        ));
        assert!(matches!(
            ChunkDims::logits(usize::MAX, 2, None, 1, 0),
            Err(LossError::TooLarge { .. })
        ));
    }
}
