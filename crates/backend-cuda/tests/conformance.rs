//! The shared conformance suite of `smoothloss_spec` (PyTorch cases, random cases against the
//! reference, error cases) run against the CUDA backend's host-slice trait impls. Ignored
//! where there is no GPU; `gpu-bundle/run.sh` runs it with `--include-ignored`.
//!
//! Written out by hand rather than with `smoothloss_spec::conformance_tests!` because that
//! macro's `$(#[$m:meta])* $backend:expr` is ambiguous when an `#[ignore]` attribute is passed
//! (rustc: "local ambiguity when calling macro"); switch to the macro once it accepts one.

use smoothloss_cuda::CudaBackend;
use smoothloss_spec::conformance::{self, Tolerances};

fn backend() -> CudaBackend {
    CudaBackend::new(0).expect("a CUDA device")
}

#[test]
#[ignore = "needs a CUDA device"]
fn conformance_torch_cases() {
    let r = conformance::torch_cases::<f32, _>(&backend(), &Tolerances::F32);
    assert!(r.all_passed(), "{r}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn conformance_random_cases() {
    let r = conformance::random_cases::<f32, _>(&backend(), &Tolerances::F32.reference);
    assert!(r.all_passed(), "{r}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn conformance_errors() {
    let r = conformance::error_cases::<f32, _>(&backend());
    assert!(r.all_passed(), "{r}");
}
