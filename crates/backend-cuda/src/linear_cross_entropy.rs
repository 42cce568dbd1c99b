//! Fused linear cross-entropy (`LCE-*`) on the CUDA backend.
//!
//! Not yet a device path: the host-slice trait runs the trait's default body (the `f64`
//! reference on the host), so the backend is correct and passes the shared suite. The device
//! path (chunk GEMMs by cuBLAS through cudarc's `cublas` feature with the cross-entropy kernel
//! in place between them) is open work; see `crates/backend-cuda/NOTES.md`.

use crate::CudaBackend;
use smoothloss_core::LinearCrossEntropyOps;

impl LinearCrossEntropyOps<f32> for CudaBackend {}
