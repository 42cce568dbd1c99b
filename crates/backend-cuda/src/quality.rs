//! The varifocal and quality focal losses on the device (`kernels/quality.cu`), through their
//! host-slice trait (the front door validated the call and checked the targets' values).

use cudarc::driver::PushKernelArg;
use smoothloss_core::{
    Call, Loss, LossConfig, Parts, QflTargets, QualityFocal, QualityOps, Reduction, Result,
    Varifocal, VarifocalTargets,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::kernels::Family;
use crate::launch::{
    HostIo, dptr, dptr_mut, elem_config, io_ptrs, opt_dptr, opt_dptr_mut, up_args,
};
use crate::params::{QflParams, VarifocalParams};

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
        let fam = Family::Quality;
        let st = &self.stream;
        let mut dev = HostIo::upload(self, io)?;
        let scores = self.upload(with.scores)?;
        let labels = with.labels.map(|l| self.upload(l)).transpose()?;
        let up = self.upload_up(upstream)?;
        let mut out = self.elem_out(&plan)?;
        if plan.reduction() == Reduction::Mean {
            out.scale = 1.0 / plan.cfg.mean_denominator(plan.items);
        }
        {
            let mut io = dev.dev_io();
            let io = io_ptrs(&mut io, st);
            let (s_ptr, _gs) = dptr(&scores, st);
            let (lab_ptr, _glab) = opt_dptr(labels.as_ref(), st);
            let upd = up.as_dev();
            let (up_scalar, (u_ptr, _gu)) = up_args(&upd, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
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
                weight: i32::from(plan.cfg.weight.code()),
                _pad: 0,
            };
            let f = self.function(fam, Varifocal::OP.kernel_stem())?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: VarifocalParams's contract: logits, scores, grad (the logits in place) and
            // labels (when given) have n f32 (the plan), up n f64, losses n f64 (reduction
            // none only), partials one per block of the elem_grid(n) grid of 256 threads. The
            // guards live until after the launch.
            unsafe { b.launch(elem_config(out.blocks)) }.w()?;
        }
        let loss = self.elem_loss(fam, out, None)?;
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
        let fam = Family::Quality;
        let st = &self.stream;
        let mut dev = HostIo::upload(self, io)?;
        let labels = self.upload(with.labels)?;
        let scores = self.upload(with.scores)?;
        let up = self.upload_up(upstream)?;
        let mut out = self.elem_out(&plan)?;
        if plan.reduction() == Reduction::Mean {
            out.scale = 1.0 / plan.cfg.mean_denominator(plan.items);
        }
        {
            let mut io = dev.dev_io();
            let io = io_ptrs(&mut io, st);
            let (lab_ptr, _glab) = dptr(&labels, st);
            let (s_ptr, _gs) = dptr(&scores, st);
            let upd = up.as_dev();
            let (up_scalar, (u_ptr, _gu)) = up_args(&upd, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
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
            };
            let f = self.function(fam, QualityFocal::OP.kernel_stem())?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: QflParams's contract: logits and grad (the logits in place) have
            // rows * classes f32, labels rows i64 in [0, classes] (checked by the front door),
            // scores rows f32, up rows f64, losses rows f64 (reduction none only), partials one
            // per block of the elem_grid(rows) grid of 256 threads. The guards live until
            // after the launch.
            unsafe { b.launch(elem_config(out.blocks)) }.w()?;
        }
        let loss = self.elem_loss(fam, out, None)?;
        dev.finish(self, loss)
    }
}
