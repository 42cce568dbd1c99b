//! The shared conformance suite of `smoothloss_spec` (PyTorch cases, random cases against the
//! reference, error cases) run against the CUDA backend's host-slice trait impls. Ignored
//! where there is no GPU; `gpu-bundle/run.sh` runs it with `--include-ignored`.

use smoothloss_cuda::CudaBackend;
use smoothloss_spec::conformance::Tolerances;

fn backend() -> CudaBackend {
    CudaBackend::new(0).expect("a CUDA device")
}

smoothloss_spec::conformance_tests!(
    attrs [#[ignore = "needs a CUDA device"]],
    backend(),
    f32,
    Tolerances::F32
);
