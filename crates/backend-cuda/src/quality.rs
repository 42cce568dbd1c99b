//! The varifocal and quality focal losses on the device (`kernels/quality.cu`): on device
//! buffers (`varifocal_dev`, `quality_focal_dev`, the targets checked on the device) and
//! through their host-slice trait (the front door validated the call and checked the targets'
//! values on the host).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use smoothloss_core::{
    Call, Io, Loss, LossConfig, Parts, Plan, QflTargets, QualityFocal, QualityOps, Reduction,
    Result, Varifocal, VarifocalTargets, VarifocalWeight,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::kernels::{Family, QUAL_TARGET_CHECK};
use crate::launch::{
    DenseRule, DeviceLoss, DeviceUpstream, ElemOut, HostIo, NULL, TargetCheck, dev_extent, dptr,
    dptr_mut, elem_config, io_ptrs, opt_dptr, opt_dptr_mut, up_args,
};
use crate::params::{QflParams, TargetValueParams, VarifocalParams};

impl CudaBackend {
    /// The varifocal loss (`QUAL-1` .. `QUAL-4`) on device buffers: `logits`, `scores` and
    /// (ultralytics' weight) `labels` of the same length (f32, math in f64); the gradient into
    /// a separate buffer or over `logits` ([`Io::InPlace`]). Validated by the host's
    /// [`Varifocal::plan`] from the buffers' lengths, so the shape errors are the host's;
    /// scores or labels outside `[0, 1]` (NaN included) are found on the device and reported
    /// by [`DeviceLoss::to_host`] as the host front door's [`Varifocal::check_targets`] reports
    /// them (the first score, then the first label). `alpha`, `gamma` and a scalar upstream
    /// keep the f64 domain (math in f64).
    pub fn varifocal_dev(
        &self,
        cfg: &Varifocal,
        logits: Io<'_, CudaSlice<f32>>,
        scores: &CudaSlice<f32>,
        labels: Option<&CudaSlice<f32>>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let ext = dev_extent(&logits, None, &upstream);
        let plan = cfg.plan(&ext, scores.len(), labels.map_or(0, |l| l.len()))?;
        // As the host front door: the kernel sees labels only with the weight that reads them
        // (the plan let the others pass an empty buffer at most).
        let labels = labels.filter(|_| cfg.weight == VarifocalWeight::Ultralytics);
        self.varifocal_launch(&plan, logits, scores, labels, upstream, true)
    }

    /// The quality focal loss (`QUAL-5` .. `QUAL-7`) on device buffers: `logits`
    /// `[rows, classes]` (f32, math in f64), one `label` (`classes`: background) and one
    /// `score` per row (`rows` = the labels' count); the gradient into a separate buffer or
    /// over `logits` ([`Io::InPlace`]). Validated by the host's [`QualityFocal::plan`];
    /// labels outside `[0, classes]` and scores outside `[0, 1]` are found on the device and
    /// reported by [`DeviceLoss::to_host`] as [`QualityFocal::check_targets`] reports them (a
    /// label first). `beta` and a scalar upstream keep the f64 domain (math in f64).
    pub fn quality_focal_dev(
        &self,
        cfg: &QualityFocal,
        logits: Io<'_, CudaSlice<f32>>,
        labels: &CudaSlice<i64>,
        scores: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let plan = cfg.plan(
            &dev_extent(&logits, None, &upstream),
            labels.len(),
            scores.len(),
        )?;
        self.qfl_launch(&plan, logits, labels, scores, upstream, true)
    }

    /// The outputs of a quality-family kernel: a mean divides by `avg_factor` or the items.
    fn qual_out<C: LossConfig>(&self, plan: &Plan<'_, C>, denominator: f64) -> Result<ElemOut> {
        let mut out = self.elem_out(plan)?;
        if plan.reduction() == Reduction::Mean {
            out.scale = 1.0 / denominator;
        }
        Ok(out)
    }

    /// `qual_target_check` for each pair of check words whose buffer is given (`values` f32
    /// or `labels` i64 addresses), the words at `check + 16 k`.
    fn qual_checks(&self, check: u64, buffers: &[(u64, u64)]) -> Result<()> {
        let st = &self.stream;
        let f = self.function(Family::Quality, QUAL_TARGET_CHECK)?;
        for (k, &(values, labels)) in buffers.iter().enumerate() {
            if values == NULL && labels == NULL {
                continue;
            }
            let params = TargetValueParams {
                values,
                labels,
                check: check + 16 * k as u64,
            };
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: TargetValueParams's contract: the loss kernel flagged only indices below
            // the checked buffer's length in these 2 words; one thread.
            unsafe { b.launch(LaunchConfig::for_num_elems(1)) }.w()?;
        }
        Ok(())
    }

