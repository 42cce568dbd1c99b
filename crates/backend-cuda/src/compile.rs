//! NVRTC compilation of the kernel files: PTX, and machine code (a cubin) for the device's own
//! architecture, each compiled once per process and cached.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{CompileOptions, Ptx};
use smoothloss_core::{LossError, Result};

use crate::device::nvrtc_library_present;
use crate::error::{CudaError, nvrtc_missing};
use crate::kernels::{Family, KernelFamily};

pub(crate) fn leak_arch(major: i32, minor: i32) -> &'static str {
    static ARCHS: OnceLock<Mutex<HashMap<(i32, i32), &'static str>>> = OnceLock::new();
    let mut map = ARCHS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry((major, minor))
        .or_insert_with(|| Box::leak(format!("sm_{major}{minor}").into_boxed_str()))
}

/// Compiles one kernel file (`KernelFamily::full_source`: prelude, `common.cuh`, the file) to PTX for `arch` (`"sm_90"`), once
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
        name: Some(family.kernel_file()),
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

/// A kernel file compiled by NVRTC to machine code (a cubin) for one real architecture.
#[derive(Debug, Clone)]
pub struct Cubin {
    /// The ELF image, as `cuModuleLoadData` takes it.
    pub image: Vec<u8>,
    /// NVRTC's log (with `-Xptxas=-v` among `extra_options`: registers, spills, shared memory
    /// per entry point).
    pub log: String,
}

/// Compiles one kernel file (`KernelFamily::full_source`: prelude, `common.cuh`, the file) to a cubin for `arch` (`"sm_90"`),
/// uncached. A cubin needs no PTX JIT in the driver, so it also loads where NVRTC is newer than
/// the driver's PTX support (`CUDA_ERROR_UNSUPPORTED_PTX_VERSION` for PTX).
pub fn compile_cubin(family: Family, arch: &str, extra_options: &[&str]) -> Result<Cubin> {
    use cudarc::nvrtc::{result, sys};
    if !nvrtc_library_present() {
        return Err(nvrtc_missing());
    }
    let src = std::ffi::CString::new(family.full_source())
        .map_err(|_| LossError::Device("kernel source holds a NUL byte".into()))?;
    let name = std::ffi::CString::new(family.kernel_file())
        .map_err(|_| LossError::Device("kernel name holds a NUL byte".into()))?;
    let nv = |what: &str, e: result::NvrtcError| {
        LossError::Device(format!(
            "NVRTC {what} failed on {}: {e:?}",
            family.kernel_file()
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
                family.kernel_file()
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
pub(crate) fn cached_cubin(family: Family, arch: &'static str) -> Result<Vec<u8>> {
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
