//! What every launch shares: device upstream gradients and results ([`DeviceUpstream`],
//! [`DeviceLoss`]), device addresses of optional buffers, the per-block partials of the
//! grid-stride kernels and the final reduction, and the host-slice round trip (`via_device`).

use std::sync::Arc;

use cudarc::driver::{
    CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
    SyncOnDrop, ValidAsZeroBits,
};
use smoothloss_core::error::check_len;
use smoothloss_core::{LossError, Reduction, Result, Upstream};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::geometry::{ELEM_THREADS, REDUCE_THREADS, elem_grid};
use crate::kernels::{Family, REDUCE_FINAL};
use crate::params::ReduceFinalParams;

/// An upstream gradient on the device (see [`Upstream`]).
#[derive(Debug, Clone, Copy)]
pub enum DeviceUpstream<'a> {
    /// The same value for every loss value.
    Scalar(f64),
    /// One value per loss value (reduction `none` only).
    PerElement(&'a CudaSlice<f64>),
}

/// Loss values left on the device by a loss call.
#[derive(Debug)]
pub struct DeviceLoss {
    pub(crate) values: CudaSlice<f64>,
    pub(crate) target_check: Option<TargetCheck>,
    pub(crate) stream: Arc<CudaStream>,
}

/// Targets checked on the device, reported by [`DeviceLoss::to_host`].
#[derive(Debug)]
pub(crate) enum TargetCheck {
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

/// A pointer field: the device address of a buffer, or 0 for "absent" (the kernels test
/// every nullable pointer against `nullptr`).
pub(crate) const NULL: u64 = 0;

/// A device address and the guard that keeps its buffer's stream ordering until the launch is
/// enqueued (`None` for [`NULL`]).
pub(crate) type PtrGuard<'a> = (u64, Option<SyncOnDrop<'a>>);

/// The address of a buffer read by a kernel.
pub(crate) fn dptr<'a, T>(s: &'a CudaSlice<T>, st: &'a CudaStream) -> PtrGuard<'a> {
    let (p, g) = s.device_ptr(st);
    (p, Some(g))
}

/// The address of a buffer written by a kernel.
pub(crate) fn dptr_mut<'a, T>(s: &'a mut CudaSlice<T>, st: &'a CudaStream) -> PtrGuard<'a> {
    let (p, g) = s.device_ptr_mut(st);
    (p, Some(g))
}

/// [`dptr`] of an optional buffer, [`NULL`] without one.
pub(crate) fn opt_dptr<'a, T>(s: Option<&'a CudaSlice<T>>, st: &'a CudaStream) -> PtrGuard<'a> {
    s.map_or((NULL, None), |s| dptr(s, st))
}

/// [`dptr_mut`] of an optional buffer, [`NULL`] without one.
pub(crate) fn opt_dptr_mut<'a, T>(
    s: Option<&'a mut CudaSlice<T>>,
    st: &'a CudaStream,
) -> PtrGuard<'a> {
    s.map_or((NULL, None), |s| dptr_mut(s, st))
}

/// The scalar and the per-element address of an upstream gradient (one of them used).
pub(crate) fn up_args<'a>(up: &DeviceUpstream<'a>, st: &'a CudaStream) -> (f64, PtrGuard<'a>) {
    match *up {
        DeviceUpstream::Scalar(s) => (s, (NULL, None)),
        DeviceUpstream::PerElement(u) => (0.0, dptr(u, st)),
    }
}

