//! BCE with logits and sigmoid focal on the device (`kernels/binary.cu`), the device-side
//! check of their targets, and their host-slice trait.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use smoothloss_core::op::Op;
use smoothloss_core::{
    BceWithLogits, BinaryOps, Io, Loss, LossConfig, PairCall, Plan, Result, SigmoidFocal,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::kernels::{BIN_TARGET_CHECK, Family};
use crate::launch::{
    DeviceLoss, DeviceUpstream, TargetCheck, dev_extent, dptr, dptr_mut, elem_config, io_ptrs,
    opt_dptr, opt_dptr_mut, up_args,
};
use crate::params::{BceParams, BinTargetCheckParams, FocalParams};

/// The loss-specific parameters of a binary kernel.
enum BinaryKind<'a> {
    /// BCE with optional positive weights (device).
    Bce(Option<&'a CudaSlice<f64>>),
    /// Focal alpha and gamma.
    Focal(f64, f64),
}

impl CudaBackend {
    /// Launches a binary loss kernel on the plan's buffers, then `bin_target_check`: targets
    /// outside `[0, 1]` are reported by [`DeviceLoss::to_host`].
    fn binary_launch<C: LossConfig>(
        &self,
        plan: &Plan<'_, C>,
        kind: BinaryKind<'_>,
        mut logits: Io<'_, CudaSlice<f32>>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let fam = Family::Binary;
        let st = &self.stream;
        let n = plan.items;
        let mut out = self.elem_out(plan)?;
        // The device-side target check: two zeroed words.
        let mut check = st.alloc_zeros::<u64>(2).w()?;
        {
            let io = io_ptrs(&mut logits, st);
            let (x_ptr, g_ptr) = (io.input, io.grad_or_input());
            let (y_ptr, _gy) = dptr(targets, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let (c_ptr, _gc) = dptr_mut(&mut check, st);
            match kind {
                BinaryKind::Bce(pos_weight) => {
                    let (pw_ptr, _gpw) = opt_dptr(pos_weight, st);
                    let params = BceParams {
                        logits: x_ptr,
                        targets: y_ptr,
                        n: n as i64,
                        pos_weight: pw_ptr,
                        p_len: pos_weight.map_or(1, |w| w.len() as i64),
                        up_scalar,
                        up: u_ptr,
                        scale: out.scale,
                        losses: l_ptr,
                        partials: pa_ptr,
                        grad: g_ptr,
                        check: c_ptr,
                    };
                    let f = self.function(fam, Op::BceWithLogits.kernel_stem())?;
                    let mut b = st.launch_builder(&f);
                    b.arg(&params);
                    // SAFETY: BceParams's contract: logits, targets and grad (logits itself in
                    // place) have n f32, up n f64 (the plan), pos_weight p_len >= 1 f64
                    // dividing n (BceWithLogits::plan), losses n f64 (reduction none only), partials one per block of
                    // the elem_grid(n) grid of 256 threads, check 2 zeroed words.
                    unsafe { b.launch(elem_config(out.blocks)) }.w()?;
                }
                BinaryKind::Focal(alpha, gamma) => {
                    let params = FocalParams {
                        logits: x_ptr,
                        targets: y_ptr,
                        n: n as i64,
                        alpha,
                        gamma,
                        up_scalar,
                        up: u_ptr,
                        scale: out.scale,
                        losses: l_ptr,
                        partials: pa_ptr,
                        grad: g_ptr,
                        check: c_ptr,
                    };
                    let f = self.function(fam, Op::SigmoidFocal.kernel_stem())?;
                    let mut b = st.launch_builder(&f);
                    b.arg(&params);
                    // SAFETY: FocalParams's contract: as for BCE above, without positive
                    // weights.
                    unsafe { b.launch(elem_config(out.blocks)) }.w()?;
                }
            }
            let params = BinTargetCheckParams {
                targets: y_ptr,
                check: c_ptr,
            };
            let f = self.function(fam, BIN_TARGET_CHECK)?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: BinTargetCheckParams's contract: the loss kernel above flagged only
            // indices below n (targets' length) in check (2 words); one thread.
            unsafe { b.launch(LaunchConfig::for_num_elems(1)) }.w()?;
        }
        self.elem_loss(fam, out, Some(TargetCheck::Binary(check)))
    }

    fn bce_launch(
        &self,
        plan: &Plan<'_, BceWithLogits>,
        logits: Io<'_, CudaSlice<f32>>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let pw_dev = match &plan.cfg.pos_weight {
            Some(w) => Some(self.stream.clone_htod(w).w()?),
            None => None,
        };
        let kind = BinaryKind::Bce(pw_dev.as_ref());
        self.binary_launch(plan, kind, logits, targets, upstream)
    }

    fn focal_launch(
        &self,
        plan: &Plan<'_, SigmoidFocal>,
        logits: Io<'_, CudaSlice<f32>>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let kind = BinaryKind::Focal(plan.cfg.alpha, plan.cfg.gamma);
        self.binary_launch(plan, kind, logits, targets, upstream)
    }

    /// BCE with logits on device buffers (f32, math in f64); the gradient into a separate
    /// buffer or over `logits` ([`Io::InPlace`]). Validated by the host's
    /// [`BceWithLogits::plan`] from the buffers' lengths; targets outside `[0, 1]` (or NaN)
    /// are found on the device and reported by [`DeviceLoss::to_host`] as the host front door
    /// reports them. The kernel computes in f64, so `pos_weight` (and a scalar upstream) keep
    /// the f64 domain (the host front door's `f32` domain of `TOL-4` for `f32` data is not
    /// applied here).
    pub fn bce_with_logits_dev(
        &self,
        cfg: &BceWithLogits,
        logits: Io<'_, CudaSlice<f32>>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let plan = cfg.plan(&dev_extent(&logits, None, &upstream), targets.len())?;
        self.bce_launch(&plan, logits, targets, upstream)
    }

    /// Sigmoid focal loss on device buffers (f32, math in f64), as
    /// [`CudaBackend::bce_with_logits_dev`]; validated by [`SigmoidFocal::plan`]; `alpha`,
    /// `gamma` and a scalar upstream keep the f64 domain (math in f64).
    pub fn sigmoid_focal_dev(
        &self,
        cfg: &SigmoidFocal,
        logits: Io<'_, CudaSlice<f32>>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let plan = cfg.plan(&dev_extent(&logits, None, &upstream), targets.len())?;
        self.focal_launch(&plan, logits, targets, upstream)
    }
}

impl BinaryOps<f32> for CudaBackend {
    fn run_bce_with_logits(&self, call: PairCall<'_, BceWithLogits, f32>) -> Result<Loss> {
        self.via_device(call, |plan, x, y, up| self.bce_launch(plan, x, y, up))
    }

    fn run_sigmoid_focal(&self, call: PairCall<'_, SigmoidFocal, f32>) -> Result<Loss> {
        self.via_device(call, |plan, x, y, up| self.focal_launch(plan, x, y, up))
    }
}
