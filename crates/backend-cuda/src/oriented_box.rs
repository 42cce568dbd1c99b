//! ProbIoU of oriented boxes on the device (`kernels/oriented_box.cu`): the loss through its
//! host-slice trait and the pairwise matrix.

use cudarc::driver::{CudaSlice, PushKernelArg};
use smoothloss_core::op::Op;
use smoothloss_core::{
    Io, Loss, LossConfig, OrientedBoxOps, PairCall, Plan, ProbIou, ProbIouPairwiseCall, Result,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::geometry::ELEM_THREADS;
use crate::kernels::Family;
use crate::launch::{
    DeviceLoss, DeviceUpstream, dptr, dptr_mut, elem_config, io_ptrs, opt_dptr_mut, up_args,
};
use crate::params::{ProbIouPairwiseParams, ProbIouParams};

impl CudaBackend {
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
        {
            let blocks = out
                .len()
                .div_ceil(ELEM_THREADS as usize)
                .clamp(1, 65_535 * 8) as u32;
            let (a_ptr, _ga) = dptr(&a, st);
            let (b_ptr, _gb) = dptr(&b2, st);
            let (o_ptr, _go) = dptr_mut(&mut o, st);
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
            // SAFETY: ProbIouPairwiseParams's contract: boxes1 has 5n f32, boxes2 5m, out n*m
            // (the plan); grid-stride loop, block size 256.
            unsafe { b.launch(elem_config(blocks)) }.w()?;
        }
        st.memcpy_dtoh(&o, out).w()?;
        st.synchronize().w()
    }
}
