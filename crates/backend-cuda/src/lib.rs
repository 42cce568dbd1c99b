//! CUDA backend of smoothloss: fused value + gradient kernels compiled at run time by NVRTC.
//!
//! - [`CudaBackend::new`] probes the CUDA driver library and NVRTC before touching them (cudarc
//!   panics when a library is missing) and returns [`LossError::Device`] instead; it never
//!   panics on a machine without a GPU.
//! - Each kernel file (`kernels/*.cu`, one per loss family, with `kernels/common.cuh`
//!   prepended) is compiled once per process and architecture (the device's compute capability,
//!   `sm_XY`) and cached; each backend loads it once into its context.
//! - Every loss is available on device buffers ([`CudaSlice`]), launched on the backend's
//!   stream ([`CudaBackend::with_stream`] picks another) with no host synchronisation: results
//!   come back as a [`DeviceLoss`] whose [`DeviceLoss::to_host`] is the only synchronising call.
//! - The host-slice traits of `smoothloss_core` ([`CrossEntropyOps`], [`BoxLossOps`],
//!   [`RegressionOps`], [`BinaryOps`], [`Backend`]) are implemented for `f32` by upload, run and
//!   download, so the shared conformance suite can test this backend like any other.
//! - Reductions are deterministic: per-block partial sums in a fixed order, then one final
//!   block; no floating-point atomics.
#![warn(missing_docs)]

pub mod kernels;

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

fn leak_arch(major: i32, minor: i32) -> &'static str {
    static ARCHS: OnceLock<Mutex<HashMap<(i32, i32), &'static str>>> = OnceLock::new();
    let mut map = ARCHS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry((major, minor))
        .or_insert_with(|| Box::leak(format!("sm_{major}{minor}").into_boxed_str()))
}

