//! The shared conformance suite of `smoothloss_spec` (PyTorch cases, random cases against the
//! reference, error cases) run against the CUDA backend's host-slice trait impls. Ignored
//! where there is no GPU; `gpu-bundle/run.sh` runs it with `--include-ignored`.
//!
//! Run with `--include-ignored` where there is no device, each test says so and stops
//! (passes), so that `cargo test -p smoothloss-cuda --release -- --include-ignored` goes on to
//! the kernels' CPU emulation (`tests/emulated/`, on its own:
//! `cargo test -p smoothloss-cuda --release --test emulated`). With `SMOOTHLOSS_REQUIRE_GPU=1`
//! (set by `gpu-bundle/run.sh`) a missing device is a failure instead.

use smoothloss_core::LossError;
use smoothloss_cuda::CudaBackend;
use smoothloss_spec::conformance::Tolerances;

/// The device, or why there is none (a panic when `SMOOTHLOSS_REQUIRE_GPU` is set).
fn device() -> Result<CudaBackend, LossError> {
    let got = CudaBackend::new(0);
    if let Err(e) = &got {
        let required = std::env::var_os("SMOOTHLOSS_REQUIRE_GPU").is_some_and(|v| v != "0");
        assert!(
            !required,
            "SMOOTHLOSS_REQUIRE_GPU is set but there is no CUDA device: {e}"
        );
        eprintln!(
            "skipped: no CUDA device ({e}); the kernels run without one through the emulation: \
             cargo test -p smoothloss-cuda --release --test emulated"
        );
    }
    got
}

smoothloss_spec::conformance_tests!(
    attrs [#[ignore = "needs a CUDA device"]],
    match device() {
        Ok(b) => b,
        // Returns from the test: said so (above), and stopped.
        Err(_) => return,
    },
    f32,
    Tolerances::F32
);
