//! CPU backend of smoothloss: fused forward + backward losses on `f32` data, SIMD dispatched at
//! run time, multithreaded with rayon, bit-identical results for any thread count.
#![warn(missing_docs)]

pub mod binary;
pub mod box_loss;
pub mod box_math;
pub mod cross_entropy;
pub mod elementwise;
pub mod ndarray_api;
pub mod parallel;
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
        Self { pool }
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