/// Compiles one kernel file (with `common.cuh` prepended) to PTX for `arch` (`"sm_90"`), once
/// per process: later calls return the cached PTX. Returns [`LossError::Device`] when NVRTC is
/// missing or the source does not compile (the error holds NVRTC's log).
pub fn compile_ptx(family: Family, arch: &'static str) -> Result<Ptx> {
    static CACHE: OnceLock<Mutex<HashMap<(Family, &'static str), Ptx>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(family, arch))
    {
        return Ok(p.clone());
    }
    if !nvrtc_library_present() {
        return Err(nvrtc_missing());
    }
    let opts = CompileOptions {
        arch: Some(arch),
        name: Some(family.file_name().into()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(family.full_source(), opts)
        .map_err(|err| CudaError::Compile { family, err })?;
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((family, arch), ptx.clone());
    Ok(ptx)
}

fn nvrtc_missing() -> LossError {
    CudaError::Unavailable(
        "the NVRTC library (libnvrtc) could not be loaded; set LD_LIBRARY_PATH".into(),
    )
    .into()
}

/// A kernel file compiled by NVRTC to machine code (a cubin) for one real architecture.
#[derive(Debug, Clone)]
pub struct Cubin {
    /// The ELF image, as `cuModuleLoadData` takes it.
    pub image: Vec<u8>,
    /// NVRTC's log (with `-Xptxas=-v` among `extra_options`: registers, spills, shared memory
    /// per entry point).
    pub log: String,
}

/// Compiles one kernel file (with `common.cuh` prepended) to a cubin for `arch` (`"sm_90"`),
/// uncached. A cubin needs no PTX JIT in the driver, so it also loads where NVRTC is newer than
/// the driver's PTX support (`CUDA_ERROR_UNSUPPORTED_PTX_VERSION` for PTX).
pub fn compile_cubin(family: Family, arch: &str, extra_options: &[&str]) -> Result<Cubin> {
    use cudarc::nvrtc::{result, sys};
    if !nvrtc_library_present() {
        return Err(nvrtc_missing());
    }
    let src = std::ffi::CString::new(family.full_source())
        .map_err(|_| LossError::Device("kernel source holds a NUL byte".into()))?;
    let name = std::ffi::CString::new(family.file_name())
        .map_err(|_| LossError::Device("kernel name holds a NUL byte".into()))?;
    let nv = |what: &str, e: result::NvrtcError| {
        LossError::Device(format!(
            "NVRTC {what} failed on {}: {e:?}",
            family.file_name()
        ))
    };
    let prog = result::create_program(&src, Some(&name)).map_err(|e| nv("create", e))?;
    let mut opts = vec![format!("--gpu-architecture={arch}")];
    opts.extend(extra_options.iter().map(|o| o.to_string()));
    // SAFETY: `prog` was created above and is destroyed once, at the end of this block; `src`
    // and `name` outlive it. The size query precedes the copy into a buffer of that size.
    unsafe {
        let compiled = result::compile_program(prog, &opts);
        let log = result::get_program_log(prog)
            .map(|l| {
                let bytes: Vec<u8> = l.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .unwrap_or_default();
        let out = match compiled {
            Err(e) => Err(LossError::Device(format!(
                "NVRTC failed to compile {} for {arch} ({e:?}): {log}",
                family.file_name()
            ))),
            Ok(()) => {
                let mut size = 0usize;
                let r = sys::nvrtcGetCUBINSize(prog, &mut size).result();
                let mut image = vec![0u8; size];
                r.and_then(|()| sys::nvrtcGetCUBIN(prog, image.as_mut_ptr().cast()).result())
                    .map_err(|e| nv("get cubin", e))
                    .map(|()| Cubin { image, log })
            }
        };
        let _ = result::destroy_program(prog);
        out
    }
}

/// [`compile_cubin`] once per process and (family, arch).
fn cached_cubin(family: Family, arch: &'static str) -> Result<Vec<u8>> {
    type Images = HashMap<(Family, &'static str), Vec<u8>>;
    static CACHE: OnceLock<Mutex<Images>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(family, arch))
    {
        return Ok(c.clone());
    }
    let c = compile_cubin(family, arch, &[])?;
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((family, arch), c.image.clone());
    Ok(c.image)
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

/// Element types accepted as cross-entropy logits on the device: math in `f32`, the gradient
/// written in the logits' type.
pub trait CeElement: DeviceRepr + ValidAsZeroBits + Copy + Send + Sync + 'static {
    /// The kernel entry points for this type: one block per row, clusters of 2, 4, 8.
    const CE_KERNELS: [&'static str; 4];
    /// Short dtype name for reports.
    const DTYPE: &'static str;
}

impl CeElement for f32 {
    const CE_KERNELS: [&'static str; 4] = [
        "ce_fwd_bwd_f32",
        "ce_fwd_bwd_f32_c2",
        "ce_fwd_bwd_f32_c4",
        "ce_fwd_bwd_f32_c8",
    ];
    const DTYPE: &'static str = "f32";
}

impl CeElement for half::bf16 {
    const CE_KERNELS: [&'static str; 4] = [
        "ce_fwd_bwd_bf16",
        "ce_fwd_bwd_bf16_c2",
        "ce_fwd_bwd_bf16_c4",
        "ce_fwd_bwd_bf16_c8",
    ];
    const DTYPE: &'static str = "bf16";
}

impl CeElement for half::f16 {
    const CE_KERNELS: [&'static str; 4] = [
        "ce_fwd_bwd_f16",
        "ce_fwd_bwd_f16_c2",
        "ce_fwd_bwd_f16_c4",
        "ce_fwd_bwd_f16_c8",
    ];
    const DTYPE: &'static str = "f16";
}

/// Launch geometry shared by the launches here and the CPU-emulation tests
/// (`tests/emulated.rs`), so both run the kernels with the same configuration.
pub mod geometry {
    /// Threads per block of the element-wise and box kernels.
    pub const ELEM_THREADS: u32 = 256;
    /// Most blocks of a grid-stride element-wise launch (also the number of partial sums).
    pub const ELEM_MAX_BLOCKS: usize = 1024;
    /// Threads of the final reduction block (`SL_REDUCE_THREADS` in `common.cuh`).
    pub const REDUCE_THREADS: u32 = 1024;
    /// Dynamic shared memory a cross-entropy block may use without an opt-in (bytes).
    pub const SMEM_DEFAULT_LIMIT: usize = 48 * 1024;
    /// Shared-memory header of a cross-entropy block (`SL_CE_HEADER_BYTES` in
    /// `cross_entropy.cu`); the block's slice of the row follows it.
    pub const CE_HEADER_BYTES: usize = 1024;
    /// Most threads of a cross-entropy block (`SL_CE_MAX_THREADS`, the kernels'
    /// `__launch_bounds__`).
    pub const CE_MAX_THREADS: u32 = 512;
    /// Default target for the shared memory of one cross-entropy block: small enough that
    /// several blocks share an SM (their load and compute phases overlap) and no opt-in is
    /// needed.
    pub const CE_SMEM_TARGET: usize = SMEM_DEFAULT_LIMIT;
    /// `flags` bit: the slice is kept in shared memory (`SL_CE_SMEM_ROW`).
    pub const CE_SMEM_ROW: i32 = 1;
    /// `flags` bit: 16-byte vector accesses (`SL_CE_VEC16`).
    pub const CE_VEC16: i32 = 2;

    /// Threads of the cross-entropy row-wise helper kernels (`ce_prepare`, `ce_reduce_rows`;
    /// `SL_CE_ROWS_THREADS`).
    pub const CE_ROWS_THREADS: u32 = 256;
    /// Rows per block of those kernels, while the grid has at most [`CE_ROWS_MAX_BLOCKS`].
    pub const CE_ROWS_CHUNK: usize = 512;
    /// Most blocks of those kernels.
    pub const CE_ROWS_MAX_BLOCKS: usize = 1024;

    /// Blocks and rows per block of `ce_prepare` / `ce_reduce_rows` over `rows` rows.
    pub fn ce_rows_grid(rows: usize) -> (u32, usize) {
        let blocks = rows.div_ceil(CE_ROWS_CHUNK).clamp(1, CE_ROWS_MAX_BLOCKS);
        (blocks as u32, rows.div_ceil(blocks).max(1))
    }

    /// Blocks of an element-wise or box launch over `n` items.
    pub fn elem_grid(n: usize) -> u32 {
        n.div_ceil(ELEM_THREADS as usize).clamp(1, ELEM_MAX_BLOCKS) as u32
    }

    /// How a cross-entropy launch splits its rows: `cluster` blocks per row (a thread-block
    /// cluster when more than 1), each holding `slice` classes of the row.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct CePlan {
        /// Blocks per row: 1, 2, 4 or 8.
        pub cluster: u32,
        /// Classes per block (the last block of a row may hold fewer, or none).
        pub slice: usize,
        /// Threads per block: a power of two in 32..=[`CE_MAX_THREADS`].
        pub threads: u32,
        /// Dynamic shared memory per block (bytes).
        pub smem_bytes: u32,
        /// [`CE_SMEM_ROW`] | [`CE_VEC16`] bits.
        pub flags: i32,
    }

    impl CePlan {
        /// Blocks of the launch: `rows * cluster`, or `None` past the grid's limit.
        pub fn grid(&self, rows: usize) -> Option<u32> {
            rows.checked_mul(self.cluster as usize)
                .filter(|&g| g <= i32::MAX as usize)
                .map(|g| g as u32)
        }
    }

    /// Plans a cross-entropy launch over rows of `classes` elements of `elem_bytes` bytes
    /// (2 or 4 for the kernels; any value gives a plan, never a panic).
    ///
    /// `aligned16`: every logits / gradient / probability buffer starts on a 16-byte boundary
    /// (16-byte vectors are then used when a row is a whole number of vectors).
    /// `max_cluster`: 8 on sm_90 and newer, 1 before. The row is split over the fewest blocks
    /// (1, 2, 4, 8) whose slice fits `smem_target` bytes with the header; failing that over
    /// `max_cluster` blocks if a slice fits `smem_max` (the device's opt-in limit); failing
    /// that one block per row re-reads the row from global memory.
    pub fn ce_plan(
        classes: usize,
        elem_bytes: usize,
        aligned16: bool,
        max_cluster: u32,
        smem_target: usize,
        smem_max: usize,
    ) -> CePlan {
        // 16-byte vectors of 1, 2, 4, 8 or 16 elements; other element sizes (0 or over 16
        // bytes, which no kernel takes) get a scalar plan instead of a division by zero.
        let vw = match elem_bytes {
            1 | 2 | 4 | 8 | 16 => 16 / elem_bytes,
            _ => 0,
        };
        let vec = aligned16 && vw > 0 && classes.is_multiple_of(vw);
        let unit = if vec { vw } else { 1 };
        let vec_flag = if vec { CE_VEC16 } else { 0 };
        let slice_of = |k: usize| classes.div_ceil(k).div_ceil(unit) * unit;
        let bytes_of = |k: usize| CE_HEADER_BYTES + slice_of(k) * elem_bytes;
        let threads_for = |slice: usize| {
            // About four units (16-byte vectors or elements) per thread.
            (slice.div_ceil(unit).div_ceil(4))
                .next_power_of_two()
                .clamp(32, CE_MAX_THREADS as usize) as u32
        };
        let plan = |k: usize| CePlan {
            cluster: k as u32,
            slice: slice_of(k),
            threads: threads_for(slice_of(k)),
            smem_bytes: bytes_of(k) as u32,
            flags: CE_SMEM_ROW | vec_flag,
        };
        let ks = [1usize, 2, 4, 8];
        let allowed = || ks.into_iter().filter(|&k| k <= max_cluster as usize);
        if let Some(k) = allowed().find(|&k| bytes_of(k) <= smem_target) {
            return plan(k);
        }
        if let Some(k) = allowed().next_back().filter(|&k| bytes_of(k) <= smem_max) {
            return plan(k);
        }
        CePlan {
            cluster: 1,
            slice: classes,
            threads: CE_MAX_THREADS,
            smem_bytes: CE_HEADER_BYTES as u32,
            flags: vec_flag,
        }
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

    /// The same backend with other shared-memory budgets (bytes) for one cross-entropy block:
    /// `target` (smaller splits rows over more blocks of a cluster) and `max` (at most the
    /// device's opt-in limit; rows whose slices do not fit it are re-read from global memory),
    /// see [`geometry::ce_plan`]. A tuning and testing knob; the defaults are
    /// [`geometry::CE_SMEM_TARGET`] and the device's limit.
    pub fn with_ce_shared_memory(&self, target: usize, max: usize) -> Self {
        Self {
            ce_smem_target: target,
            smem_opt_in_max: max.min(self.smem_opt_in_max),
            ..self.clone()
        }
    }

    /// The same backend splitting a cross-entropy row over at most `k` blocks (rounded down to
    /// 1, 2, 4 or 8, and never more than the device supports): `1` disables thread-block
    /// clusters. A tuning and testing knob.
    pub fn with_ce_max_cluster(&self, k: u32) -> Self {
        let k = [8u32, 4, 2, 1]
            .into_iter()
            .find(|&c| c <= k.max(1))
            .unwrap_or(1);
        Self {
            ce_max_cluster: k.min(self.ce_max_cluster),
            ..self.clone()
        }
    }

    /// The same backend with at most `n` threads per cross-entropy block (rounded down to a
    /// power of two in 32..=512; more work per thread). A tuning and testing knob.
    pub fn with_ce_max_threads(&self, n: u32) -> Self {
        let n = n.clamp(32, geometry::CE_MAX_THREADS);
        Self {
            ce_max_threads: 1 << (31 - n.leading_zeros()),
            ..self.clone()
        }
    }

    /// The launch plan of a cross-entropy call on this device (`aligned16`: every buffer
    /// starts on a 16-byte boundary).
    pub fn ce_plan(&self, classes: usize, elem_bytes: usize, aligned16: bool) -> geometry::CePlan {
        let mut plan = geometry::ce_plan(
            classes,
            elem_bytes,
            aligned16,
            self.ce_max_cluster,
            self.ce_smem_target,
            self.smem_opt_in_max,
        );
        plan.threads = plan.threads.min(self.ce_max_threads);
        plan
    }

    /// Opts function `name` into `bytes` of dynamic shared memory when that is over the
    /// default limit (once per function and size).
    fn opt_in_smem(&self, name: &'static str, f: &CudaFunction, bytes: u32) -> Result<()> {
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

    // ---------------------------------------------------------------- cross-entropy

    #[allow(clippy::too_many_arguments)]
    fn validate_ce_dev<T: CeElement>(
        &self,
        cfg: &CrossEntropy,
        logits_len: usize,
        rows: usize,
        classes: usize,
        targets: &DeviceCeTargets<'_, T>,
        upstream: &DeviceUpstream<'_>,
        grad_len: Option<usize>,
    ) -> Result<()> {
        let up = check_dev_upstream(upstream, cfg.reduction, rows)?;
        // Parameters, shapes and weights by the core validator on a stand-in target vector
        // (every row ignored, or class 0 without an ignore index); the real targets are
        // checked on the device (ce_prepare).
        let stand_in = vec![cfg.ignore_index.unwrap_or(0); rows];
        cfg.validate::<f32>(
            logits_len,
            rows,
            classes,
            &CeTargets::Classes(&stand_in),
            &up,
            grad_len,
        )?;
        match targets {
            DeviceCeTargets::Classes(t) => check_len("targets", rows, t.len()),
            DeviceCeTargets::Probs(p) => check_len("target_probs", rows * classes, p.len()),
        }
    }

    /// Cross-entropy on device buffers: `logits` `[rows, classes]` row-major in `T` (f32, bf16
    /// or f16; math in f32), the gradient (when `grad` is given) written in `T`. Out-of-range
    /// class targets are found on the device and reported by [`DeviceLoss::to_host`].
    #[allow(clippy::too_many_arguments)]
    pub fn cross_entropy_dev<T: CeElement>(
        &self,
        cfg: &CrossEntropy,
        logits: &CudaSlice<T>,
        rows: usize,
        classes: usize,
        targets: DeviceCeTargets<'_, T>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<T>>,
    ) -> Result<DeviceLoss> {
        self.validate_ce_dev(
            cfg,
            logits.len(),
            rows,
            classes,
            &targets,
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        let (z_ptr, _gz) = logits.device_ptr(&self.stream);
        let (g_ptr, _gg) = match grad {
            Some(g) => {
                let (p, guard) = g.device_ptr_mut(&self.stream);
                (p, Some(guard))
            }
            None => (NULL, None),
        };
        self.ce_launch::<T>(cfg, z_ptr, g_ptr, false, rows, classes, targets, upstream)
    }

    /// As [`CudaBackend::cross_entropy_dev`], writing the gradient over the logits (as
    /// Liger-Kernel does).
    #[allow(clippy::too_many_arguments)]
    pub fn cross_entropy_in_place_dev<T: CeElement>(
        &self,
        cfg: &CrossEntropy,
        logits: &mut CudaSlice<T>,
        rows: usize,
        classes: usize,
        targets: DeviceCeTargets<'_, T>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        self.validate_ce_dev(cfg, logits.len(), rows, classes, &targets, &upstream, None)?;
        let (z_ptr, _gz) = logits.device_ptr_mut(&self.stream);
        self.ce_launch::<T>(cfg, z_ptr, NULL, true, rows, classes, targets, upstream)
    }

    /// Launches ce_prepare, the row kernel and (for mean/sum) ce_reduce_rows. `z_ptr` and
    /// `g_ptr` are device addresses of buffers of `rows * classes` elements of `T` (g may be 0),
    /// kept borrowed by the caller until this returns.
    #[allow(clippy::too_many_arguments)]
    fn ce_launch<T: CeElement>(
        &self,
        cfg: &CrossEntropy,
        z_ptr: u64,
        g_ptr: u64,
        in_place: bool,
        rows: usize,
        classes: usize,
        targets: DeviceCeTargets<'_, T>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let fam = Family::CrossEntropy;
        let st = &self.stream;
        let weights: Option<CudaSlice<f32>> = match &cfg.class_weights {
            Some(w) => {
                let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
                Some(st.clone_htod(&w32).w()?)
            }
            None => None,
        };
        let wsum: f64 = cfg
            .class_weights
            .as_ref()
            .map_or(classes as f64, |w| w.iter().map(|&v| v as f32 as f64).sum());
        // SAFETY: left uninitialised (no memset in the stream): ce_prepare's last block writes
        // both entries of stats and of check, and the row kernel writes row_loss[row] for
        // every row (rank 0, ignored and invalid rows included), before anything reads them
        // (stream order). The CPU emulation fills them with NaN / i64::MIN to test this.
        let (mut stats, mut check, mut row_loss) = unsafe {
            (
                st.alloc::<f64>(2).w()?,
                st.alloc::<i64>(2).w()?,
                st.alloc::<f64>(rows).w()?,
            )
        };
        // Scratch of the row-wise helper kernels, 8-byte words: two counters (zero), then
        // per-block weight sums, first bad rows and loss sums.
        let (row_blocks, chunk) = geometry::ce_rows_grid(rows);
        let nb = row_blocks as usize;
        let mut scratch = st.alloc_zeros::<u64>(2 + 3 * nb).w()?;
        let chunk_i = chunk as i64;
        let rows_i = rows as i64;
        let classes_i = classes as i64;
        let ignore = cfg.ignore_index.unwrap_or(0);
        let has_ignore = i32::from(cfg.ignore_index.is_some());
        let eps = cfg.label_smoothing;
        {
            let (t_ptr, _gt) = match targets {
                DeviceCeTargets::Classes(t) => {
                    let (p, g) = t.device_ptr(st);
                    (p, Some(g))
                }
                DeviceCeTargets::Probs(_) => (NULL, None),
            };
            let (w_ptr, _gw) = match &weights {
                Some(w) => {
                    let (p, g) = w.device_ptr(st);
                    (p, Some(g))
                }
                None => (NULL, None),
            };
            let (s_ptr, _gs) = stats.device_ptr_mut(st);
            let (c_ptr, _gc) = check.device_ptr_mut(st);
            let (x_ptr, _gx) = scratch.device_ptr_mut(st);
            let counter = x_ptr;
            let part_w = x_ptr + 16;
            let part_bad = part_w + 8 * nb as u64;
            let f = self.function(fam, "ce_prepare")?;
            let lc = LaunchConfig {
                grid_dim: (row_blocks, 1, 1),
                block_dim: (geometry::CE_ROWS_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = st.launch_builder(&f);
            b.arg(&t_ptr)
                .arg(&rows_i)
                .arg(&chunk_i)
                .arg(&classes_i)
                .arg(&w_ptr)
                .arg(&ignore)
                .arg(&has_ignore)
                .arg(&s_ptr)
                .arg(&c_ptr)
                .arg(&part_w)
                .arg(&part_bad)
                .arg(&counter);
            // SAFETY: `ce_prepare(const long long* targets, long long rows, long long chunk,
            // long long classes, const float* weights, long long ignore_index, int has_ignore,
            // double* stats, long long* err, double* part_w, long long* part_bad,
            // unsigned int* counter)`: pointers as u64 device addresses (0 = null), then i64
            // and i32 scalars in that order. Block b reads targets[b*chunk .. min(rows,
            // (b+1)*chunk)) (`rows` i64, checked by validate_ce_dev; null for probability
            // targets); weights has `classes` f32 (validated length) and is only indexed at
            // in-range targets; stats and err have 2 elements each; part_w and part_bad are
            // `row_blocks` words each of `scratch` and counter its (zeroed) first word, as
            // ce_rows_grid's grid (rows_blocks * chunk >= rows) of CE_ROWS_THREADS threads.
            unsafe { b.launch(lc) }.w()?;
        }
        {
            let (t_ptr, _gt, p_ptr, _gp) = match targets {
                DeviceCeTargets::Classes(t) => {
                    let (p, g) = t.device_ptr(st);
                    (p, Some(g), NULL, None)
                }
                DeviceCeTargets::Probs(q) => {
                    let (p, g) = q.device_ptr(st);
                    (NULL, None, p, Some(g))
                }
            };
            let (w_ptr, _gw) = match &weights {
                Some(w) => {
                    let (p, g) = w.device_ptr(st);
                    (p, Some(g))
                }
                None => (NULL, None),
            };
            let (s_ptr, _gs) = if cfg.reduction == Reduction::Mean {
                let (p, g) = stats.device_ptr(st);
                (p, Some(g))
            } else {
                (NULL, None)
            };
            let (up_scalar, (u_ptr, _gu)) = match upstream {
                DeviceUpstream::Scalar(s) => (s, (NULL, None)),
                DeviceUpstream::PerElement(u) => {
                    let (p, g) = u.device_ptr(st);
                    (0.0, (p, Some(g)))
                }
            };
            let (l_ptr, _gl) = row_loss.device_ptr_mut(st);
            let in_place_i = i32::from(in_place);
            if classes > i32::MAX as usize {
                // The kernels index within a row with 32-bit integers.
                return Err(LossError::Unsupported {
                    backend: "cuda".into(),
                    what: format!("rows of {classes} classes (at most {} per row)", i32::MAX),
                });
            }
            let aligned16 = [z_ptr, g_ptr, p_ptr].iter().all(|&p| p % 16 == 0);
            let plan = self.ce_plan(classes, std::mem::size_of::<T>(), aligned16);
            let Some(grid) = plan.grid(rows) else {
                return Err(LossError::Unsupported {
                    backend: "cuda".into(),
                    what: format!(
                        "{rows} rows of {classes} classes ({} blocks per row; at most {} blocks)",
                        plan.cluster,
                        i32::MAX
                    ),
                });
            };
            let slice_i = plan.slice as i64;
            let name = T::CE_KERNELS[plan.cluster.trailing_zeros() as usize];
            let f = self.function(fam, name)?;
            self.opt_in_smem(name, &f, plan.smem_bytes)?;
            let lc = LaunchConfig {
                grid_dim: (grid, 1, 1),
                block_dim: (plan.threads, 1, 1),
                shared_mem_bytes: plan.smem_bytes,
            };
            let mut b = st.launch_builder(&f);
            b.arg(&z_ptr)
                .arg(&g_ptr)
                .arg(&in_place_i)
                .arg(&t_ptr)
                .arg(&p_ptr)
                .arg(&classes_i)
                .arg(&slice_i)
                .arg(&w_ptr)
                .arg(&wsum)
                .arg(&ignore)
                .arg(&has_ignore)
                .arg(&eps)
                .arg(&s_ptr)
                .arg(&up_scalar)
                .arg(&u_ptr)
                .arg(&l_ptr)
                .arg(&plan.flags);
            // SAFETY: `ce_fwd_bwd_<T>[_cK](T* z, T* g, int in_place, const long long* targets,
            // const T* probs, long long classes, long long slice, const float* weights,
            // double wsum, long long ignore_index, int has_ignore, double eps,
            // const double* stats, double up_scalar, const double* up, double* row_loss,
            // int flags)`: u64 device addresses for every pointer (0 = null), i32/i64/f64
            // scalars in that order; the entry point comes from `T::CE_KERNELS` (element type
            // of T's size, f32 or a 2-byte struct; cluster size `plan.cluster` compiled in, and
            // `grid` = rows * cluster). Block b of row b / K touches z/g/probs only in
            // [row*classes + rank*slice, min(row*classes + (rank+1)*slice, (row+1)*classes))
            // (all have rows*classes elements: validated), targets[row] and up[row] (`rows`
            // elements: validated), weights[0..classes) (validated), stats[1] (2 elements),
            // row_loss[row] (`rows` elements). 16-byte vectors only with CE_VEC16, which
            // ce_plan sets only when the three buffers start on 16-byte boundaries and a row
            // is a whole number of vectors. Dynamic shared memory: the 1024-byte header plus
            // `slice` elements when CE_SMEM_ROW (ce_plan's smem_bytes, opted into above when
            // over 48 KiB); threads a multiple of 32 and <= 512 (`__launch_bounds__`).
            unsafe { b.launch(lc) }.w()?;
        }
        let values = match cfg.reduction {
            Reduction::None => row_loss,
            Reduction::Sum | Reduction::Mean => {
                // SAFETY: uninitialised; the last block of ce_reduce_rows writes out[0] before
                // anything reads it (stream order).
                let mut out = unsafe { st.alloc::<f64>(1) }.w()?;
                let (v_ptr, _gv) = row_loss.device_ptr(st);
                let (d_ptr, _gd) = if cfg.reduction == Reduction::Mean {
                    let (p, g) = stats.device_ptr(st);
                    (p, Some(g))
                } else {
                    (NULL, None)
                };
                let (o_ptr, go) = out.device_ptr_mut(st);
                let (x_ptr, _gx) = scratch.device_ptr_mut(st);
                let counter = x_ptr + 8;
                let part = x_ptr + 16 + 16 * nb as u64;
                let f = self.function(fam, "ce_reduce_rows")?;
                let lc = LaunchConfig {
                    grid_dim: (row_blocks, 1, 1),
                    block_dim: (geometry::CE_ROWS_THREADS, 1, 1),
                    shared_mem_bytes: 0,
                };
                let one = 1.0f64;
                let mut b = st.launch_builder(&f);
                b.arg(&v_ptr)
                    .arg(&rows_i)
                    .arg(&chunk_i)
                    .arg(&one)
                    .arg(&d_ptr)
                    .arg(&o_ptr)
                    .arg(&part)
                    .arg(&counter);
                // SAFETY: `ce_reduce_rows(const double* values, long long n, long long chunk,
                // double divisor, const double* denom, double* out, double* part,
                // unsigned int* counter)`: u64 addresses (denom 0 = null), i64 and f64 scalars
                // in that order. Block b reads values[b*chunk .. min(rows, (b+1)*chunk)) of
                // row_loss (`rows` f64), denom[0] of stats (2 f64), writes out[0] (1 f64),
                // part[b] (the last `row_blocks` words of scratch) and counter (scratch's
                // second, zeroed word); ce_rows_grid's grid of CE_ROWS_THREADS threads.
                unsafe { b.launch(lc) }.w()?;
                drop(b);
                drop(go);
                out
            }
        };
        let target_check = match targets {
            DeviceCeTargets::Classes(_) => Some(TargetCheck::Classes(check, classes)),
            DeviceCeTargets::Probs(_) => None,
        };
        Ok(DeviceLoss {
            values,
            target_check,
            stream: st.clone(),
        })
    }

    // ---------------------------------------------------------------- box losses

    fn validate_box_dev(
        &self,
        cfg: &BoxLoss,
        pred_len: usize,
        target_len: usize,
        upstream: &DeviceUpstream<'_>,
        grad_len: Option<usize>,
    ) -> Result<usize> {
        // Parameters by the core validator on one stand-in pair; then the real shapes in the
        // core's order.
        let stand_in = [0.0f32, 0.0, 1.0, 1.0];
        cfg.validate(&stand_in, &stand_in, &Upstream::ONE, None)?;
        let n = box_count("pred", pred_len)?;
        check_len("target", pred_len, target_len)?;
        if n == 0 {
            return Err(empty("pred", "at least one box pair is required"));
        }
        if let Some(g) = grad_len {
            check_len("grad", pred_len, g)?;
        }
        check_dev_upstream(upstream, cfg.reduction, n)?;
        Ok(n)
    }

    /// Box loss on device buffers `pred`, `target` `[N, 4]` (f32, math in f64); the gradient
    /// with respect to `pred` in `cfg.format`.
    pub fn box_loss_dev(
        &self,
        cfg: &BoxLoss,
        pred: &CudaSlice<f32>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<DeviceLoss> {
        let n = self.validate_box_dev(
            cfg,
            pred.len(),
            target.len(),
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        let fam = Family::BoxLoss;
        let st = &self.stream;
        let blocks = elem_grid(n);
        let none = cfg.reduction == Reduction::None;
        let mut losses = st.alloc_zeros::<f64>(if none { n } else { 1 }).w()?;
        let mut partials = st.alloc_zeros::<f64>(blocks as usize).w()?;
        let kind: i32 = match cfg.kind {
            BoxLossKind::Iou => 0,
            BoxLossKind::Giou => 1,
            BoxLossKind::Diou => 2,
            BoxLossKind::Ciou => 3,
            BoxLossKind::Eiou => 4,
        };
        let format = format_code(cfg.format);
        let (has_tw, tw_alpha, tw_threshold) = match cfg.threshold_weight {
            Some(tw) => (1i32, tw.alpha, tw.threshold),
            None => (0i32, 0.0, 0.0),
        };
        let scale = if cfg.reduction == Reduction::Mean {
            1.0 / n as f64
        } else {
            1.0
        };
        let n_i = n as i64;
        {
            let (p_ptr, _gp) = pred.device_ptr(st);
            let (t_ptr, _gt) = target.device_ptr(st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = if none {
                let (p, g) = losses.device_ptr_mut(st);
                (p, Some(g))
            } else {
                (NULL, None)
            };
            let (pa_ptr, _gpa) = partials.device_ptr_mut(st);
            let (g_ptr, _gg) = match grad {
                Some(g) => {
                    let (p, guard) = g.device_ptr_mut(st);
                    (p, Some(guard))
                }
                None => (NULL, None),
            };
            let f = self.function(fam, "box_loss_fwd_bwd")?;
            let mut b = st.launch_builder(&f);
            b.arg(&p_ptr)
                .arg(&t_ptr)
                .arg(&n_i)
                .arg(&kind)
                .arg(&format)
                .arg(&cfg.eps)
                .arg(&has_tw)
                .arg(&tw_alpha)
                .arg(&tw_threshold)
                .arg(&up_scalar)
                .arg(&u_ptr)
                .arg(&scale)
                .arg(&l_ptr)
                .arg(&pa_ptr)
                .arg(&g_ptr);
            // SAFETY: `box_loss_fwd_bwd(const float* pred, const float* target, long long n,
            // int kind, int format, double eps, int has_tw, double tw_alpha,
            // double tw_threshold, double up_scalar, const double* up, double scale,
            // double* losses, double* partials, float* grad)`: u64 device addresses (0 = null)
            // and i64/i32/f64 scalars in that order. Pair i < n reads pred/target[4i..4i+4)
            // (4n f32 each: validated), up[i] (n: validated), writes losses[i] (n f64, only
            // passed for reduction none) and grad[4i..4i+4) (4n: validated);
            // block b writes partials[b] (`blocks` f64). Block size 256, a multiple of 32.
            unsafe { b.launch(elem_config(blocks)) }.w()?;
        }
        let values = if none {
            losses
        } else {
            self.reduce_final(fam, &partials, 1.0 / scale, None)?
        };
        Ok(DeviceLoss {
            values,
            target_check: None,
            stream: st.clone(),
        })
    }

    /// Pairwise IoU of `boxes1` `[N, 4]` and `boxes2` `[M, 4]` into `out` `[N, M]` on the
    /// device (math in f64), as `torchvision.ops.box_iou`.
    pub fn box_iou_dev(
        &self,
        format: BoxFormat,
        boxes1: &CudaSlice<f32>,
        boxes2: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = box_count("boxes1", boxes1.len())?;
        let m = box_count("boxes2", boxes2.len())?;
        let total = smoothloss_core::error::checked_size("iou", n, m)?;
        check_len("iou", total, out.len())?;
        if total == 0 {
            return Ok(());
        }
        let st = &self.stream;
        let (n_i, m_i) = (n as i64, m as i64);
        let format = format_code(format);
        let blocks = total.div_ceil(ELEM_THREADS as usize).clamp(1, 65_535 * 8) as u32;
        let (a_ptr, _ga) = boxes1.device_ptr(st);
        let (b_ptr, _gb) = boxes2.device_ptr(st);
        let (o_ptr, _go) = out.device_ptr_mut(st);
        let f = self.function(Family::BoxLoss, "box_iou_pairwise")?;
        let mut b = st.launch_builder(&f);
        b.arg(&a_ptr)
            .arg(&b_ptr)
            .arg(&n_i)
            .arg(&m_i)
            .arg(&format)
            .arg(&o_ptr);
        // SAFETY: `box_iou_pairwise(const float* b1, const float* b2, long long n, long long m,
        // int format, float* out)`: u64 device addresses and i64/i32 scalars in that order.
        // Output idx < n*m reads b1[4i..4i+4) with i = idx / m < n (4n f32) and b2[4j..4j+4)
        // with j < m (4m f32), and writes out[idx] (n*m f32: checked above). Grid-stride loop,
        // block size 256.
        unsafe { b.launch(elem_config(blocks)) }.w()?;
        Ok(())
    }

    // ---------------------------------------------------------------- element-wise

    #[allow(clippy::too_many_arguments)]
    fn elementwise_dev(
        &self,
        family: Family,
        kernel: &'static str,
        reduction: Reduction,
        a: &CudaSlice<f32>,
        b_in: &CudaSlice<f32>,
        params: ElemParams<'_>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<DeviceLoss> {
        let n = a.len();
        let st = &self.stream;
        let blocks = elem_grid(n);
        let none = reduction == Reduction::None;
        let mut losses = st.alloc_zeros::<f64>(if none { n } else { 1 }).w()?;
        let mut partials = st.alloc_zeros::<f64>(blocks as usize).w()?;
        // Binary losses check their targets on the device (two zeroed words).
        let mut check = if family == Family::Binary {
            Some(st.alloc_zeros::<u64>(2).w()?)
        } else {
            None
        };
        let scale = if reduction == Reduction::Mean {
            1.0 / n as f64
        } else {
            1.0
        };
        let n_i = n as i64;
        {
            let (a_ptr, _ga) = a.device_ptr(st);
            let (b_ptr, _gb) = b_in.device_ptr(st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = if none {
                let (p, g) = losses.device_ptr_mut(st);
                (p, Some(g))
            } else {
                (NULL, None)
            };
            let (pa_ptr, _gpa) = partials.device_ptr_mut(st);
            let (g_ptr, _gg) = match grad {
                Some(g) => {
                    let (p, guard) = g.device_ptr_mut(st);
                    (p, Some(guard))
                }
                None => (NULL, None),
            };
            let (one, pw_ptr, _gpw, p_len, alpha, gamma);
            let f = self.function(family, kernel)?;
            let mut b = st.launch_builder(&f);
            b.arg(&a_ptr).arg(&b_ptr).arg(&n_i);
            match params {
                ElemParams::One(v) => {
                    one = v;
                    b.arg(&one);
                }
                ElemParams::PosWeight(pw) => {
                    (pw_ptr, _gpw, p_len) = match pw {
                        Some(w) => {
                            let (p, g) = w.device_ptr(st);
                            (p, Some(g), w.len() as i64)
                        }
                        None => (NULL, None, 1i64),
                    };
                    b.arg(&pw_ptr).arg(&p_len);
                }
                ElemParams::Focal(al, ga) => {
                    (alpha, gamma) = (al, ga);
                    b.arg(&alpha).arg(&gamma);
                }
            }
            b.arg(&up_scalar)
                .arg(&u_ptr)
                .arg(&scale)
                .arg(&l_ptr)
                .arg(&pa_ptr)
                .arg(&g_ptr);
            let (c_ptr, _gc) = match check.as_mut() {
                Some(c) => {
                    let (p, g) = c.device_ptr_mut(st);
                    (p, Some(g))
                }
                None => (NULL, None),
            };
            if family == Family::Binary {
                b.arg(&c_ptr);
            }
            // SAFETY: the element-wise kernels are `(const float* a, const float* b,
            // long long n, <params>, double up_scalar, const double* up, double scale,
            // double* losses, double* partials, float* grad)` with <params> = `double` (reg_*),
            // `const double* pos_weight, long long p_len` (bin_bce_with_logits) or
            // `double alpha, double gamma` (bin_sigmoid_focal); `kernel` is paired with the
            // matching ElemParams by the public callers. Pointers are u64 device addresses
            // (0 = null). Element i < n reads a[i], b[i] (n f32 each: validated), up[i] (n),
            // pos_weight[i % p_len] (p_len >= 1 f64), writes losses[i] (n f64, only for
            // reduction none), grad[i] (n f32: validated); block k writes partials[k]
            // (`blocks` f64). The bin_* kernels take one more argument,
            // `unsigned long long* check` (2 u64, zeroed), passed for Family::Binary only.
            // Block size 256, a multiple of 32.
            unsafe { b.launch(elem_config(blocks)) }.w()?;
            if family == Family::Binary {
                let f = self.function(family, "bin_target_check")?;
                let mut b = st.launch_builder(&f);
                b.arg(&b_ptr).arg(&c_ptr);
                // SAFETY: `bin_target_check(const float* targets, unsigned long long* check)`,
                // u64 addresses; one thread reads check[0] and, when it is not 0, the target
                // at index !check[0] (< n: written only for an element index i < n) and
                // writes check[1] (2 u64).
                unsafe { b.launch(LaunchConfig::for_num_elems(1)) }.w()?;
            }
        }
        let values = if none {
            losses
        } else {
            self.reduce_final(family, &partials, 1.0 / scale, None)?
        };
        Ok(DeviceLoss {
            values,
            target_check: check.map(TargetCheck::Binary),
            stream: st.clone(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn validate_elem_dev(
        &self,
        a_name: &'static str,
        a_len: usize,
        b_name: &'static str,
        b_len: usize,
        reduction: Reduction,
        upstream: &DeviceUpstream<'_>,
        grad_len: Option<usize>,
    ) -> Result<()> {
        if a_len == 0 {
            return Err(empty(a_name, "at least one element is required"));
        }
        check_len(b_name, a_len, b_len)?;
        if let Some(g) = grad_len {
            check_len("grad", a_len, g)?;
        }
        check_dev_upstream(upstream, reduction, a_len)?;
        Ok(())
    }

    /// Smooth L1 on device buffers (f32, math in f64).
    pub fn smooth_l1_dev(
        &self,
        cfg: &SmoothL1,
        pred: &CudaSlice<f32>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<DeviceLoss> {
        cfg.validate(&[0.0f32], &[0.0f32], &Upstream::ONE, None)?;
        self.validate_elem_dev(
            "pred",
            pred.len(),
            "target",
            target.len(),
            cfg.reduction,
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        self.elementwise_dev(
            Family::Regression,
            "reg_smooth_l1",
            cfg.reduction,
            pred,
            target,
            ElemParams::One(cfg.beta),
            upstream,
            grad,
        )
    }

    /// Huber on device buffers (f32, math in f64).
    pub fn huber_dev(
        &self,
        cfg: &Huber,
        pred: &CudaSlice<f32>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<DeviceLoss> {
        cfg.validate(&[0.0f32], &[0.0f32], &Upstream::ONE, None)?;
        self.validate_elem_dev(
            "pred",
            pred.len(),
            "target",
            target.len(),
            cfg.reduction,
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        self.elementwise_dev(
            Family::Regression,
            "reg_huber",
            cfg.reduction,
            pred,
            target,
            ElemParams::One(cfg.delta),
            upstream,
            grad,
        )
    }

    /// BCE with logits on device buffers (f32, math in f64). Targets on the device are not
    /// range-checked (the host-slice path checks them as the core validator does).
    pub fn bce_with_logits_dev(
        &self,
        cfg: &BceWithLogits,
        logits: &CudaSlice<f32>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<DeviceLoss> {
        let p = cfg.pos_weight.as_ref().map_or(1, |w| w.len().max(1));
        let stand_in = vec![0.0f32; p];
        cfg.validate(&stand_in, &stand_in, &Upstream::ONE, None)?;
        self.validate_elem_dev(
            "logits",
            logits.len(),
            "targets",
            targets.len(),
            cfg.reduction,
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        let n = logits.len();
        if let Some(pw) = &cfg.pos_weight
            && !n.is_multiple_of(pw.len())
        {
            return Err(LossError::ShapeMismatch {
                what: "pos_weight",
                expected: n,
                got: pw.len(),
            });
        }
        let pw_dev = match &cfg.pos_weight {
            Some(w) => Some(self.stream.clone_htod(w).w()?),
            None => None,
        };
        self.elementwise_dev(
            Family::Binary,
            "bin_bce_with_logits",
            cfg.reduction,
            logits,
            targets,
            ElemParams::PosWeight(pw_dev.as_ref()),
            upstream,
            grad,
        )
    }

    /// Sigmoid focal loss on device buffers (f32, math in f64). Targets on the device are not
    /// range-checked (the host-slice path checks them).
    pub fn sigmoid_focal_dev(
        &self,
        cfg: &SigmoidFocal,
        logits: &CudaSlice<f32>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<DeviceLoss> {
        cfg.validate(&[0.0f32], &[0.0f32], &Upstream::ONE, None)?;
        self.validate_elem_dev(
            "logits",
            logits.len(),
            "targets",
            targets.len(),
            cfg.reduction,
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        self.elementwise_dev(
            Family::Binary,
            "bin_sigmoid_focal",
            cfg.reduction,
            logits,
            targets,
            ElemParams::Focal(cfg.alpha, cfg.gamma),
            upstream,
            grad,
        )
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

fn format_code(f: BoxFormat) -> i32 {
    match f {
        BoxFormat::Xyxy => 0,
        BoxFormat::Xywh => 1,
        BoxFormat::Cxcywh => 2,
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

// -------------------------------------------------------------------- host-slice traits

impl CrossEntropyOps<f32> for CudaBackend {
    fn cross_entropy(
        &self,
        cfg: &CrossEntropy,
        logits: &[f32],
        rows: usize,
        classes: usize,
        targets: CeTargets<'_, f32>,
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> Result<Vec<f64>> {
        cfg.validate(
            logits.len(),
            rows,
            classes,
            &targets,
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        let z = self.upload(logits)?;
        let up = self.upload_up(upstream)?;
        let mut g_dev = self.grad_buffer(&grad)?;
        let out = match targets {
            CeTargets::Classes(t) => {
                let t_dev = self.upload(t)?;
                self.cross_entropy_dev(
                    cfg,
                    &z,
                    rows,
                    classes,
                    DeviceCeTargets::Classes(&t_dev),
                    up.as_dev(),
                    g_dev.as_mut(),
                )?
            }
            CeTargets::Probs(p) => {
                let p_dev = self.upload(p)?;
                self.cross_entropy_dev(
                    cfg,
                    &z,
                    rows,
                    classes,
                    DeviceCeTargets::Probs(&p_dev),
                    up.as_dev(),
                    g_dev.as_mut(),
                )?
            }
        };
        self.finish(out, g_dev, grad)
    }

    fn cross_entropy_in_place(
        &self,
        cfg: &CrossEntropy,
        logits: &mut [f32],
        rows: usize,
        classes: usize,
        targets: CeTargets<'_, f32>,
        upstream: Upstream<'_>,
    ) -> Result<Vec<f64>> {
        cfg.validate(logits.len(), rows, classes, &targets, &upstream, None)?;
        let mut z = self.upload(logits)?;
        let up = self.upload_up(upstream)?;
        let out = match targets {
            CeTargets::Classes(t) => {
                let t_dev = self.upload(t)?;
                self.cross_entropy_in_place_dev(
                    cfg,
                    &mut z,
                    rows,
                    classes,
                    DeviceCeTargets::Classes(&t_dev),
                    up.as_dev(),
                )?
            }
            CeTargets::Probs(p) => {
                let p_dev = self.upload(p)?;
                self.cross_entropy_in_place_dev(
                    cfg,
                    &mut z,
                    rows,
                    classes,
                    DeviceCeTargets::Probs(&p_dev),
                    up.as_dev(),
                )?
            }
        };
        self.finish(out, Some(z), Some(logits))
    }
}

impl BoxLossOps<f32> for CudaBackend {
    fn box_loss(
        &self,
        cfg: &BoxLoss,
        pred: &[f32],
        target: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> Result<Vec<f64>> {
        cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
        let p = self.upload(pred)?;
        let t = self.upload(target)?;
        let up = self.upload_up(upstream)?;
        let mut g_dev = self.grad_buffer(&grad)?;
        let out = self.box_loss_dev(cfg, &p, &t, up.as_dev(), g_dev.as_mut())?;
        self.finish(out, g_dev, grad)
    }

    fn box_iou(
        &self,
        format: BoxFormat,
        boxes1: &[f32],
        boxes2: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        smoothloss_core::box_loss::validate_box_iou(boxes1, boxes2, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        let a = self.upload(boxes1)?;
        let b = self.upload(boxes2)?;
        let mut o = self.stream.alloc_zeros::<f32>(out.len()).w()?;
        self.box_iou_dev(format, &a, &b, &mut o)?;
        self.stream.memcpy_dtoh(&o, out).w()?;
        self.stream.synchronize().w()
    }
}

impl RegressionOps<f32> for CudaBackend {
    fn smooth_l1(
        &self,
        cfg: &SmoothL1,
        pred: &[f32],
        target: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> Result<Vec<f64>> {
        cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
        let p = self.upload(pred)?;
        let t = self.upload(target)?;
        let up = self.upload_up(upstream)?;
        let mut g_dev = self.grad_buffer(&grad)?;
        let out = self.smooth_l1_dev(cfg, &p, &t, up.as_dev(), g_dev.as_mut())?;
        self.finish(out, g_dev, grad)
    }

    fn huber(
        &self,
        cfg: &Huber,
        pred: &[f32],
        target: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> Result<Vec<f64>> {
        cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
        let p = self.upload(pred)?;
        let t = self.upload(target)?;
        let up = self.upload_up(upstream)?;
        let mut g_dev = self.grad_buffer(&grad)?;
        let out = self.huber_dev(cfg, &p, &t, up.as_dev(), g_dev.as_mut())?;
        self.finish(out, g_dev, grad)
    }
}

impl BinaryOps<f32> for CudaBackend {
    fn bce_with_logits(
        &self,
        cfg: &BceWithLogits,
        logits: &[f32],
        targets: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> Result<Vec<f64>> {
        cfg.validate(logits, targets, &upstream, grad.as_ref().map(|g| g.len()))?;
        let x = self.upload(logits)?;
        let y = self.upload(targets)?;
        let up = self.upload_up(upstream)?;
        let mut g_dev = self.grad_buffer(&grad)?;
        let out = self.bce_with_logits_dev(cfg, &x, &y, up.as_dev(), g_dev.as_mut())?;
        self.finish(out, g_dev, grad)
    }

    fn sigmoid_focal(
        &self,
        cfg: &SigmoidFocal,
        logits: &[f32],
        targets: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> Result<Vec<f64>> {
        cfg.validate(logits, targets, &upstream, grad.as_ref().map(|g| g.len()))?;
        let x = self.upload(logits)?;
        let y = self.upload(targets)?;
        let up = self.upload_up(upstream)?;
        let mut g_dev = self.grad_buffer(&grad)?;
        let out = self.sigmoid_focal_dev(cfg, &x, &y, up.as_dev(), g_dev.as_mut())?;
        self.finish(out, g_dev, grad)
    }
}

impl Backend<f32> for CudaBackend {
    fn name(&self) -> String {
        "cuda".into()
    }
}
