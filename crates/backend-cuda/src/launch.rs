//! What every launch shares: device upstream gradients and results ([`DeviceUpstream`],
//! [`DeviceLoss`]), the core planner's view of device buffers (`dev_extent`), device addresses
//! of a call's input and gradient (`io_ptrs`) and of optional buffers, the per-block partials
//! of the grid-stride kernels and the final reduction, and the host-slice round trip
//! (`via_device`, `HostIo`).

use std::sync::Arc;

use cudarc::driver::{
    CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
    SyncOnDrop, ValidAsZeroBits,
};
use smoothloss_core::{
    Extent, GradDest, Io, Loss, LossConfig, LossError, PairCall, Parts, Plan, Reduction, Result,
    Upstream, UpstreamShape,
};

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

impl DeviceUpstream<'_> {
    /// The upstream gradient's shape, as the core planner sees it ([`Upstream::shape`]).
    pub fn shape(&self) -> UpstreamShape {
        match *self {
            DeviceUpstream::Scalar(s) => UpstreamShape::Scalar(s),
            DeviceUpstream::PerElement(u) => UpstreamShape::PerItem(u.len()),
        }
    }
}

/// Loss values left on the device by a loss call.
#[derive(Debug)]
pub struct DeviceLoss {
    pub(crate) values: CudaSlice<f64>,
    pub(crate) target_check: Option<TargetCheck>,
    pub(crate) stream: Arc<CudaStream>,
    /// Reduction `none`: one value per item.
    pub(crate) per_item: bool,
}

/// Targets checked on the device, reported by [`DeviceLoss::to_host`].
#[derive(Debug)]
pub(crate) enum TargetCheck {
    /// Cross-entropy: `[first bad row or -1, its target]` and C.
    Classes(CudaSlice<i64>, usize),
    /// Binary losses: `[!(first index outside [0, 1]) or 0, its value as f64 bits]`.
    Binary(CudaSlice<u64>),
    /// The dense-detector losses: two such words per checked buffer, reported in the order
    /// of the rules (the host front door's order).
    Dense(CudaSlice<u64>, Vec<DenseRule>),
}

/// How a dense-detector loss reports the first invalid value of one checked buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DenseRule {
    /// As [`LossError::InvalidParameter`] with this name and reason (the value: f64 bits).
    Value(&'static str, &'static str),
    /// As [`LossError::TargetOutOfRange`] with this many classes (the value: an i64 label).
    Label(usize),
}

impl DenseRule {
    /// The rule of a value check from the host check's verdict on an invalid probe value (so
    /// the name and reason are the host front door's own).
    pub(crate) fn of_probe(probe: Result<()>) -> Self {
        match probe {
            Err(LossError::InvalidParameter { name, reason, .. }) => Self::Value(name, reason),
            _ => Self::Value("targets", "invalid target value"),
        }
    }
}

impl DeviceLoss {
    /// The loss values: one for `mean`/`sum`, one per row / element / pair for `none`.
    pub fn values(&self) -> &CudaSlice<f64> {
        &self.values
    }

    /// Copies the values to the host (this synchronises the stream) and reports a target
    /// found invalid on the device: an out-of-range class target as
    /// [`LossError::TargetOutOfRange`], a binary target outside `[0, 1]` (or NaN) as
    /// [`LossError::InvalidParameter`] (as the host front door's checks of target contents). The values are
    /// meaningless when it does.
    pub fn to_host(&self) -> Result<Vec<f64>> {
        self.check_targets()?;
        let v = self.stream.clone_dtoh(&self.values).w()?;
        self.stream.synchronize().w()?;
        Ok(v)
    }

