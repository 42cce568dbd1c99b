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
        let h = shape.hidden_dim;
        if h == 0 {
            return Err(LossError::EmptyInput {
                what: "hidden",
                detail: "the hidden dimension H must be at least 1",
            });
        }
        if !shape.hidden_len.is_multiple_of(h) {
            return Err(LossError::ShapeMismatch {
                what: "hidden",
                expected: shape.hidden_len.div_ceil(h) * h,
                got: shape.hidden_len,
            });
        }
        if !shape.weight_len.is_multiple_of(h) {
            return Err(LossError::ShapeMismatch {
                what: "weight",
                expected: shape.weight_len.div_ceil(h) * h,
                got: shape.weight_len,
            });
        }
        let (rows, vocab) = (shape.hidden_len / h, shape.weight_len / h);
        if vocab == 0 {
            return Err(LossError::EmptyInput {
                what: "weight",
                detail: "the classifier must have at least one row (V >= 1)",
            });
        }
        if let Some(b) = shape.bias_len {
            check_len("bias", vocab, b)?;
        }
        if let Some(g) = shape.grads {
            check_len("hidden_grad", shape.hidden_len, g.hidden)?;
            check_len("weight_grad", shape.weight_len, g.weight)?;
            match (g.bias, shape.bias_len) {
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

    /// The row ranges of the chunks, in order (`LCE-4`).
    pub fn chunks(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let (n, c) = (self.rows(), self.chunk_rows.max(1));
        (0..n.div_ceil(c)).map(move |k| k * c..n.min((k + 1) * c))
    }
}

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
        Ok(crate::reference::linear_cross_entropy::widened(call))
    }
}
