//! The NCCL implementation of `smoothloss_core`'s [`Collective`] (vocab-parallel
//! cross-entropy, `VP-*`), through cudarc's `nccl` feature, loaded at run time like the rest
//! of the crate: without `libnccl` (or without a device) the constructors return
//! [`LossError::Device`], never panic.
//!
//! The trait's buffers are host vectors: each all-reduce copies the buffer to the device,
//! runs `ncclAllReduce` in place on the rank's stream and copies the result back (the
//! vocab-parallel cross-entropy all-reduces `O(N)` row statistics, not logits). NCCL's sum is
//! deterministic for a fixed communicator and message size (same algorithm and ring order on
//! every run), but its order is NCCL's, not rank order; its max propagates NaN
//! implementation-defined, which `VP-2` does not rely on.
//!
//! One rank per thread or process ([`NcclCollective::from_rank`], each rank creating its own
//! backend and communicator: cudarc's `Comm` is not `Send`); a single thread driving several
//! ranks would need NCCL group calls, which a per-rank all-reduce cannot make, so that is not
//! offered. Run only with more than one GPU (`tests/collective.rs`); here it is compiled and
//! its refusals are tested.
//!
//! [`LossError::Device`]: smoothloss_core::LossError::Device

use crate::CudaBackend;
use cudarc::nccl::safe::{Comm, Id, ReduceOp as NcclOp};
use smoothloss_core::vocab_parallel::{Collective, ReduceOp};
use smoothloss_core::{LossError, Result};
use std::fmt;

/// Whether the NCCL library can be loaded. Never panics.
pub fn nccl_library_present() -> bool {
    #[cfg(not(feature = "dynamic-loading"))]
    return true; // linked at build time (`dynamic-linking`): present if this process started
    #[cfg(feature = "dynamic-loading")]
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate names and drops the
    // handles; it has no preconditions.
    unsafe {
        cudarc::nccl::sys::is_culib_present()
    }
}

fn nccl_err(e: impl fmt::Debug) -> LossError {
    LossError::Collective(format!("NCCL: {e:?}"))
}

fn require_nccl() -> Result<()> {
    if nccl_library_present() {
        Ok(())
    } else {
        Err(LossError::Device(
            "the NCCL library (libnccl) could not be loaded".into(),
        ))
    }
}

/// One rank of an NCCL communicator, on a backend's device and stream.
pub struct NcclCollective {
    comm: Comm,
    backend: CudaBackend,
}

impl fmt::Debug for NcclCollective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NcclCollective")
            .field("rank", &self.comm.rank())
            .field("world", &self.comm.world_size())
            .finish()
    }
}

/// An NCCL unique id (128 bytes): made by rank 0 ([`NcclCollective::unique_id`]) and sent to
/// the other ranks by the caller's own means (a file, the launcher's environment).
pub type NcclId = [core::ffi::c_char; 128];

impl NcclCollective {
    /// A new unique id (on rank 0).
    pub fn unique_id() -> Result<NcclId> {
        require_nccl()?;
        Id::new().map(|id| *id.internal()).map_err(nccl_err)
    }

    /// Joins the communicator `id` as `rank` of `world` (one process or thread per rank).
    pub fn from_rank(backend: &CudaBackend, rank: usize, world: usize, id: NcclId) -> Result<Self> {
        require_nccl()?;
        if world == 0 || rank >= world || i32::try_from(world).is_err() {
            return Err(LossError::InvalidParameter {
                name: "rank",
                value: rank as f64,
                reason: "the rank must lie in 0..world (world >= 1, at most i32::MAX)",
            });
        }
        let comm = Comm::from_rank(backend.stream().clone(), rank, world, Id::uninit(id))
            .map_err(nccl_err)?;
        Ok(Self {
            comm,
            backend: backend.clone(),
        })
    }

    fn reduce<T>(&self, op: ReduceOp, buf: &mut [T]) -> Result<()>
    where
        T: cudarc::nccl::safe::NcclType + cudarc::driver::DeviceRepr + Copy + Default,
    {
        if buf.is_empty() {
            return Ok(());
        }
        let stream = self.backend.stream();
        let mut dev = stream
            .clone_htod(buf)
            .map_err(|e| LossError::Device(e.to_string()))?;
        let op = match op {
            ReduceOp::Sum => NcclOp::Sum,
            ReduceOp::Max => NcclOp::Max,
        };
        self.comm
            .all_reduce_in_place(&mut dev, &op)
            .map_err(nccl_err)?;
        stream
            .memcpy_dtoh(&dev, buf)
            .map_err(|e| LossError::Device(e.to_string()))?;
        stream
            .synchronize()
            .map_err(|e| LossError::Device(e.to_string()))
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.comm.rank()
    }
    fn world_size(&self) -> usize {
        self.comm.world_size()
    }
    fn all_reduce_f64(&self, op: ReduceOp, buf: &mut [f64]) -> Result<()> {
        self.reduce(op, buf)
    }
    fn all_reduce_f32(&self, op: ReduceOp, buf: &mut [f32]) -> Result<()> {
        self.reduce(op, buf)
    }
}