    /// Reports a target found invalid on the device, as [`DeviceLoss::to_host`] does, without
    /// reading the values (synchronises the stream only when there is a check to read): for a
    /// caller that keeps the values on the device (a framework adapter).
    pub fn check_targets(&self) -> Result<()> {
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
            Some(TargetCheck::Dense(check, rules)) => {
                let c = self.stream.clone_dtoh(check).w()?;
                self.stream.synchronize().w()?;
                for (w, rule) in c.chunks_exact(2).zip(rules) {
                    if w[0] != 0 {
                        return Err(match *rule {
                            DenseRule::Value(name, reason) => LossError::InvalidParameter {
                                name,
                                value: f64::from_bits(w[1]),
                                reason,
                            },
                            DenseRule::Label(classes) => LossError::TargetOutOfRange {
                                row: !w[0] as usize,
                                target: w[1] as i64,
                                classes,
                            },
                        });
                    }
                }
            }
            None => {}
        }
        Ok(())
    }

    /// The values' device buffer (one for `mean`/`sum`, one per item for `none`), without
    /// checking the targets: call [`DeviceLoss::check_targets`] first.
    pub fn into_values(self) -> CudaSlice<f64> {
        self.values
    }

    /// [`DeviceLoss::to_host`] as a [`Loss`]: [`Loss::Reduced`] for `mean` / `sum`,
    /// [`Loss::PerItem`] for `none` (what the host front door returns).
    pub fn to_loss(&self) -> Result<Loss> {
        Ok(loss_of(self.per_item, self.to_host()?))
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
    /// Allocates the outputs of a grid-stride loss kernel over the plan's items.
    pub(crate) fn elem_out<C: LossConfig>(&self, plan: &Plan<'_, C>) -> Result<ElemOut> {
        let n = plan.items;
        let blocks = elem_grid(n);
        let none = plan.reduction() == Reduction::None;
        let st = &self.stream;
        Ok(ElemOut {
            none,
            losses: st.alloc_zeros::<f64>(if none { n } else { 1 }).w()?,
            partials: st.alloc_zeros::<f64>(blocks as usize).w()?,
            blocks,
            scale: plan.count_scale(),
        })
    }

    /// The result of a grid-stride kernel's outputs: the per-item losses, or the partials
    /// reduced on the device (`sum * scale`).
    pub(crate) fn elem_loss(
        &self,
        family: Family,
        out: ElemOut,
        target_check: Option<TargetCheck>,
    ) -> Result<DeviceLoss> {
        let values = if out.none {
            out.losses
        } else {
            self.reduce_final(family, &out.partials, 1.0 / out.scale, None)?
        };
        Ok(DeviceLoss {
            values,
            target_check,
            stream: self.stream.clone(),
            per_item: out.none,
        })
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

    /// The host-slice path of a two-input loss (box, element-wise): uploads the input, the
    /// second input and the upstream, runs `launch` on the plan and the device copies, and
    /// copies the gradient back into the host destination (a separate buffer, or over the
    /// input for [`Io::InPlace`]). The front door validated the call.
    pub(crate) fn via_device<C: LossConfig>(
        &self,
        call: PairCall<'_, C, f32>,
        launch: impl for<'u> FnOnce(
            &Plan<'_, C>,
            Io<'u, CudaSlice<f32>>,
            &CudaSlice<f32>,
            DeviceUpstream<'u>,
        ) -> Result<DeviceLoss>,
    ) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let mut dev = HostIo::upload(self, io)?;
        let b = self.upload(with)?;
        let up = self.upload_up(upstream)?;
        let out = launch(&plan, dev.dev_io(), &b, up.as_dev())?;
        dev.finish(self, out)
    }
}

/// A host [`Io`] and its device copies: the input, and a separate gradient buffer when the
/// call writes one.
pub(crate) struct HostIo<'h, T> {
    host: Io<'h, [T]>,
    input: CudaSlice<T>,
    grad: Option<CudaSlice<T>>,
}

impl<'h, T: DeviceRepr + ValidAsZeroBits> HostIo<'h, T> {
    /// Uploads the input (once, also in place) and allocates a separate device gradient.
    pub(crate) fn upload(b: &CudaBackend, host: Io<'h, [T]>) -> Result<Self> {
        let input = b.upload(host.input())?;
        let grad = match &host {
            Io::Separate { grad, .. } => Some(b.stream.alloc_zeros::<T>(grad.len()).w()?),
            Io::Read(_) | Io::InPlace(_) => None,
        };
        Ok(Self { host, input, grad })
    }

