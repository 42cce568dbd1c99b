//! The per-call constants of the fused cross-entropy: chunk geometry, the target kind, the
//! class weights in `f32` and per chunk, the smoothing constants, and the per-chunk statistics
//! that pass 1 returns.

use crate::simd::SimdLevel;
use smoothloss_core::cross_entropy::{CeTargets, CrossEntropy};

/// Columns per chunk: the unit of the per-chunk statistics (the chunk, its exponentials and
/// the previous row's gradient block fit L1).
pub const CHUNK: usize = 1024;
/// Rows of at most this many columns are one chunk (no per-chunk combination).
pub const SHORT_ROW: usize = 2048;
/// Columns per `f32` accumulation block inside a chunk (64 terms per lane).
pub(super) const SUB: usize = 512;
/// Chunks per parallel block when single rows are split across threads.
pub(super) const BLOCK_CHUNKS: usize = 32;
/// Target number of logits per rayon task when whole rows are distributed.
pub(super) const TASK_ELEMS: usize = 1 << 20;
/// Below this many logits the call runs in the calling thread.
pub(super) const PAR_MIN_ELEMS: usize = 1 << 15;

/// Statistics of one chunk (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ChunkStats {
    /// The chunk's maximum (may be NaN or `-inf`).
    pub(super) m: f32,
    /// `sum_j exp(z_j - mref)` over the entries below the maximum (`s'`, `z_j - mref < 0`):
    /// the chunk's own maximum and its ties (`exp(0) = 1`) are counted in `n0` instead, so
    /// that `S = n0 + s'` keeps a small `s'` (the loss of a confident row is `ln(1 + s')`).
    pub(super) s: f64,
    /// The number of entries equal to the chunk's maximum (`z_j - mref = +0`).
    pub(super) n0: f64,
    /// `sum_j w_j q'_j (z_j - mref)` (hard targets: `q' = 1`).
    pub(super) z: f64,
    /// `sum_j w_j q'_j` (probability targets only).
    pub(super) wq: f64,
}

/// The reference point of a chunk's exponentials: its max, or 0 when the max is `-inf`.
#[inline]
pub(super) fn mref(m: f32) -> f32 {
    if m == f32::NEG_INFINITY { 0.0 } else { m }
}

/// `exp(mref(m) - mm)` in `f64`, with the common `m == mm` case (one chunk, or the chunk
/// holding the maximum) short-cut: `exp(0) = 1` exactly, so the result is the same.
#[inline]
pub(super) fn chunk_factor(m: f32, mm: f64) -> f64 {
    let d = f64::from(mref(m)) - mm;
    if d == 0.0 { 1.0 } else { d.exp() }
}

/// What pass 1 and pass 2 accumulate and subtract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Hard targets, no class weights.
    Plain,
    /// Hard targets with class weights.
    Weighted,
    /// Probability targets, no class weights.
    Probs,
    /// Probability targets with class weights.
    ProbsWeighted,
}

/// Per-call constants.
pub(super) struct Plan<'a> {
    pub(super) level: SimdLevel,
    pub(super) classes: usize,
    pub(super) eps: f64,
    pub(super) kind: Kind,
    pub(super) classes_t: Option<&'a [i64]>,
    pub(super) probs: Option<&'a [f32]>,
    pub(super) ignore: Option<i64>,
    pub(super) w64: Option<&'a [f64]>,
    pub(super) w32: Vec<f32>,
    /// `sum_j w_j` (exact `f64`, in class order as the reference).
    pub(super) w_sum: f64,
    /// Per chunk: `sum_j w_j` over the chunk's columns (hard targets).
    pub(super) w_chunk: Vec<f64>,
    /// `1 - eps` and `eps / C` as `f32` for the probability-target kernels.
    pub(super) qa: f32,
    pub(super) qb: f32,
    /// Columns per chunk: the row length for rows of at most [`SHORT_ROW`] columns, else
    /// [`CHUNK`].
    pub(super) chunk: usize,
    /// Number of chunks per row.
    pub(super) nchunks: usize,
    /// The upstream factor of every row when it is the same for all (`us(i)` of the callers;
    /// set by the caller that knows, `None` otherwise): the lanes path then skips the per-row
    /// call.
    pub(super) uniform_us: Option<f64>,
}

