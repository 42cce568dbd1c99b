//! The element-wise losses on the device: smooth L1 and Huber (`kernels/regression.cu`), BCE
//! with logits and sigmoid focal (`kernels/binary.cu`), and their host-slice traits.

use super::*;

impl CudaBackend {
    #[allow(clippy::too_many_arguments)]
    fn elementwise_dev(
        &self,
        family: Family,
        kernel: &'static str,
        reduction: Reduction,
        a: &CudaSlice<f32>,
        b_in: &CudaSlice<f32>,
        params: ElemParams<'_>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<DeviceLoss> {
        let n = a.len();
        let st = &self.stream;
        let blocks = elem_grid(n);
        let none = reduction == Reduction::None;
        let mut losses = st.alloc_zeros::<f64>(if none { n } else { 1 }).w()?;
        let mut partials = st.alloc_zeros::<f64>(blocks as usize).w()?;
        // Binary losses check their targets on the device (two zeroed words).
        let mut check = if family == Family::Binary {
            Some(st.alloc_zeros::<u64>(2).w()?)
        } else {
            None
        };
        let scale = if reduction == Reduction::Mean {
            1.0 / n as f64
        } else {
            1.0
        };
        let n_i = n as i64;
        {
            let (a_ptr, _ga) = a.device_ptr(st);
            let (b_ptr, _gb) = b_in.device_ptr(st);
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
            let (one, pw_ptr, _gpw, p_len, alpha, gamma);
            let f = self.function(family, kernel)?;
            let mut b = st.launch_builder(&f);
            b.arg(&a_ptr).arg(&b_ptr).arg(&n_i);
            match params {
                ElemParams::One(v) => {
                    one = v;
                    b.arg(&one);
                }
                ElemParams::PosWeight(pw) => {
                    (pw_ptr, _gpw, p_len) = match pw {
                        Some(w) => {
                            let (p, g) = w.device_ptr(st);
                            (p, Some(g), w.len() as i64)
                        }
                        None => (NULL, None, 1i64),
                    };
                    b.arg(&pw_ptr).arg(&p_len);
                }
                ElemParams::Focal(al, ga) => {
                    (alpha, gamma) = (al, ga);
                    b.arg(&alpha).arg(&gamma);
                }
            }
            b.arg(&up_scalar)
                .arg(&u_ptr)
                .arg(&scale)
                .arg(&l_ptr)
                .arg(&pa_ptr)
                .arg(&g_ptr);
            let (c_ptr, _gc) = match check.as_mut() {
                Some(c) => {
                    let (p, g) = c.device_ptr_mut(st);
                    (p, Some(g))
                }
                None => (NULL, None),
            };
            if family == Family::Binary {
                b.arg(&c_ptr);
            }
            // SAFETY: the element-wise kernels are `(const float* a, const float* b,
            // long long n, <params>, double up_scalar, const double* up, double scale,
            // double* losses, double* partials, float* grad)` with <params> = `double` (reg_*),
            // `const double* pos_weight, long long p_len` (bin_bce_with_logits) or
            // `double alpha, double gamma` (bin_sigmoid_focal); `kernel` is paired with the
            // matching ElemParams by the public callers. Pointers are u64 device addresses
            // (0 = null). Element i < n reads a[i], b[i] (n f32 each: validated), up[i] (n),
            // pos_weight[i % p_len] (p_len >= 1 f64), writes losses[i] (n f64, only for
            // reduction none), grad[i] (n f32: validated); block k writes partials[k]
            // (`blocks` f64). The bin_* kernels take one more argument,
            // `unsigned long long* check` (2 u64, zeroed), passed for Family::Binary only.
            // Block size 256, a multiple of 32.
            unsafe { b.launch(elem_config(blocks)) }.w()?;
            if family == Family::Binary {
                let f = self.function(family, "bin_target_check")?;
                let mut b = st.launch_builder(&f);
                b.arg(&b_ptr).arg(&c_ptr);
                // SAFETY: `bin_target_check(const float* targets, unsigned long long* check)`,
                // u64 addresses; one thread reads check[0] and, when it is not 0, the target
                // at index !check[0] (< n: written only for an element index i < n) and
                // writes check[1] (2 u64).
                unsafe { b.launch(LaunchConfig::for_num_elems(1)) }.w()?;
            }
        }
        let values = if none {
            losses
        } else {
            self.reduce_final(family, &partials, 1.0 / scale, None)?
        };
        Ok(DeviceLoss {
            values,
            target_check: check.map(TargetCheck::Binary),
            stream: st.clone(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn validate_elem_dev(
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
            return Err(empty(a_name, "at least one element is required"));
        }
        check_len(b_name, a_len, b_len)?;
        if let Some(g) = grad_len {
            check_len("grad", a_len, g)?;
        }
        check_dev_upstream(upstream, reduction, a_len)?;
        Ok(())
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
        self.elementwise_dev(
            Family::Regression,
            "reg_smooth_l1",
            cfg.reduction,
            pred,
            target,
            ElemParams::One(cfg.beta),
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
        self.elementwise_dev(
            Family::Regression,
            "reg_huber",
            cfg.reduction,
            pred,
            target,
            ElemParams::One(cfg.delta),
            upstream,
            grad,
        )
    }

    /// BCE with logits on device buffers (f32, math in f64). Targets on the device are not
    /// range-checked (the host-slice path checks them as the core validator does).
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
        self.elementwise_dev(
            Family::Binary,
            "bin_bce_with_logits",
            cfg.reduction,
            logits,
            targets,
            ElemParams::PosWeight(pw_dev.as_ref()),
            upstream,
            grad,
        )
    }

    /// Sigmoid focal loss on device buffers (f32, math in f64). Targets on the device are not
    /// range-checked (the host-slice path checks them).
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
        self.elementwise_dev(
            Family::Binary,
            "bin_sigmoid_focal",
            cfg.reduction,
            logits,
            targets,
            ElemParams::Focal(cfg.alpha, cfg.gamma),
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
