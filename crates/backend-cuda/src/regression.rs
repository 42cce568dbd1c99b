//! Smooth L1 and Huber on the device (`kernels/regression.cu`), and their host-slice trait.

use cudarc::driver::{CudaSlice, PushKernelArg};
use smoothloss_core::{
    Huber, Io, Loss, LossConfig, PairCall, Plan, RegressionOps, Result, SmoothL1,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::kernels::Family;
use crate::launch::{
    DeviceLoss, DeviceUpstream, dev_extent, dptr, dptr_mut, elem_config, io_ptrs, opt_dptr_mut,
    up_args,
};
use crate::params::RegParams;

/// A regression loss's kernel parameter: smooth L1's beta or Huber's delta.
trait RegConfig: LossConfig {
    fn param(&self) -> f64;
}

impl RegConfig for SmoothL1 {
    fn param(&self) -> f64 {
        self.beta
    }
}

impl RegConfig for Huber {
    fn param(&self) -> f64 {
        self.delta
    }
}

impl CudaBackend {
    /// Launches the plan's kernel (smooth L1 or Huber, from `C::OP`) and the final reduction.
    fn regression_launch<C: RegConfig>(
        &self,
        plan: &Plan<'_, C>,
        mut pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let fam = Family::Regression;
        let st = &self.stream;
        let mut out = self.elem_out(plan)?;
        {
            let io = io_ptrs(&mut pred, st);
            let (t_ptr, _gt) = dptr(target, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let params = RegParams {
                pred: io.input,
                target: t_ptr,
                n: plan.items as i64,
                param: plan.cfg.param(),
                up_scalar,
                up: u_ptr,
                scale: out.scale,
                losses: l_ptr,
                partials: pa_ptr,
                grad: io.grad_or_input(),
            };
            let f = self.function(fam, C::OP.kernel_stem())?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: RegParams's contract: pred, target and grad (pred itself in place) have
            // n f32, up n f64 (the plan), losses n f64 (reduction none only), partials one per
            // block of the elem_grid(n) grid of 256 threads. The guards live until after the
            // launch.
            unsafe { b.launch(elem_config(out.blocks)) }.w()?;
        }
        self.elem_loss(fam, out, None)
    }

    /// Smooth L1 on device buffers (f32, math in f64); the gradient into a separate buffer or
    /// over `pred` ([`Io::InPlace`]). Validated by the host's [`SmoothL1::plan`] from the
    /// buffers' lengths. The kernel computes in f64, so `beta` keeps the f64 domain (the host
    /// front door's `f32` domain of `TOL-4` for `f32` data is not applied here).
    pub fn smooth_l1_dev(
        &self,
        cfg: &SmoothL1,
        pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let plan = cfg.plan(&dev_extent(&pred, None, &upstream), target.len())?;
        self.regression_launch(&plan, pred, target, upstream)
    }

    /// Huber on device buffers (f32, math in f64), as [`CudaBackend::smooth_l1_dev`];
    /// validated by [`Huber::plan`]; `delta` keeps the f64 domain (math in f64).
    pub fn huber_dev(
        &self,
        cfg: &Huber,
        pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let plan = cfg.plan(&dev_extent(&pred, None, &upstream), target.len())?;
        self.regression_launch(&plan, pred, target, upstream)
    }
}

impl RegressionOps<f32> for CudaBackend {
    fn run_smooth_l1(&self, call: PairCall<'_, SmoothL1, f32>) -> Result<Loss> {
        self.via_device(call, |plan, pred, target, up| {
            self.regression_launch(plan, pred, target, up)
        })
    }

    fn run_huber(&self, call: PairCall<'_, Huber, f32>) -> Result<Loss> {
        self.via_device(call, |plan, pred, target, up| {
            self.regression_launch(plan, pred, target, up)
        })
    }
}