impl Plan<'_> {
    #[inline]
    pub(super) fn weight(&self, j: usize) -> f64 {
        self.w64.map_or(1.0, |w| w[j])
    }

    /// The class target of row `i`: `None` for an ignored row and for probability targets
    /// (no class targets at all).
    #[inline]
    pub(super) fn target(&self, i: usize) -> Option<usize> {
        let t = self.classes_t?;
        let y = t[i];
        if self.ignore == Some(y) {
            None
        } else {
            Some(y as usize)
        }
    }

    #[inline]
    pub(super) fn ignored(&self, i: usize) -> bool {
        match self.classes_t {
            Some(t) => self.ignore == Some(t[i]),
            None => false,
        }
    }

    /// The chunk's weights (empty when unweighted).
    #[inline]
    pub(super) fn wslice(&self, col0: usize, n: usize) -> &[f32] {
        if self.w32.is_empty() {
            &[]
        } else {
            &self.w32[col0..col0 + n]
        }
    }

    /// Row `i`'s target probabilities for columns `col0..col0 + n` (empty for hard targets).
    #[inline]
    pub(super) fn qslice(&self, i: usize, col0: usize, n: usize) -> &[f32] {
        match self.probs {
            Some(q) => {
                let at = i * self.classes + col0;
                &q[at..at + n]
            }
            None => &[],
        }
    }
}

impl<'a> Plan<'a> {
    /// The plan of one call with `classes` columns per row on SIMD level `level` (available on
    /// this CPU).
    pub(super) fn new(
        level: SimdLevel,
        cfg: &'a CrossEntropy,
        classes: usize,
        targets: CeTargets<'a, f32>,
    ) -> Self {
        let c = classes;
        let eps = cfg.label_smoothing;
        let w64 = cfg.class_weights.as_deref();
        let w_sum: f64 = match w64 {
            Some(w) => w.iter().sum(),
            // Exact: `c` ones sum to `c` in `f64` (c < 2^53).
            None => c as f64,
        };
        let chunk = if c <= SHORT_ROW { c.max(1) } else { CHUNK };
        let nchunks = c.div_ceil(chunk);
        let w_chunk: Vec<f64> = (0..nchunks)
            .map(|k| {
                let (a, b) = (k * chunk, ((k + 1) * chunk).min(c));
                match w64 {
                    Some(w) => w[a..b].iter().sum(),
                    None => (b - a) as f64,
                }
            })
            .collect();
        let (kind, classes_t, probs) = match targets {
            CeTargets::Classes(t) => (
                if w64.is_some() {
                    Kind::Weighted
                } else {
                    Kind::Plain
                },
                Some(t),
                None,
            ),
            CeTargets::Probs(q) => (
                if w64.is_some() {
                    Kind::ProbsWeighted
                } else {
                    Kind::Probs
                },
                None,
                Some(q),
            ),
        };
        Plan {
            level,
            classes: c,
            eps,
            kind,
            classes_t,
            probs,
            ignore: cfg.ignore_index,
            w64,
            w32: w64.map_or_else(Vec::new, |w| w.iter().map(|&v| v as f32).collect()),
            w_sum,
            w_chunk,
            qa: (1.0 - eps) as f32,
            qb: (eps / c as f64) as f32,
            chunk,
            nchunks,
            uniform_us: None,
        }
    }
}

/// A zero-sized marker type per [`Kind`], the type parameter of the monomorphised kernels.
pub(super) trait KindMarker {
    /// The kind.
    const KIND: Kind;
    /// Class weights present.
    const WEIGHTED: bool = matches!(Self::KIND, Kind::Weighted | Kind::ProbsWeighted);
    /// Probability targets.
    const PROBS: bool = matches!(Self::KIND, Kind::Probs | Kind::ProbsWeighted);
}

/// Marker of [`Kind::Plain`].
pub(super) struct Plain;
/// Marker of [`Kind::Weighted`].
pub(super) struct Weighted;
/// Marker of [`Kind::Probs`].
pub(super) struct Probs;
/// Marker of [`Kind::ProbsWeighted`].
pub(super) struct ProbsWeighted;

impl KindMarker for Plain {
    const KIND: Kind = Kind::Plain;
}
impl KindMarker for Weighted {
    const KIND: Kind = Kind::Weighted;
}
impl KindMarker for Probs {
    const KIND: Kind = Kind::Probs;
}
impl KindMarker for ProbsWeighted {
    const KIND: Kind = Kind::ProbsWeighted;
}

/// The one run-time to type dispatch of [`Kind`]: evaluates `$body` with the type alias `$k`
/// bound to the marker of `$kind`.
macro_rules! with_kind {
    ($kind:expr, |$k:ident| $body:expr) => {
        match $kind {
            $crate::cross_entropy::plan::Kind::Plain => {
                type $k = $crate::cross_entropy::plan::Plain;
                $body
            }
            $crate::cross_entropy::plan::Kind::Weighted => {
                type $k = $crate::cross_entropy::plan::Weighted;
                $body
            }
            $crate::cross_entropy::plan::Kind::Probs => {
                type $k = $crate::cross_entropy::plan::Probs;
                $body
            }
            $crate::cross_entropy::plan::Kind::ProbsWeighted => {
                type $k = $crate::cross_entropy::plan::ProbsWeighted;
                $body
            }
        }
    };
}
pub(super) use with_kind;
