//! CUDA backend of smoothloss: fused value + gradient kernels compiled at run time by NVRTC.
//!
//! - [`CudaBackend::new`] probes the CUDA driver library and NVRTC before touching them (cudarc
//!   panics when a library is missing) and returns [`LossError::Device`] instead; it never
//!   panics on a machine without a GPU.
//! - Each kernel file (`kernels/*.cu`, one per loss family, after a generated prelude and
//!   `kernels/common.cuh`) is compiled once per process and architecture (the device's compute
//!   capability, `sm_XY`) to machine code (PTX as a fallback) and cached; each backend loads it
//!   once into its context.
//! - Every kernel takes one `#[repr(C)]` parameter struct by value ([`params`]), defined with
//!   the same layout in the `.cu` and checked by `static_assert`s generated from Rust's layout
//!   in every compile.
//! - Kernel file and entry-point names and the box kind / format codes come from
//!   `smoothloss_core::op` ([`kernels`]).
//! - Every loss is available on device buffers ([`CudaSlice`]), launched on the backend's
//!   stream ([`CudaBackend::with_stream`] picks another) with no host synchronisation: results
//!   come back as a [`DeviceLoss`] whose [`DeviceLoss::to_host`] is the only synchronising call.
//!   The input and where its gradient goes are an [`Io`]`<'_, CudaSlice<T>>` (read only, a
//!   separate gradient buffer, or the gradient over the input, for every loss). Each `*_dev`
//!   method builds the same core plan as the host front door (`cfg.plan(...)` on an [`Extent`]
//!   of the device buffers' lengths, the declared shape and the [`DeviceUpstream`]'s shape), so
//!   bad shapes give the host's errors; target contents (class targets in range, binary
//!   targets in `[0, 1]`) are checked on the device and reported by [`DeviceLoss::to_host`] as
//!   the host's typed errors.
//! - The host-slice traits of `smoothloss_core` ([`CrossEntropyOps`], [`BoxLossOps`],
//!   [`RegressionOps`], [`BinaryOps`], [`Backend`]) are implemented for `f32`: each `run_*`
//!   takes the call the front door ([`Losses`]) validated, uploads it, launches on its plan and
//!   downloads (no validation again), so the shared conformance suite can test this backend
//!   like any other.
//! - Reductions are deterministic: per-block partial sums in a fixed order, then one final
//!   block (or the last block to finish, adding the partials in block order); no
//!   floating-point atomics.
//!
//! Layout: `device.rs` (the backend, context, stream, module loading), `error.rs` (errors and
//! their conversion), `launch.rs` (buffers, pointers, the final reduction, the host-slice round
//! trip), one file per kernel file with its launches and host-slice trait (`cross_entropy.rs`,
//! `box_loss.rs`, `regression.rs`, `binary.rs`, beside `kernels/<family>.cu`), `compile.rs`
//! (NVRTC), [`params`] (the kernels' ABI), [`kernels`] (sources and entry points) and
//! [`geometry`] (the launch shapes shared with the CPU emulation of the kernels).
//!
//! [`LossError::Device`]: smoothloss_core::LossError::Device
//! [`CudaSlice`]: cudarc::driver::CudaSlice
//! [`CrossEntropyOps`]: smoothloss_core::CrossEntropyOps
//! [`BoxLossOps`]: smoothloss_core::BoxLossOps
//! [`RegressionOps`]: smoothloss_core::RegressionOps
//! [`BinaryOps`]: smoothloss_core::BinaryOps
//! [`Backend`]: smoothloss_core::Backend
//! [`Losses`]: smoothloss_core::Losses
//! [`Io`]: smoothloss_core::Io
//! [`Extent`]: smoothloss_core::Extent
#![warn(missing_docs)]

pub mod geometry;
pub mod kernels;
pub mod params;

mod binary;
mod box_loss;
mod buffers;
mod collective;
mod compile;
mod cross_entropy;
mod device;
mod distribution;
mod error;
mod launch;
mod linear_cross_entropy;
mod oriented_box;
mod quality;
mod regression;

pub use collective::{NcclCollective, NcclId, nccl_library_present};
pub use compile::{Cubin, compile_cubin, compile_ptx};
pub use cross_entropy::{CeElement, DeviceCeTargets, DeviceRowOutputs};
pub use device::{CudaBackend, driver_library_present, nvrtc_library_present};
pub use error::{CudaError, WrapErr};
pub use kernels::{Family, KernelFamily};
pub use launch::{DeviceLoss, DeviceUpstream};
pub use linear_cross_entropy::{
    DeviceLinear, DeviceLinearGrads, LceElement, chunk_rows_for_free, cublas_library_present,
};

pub use cudarc;
pub use half;

impl smoothloss_core::Backend<f32> for CudaBackend {
    fn name(&self) -> String {
        "cuda".into()
    }
}
