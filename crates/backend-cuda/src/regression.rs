//! Smooth L1 and Huber on the device (`kernels/regression.cu`), and their host-slice trait.

use cudarc::driver::{CudaSlice, PushKernelArg};
use smoothloss_core::op::Op;
use smoothloss_core::{Huber, Reduction, RegressionOps, Result, SmoothL1, Upstream};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::kernels::Family;
use crate::launch::{
    DeviceLoss, DeviceUpstream, dptr, dptr_mut, elem_config, opt_dptr_mut, up_args,
};
use crate::params::RegParams;

impl CudaBackend {
    /// Launches `op`'s kernel (smooth L1 or Huber) with `param` (beta or delta) on validated
    /// buffers.
    #[allow(clippy::too_many_arguments)]
    fn regression_dev(
        &self,
        op: Op,
        reduction: Reduction,
        param: f64,
        pred: &CudaSlice<f32>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<DeviceLoss> {
        let fam = Family::Regression;
        let st = &self.stream;
        let n = pred.len();
        let mut out = self.elem_out(n, reduction)?;
        {
            let (p_ptr, _gp) = dptr(pred, st);
            let (t_ptr, _gt) = dptr(target, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let (g_ptr, _gg) = opt_dptr_mut(grad, st);
            let params = RegParams {
                pred: p_ptr,
                target: t_ptr,
                n: n as i64,
                param,
                up_scalar,
                up: u_ptr,
                scale: out.scale,
                losses: l_ptr,
                partials: pa_ptr,
                grad: g_ptr,
            };
            let f = self.function(fam, op.kernel_stem())?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: RegParams's contract: pred, target and grad have n f32, up n f64
            // (validated), losses n f64 (reduction none only), partials one per block of the
            // elem_grid(n) grid of 256 threads. The guards live until after the launch.
            unsafe { b.launch(elem_config(out.blocks)) }.w()?;
        }
        Ok(DeviceLoss {
            values: self.elem_values(fam, out)?,
            target_check: None,
            stream: st.clone(),
        })
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
        self.regression_dev(
            Op::SmoothL1,
            cfg.reduction,
            cfg.beta,
            pred,
            target,
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
        self.regression_dev(
            Op::Huber,
            cfg.reduction,
            cfg.delta,
            pred,
            target,
            upstream,
            grad,
        )
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
        self.via_device(pred, target, upstream, grad, |a, b, up, g| {
            self.smooth_l1_dev(cfg, a, b, up, g)
        })
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
        self.via_device(pred, target, upstream, grad, |a, b, up, g| {
            self.huber_dev(cfg, a, b, up, g)
        })
    }
}
