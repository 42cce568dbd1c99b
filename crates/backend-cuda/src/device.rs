//! The backend: library probes, the device context and stream, and module loading (each kernel
//! file compiled once per process and architecture, loaded once per context, functions cached
//! by name).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;
use smoothloss_core::{LossError, Result};

use crate::compile::{cached_cubin, compile_ptx, leak_arch};
use crate::error::{CudaError, WrapErr};
use crate::geometry;
use crate::kernels::{Family, KernelFamily};

/// Whether the CUDA driver library (`libcuda`) can be loaded. Never panics.
pub fn driver_library_present() -> bool {
    #[cfg(not(feature = "dynamic-loading"))]
    return true; // linked at build time (`dynamic-linking`): present if this process started
    #[cfg(feature = "dynamic-loading")]
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate names and drops the
    // handles; it has no preconditions.
    unsafe {
        cudarc::driver::sys::is_culib_present()
    }
}

/// Whether the NVRTC library can be loaded. Never panics.
pub fn nvrtc_library_present() -> bool {
    #[cfg(not(feature = "dynamic-loading"))]
    return true; // linked at build time, as above
    #[cfg(feature = "dynamic-loading")]
    // SAFETY: as in `driver_library_present`: a `dlopen` probe without preconditions.
    unsafe {
        cudarc::nvrtc::sys::is_culib_present()
    }
}

/// Loaded modules and functions of one context, shared by the clones of a backend.
#[derive(Default)]
pub(crate) struct Loaded {
    modules: HashMap<Family, Arc<CudaModule>>,
    /// Keyed by module and name: every module has its own `sl_reduce_final`.
    functions: HashMap<(Family, &'static str), CudaFunction>,
    /// Dynamic shared memory opted into per function (bytes), above the default 48 KiB.
    smem_opt_in: HashMap<&'static str, u32>,
}

/// The CUDA backend: one device context, one stream, the kernels loaded on first use.
#[derive(Clone)]
pub struct CudaBackend {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) arch: &'static str,
    pub(crate) major: i32,
    /// The device's largest dynamic shared memory per block with an opt-in (bytes).
    pub(crate) smem_opt_in_max: usize,
    /// Shared-memory target of one cross-entropy block (see [`geometry::ce_plan`]).
    pub(crate) ce_smem_target: usize,
    /// Most blocks per cross-entropy row: 8 on sm_90 and newer (thread-block clusters), else 1.
    pub(crate) ce_max_cluster: u32,
    /// Most threads per cross-entropy block (a power of two in 32..=512).
    pub(crate) ce_max_threads: u32,
    pub(crate) loaded: Arc<Mutex<Loaded>>,
    /// The cuBLAS handle on `stream` of the linear cross-entropies' products, created by the
    /// first call that needs one and shared by the backend's clones (a handle's creation costs
    /// far more than a chunk's product).
    pub(crate) blas: Arc<Mutex<Option<Arc<cudarc::cublas::CudaBlas>>>>,
}

impl fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ctx.ordinal())
            .field("arch", &self.arch)
            .finish()
    }
}

/// Sets the release threshold of the device's default memory pool to "never" (as PyTorch's
/// caching allocator keeps what it frees), so the small stream-ordered allocations of each
/// loss call reuse pool memory instead of mapping it again on every call (the driver's default
/// threshold is 0). Best effort: an error leaves the default.
fn keep_pool_memory(ctx: &CudaContext) {
    use cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: `pool` is a valid out-pointer for the duration of the call; `value` outlives the
    // second call, which reads the `cuuint64_t` it points to (the attribute's type).
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS
        {
            let mut value: u64 = u64::MAX;
            let _ = sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut value as *mut u64).cast(),
            );
        }
    }
}

