//! CUDA backend of smoothloss: fused value + gradient kernels compiled at run time by NVRTC.
//!
//! - [`CudaBackend::new`] probes the CUDA driver library and NVRTC before touching them (cudarc
//!   panics when a library is missing) and returns [`LossError::Device`] instead; it never
//!   panics on a machine without a GPU.
//! - Each kernel file (`kernels/*.cu`, one per loss family, with `kernels/common.cuh`
//!   prepended) is compiled once per process and architecture (the device's compute capability,
//!   `sm_XY`) to machine code (PTX as a fallback) and cached; each backend loads it once into
//!   its context.
//! - Every loss is available on device buffers ([`CudaSlice`]), launched on the backend's
//!   stream ([`CudaBackend::with_stream`] picks another) with no host synchronisation: results
//!   come back as a [`DeviceLoss`] whose [`DeviceLoss::to_host`] is the only synchronising call.
//! - The host-slice traits of `smoothloss_core` ([`CrossEntropyOps`], [`BoxLossOps`],
//!   [`RegressionOps`], [`BinaryOps`], [`Backend`]) are implemented for `f32` by upload, run and
//!   download, so the shared conformance suite can test this backend like any other.
//! - Reductions are deterministic: per-block partial sums in a fixed order, then one final
//!   block (or the last block to finish, adding the partials in block order); no
//!   floating-point atomics.
//!
//! Layout: this file holds the backend, its errors and the shared helpers; one file per loss
//! family holds its launches and host-slice trait (`cross_entropy.rs`, `box_loss.rs`,
//! `elementwise.rs`, beside `kernels/*.cu`); `compile.rs` the NVRTC compilation; [`geometry`]
//! the launch shapes shared with the CPU emulation of the kernels.
#![warn(missing_docs)]

pub mod geometry;
pub mod kernels;

mod box_loss;
mod compile;
mod cross_entropy;
mod elementwise;

pub use compile::{Cubin, compile_cubin, compile_ptx};
use compile::{cached_cubin, leak_arch};
pub use cross_entropy::CeElement;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
    DeviceRepr, DriverError, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};
use smoothloss_core::box_loss::box_count;
use smoothloss_core::error::check_len;
use smoothloss_core::{
    Backend, BceWithLogits, BinaryOps, BoxFormat, BoxLoss, BoxLossKind, BoxLossOps, CeTargets,
    CrossEntropy, CrossEntropyOps, Huber, LossError, Reduction, RegressionOps, Result,
    SigmoidFocal, SmoothL1, Upstream,
};

pub use cudarc;
pub use half;
pub use kernels::Family;

