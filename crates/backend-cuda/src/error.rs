//! The crate's typed error ([`CudaError`]) and its one conversion into [`LossError::Device`].

use std::fmt;

use cudarc::driver::DriverError;
use cudarc::nvrtc::CompileError;
use smoothloss_core::{LossError, Result};

use crate::kernels::Family;

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
                    family.kernel_file(),
                    log.to_string_lossy()
                ),
                other => write!(f, "NVRTC error on {}: {other}", family.kernel_file()),
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

/// The error of a missing NVRTC library.
pub(crate) fn nvrtc_missing() -> LossError {
    CudaError::Unavailable(
        "the NVRTC library (libnvrtc) could not be loaded; set LD_LIBRARY_PATH".into(),
    )
    .into()
}
