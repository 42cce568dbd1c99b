//! Box losses and pairwise box IoU on the device (`kernels/box_loss.cu`), and their host-slice
//! trait.

use cudarc::driver::{CudaSlice, PushKernelArg};
use smoothloss_core::box_loss::box_count;
use smoothloss_core::error::check_len;
use smoothloss_core::op::Op;
use smoothloss_core::{BoxFormat, BoxLoss, BoxLossOps, Result, Upstream};

use crate::device::CudaBackend;
use crate::error::{WrapErr, empty};
use crate::geometry::ELEM_THREADS;
use crate::kernels::Family;
use crate::launch::{
    DeviceLoss, DeviceUpstream, check_dev_upstream, dptr, dptr_mut, elem_config, opt_dptr_mut,
    up_args,
};
use crate::params::{BoxIouParams, BoxLossParams};

impl CudaBackend {
    fn validate_box_dev(
        &self,
        cfg: &BoxLoss,
        pred_len: usize,
        target_len: usize,
        upstream: &DeviceUpstream<'_>,
        grad_len: Option<usize>,
    ) -> Result<usize> {
        // Parameters by the core validator on one stand-in pair; then the real shapes in the
        // core's order.
        let stand_in = [0.0f32, 0.0, 1.0, 1.0];
        cfg.validate(&stand_in, &stand_in, &Upstream::ONE, None)?;
        let n = box_count("pred", pred_len)?;
        check_len("target", pred_len, target_len)?;
        if n == 0 {
            return Err(empty("pred", "at least one box pair is required"));
        }
        if let Some(g) = grad_len {
            check_len("grad", pred_len, g)?;
        }
        check_dev_upstream(upstream, cfg.reduction, n)?;
        Ok(n)
    }

    /// Box loss on device buffers `pred`, `target` `[N, 4]` (f32, math in f64); the gradient
    /// with respect to `pred` in `cfg.format`.
    pub fn box_loss_dev(
        &self,
        cfg: &BoxLoss,
        pred: &CudaSlice<f32>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<DeviceLoss> {
        let n = self.validate_box_dev(
            cfg,
            pred.len(),
            target.len(),
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        let fam = Family::BoxLoss;
        let st = &self.stream;
        let mut out = self.elem_out(n, cfg.reduction)?;
        let (has_tw, tw_alpha, tw_threshold) = match cfg.threshold_weight {
            Some(tw) => (1i32, tw.alpha, tw.threshold),
            None => (0i32, 0.0, 0.0),
        };
        {
            let (p_ptr, _gp) = dptr(pred, st);
            let (t_ptr, _gt) = dptr(target, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let (g_ptr, _gg) = opt_dptr_mut(grad, st);
            let params = BoxLossParams {
                pred: p_ptr,
                target: t_ptr,
                n: n as i64,
                eps: cfg.eps,
                tw_alpha,
                tw_threshold,
                up_scalar,
                up: u_ptr,
                scale: out.scale,
                losses: l_ptr,
                partials: pa_ptr,
                grad: g_ptr,
                kind: i32::from(cfg.kind.code()),
                format: i32::from(cfg.format.code()),
                has_tw,
                _pad: 0,
            };
            let f = self.function(fam, Op::BoxLoss.kernel_stem())?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: BoxLossParams's contract: pred, target and grad have 4n f32, up n f64
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

    /// Pairwise IoU of `boxes1` `[N, 4]` and `boxes2` `[M, 4]` into `out` `[N, M]` on the
    /// device (math in f64), as `torchvision.ops.box_iou`.
    pub fn box_iou_dev(
        &self,
        format: BoxFormat,
        boxes1: &CudaSlice<f32>,
        boxes2: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = box_count("boxes1", boxes1.len())?;
        let m = box_count("boxes2", boxes2.len())?;
        let total = smoothloss_core::error::checked_size("iou", n, m)?;
        check_len("iou", total, out.len())?;
        if total == 0 {
            return Ok(());
        }
        let st = &self.stream;
        let blocks = total.div_ceil(ELEM_THREADS as usize).clamp(1, 65_535 * 8) as u32;
        let (a_ptr, _ga) = dptr(boxes1, st);
        let (b_ptr, _gb) = dptr(boxes2, st);
        let (o_ptr, _go) = dptr_mut(out, st);
        let params = BoxIouParams {
            b1: a_ptr,
            b2: b_ptr,
            n: n as i64,
            m: m as i64,
            out: o_ptr,
            format: i32::from(format.code()),
            _pad: 0,
        };
        let f = self.function(Family::BoxLoss, Op::BoxIou.kernel_stem())?;
        let mut b = st.launch_builder(&f);
        b.arg(&params);
        // SAFETY: BoxIouParams's contract: boxes1 has 4n f32, boxes2 4m, out n*m (checked
        // above); grid-stride loop, block size 256.
        unsafe { b.launch(elem_config(blocks)) }.w()?;
        Ok(())
    }
}

impl BoxLossOps<f32> for CudaBackend {
    fn box_loss(
        &self,
        cfg: &BoxLoss,
        pred: &[f32],
        target: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> Result<Vec<f64>> {
        cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
        self.via_device(pred, target, upstream, grad, |p, t, up, g| {
            self.box_loss_dev(cfg, p, t, up, g)
        })
    }

    fn box_iou(
        &self,
        format: BoxFormat,
        boxes1: &[f32],
        boxes2: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        smoothloss_core::box_loss::validate_box_iou(boxes1, boxes2, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        let a = self.upload(boxes1)?;
        let b = self.upload(boxes2)?;
        let mut o = self.stream.alloc_zeros::<f32>(out.len()).w()?;
        self.box_iou_dev(format, &a, &b, &mut o)?;
        self.stream.memcpy_dtoh(&o, out).w()?;
        self.stream.synchronize().w()
    }
}