/// Errors of the CUDA layer before they become [`LossError::Device`] (the candle pattern: a
/// typed error inside the crate, one conversion at the boundary).
#[derive(Debug)]
#[non_exhaustive]
pub enum CudaError {
    /// A CUDA driver call failed.
    Driver(DriverError),
    /// NVRTC could not compile a kernel file.
    Compile {
        /// Which kernel file.
        family: Family,
        /// The NVRTC error, with its log.
        err: CompileError,
    },
    /// A library or device is missing.
    Unavailable(String),
}

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaError::Driver(e) => write!(f, "CUDA driver error: {e}"),
            CudaError::Compile { family, err } => match err {
                CompileError::CompileError { log, .. } => write!(
                    f,
                    "NVRTC failed to compile {}: {}",
                    family.file_name(),
                    log.to_string_lossy()
                ),
                other => write!(f, "NVRTC error on {}: {other}", family.file_name()),
            },
            CudaError::Unavailable(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for CudaError {}

impl From<DriverError> for CudaError {
    fn from(e: DriverError) -> Self {
        CudaError::Driver(e)
    }
}

impl From<CudaError> for LossError {
    fn from(e: CudaError) -> Self {
        LossError::Device(e.to_string())
    }
}

/// `.w()?` turns a cudarc result into a [`Result`] with [`LossError::Device`].
pub trait WrapErr<T> {
    /// Converts the error.
    fn w(self) -> Result<T>;
}

impl<T> WrapErr<T> for std::result::Result<T, DriverError> {
    fn w(self) -> Result<T> {
        self.map_err(|e| CudaError::Driver(e).into())
    }
}

impl<T> WrapErr<T> for std::result::Result<T, CudaError> {
    fn w(self) -> Result<T> {
        self.map_err(Into::into)
    }
}

/// Whether the CUDA driver library (`libcuda`) can be loaded. Never panics.
pub fn driver_library_present() -> bool {
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate names and drops the
    // handles; it has no preconditions.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether the NVRTC library can be loaded. Never panics.
pub fn nvrtc_library_present() -> bool {
    // SAFETY: as in `driver_library_present`: a `dlopen` probe without preconditions.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Loaded modules and functions of one context, shared by the clones of a backend.
#[derive(Default)]
struct Loaded {
    modules: HashMap<Family, Arc<CudaModule>>,
    functions: HashMap<&'static str, CudaFunction>,
    /// Dynamic shared memory opted into per function (bytes), above the default 48 KiB.
    smem_opt_in: HashMap<&'static str, u32>,
}

/// The CUDA backend: one device context, one stream, the kernels loaded on first use.
#[derive(Clone)]
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    arch: &'static str,
    major: i32,
    /// The device's largest dynamic shared memory per block with an opt-in (bytes).
    smem_opt_in_max: usize,
    /// Shared-memory target of one cross-entropy block (see [`geometry::ce_plan`]).
    ce_smem_target: usize,
    /// Most blocks per cross-entropy row: 8 on sm_90 and newer (thread-block clusters), else 1.
    ce_max_cluster: u32,
    /// Most threads per cross-entropy block (a power of two in 32..=512).
    ce_max_threads: u32,
    loaded: Arc<Mutex<Loaded>>,
}

impl fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ctx.ordinal())
            .field("arch", &self.arch)
            .finish()
    }
}

/// An upstream gradient on the device (see [`Upstream`]).
#[derive(Debug, Clone, Copy)]
pub enum DeviceUpstream<'a> {
    /// The same value for every loss value.
    Scalar(f64),
    /// One value per loss value (reduction `none` only).
    PerElement(&'a CudaSlice<f64>),
}

/// Cross-entropy targets on the device.
#[derive(Debug, Clone, Copy)]
pub enum DeviceCeTargets<'a, T> {
    /// One class index per row (or the ignore index).
    Classes(&'a CudaSlice<i64>),
    /// A target distribution per row, `[rows, classes]`, in the logits' dtype.
    Probs(&'a CudaSlice<T>),
}

/// Loss values left on the device by a loss call.
#[derive(Debug)]
pub struct DeviceLoss {
    values: CudaSlice<f64>,
    target_check: Option<TargetCheck>,
    stream: Arc<CudaStream>,
}

/// Targets checked on the device, reported by [`DeviceLoss::to_host`].
#[derive(Debug)]
enum TargetCheck {
    /// Cross-entropy: `[first bad row or -1, its target]` and C.
    Classes(CudaSlice<i64>, usize),
    /// Binary losses: `[!(first index outside [0, 1]) or 0, its value as f64 bits]`.
    Binary(CudaSlice<u64>),
}

impl DeviceLoss {
    /// The loss values: one for `mean`/`sum`, one per row / element / pair for `none`.
    pub fn values(&self) -> &CudaSlice<f64> {
        &self.values
    }

    /// Copies the values to the host (this synchronises the stream) and reports a target
    /// found invalid on the device: an out-of-range class target as
    /// [`LossError::TargetOutOfRange`], a binary target outside `[0, 1]` (or NaN) as
    /// [`LossError::InvalidParameter`] (as the host-slice path's validation). The values are
    /// meaningless when it does.
    pub fn to_host(&self) -> Result<Vec<f64>> {
        match &self.target_check {
            Some(TargetCheck::Classes(check, classes)) => {
                let c = self.stream.clone_dtoh(check).w()?;
                self.stream.synchronize().w()?;
                if c[0] >= 0 {
                    return Err(LossError::TargetOutOfRange {
                        row: c[0] as usize,
                        target: c[1],
                        classes: *classes,
                    });
                }
            }
            Some(TargetCheck::Binary(check)) => {
                let c = self.stream.clone_dtoh(check).w()?;
                self.stream.synchronize().w()?;
                if c[0] != 0 {
                    return Err(LossError::InvalidParameter {
                        name: "targets",
                        value: f64::from_bits(c[1]),
                        reason: "binary targets must lie in [0, 1]",
                    });
                }
            }
            None => {}
        }
        let v = self.stream.clone_dtoh(&self.values).w()?;
        self.stream.synchronize().w()?;
        Ok(v)
    }
}

use geometry::{ELEM_THREADS, REDUCE_THREADS, elem_grid};

/// A pointer argument: the device address of a buffer, or 0 for "absent" (the kernels test
/// every nullable pointer against `nullptr`).
const NULL: u64 = 0;

/// Checks a device upstream gradient as [`Upstream::validate`] does and returns a host
/// stand-in with the same effect on the other checks.
fn check_dev_upstream(
    up: &DeviceUpstream<'_>,
    reduction: Reduction,
    count: usize,
) -> Result<Upstream<'static>> {
    match *up {
        DeviceUpstream::Scalar(s) => {
            Upstream::Scalar(s).validate(reduction, count)?;
            Ok(Upstream::Scalar(s))
        }
        DeviceUpstream::PerElement(u) => {
            if reduction != Reduction::None {
                return Err(LossError::InvalidParameter {
                    name: "upstream",
                    value: u.len() as f64,
                    reason: "a per-element upstream gradient needs reduction `none`",
                });
            }
            check_len("upstream", count, u.len())?;
            Ok(Upstream::ONE)
        }
    }
}

