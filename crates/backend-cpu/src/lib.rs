//! CPU backend of smoothloss: fused forward + backward losses on `f32` data, SIMD dispatched at
//! run time, multithreaded with rayon, bit-identical results for any thread count.
#![warn(missing_docs)]

pub mod binary;
pub mod box_loss;
pub mod box_math;
pub mod cross_entropy;
pub mod elementwise;
pub mod ndarray_api;
pub mod regression;
pub mod simd;

use smoothloss_core::backend::Backend;

/// The CPU backend. `f32` data; losses accumulated in `f64`.
///
/// `CpuBackend::default()` uses rayon's global pool; [`CpuBackend::with_threads`] caps the
/// number of threads with a private pool. Results do not depend on the number of threads.
#[derive(Debug, Clone, Default)]
pub struct CpuBackend {
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    /// Write large cross-entropy gradients with non-temporal (streaming) stores.
    streaming_stores: bool,
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
            streaming_stores: false,
        }
    }

    /// Writes cross-entropy gradients of `2^22` logits or more with non-temporal (streaming)
    /// stores, which bypass the caches. Off by default: on the 2-core Zen 3 machine of
    /// BENCHMARKS.md ordinary stores were faster on one thread for every large shape (1024x32000:
    /// about 37 ms against 48 ms, medians of four runs each); machines with other memory
    /// systems may differ, so it stays available. Results are bit-identical either way.
    pub fn with_streaming_stores(mut self, on: bool) -> Self {
        self.streaming_stores = on;
        self
    }

    /// Whether large cross-entropy gradients use streaming stores.
    pub fn streaming_stores(&self) -> bool {
        self.streaming_stores
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

impl Backend<f32> for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }
}
