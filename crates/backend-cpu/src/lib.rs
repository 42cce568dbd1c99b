//! CPU backend of smoothloss: fused forward + backward losses on `f32` data, SIMD dispatched at
//! run time, multithreaded with rayon, bit-identical results for any thread count.
//!
//! # Layout
//!
//! * [`cross_entropy`]: the fused cross-entropy (`plan.rs` per-call constants, `long.rs` chunked
//!   long rows, `short.rs` batched short rows, `kernels/` portable and AVX2 + FMA kernels);
//! * [`box_loss`], [`regression`], [`binary`]: one folder per family, the trait impl and entry in
//!   `mod.rs`, the per-item math in `math.rs`;
//! * `blocks.rs`: the loss-agnostic block runner (fixed blocks on the backend's pool, fixed-order
//!   `f64` reduction) of the box, regression and binary losses; `elementwise.rs`: the chunked
//!   element-wise kernel of the regression and binary losses;
//! * [`linear_cross_entropy`]: the fused linear cross-entropy (chunk GEMMs by `matrixmultiply`
//!   around the cross-entropy kernel in place);
//! * [`math`]: the elementary `f32` functions, one per contract;
//! * [`simd`]: the SIMD levels ([`SimdLevel`], held by [`CpuBackend`]) and AVX2 helpers.
#![warn(missing_docs)]

pub mod binary;
mod blocks;
pub mod box_loss;
pub mod cross_entropy;
mod elementwise;
pub mod linear_cross_entropy;
pub mod math;
pub mod regression;
pub mod simd;

pub use simd::SimdLevel;
use smoothloss_core::backend::Backend;
use smoothloss_core::{Io, Loss, LossConfig, PairCall, Parts, Reduction, Upstream};
use std::borrow::Cow;

/// The input and the gradient buffer of a call. An in-place call on a loss without an in-place
/// kernel reads a copy of the input and writes the gradient over the buffer.
pub(crate) fn split_io<'a>(io: Io<'a, [f32]>) -> (Cow<'a, [f32]>, Option<&'a mut [f32]>) {
    match io {
        Io::Read(x) => (Cow::Borrowed(x), None),
        Io::Separate { input, grad } => (Cow::Borrowed(input), Some(grad)),
        Io::InPlace(x) => (Cow::Owned(x.to_vec()), Some(x)),
    }
}

/// A loss kernel on two aligned inputs: `(backend, cfg, items, input, second, upstream, grad)`
/// to the reduced values (one for `mean`/`sum`, one per item for `none`).
pub(crate) type PairKernel<C> =
    fn(&CpuBackend, &C, usize, &[f32], &[f32], Upstream<'_>, Option<&mut [f32]>) -> Vec<f64>;

/// Runs a validated call of a loss on two aligned inputs through its kernel: the whole body of
/// every `run_*` method of the box, regression and binary losses.
pub(crate) fn run_pair<C: LossConfig>(
    backend: &CpuBackend,
    call: PairCall<'_, C, f32>,
    kernel: PairKernel<C>,
) -> Loss {
    let Parts {
        plan,
        io,
        with,
        upstream,
    } = call.into_parts();
    let (input, grad) = split_io(io);
    let values = kernel(backend, plan.cfg, plan.items, &input, with, upstream, grad);
    loss_of(plan.reduction(), values)
}

/// The [`Loss`] of reduced values (one for `mean`/`sum`, one per item for `none`).
pub(crate) fn loss_of(reduction: Reduction, mut values: Vec<f64>) -> Loss {
    match reduction {
        Reduction::None => Loss::PerItem(values),
        _ => Loss::Reduced(values.pop().unwrap_or(f64::NAN)),
    }
}

/// The CPU backend. `f32` data; losses accumulated in `f64`.
///
/// `CpuBackend::default()` uses rayon's global pool; [`CpuBackend::with_threads`] caps the
/// number of threads with a private pool. Results do not depend on the number of threads.
/// Every loss runs the kernels of [`CpuBackend::simd_level`] (by default the best this CPU
/// has; [`CpuBackend::with_simd_level`] chooses another).
#[derive(Debug, Clone)]
pub struct CpuBackend {
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    /// The kernel family every loss runs (always available on this CPU).
    level: SimdLevel,
    /// Streaming stores for large cross-entropy gradients: `None` chooses (see
    /// [`CpuBackend::streams_gradient`]), `Some(on)` forces them on or off.
    streaming_stores: Option<bool>,
}

impl CpuBackend {
    /// A backend on rayon's global pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend that uses at most `threads` threads (at least 1).
    pub fn with_threads(threads: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .ok()
            .map(std::sync::Arc::new);
        Self {
            pool,
            ..Self::default()
        }
    }

    /// The same backend running the kernels of `level` (every loss family); a level this CPU
    /// lacks falls back to [`SimdLevel::Scalar`]. Results are bit-identical across levels for
    /// the box, regression and binary losses; cross-entropy results of different levels agree
    /// within the tolerance of [`cross_entropy`].
    pub fn with_simd_level(mut self, level: SimdLevel) -> Self {
        self.level = if level.is_available() {
            level
        } else {
            SimdLevel::Scalar
        };
        self
    }

    /// The SIMD level the kernels run on (by default [`SimdLevel::detect`]).
    pub fn simd_level(&self) -> SimdLevel {
        self.level
    }

    /// Forces non-temporal (streaming) stores for cross-entropy gradients of `2^22` logits or
    /// more on (`true`) or off (`false`) instead of the automatic choice of
    /// [`CpuBackend::streams_gradient`]. Results are bit-identical either way.
    pub fn with_streaming_stores(mut self, on: bool) -> Self {
        self.streaming_stores = Some(on);
        self
    }

    /// The forced streaming-store setting, `None` when automatic.
    pub fn streaming_stores(&self) -> Option<bool> {
        self.streaming_stores
    }

    /// Whether a cross-entropy call with a separate gradient buffer `grad` of `rows x classes`
    /// writes it with non-temporal (streaming) stores, which bypass the caches and so save the
    /// read-for-ownership of every gradient line. Automatic choice: only for `2^22` logits or
    /// more (a gradient far larger than the caches), and only when every row of the gradient
    /// starts on a 64-byte line (`grad` 64-byte aligned, `classes` a multiple of 16), because
    /// streaming pays only when whole lines are written; a gradient whose rows straddle lines
    /// is not streamed (the measurements are in BENCHMARKS.md). In-place calls never stream.
    pub fn streams_gradient(&self, grad: &[f32], rows: usize, classes: usize) -> bool {
        let big = rows.saturating_mul(classes) >= 1 << 22;
        match self.streaming_stores {
            Some(on) => on && big,
            None => {
                big && (grad.as_ptr() as usize).is_multiple_of(64) && classes.is_multiple_of(16)
            }
        }
    }

    /// Number of threads this backend runs on.
    pub fn threads(&self) -> usize {
        self.pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }

    /// Runs `f` inside this backend's pool.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self {
            pool: None,
            level: SimdLevel::detect(),
            streaming_stores: None,
        }
    }
}

impl Backend<f32> for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }
}