fn empty(what: &'static str, detail: &'static str) -> LossError {
    LossError::EmptyInput { what, detail }
}

/// Owned device copy of a host upstream gradient.
enum UpOwned {
    Scalar(f64),
    Dev(CudaSlice<f64>),
}

impl UpOwned {
    fn as_dev(&self) -> DeviceUpstream<'_> {
        match self {
            UpOwned::Scalar(s) => DeviceUpstream::Scalar(*s),
            UpOwned::Dev(d) => DeviceUpstream::PerElement(d),
        }
    }
}

/// Parameters of an element-wise kernel after the two input pointers and `n`.
enum ElemParams<'a> {
    /// Smooth L1 beta or Huber delta.
    One(f64),
    /// BCE positive weights (device, optional).
    PosWeight(Option<&'a CudaSlice<f64>>),
    /// Focal alpha and gamma.
    Focal(f64, f64),
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
            return Err(CudaError::Unavailable(
                "the NVRTC library (libnvrtc) could not be loaded; set LD_LIBRARY_PATH".into(),
            )
            .into());
        }
        let count = CudaContext::device_count().w()?;
        if ordinal >= count.max(0) as usize {
            return Err(CudaError::Unavailable(format!(
                "no CUDA device {ordinal}: {count} device(s) present"
            ))
            .into());
        }
        let ctx = CudaContext::new(ordinal).w()?;
        let (major, minor) = ctx.compute_capability().w()?;
        let opt_in = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .w()?;
        let stream = ctx.default_stream();
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
        if let Some(f) = l.functions.get(name) {
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
                                family.file_name()
                            ))
                        })?
                    }
                };
                l.modules.insert(family, m.clone());
                m
            }
        };
        let f = module.load_function(name).w()?;
        l.functions.insert(name, f.clone());
        Ok(f)
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

    fn upload_up(&self, up: Upstream<'_>) -> Result<UpOwned> {
        Ok(match up {
            Upstream::Scalar(s) => UpOwned::Scalar(s),
            Upstream::PerElement(u) => UpOwned::Dev(self.stream.clone_htod(u).w()?),
        })
    }

    /// The final deterministic reduction of `partials` into one value on the device:
    /// `sum / divisor`, or `sum / denom[0]` when `denom` is given.
    fn reduce_final(
        &self,
        family: Family,
        partials: &CudaSlice<f64>,
        divisor: f64,
        denom: Option<&CudaSlice<f64>>,
    ) -> Result<CudaSlice<f64>> {
        let f = self.function(family, "sl_reduce_final")?;
        let mut out = self.stream.alloc_zeros::<f64>(1).w()?;
        let n = partials.len() as i64;
        let (p_ptr, _gp) = partials.device_ptr(&self.stream);
        let (d_ptr, _gd) = match denom {
            Some(d) => {
                let (p, g) = d.device_ptr(&self.stream);
                (p, Some(g))
            }
            None => (NULL, None),
        };
        let (o_ptr, go) = out.device_ptr_mut(&self.stream);
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (REDUCE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream.launch_builder(&f);
        b.arg(&p_ptr).arg(&n).arg(&divisor).arg(&d_ptr).arg(&o_ptr);
        // SAFETY: `sl_reduce_final(const double* partials, long long n, double divisor,
        // const double* denom, double* out)`: u64 device addresses for the pointers (denom 0 =
        // null), i64 and f64 scalars in that order. It reads partials[0..n) (n is the buffer's
        // length), denom[0] (a buffer of at least one f64) and writes out[0] (length 1). One
        // block of REDUCE_THREADS = SL_REDUCE_THREADS threads, as the kernel's shared array
        // assumes. The guards keep every buffer borrowed until after the launch.
        unsafe { b.launch(cfg) }.w()?;
        drop(b);
        drop(go);
        Ok(out)
    }

    // ---------------------------------------------------------------- host helpers

    fn upload<T: DeviceRepr>(&self, xs: &[T]) -> Result<CudaSlice<T>> {
        self.stream.clone_htod(xs).w()
    }

    fn grad_buffer<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        grad: &Option<&mut [T]>,
    ) -> Result<Option<CudaSlice<T>>> {
        match grad {
            Some(g) => Ok(Some(self.stream.alloc_zeros::<T>(g.len()).w()?)),
            None => Ok(None),
        }
    }

    /// The host-slice path of a two-input loss (box, element-wise): uploads `a`, `b` and the upstream, runs
    /// `dev` on the device copies (with a device gradient buffer when `grad` is given) and
    /// copies the values and gradient back. The caller validated the inputs.
    fn via_device(
        &self,
        a: &[f32],
        b: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
        dev: impl for<'u> FnOnce(
            &CudaSlice<f32>,
            &CudaSlice<f32>,
            DeviceUpstream<'u>,
            Option<&mut CudaSlice<f32>>,
        ) -> Result<DeviceLoss>,
    ) -> Result<Vec<f64>> {
        let a_dev = self.upload(a)?;
        let b_dev = self.upload(b)?;
        let up = self.upload_up(upstream)?;
        let mut g_dev = self.grad_buffer(&grad)?;
        let out = dev(&a_dev, &b_dev, up.as_dev(), g_dev.as_mut())?;
        self.finish(out, g_dev, grad)
    }

    fn finish<T: DeviceRepr>(
        &self,
        out: DeviceLoss,
        grad_dev: Option<CudaSlice<T>>,
        grad: Option<&mut [T]>,
    ) -> Result<Vec<f64>> {
        let values = out.to_host()?;
        if let (Some(d), Some(g)) = (grad_dev, grad) {
            self.stream.memcpy_dtoh(&d, g).w()?;
            self.stream.synchronize().w()?;
        }
        Ok(values)
    }
}

fn elem_config(blocks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (ELEM_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

type PtrGuard<'a> = (u64, Option<cudarc::driver::SyncOnDrop<'a>>);

fn up_args<'a>(up: &DeviceUpstream<'a>, st: &'a CudaStream) -> (f64, PtrGuard<'a>) {
    match *up {
        DeviceUpstream::Scalar(s) => (s, (NULL, None)),
        DeviceUpstream::PerElement(u) => {
            let (p, g) = u.device_ptr(st);
            (0.0, (p, Some(g)))
        }
    }
}

impl Backend<f32> for CudaBackend {
    fn name(&self) -> String {
        "cuda".into()
    }
}
