//! ProbIoU of oriented boxes on the device (`kernels/oriented_box.cu`): the loss and the
//! pairwise matrix, on device buffers (`probiou_loss_dev`, `batch_probiou_dev`) and through the
//! host-slice trait.

use cudarc::driver::{CudaSlice, PushKernelArg};
use smoothloss_core::op::Op;
use smoothloss_core::{
    Io, Loss, LossConfig, OrientedBoxOps, PairCall, Plan, ProbIou, ProbIouPairwiseCall,
    ProbIouPairwisePlan, Result,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::geometry::ELEM_THREADS;
use crate::kernels::Family;
use crate::launch::{
    DeviceLoss, DeviceUpstream, dev_extent, dptr, dptr_mut, elem_config, io_ptrs, opt_dptr_mut,
    up_args,
};
use crate::params::{ProbIouPairwiseParams, ProbIouParams};

impl CudaBackend {
    /// `1 - ProbIoU` of oriented boxes `(cx, cy, w, h, angle)` on device buffers `pred`,
    /// `target` `[N, 5]` (f32, math in f64, `OBB-1` .. `OBB-5`); the gradient with respect to
    /// `pred` into a separate buffer or over `pred` ([`Io::InPlace`]). Validated by the same
    /// [`ProbIou::plan`] as the host front door, from the buffers' lengths, so the errors are
    /// the host's; there are no target values to check. The kernel computes in f64, so `eps`,
    /// `floor` and a scalar upstream keep the f64 domain (the host front door's `f32` domain of
    /// `TOL-4` for `f32` data is not applied here).
    pub fn probiou_loss_dev(
        &self,
        cfg: &ProbIou,
        pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let plan = cfg.plan(&dev_extent(&pred, None, &upstream), target.len())?;
        self.probiou_launch(&plan, pred, target, upstream)
    }

    /// ProbIoU of every box of `boxes1` `[N, 5]` against every box of `boxes2` `[M, 5]` into
    /// `out` `[N, M]` on the device (math in f64), as ultralytics' `batch_probiou` (`OBB-6`);
    /// validated by the host's [`ProbIouPairwisePlan::new`].
    pub fn batch_probiou_dev(
        &self,
        eps: f64,
        boxes1: &CudaSlice<f32>,
        boxes2: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let plan = ProbIouPairwisePlan::new(eps, boxes1.len(), boxes2.len(), out.len())?;
        self.batch_probiou_launch(&plan, boxes1, boxes2, out)
    }

    /// Launches `probiou_pairwise` on the plan's buffers.
    fn batch_probiou_launch(
        &self,
        plan: &ProbIouPairwisePlan,
        boxes1: &CudaSlice<f32>,
        boxes2: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let total = plan.n * plan.m;
        if total == 0 {
            return Ok(());
        }
        let st = &self.stream;
        let blocks = total.div_ceil(ELEM_THREADS as usize).clamp(1, 65_535 * 8) as u32;
        let (a_ptr, _ga) = dptr(boxes1, st);
        let (b_ptr, _gb) = dptr(boxes2, st);
        let (o_ptr, _go) = dptr_mut(out, st);
        let params = ProbIouPairwiseParams {
            b1: a_ptr,
            b2: b_ptr,
            n: plan.n as i64,
            m: plan.m as i64,
            eps: plan.eps,
            out: o_ptr,
        };
        let f = self.function(Family::OrientedBox, Op::ProbIouPairwise.kernel_stem())?;
        let mut b = st.launch_builder(&f);
        b.arg(&params);
        // SAFETY: ProbIouPairwiseParams's contract: boxes1 has 5n f32, boxes2 5m, out n*m (the
        // plan); grid-stride loop, block size 256. The guards live until after the launch.
        unsafe { b.launch(elem_config(blocks)) }.w()?;
        Ok(())
    }

    fn probiou_launch(
        &self,
        plan: &Plan<'_, ProbIou>,
        mut pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let fam = Family::OrientedBox;
        let st = &self.stream;
        let mut out = self.elem_out(plan)?;
        {
            let io = io_ptrs(&mut pred, st);
            let (t_ptr, _gt) = dptr(target, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let params = ProbIouParams {
                pred: io.input,
                target: t_ptr,
                n: plan.items as i64,
                eps: plan.cfg.eps,
                floor: plan.cfg.floor,
                up_scalar,
                up: u_ptr,
                scale: out.scale,
                losses: l_ptr,
                partials: pa_ptr,
                grad: io.grad_or_input(),
                ciou: i32::from(plan.cfg.ciou),
                _pad: 0,
            };
            let f = self.function(fam, ProbIou::OP.kernel_stem())?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: ProbIouParams's contract: pred, target and grad (pred in place) have 5n
            // f32 (the plan), up n f64, losses n f64 (reduction none only), partials one per
            // block of the elem_grid(n) grid of 256 threads. The guards live until after the
            // launch.
            unsafe { b.launch(elem_config(out.blocks)) }.w()?;
        }
        self.elem_loss(fam, out, None)
    }
}

impl OrientedBoxOps<f32> for CudaBackend {
    fn run_probiou_loss(&self, call: PairCall<'_, ProbIou, f32>) -> Result<Loss> {
        self.via_device(call, |plan, p, t, up| self.probiou_launch(plan, p, t, up))
    }

    fn run_batch_probiou(&self, call: ProbIouPairwiseCall<'_, f32>) -> Result<()> {
        let (plan, boxes1, boxes2, out) = call.into_parts();
        if out.is_empty() {
            return Ok(());
        }
        let st = &self.stream;
        let a = self.upload(boxes1)?;
        let b2 = self.upload(boxes2)?;
        let mut o = st.alloc_zeros::<f32>(out.len()).w()?;
        self.batch_probiou_launch(&plan, &a, &b2, &mut o)?;
        st.memcpy_dtoh(&o, out).w()?;
        st.synchronize().w()
    }
}