/// Checks a device upstream gradient as [`Upstream::validate`] does and returns a host
/// stand-in with the same effect on the other checks.
pub(crate) fn check_dev_upstream(
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

/// The launch configuration of a grid-stride (element-wise or box) kernel.
pub(crate) fn elem_config(blocks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (ELEM_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The outputs of a grid-stride loss kernel over `n` items: per-item losses (reduction
/// `none`) or per-block partials, and the gradient scale.
pub(crate) struct ElemOut {
    /// Reduction `none`: `losses` holds one value per item.
    pub none: bool,
    /// `n` values for `none`, else 1 (unused).
    pub losses: CudaSlice<f64>,
    /// One per block.
    pub partials: CudaSlice<f64>,
    /// Blocks of the launch (`geometry::elem_grid`).
    pub blocks: u32,
    /// 1/n for a mean, else 1.
    pub scale: f64,
}

/// Owned device copy of a host upstream gradient.
pub(crate) enum UpOwned {
    Scalar(f64),
    Dev(CudaSlice<f64>),
}

impl UpOwned {
    pub(crate) fn as_dev(&self) -> DeviceUpstream<'_> {
        match self {
            UpOwned::Scalar(s) => DeviceUpstream::Scalar(*s),
            UpOwned::Dev(d) => DeviceUpstream::PerElement(d),
        }
    }
}

impl CudaBackend {
    /// Allocates the outputs of a grid-stride loss kernel over `n` items.
    pub(crate) fn elem_out(&self, n: usize, reduction: Reduction) -> Result<ElemOut> {
        let blocks = elem_grid(n);
        let none = reduction == Reduction::None;
        let st = &self.stream;
        Ok(ElemOut {
            none,
            losses: st.alloc_zeros::<f64>(if none { n } else { 1 }).w()?,
            partials: st.alloc_zeros::<f64>(blocks as usize).w()?,
            blocks,
            scale: if reduction == Reduction::Mean {
                1.0 / n as f64
            } else {
                1.0
            },
        })
    }

    /// The loss values of a grid-stride kernel's outputs: the per-item losses, or the
    /// partials reduced on the device (`sum * scale`).
    pub(crate) fn elem_values(&self, family: Family, out: ElemOut) -> Result<CudaSlice<f64>> {
        if out.none {
            Ok(out.losses)
        } else {
            self.reduce_final(family, &out.partials, 1.0 / out.scale, None)
        }
    }

    pub(crate) fn upload_up(&self, up: Upstream<'_>) -> Result<UpOwned> {
        Ok(match up {
            Upstream::Scalar(s) => UpOwned::Scalar(s),
            Upstream::PerElement(u) => UpOwned::Dev(self.stream.clone_htod(u).w()?),
        })
    }

    /// The final deterministic reduction of `partials` into one value on the device:
    /// `sum / divisor`, or `sum / denom[0]` when `denom` is given.
    pub(crate) fn reduce_final(
        &self,
        family: Family,
        partials: &CudaSlice<f64>,
        divisor: f64,
        denom: Option<&CudaSlice<f64>>,
    ) -> Result<CudaSlice<f64>> {
        let st = &self.stream;
        let f = self.function(family, REDUCE_FINAL)?;
        let mut out = st.alloc_zeros::<f64>(1).w()?;
        {
            let (partials_ptr, _gp) = dptr(partials, st);
            let (denom_ptr, _gd) = opt_dptr(denom, st);
            let (out_ptr, _go) = dptr_mut(&mut out, st);
            let params = ReduceFinalParams {
                partials: partials_ptr,
                n: partials.len() as i64,
                divisor,
                denom: denom_ptr,
                out: out_ptr,
            };
            let cfg = LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (REDUCE_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: ReduceFinalParams's contract: n is partials' length, denom (when given)
            // and out hold at least one f64, one block of REDUCE_THREADS; the guards live
            // until after the launch.
            unsafe { b.launch(cfg) }.w()?;
        }
        Ok(out)
    }

    pub(crate) fn upload<T: DeviceRepr>(&self, xs: &[T]) -> Result<CudaSlice<T>> {
        self.stream.clone_htod(xs).w()
    }

    pub(crate) fn grad_buffer<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        grad: &Option<&mut [T]>,
    ) -> Result<Option<CudaSlice<T>>> {
        match grad {
            Some(g) => Ok(Some(self.stream.alloc_zeros::<T>(g.len()).w()?)),
            None => Ok(None),
        }
    }

    /// The host-slice path of a two-input loss (box, element-wise): uploads `a`, `b` and the
    /// upstream, runs `dev` on the device copies (with a device gradient buffer when `grad`
    /// is given) and copies the values and gradient back. The caller validated the inputs.
    pub(crate) fn via_device(
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

    pub(crate) fn finish<T: DeviceRepr>(
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

    /// The shape checks of an element-wise loss on device buffers (regression and binary;
    /// parameters are checked by the caller with the core validator on a stand-in).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn validate_elem_dev(
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
            return Err(crate::error::empty(
                a_name,
                "at least one element is required",
            ));
        }
        check_len(b_name, a_len, b_len)?;
        if let Some(g) = grad_len {
            check_len("grad", a_len, g)?;
        }
        check_dev_upstream(upstream, reduction, a_len)?;
        Ok(())
    }
}