    fn varifocal_launch(
        &self,
        plan: &Plan<'_, Varifocal>,
        mut logits: Io<'_, CudaSlice<f32>>,
        scores: &CudaSlice<f32>,
        labels: Option<&CudaSlice<f32>>,
        upstream: DeviceUpstream<'_>,
        check: bool,
    ) -> Result<DeviceLoss> {
        let fam = Family::Quality;
        let st = &self.stream;
        let mut out = self.qual_out(plan, plan.cfg.mean_denominator(plan.items))?;
        let mut words = if check {
            Some(st.alloc_zeros::<u64>(4).w()?)
        } else {
            None
        };
        {
            let io = io_ptrs(&mut logits, st);
            let (s_ptr, _gs) = dptr(scores, st);
            let (lab_ptr, _glab) = opt_dptr(labels, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let (c_ptr, _gc) = opt_dptr_mut(words.as_mut(), st);
            let params = VarifocalParams {
                logits: io.input,
                scores: s_ptr,
                labels: lab_ptr,
                n: plan.items as i64,
                alpha: plan.cfg.alpha,
                gamma: plan.cfg.gamma,
                up_scalar,
                up: u_ptr,
                scale: out.scale,
                losses: l_ptr,
                partials: pa_ptr,
                grad: io.grad_or_input(),
                check: c_ptr,
                weight: i32::from(plan.cfg.weight.code()),
                _pad: 0,
            };
            let f = self.function(fam, Varifocal::OP.kernel_stem())?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: VarifocalParams's contract: logits, scores, grad (the logits in place) and
            // labels (when given) have n f32 (the plan), up n f64, losses n f64 (reduction
            // none only), partials one per block of the elem_grid(n) grid of 256 threads,
            // check 4 zeroed words or null. The guards live until after the launch.
            unsafe { b.launch(elem_config(out.blocks)) }.w()?;
            if c_ptr != NULL {
                self.qual_checks(c_ptr, &[(s_ptr, NULL), (lab_ptr, NULL)])?;
            }
        }
        let target_check = words.map(|w| {
            let probe = |labels: Option<&[f32]>, scores: &[f32]| {
                DenseRule::of_probe(plan.cfg.check_targets(&VarifocalTargets { scores, labels }))
            };
            let rules = vec![probe(None, &[f32::NAN]), probe(Some(&[f32::NAN]), &[0.0])];
            TargetCheck::Dense(w, rules)
        });
        self.elem_loss(fam, out, target_check)
    }

    fn qfl_launch(
        &self,
        plan: &Plan<'_, QualityFocal>,
        mut logits: Io<'_, CudaSlice<f32>>,
        labels: &CudaSlice<i64>,
        scores: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
        check: bool,
    ) -> Result<DeviceLoss> {
        let fam = Family::Quality;
        let st = &self.stream;
        let mut out = self.qual_out(plan, plan.cfg.mean_denominator(plan.items))?;
        let mut words = if check {
            Some(st.alloc_zeros::<u64>(4).w()?)
        } else {
            None
        };
        {
            let io = io_ptrs(&mut logits, st);
            let (lab_ptr, _glab) = dptr(labels, st);
            let (s_ptr, _gs) = dptr(scores, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let (c_ptr, _gc) = opt_dptr_mut(words.as_mut(), st);
            let params = QflParams {
                logits: io.input,
                labels: lab_ptr,
                scores: s_ptr,
                rows: plan.items as i64,
                classes: plan.width as i64,
                beta: plan.cfg.beta,
                up_scalar,
                up: u_ptr,
                scale: out.scale,
                losses: l_ptr,
                partials: pa_ptr,
                grad: io.grad_or_input(),
                check: c_ptr,
            };
            let f = self.function(fam, QualityFocal::OP.kernel_stem())?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: QflParams's contract: logits and grad (the logits in place) have
            // rows * classes f32, labels rows i64 (only compared with class indices), scores
            // rows f32, up rows f64, losses rows f64 (reduction none only), partials one per
            // block of the elem_grid(rows) grid of 256 threads, check 4 zeroed words or null.
            // The guards live until after the launch.
            unsafe { b.launch(elem_config(out.blocks)) }.w()?;
            if c_ptr != NULL {
                self.qual_checks(c_ptr, &[(NULL, lab_ptr), (s_ptr, NULL)])?;
            }
        }
        let target_check = words.map(|w| {
            let scores = plan.cfg.check_targets(&[0], &[f32::NAN], plan.width);
            let rules = vec![DenseRule::Label(plan.width), DenseRule::of_probe(scores)];
            TargetCheck::Dense(w, rules)
        });
        self.elem_loss(fam, out, target_check)
    }
}

impl QualityOps<f32> for CudaBackend {
    fn run_varifocal(
        &self,
        call: Call<'_, Varifocal, f32, VarifocalTargets<'_, f32>>,
    ) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let mut dev = HostIo::upload(self, io)?;
        let scores = self.upload(with.scores)?;
        let labels = with.labels.map(|l| self.upload(l)).transpose()?;
        let up = self.upload_up(upstream)?;
        let loss = self.varifocal_launch(
            &plan,
            dev.dev_io(),
            &scores,
            labels.as_ref(),
            up.as_dev(),
            false,
        )?;
        dev.finish(self, loss)
    }

    fn run_quality_focal(
        &self,
        call: Call<'_, QualityFocal, f32, QflTargets<'_, f32>>,
    ) -> Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let mut dev = HostIo::upload(self, io)?;
        let labels = self.upload(with.labels)?;
        let scores = self.upload(with.scores)?;
        let up = self.upload_up(upstream)?;
        let loss = self.qfl_launch(&plan, dev.dev_io(), &labels, &scores, up.as_dev(), false)?;
        dev.finish(self, loss)
    }
}
