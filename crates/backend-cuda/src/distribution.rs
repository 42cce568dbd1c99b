//! The distribution focal loss on the device (`kernels/distribution.cu`): on device buffers
//! (`distribution_focal_dev`, the targets checked on the device) and through its host-slice
//! trait (the front door validated the call and checked the targets' values on the host).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use smoothloss_core::{
    DflConvention, DistributionFocal, DistributionOps, Io, Loss, LossConfig, PairCall, Plan, Result,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::kernels::{DFL_TARGET_CHECK, Family};
use crate::launch::{
    DenseRule, DeviceLoss, DeviceUpstream, NULL, TargetCheck, dev_extent, dptr, dptr_mut,
    elem_config, io_ptrs, opt_dptr_mut, up_args,
};
use crate::params::{DflParams, TargetValueParams};

impl CudaBackend {
    /// The distribution focal loss (`DFL-1` .. `DFL-4`) on device buffers: `logits`
    /// `[rows, bins]` (f32, math in f64) and one `target` per row (`rows` = the targets'
    /// count); the gradient into a separate buffer or over `logits` ([`Io::InPlace`]).
    /// Validated by the host's [`DistributionFocal::plan`] from the buffers' lengths, so the
    /// shape errors are the host's; targets that [`DistributionFocal::check_targets`] refuses
    /// (NaN; mmdetection: outside `[0, bins - 1)`) are found on the device and reported by
    /// [`DeviceLoss::to_host`] as the host front door reports them (the first one). A scalar
    /// upstream keeps the f64 domain (math in f64).
    pub fn distribution_focal_dev(
        &self,
        cfg: &DistributionFocal,
        logits: Io<'_, CudaSlice<f32>>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let plan = cfg.plan(&dev_extent(&logits, None, &upstream), targets.len())?;
        self.dfl_launch(&plan, logits, targets, upstream, true)
    }

    /// Launches `dfl_fwd_bwd` on the plan's buffers; with `check`, also the device-side target
    /// check and `dfl_target_check`.
    fn dfl_launch(
        &self,
        plan: &Plan<'_, DistributionFocal>,
        mut logits: Io<'_, CudaSlice<f32>>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
        check: bool,
    ) -> Result<DeviceLoss> {
        let fam = Family::Distribution;
        let st = &self.stream;
        let mut out = self.elem_out(plan)?;
        let bins = plan.cfg.bins(plan);
        let mut words = if check {
            Some(st.alloc_zeros::<u64>(2).w()?)
        } else {
            None
        };
        {
            let io = io_ptrs(&mut logits, st);
            let (t_ptr, _gt) = dptr(targets, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let (c_ptr, _gc) = opt_dptr_mut(words.as_mut(), st);
            let params = DflParams {
                logits: io.input,
                targets: t_ptr,
                items: plan.items as i64,
                bins: bins as i64,
                up_scalar,
                up: u_ptr,
                scale: out.scale,
                losses: l_ptr,
                partials: pa_ptr,
                grad: io.grad_or_input(),
                check: c_ptr,
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
            // 256 threads, check 2 zeroed words or null. The guards live until after the launch.
            unsafe { b.launch(elem_config(out.blocks)) }.w()?;
            if c_ptr != NULL {
                let params = TargetValueParams {
                    values: t_ptr,
                    labels: NULL,
                    check: c_ptr,
                };
                let f = self.function(fam, DFL_TARGET_CHECK)?;
                let mut b = st.launch_builder(&f);
                b.arg(&params);
                // SAFETY: TargetValueParams's contract: the loss kernel above flagged only
                // rows below the targets' count in check (2 words); one thread.
                unsafe { b.launch(LaunchConfig::for_num_elems(1)) }.w()?;
            }
        }
        let target_check = words.map(|w| {
            let rule = DenseRule::of_probe(plan.cfg.check_targets(&[f32::NAN], bins));
            TargetCheck::Dense(w, vec![rule])
        });
        self.elem_loss(fam, out, target_check)
    }
}

impl DistributionOps<f32> for CudaBackend {
    fn run_distribution_focal(&self, call: PairCall<'_, DistributionFocal, f32>) -> Result<Loss> {
        self.via_device(call, |plan, z, t, up| {
            self.dfl_launch(plan, z, t, up, false)
        })
    }
}
