//! Box losses and pairwise box IoU on the device (`kernels/box_loss.cu`), and their host-slice
//! trait.

use super::*;

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
        let blocks = elem_grid(n);
        let none = cfg.reduction == Reduction::None;
        let mut losses = st.alloc_zeros::<f64>(if none { n } else { 1 }).w()?;
        let mut partials = st.alloc_zeros::<f64>(blocks as usize).w()?;
        let kind: i32 = match cfg.kind {
            BoxLossKind::Iou => 0,
            BoxLossKind::Giou => 1,
            BoxLossKind::Diou => 2,
            BoxLossKind::Ciou => 3,
            BoxLossKind::Eiou => 4,
        };
        let format = format_code(cfg.format);
        let (has_tw, tw_alpha, tw_threshold) = match cfg.threshold_weight {
            Some(tw) => (1i32, tw.alpha, tw.threshold),
            None => (0i32, 0.0, 0.0),
        };
        let scale = if cfg.reduction == Reduction::Mean {
            1.0 / n as f64
        } else {
            1.0
        };
        let n_i = n as i64;
        {
            let (p_ptr, _gp) = pred.device_ptr(st);
            let (t_ptr, _gt) = target.device_ptr(st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = if none {
                let (p, g) = losses.device_ptr_mut(st);
                (p, Some(g))
            } else {
                (NULL, None)
            };
            let (pa_ptr, _gpa) = partials.device_ptr_mut(st);
            let (g_ptr, _gg) = match grad {
                Some(g) => {
                    let (p, guard) = g.device_ptr_mut(st);
                    (p, Some(guard))
                }
                None => (NULL, None),
            };
            let f = self.function(fam, "box_loss_fwd_bwd")?;
            let mut b = st.launch_builder(&f);
            b.arg(&p_ptr)
                .arg(&t_ptr)
                .arg(&n_i)
                .arg(&kind)
                .arg(&format)
                .arg(&cfg.eps)
                .arg(&has_tw)
                .arg(&tw_alpha)
                .arg(&tw_threshold)
                .arg(&up_scalar)
                .arg(&u_ptr)
                .arg(&scale)
                .arg(&l_ptr)
                .arg(&pa_ptr)
                .arg(&g_ptr);
            // SAFETY: `box_loss_fwd_bwd(const float* pred, const float* target, long long n,
            // int kind, int format, double eps, int has_tw, double tw_alpha,
            // double tw_threshold, double up_scalar, const double* up, double scale,
            // double* losses, double* partials, float* grad)`: u64 device addresses (0 = null)
            // and i64/i32/f64 scalars in that order. Pair i < n reads pred/target[4i..4i+4)
            // (4n f32 each: validated), up[i] (n: validated), writes losses[i] (n f64, only
            // passed for reduction none) and grad[4i..4i+4) (4n: validated);
            // block b writes partials[b] (`blocks` f64). Block size 256, a multiple of 32.
            unsafe { b.launch(elem_config(blocks)) }.w()?;
        }
        let values = if none {
            losses
        } else {
            self.reduce_final(fam, &partials, 1.0 / scale, None)?
        };
        Ok(DeviceLoss {
            values,
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
        let (n_i, m_i) = (n as i64, m as i64);
        let format = format_code(format);
        let blocks = total.div_ceil(ELEM_THREADS as usize).clamp(1, 65_535 * 8) as u32;
        let (a_ptr, _ga) = boxes1.device_ptr(st);
        let (b_ptr, _gb) = boxes2.device_ptr(st);
        let (o_ptr, _go) = out.device_ptr_mut(st);
        let f = self.function(Family::BoxLoss, "box_iou_pairwise")?;
        let mut b = st.launch_builder(&f);
        b.arg(&a_ptr)
            .arg(&b_ptr)
            .arg(&n_i)
            .arg(&m_i)
            .arg(&format)
            .arg(&o_ptr);
        // SAFETY: `box_iou_pairwise(const float* b1, const float* b2, long long n, long long m,
        // int format, float* out)`: u64 device addresses and i64/i32 scalars in that order.
        // Output idx < n*m reads b1[4i..4i+4) with i = idx / m < n (4n f32) and b2[4j..4j+4)
        // with j < m (4m f32), and writes out[idx] (n*m f32: checked above). Grid-stride loop,
        // block size 256.
        unsafe { b.launch(elem_config(blocks)) }.w()?;
        Ok(())
    }
}

fn format_code(f: BoxFormat) -> i32 {
    match f {
        BoxFormat::Xyxy => 0,
        BoxFormat::Xywh => 1,
        BoxFormat::Cxcywh => 2,
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
