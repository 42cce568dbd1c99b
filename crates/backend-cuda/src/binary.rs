//! BCE with logits and sigmoid focal on the device (`kernels/binary.cu`), the device-side
//! check of their targets, and their host-slice trait.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use smoothloss_core::op::Op;
use smoothloss_core::{
    BceWithLogits, BinaryOps, LossError, Reduction, Result, SigmoidFocal, Upstream,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::kernels::{BIN_TARGET_CHECK, Family};
use crate::launch::{
    DeviceLoss, DeviceUpstream, TargetCheck, dptr, dptr_mut, elem_config, opt_dptr, opt_dptr_mut,
    up_args,
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
    /// Launches a binary loss kernel on validated buffers, then `bin_target_check`: targets
    /// outside `[0, 1]` are reported by [`DeviceLoss::to_host`].
    fn binary_dev(
        &self,
        kind: BinaryKind<'_>,
        reduction: Reduction,
        logits: &CudaSlice<f32>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<DeviceLoss> {
        let fam = Family::Binary;
        let st = &self.stream;
        let n = logits.len();
        let mut out = self.elem_out(n, reduction)?;
        // The device-side target check: two zeroed words.
        let mut check = st.alloc_zeros::<u64>(2).w()?;
        {
            let (x_ptr, _gx) = dptr(logits, st);
            let (y_ptr, _gy) = dptr(targets, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let (g_ptr, _gg) = opt_dptr_mut(grad, st);
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
                    // SAFETY: BceParams's contract: logits, targets and grad have n f32, up n
                    // f64 (validated), pos_weight p_len >= 1 f64 dividing n (checked by the
                    // caller), losses n f64 (reduction none only), partials one per block of
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
        Ok(DeviceLoss {
            values: self.elem_values(fam, out)?,
            target_check: Some(TargetCheck::Binary(check)),
            stream: st.clone(),
        })
    }

    /// BCE with logits on device buffers (f32, math in f64). Targets outside `[0, 1]` (or
    /// NaN) are found on the device and reported by [`DeviceLoss::to_host`] as the host-slice
    /// path's validation reports them.
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
        self.binary_dev(
            BinaryKind::Bce(pw_dev.as_ref()),
            cfg.reduction,
            logits,
            targets,
            upstream,
            grad,
        )
    }

    /// Sigmoid focal loss on device buffers (f32, math in f64). Targets outside `[0, 1]` (or
    /// NaN) are found on the device and reported by [`DeviceLoss::to_host`].
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
        self.binary_dev(
            BinaryKind::Focal(cfg.alpha, cfg.gamma),
            cfg.reduction,
            logits,
            targets,
            upstream,
            grad,
        )
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
        self.via_device(logits, targets, upstream, grad, |a, b, up, g| {
            self.bce_with_logits_dev(cfg, a, b, up, g)
        })
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
        self.via_device(logits, targets, upstream, grad, |a, b, up, g| {
            self.sigmoid_focal_dev(cfg, a, b, up, g)
        })
    }
}