impl CudaBackend {
    /// Opens device `ordinal` on its default stream. Returns [`LossError::Device`] (never
    /// panics) when the driver library, NVRTC or the device is missing.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_library_present() {
            return Err(CudaError::Unavailable(
                "the CUDA driver library (libcuda) could not be loaded: no NVIDIA driver here"
                    .into(),
            )
            .into());
        }
        if !nvrtc_library_present() {
            return Err(crate::error::nvrtc_missing());
        }
        let count = CudaContext::device_count().w()?;
        if ordinal >= count.max(0) as usize {
            return Err(CudaError::Unavailable(format!(
                "no CUDA device {ordinal}: {count} device(s) present"
            ))
            .into());
        }
        let ctx = CudaContext::new(ordinal).w()?;
        keep_pool_memory(&ctx);
        let stream = ctx.default_stream();
        Self::on_stream(stream)
    }

    /// The backend on an existing stream (a framework's own: candle's
    /// `CudaDevice::cuda_stream()`), in that stream's context; kernels launch on it, so they
    /// are ordered with the framework's work without any synchronisation.
    pub fn on_stream(stream: Arc<CudaStream>) -> Result<Self> {
        let ctx = stream.context().clone();
        let (major, minor) = ctx.compute_capability().w()?;
        let opt_in = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .w()?;
        Ok(Self {
            ctx,
            stream,
            arch: leak_arch(major, minor),
            major,
            smem_opt_in_max: usize::try_from(opt_in).unwrap_or(0),
            ce_smem_target: geometry::CE_SMEM_TARGET,
            ce_max_cluster: if major >= 9 { 8 } else { 1 },
            ce_max_threads: geometry::CE_MAX_THREADS,
            loaded: Arc::default(),
            blas: Arc::default(),
        })
    }

    /// The same backend (context, loaded kernels) launching on `stream`, which must belong to
    /// this backend's context.
    pub fn with_stream(&self, stream: Arc<CudaStream>) -> Result<Self> {
        if !Arc::ptr_eq(stream.context(), &self.ctx) {
            return Err(LossError::Device(
                "the stream belongs to another CUDA context".into(),
            ));
        }
        Ok(Self {
            stream,
            // A cuBLAS handle launches on the stream it was made for.
            blas: Arc::default(),
            ..self.clone()
        })
    }

    /// The device context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every loss call launches on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The NVRTC architecture, `sm_XY` from the device's compute capability.
    pub fn arch(&self) -> &'static str {
        self.arch
    }

    /// Loads (once) and returns kernel `name` of `family`.
    pub fn function(&self, family: Family, name: &'static str) -> Result<CudaFunction> {
        let mut l = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = l.functions.get(&(family, name)) {
            return Ok(f.clone());
        }
        let module = match l.modules.get(&family) {
            Some(m) => m.clone(),
            None => {
                // Machine code first (no PTX JIT, so no PTX-version limit of the driver); the
                // PTX, JIT-compiled by the driver, if the cubin does not load.
                let from_cubin = cached_cubin(family, self.arch)
                    .and_then(|img| self.ctx.load_module(Ptx::from_binary(img)).w());
                let m = match from_cubin {
                    Ok(m) => m,
                    Err(cubin_err) => {
                        let ptx = compile_ptx(family, self.arch)?;
                        self.ctx.load_module(ptx).w().map_err(|e| {
                            LossError::Device(format!(
                                "{} loads neither as cubin ({cubin_err}) nor as PTX ({e})",
                                family.kernel_file()
                            ))
                        })?
                    }
                };
                l.modules.insert(family, m.clone());
                m
            }
        };
        let f = module.load_function(name).w()?;
        l.functions.insert((family, name), f.clone());
        Ok(f)
    }

    /// Opts function `name` into `bytes` of dynamic shared memory when that is over the
    /// default limit (once per function and size).
    pub(crate) fn opt_in_smem(
        &self,
        name: &'static str,
        f: &CudaFunction,
        bytes: u32,
    ) -> Result<()> {
        if bytes as usize <= geometry::SMEM_DEFAULT_LIMIT {
            return Ok(());
        }
        let mut l = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if l.smem_opt_in.get(name).is_some_and(|&b| b >= bytes) {
            return Ok(());
        }
        f.set_attribute(
            cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )
        .w()?;
        l.smem_opt_in.insert(name, bytes);
        Ok(())
    }

    /// Loads every kernel of every family (compiling them if needed); a quick self-check.
    pub fn load_all(&self) -> Result<()> {
        for fam in Family::ALL {
            for name in fam.entry_points_for(self.major) {
                self.function(fam, name)?;
            }
        }
        Ok(())
    }
}