    /// The device buffers, as the host call's kind.
    pub(crate) fn dev_io(&mut self) -> Io<'_, CudaSlice<T>> {
        match (&self.host, &mut self.grad) {
            (Io::Separate { .. }, Some(g)) => Io::Separate {
                input: &self.input,
                grad: g,
            },
            (Io::InPlace(_), _) => Io::InPlace(&mut self.input),
            _ => Io::Read(&self.input),
        }
    }

    /// Waits for the call's values (reporting targets found invalid on the device) and
    /// copies the device gradient into the host destination.
    pub(crate) fn finish(self, b: &CudaBackend, out: DeviceLoss) -> Result<Loss> {
        let loss = out.to_loss()?;
        let st = &b.stream;
        match (self.host, &self.grad) {
            (Io::Separate { grad, .. }, Some(g)) => st.memcpy_dtoh(g, grad).w()?,
            (Io::InPlace(x), _) => st.memcpy_dtoh(&self.input, x).w()?,
            _ => return Ok(loss),
        }
        st.synchronize().w()?;
        Ok(loss)
    }
}

/// The device buffer a call reads (for [`Io::InPlace`], before the call overwrites it).
pub(crate) fn io_input<'s, T>(io: &'s Io<'_, CudaSlice<T>>) -> &'s CudaSlice<T> {
    match io {
        Io::Read(x) => x,
        Io::Separate { input, .. } => input,
        Io::InPlace(x) => x,
    }
}

/// The shapes of a call on device buffers as the core planner sees them: the buffers'
/// lengths, the declared shape, the gradient destination and the upstream's shape (the same
/// [`Extent`] the host front door builds from host slices).
pub(crate) fn dev_extent<T>(
    io: &Io<'_, CudaSlice<T>>,
    shape: Option<[usize; 2]>,
    upstream: &DeviceUpstream<'_>,
) -> Extent {
    Extent {
        len: io_input(io).len(),
        shape,
        grad: match io {
            Io::Read(_) => GradDest::None,
            Io::Separate { grad, .. } => GradDest::Separate(grad.len()),
            Io::InPlace(_) => GradDest::InPlace,
        },
        upstream: upstream.shape(),
    }
}

/// The device addresses of a call's input and gradient, with the guards that keep the
/// buffers' stream ordering until the launch is enqueued.
pub(crate) struct IoPtrs<'a> {
    /// The input.
    pub input: u64,
    /// A separate gradient buffer, or [`NULL`] (no gradient, or in place).
    pub grad: u64,
    /// The gradient overwrites the input.
    pub in_place: bool,
    _guards: [Option<SyncOnDrop<'a>>; 2],
}

impl IoPtrs<'_> {
    /// Where an element-wise kernel writes its gradient: the separate buffer, the input itself
    /// in place (each element is read before the same thread writes its gradient), or NULL.
    pub fn grad_or_input(&self) -> u64 {
        if self.in_place { self.input } else { self.grad }
    }
}

/// [`IoPtrs`] of a device [`Io`].
pub(crate) fn io_ptrs<'a, T>(io: &'a mut Io<'_, CudaSlice<T>>, st: &'a CudaStream) -> IoPtrs<'a> {
    let ((input, gi), (grad, gg), in_place) = match io {
        Io::Read(x) => (dptr(*x, st), (NULL, None), false),
        Io::Separate { input, grad } => (dptr(*input, st), dptr_mut(*grad, st), false),
        Io::InPlace(x) => (dptr_mut(*x, st), (NULL, None), true),
    };
    IoPtrs {
        input,
        grad,
        in_place,
        _guards: [gi, gg],
    }
}

/// The loss value of a reduction from the values left on the device.
pub(crate) fn loss_of(per_item: bool, values: Vec<f64>) -> Loss {
    if per_item {
        Loss::PerItem(values)
    } else {
        Loss::Reduced(values.first().copied().unwrap_or(f64::NAN))
    }
}
