//! The distribution focal loss on the device (`kernels/distribution.cu`), through its
//! host-slice trait (the front door validated the call; the targets' values were checked on
//! the host).

use cudarc::driver::{CudaSlice, PushKernelArg};
use smoothloss_core::{
    DflConvention, DistributionFocal, DistributionOps, Io, Loss, LossConfig, PairCall, Plan, Result,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::kernels::Family;
use crate::launch::{
    DeviceLoss, DeviceUpstream, dptr, dptr_mut, elem_config, io_ptrs, opt_dptr_mut, up_args,
};
use crate::params::DflParams;

impl CudaBackend {
    fn dfl_launch(
        &self,
        plan: &Plan<'_, DistributionFocal>,
        mut logits: Io<'_, CudaSlice<f32>>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let fam = Family::Distribution;
        let st = &self.stream;
        let mut out = self.elem_out(plan)?;
        {
            let io = io_ptrs(&mut logits, st);
            let (t_ptr, _gt) = dptr(targets, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let params = DflParams {
                logits: io.input,
                targets: t_ptr,
                items: plan.items as i64,
                bins: plan.cfg.bins(plan) as i64,
                up_scalar,
                up: u_ptr,
                scale: out.scale,
                losses: l_ptr,
                partials: pa_ptr,
                grad: io.grad_or_input(),
                convention: match plan.cfg.convention {
                    DflConvention::Ultralytics => 0,
                    DflConvention::Mmdetection => 1,
                },
                _pad: 0,
            };
            let f = self.function(fam, DistributionFocal::OP.kernel_stem())?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: DflParams's contract: logits and grad (the logits in place) have
            // items * width f32 (the plan), targets one per row, up items f64, losses items f64
            // (reduction none only), partials one per block of the elem_grid(items) grid of
            // 256 threads. The guards live until after the launch.
            unsafe { b.launch(elem_config(out.blocks)) }.w()?;
        }
        self.elem_loss(fam, out, None)
    }
}

impl DistributionOps<f32> for CudaBackend {
    fn run_distribution_focal(&self, call: PairCall<'_, DistributionFocal, f32>) -> Result<Loss> {
        self.via_device(call, |plan, z, t, up| self.dfl_launch(plan, z, t, up))
    }
}
