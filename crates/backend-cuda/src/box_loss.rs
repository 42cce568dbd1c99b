//! Box losses and pairwise box IoU on the device (`kernels/box_loss.cu`), and their host-slice
//! trait.

use cudarc::driver::{CudaSlice, PushKernelArg};
use smoothloss_core::op::Op;
use smoothloss_core::{
    BoxFormat, BoxIouPlan, BoxLoss, BoxLossOps, BoxPlan, Io, IouCall, Loss, PairCall, Reduction,
    Result, Upstream, WiseIouState,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::geometry::ELEM_THREADS;
use crate::kernels::Family;
use crate::launch::{
    DeviceLoss, DeviceUpstream, dev_extent, dptr, dptr_mut, elem_config, io_input, io_ptrs,
    opt_dptr_mut, up_args,
};
use crate::params::{BoxIouParams, BoxLossParams};

impl CudaBackend {
    /// Box loss on device buffers `pred`, `target` `[N, 4]` (f32, math in f64); the gradient
    /// with respect to `pred` in `cfg.format`, into a separate buffer or over `pred`
    /// ([`Io::InPlace`]). Validated by the same [`BoxLoss::plan`] as the host front door,
    /// from the buffers' lengths, so the errors are the host's. The kernel computes in f64, so
    /// the parameters keep the f64 domain (the host front door's `f32` domain of `TOL-4` for
    /// `f32` data, e.g. `eps` a normal `f32`, is not applied here).
    pub fn box_loss_dev(
        &self,
        cfg: &BoxLoss,
        pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let plan = cfg.plan(&dev_extent(&pred, None, &upstream), target.len())?;
        self.box_loss_launch(&plan, pred, target, upstream)
    }

    /// Wise-IoU v3 (`BOX-24`) on device buffers `pred`, `target` `[N, 4]` (f32, math in f64):
    /// the two box-loss launches of the host path ([`WiseIouState::passes`]), the plain IoU
    /// losses, then Wise-IoU v1 with the detached focusing coefficient in its per-pair
    /// upstream. The running mean lives on the host, in `state`, so each call moves `N` f64
    /// each way between the passes (the IoU losses down, the per-pair factors up) and the `N`
    /// v1 losses down; the loss values are left on the device as for every `*_dev` call.
    /// Validated by the host's [`WiseIouState::check_for`] and [`BoxLoss::plan`]; `state` is
    /// written only when the call succeeds.
    pub fn wise_iou_v3_dev(
        &self,
        cfg: &BoxLoss,
        state: &mut WiseIouState,
        pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        state.check_for(cfg)?;
        let plan = cfg.plan(&dev_extent(&pred, None, &upstream), target.len())?;
        let st = &self.stream;
        let [iou_cfg, v1_cfg] = WiseIouState::passes(cfg);
        let iou_losses = self
            .box_loss_dev(
                &iou_cfg,
                Io::Read(io_input(&pred)),
                target,
                DeviceUpstream::Scalar(1.0),
            )?
            .to_host()?;
        let (mean, r) = state.focusing(&iou_losses);
        // The caller's upstream as the plan reads it (a per-pair one copied to the host).
        let per_pair: Vec<f64>;
        let caller = match upstream {
            DeviceUpstream::Scalar(s) => Upstream::Scalar(s),
            DeviceUpstream::PerElement(u) => {
                per_pair = st.clone_dtoh(u).w()?;
                st.synchronize().w()?;
                Upstream::PerElement(&per_pair)
            }
        };
        let scale = plan.count_scale();
        let up: Vec<f64> = (0..plan.items)
            .map(|i| r[i] * plan.item_scale(&caller, scale, i))
            .collect();
        let up = st.clone_htod(&up).w()?;
        let v1 = self
            .box_loss_dev(&v1_cfg, pred, target, DeviceUpstream::PerElement(&up))?
            .to_host()?;
        let losses: Vec<f64> = v1.iter().zip(&r).map(|(l, r)| r * l).collect();
        let values = plan.reduce(losses, plan.items as f64).into_values();
        let values = st.clone_htod(&values).w()?;
        state.mean = mean;
        Ok(DeviceLoss {
            values,
            target_check: None,
            stream: st.clone(),
            per_item: plan.reduction() == Reduction::None,
        })
    }

    /// Launches `box_loss_fwd_bwd` (and the final reduction) on the plan's buffers.
    fn box_loss_launch(
        &self,
        plan: &BoxPlan<'_>,
        mut pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let cfg = plan.cfg;
        let fam = Family::BoxLoss;
        let st = &self.stream;
        let mut out = self.elem_out(plan)?;
        let (has_tw, tw_alpha, tw_threshold) = match cfg.threshold_weight {
            Some(tw) => (1i32, tw.alpha, tw.threshold),
            None => (0i32, 0.0, 0.0),
        };
        {
            let io = io_ptrs(&mut pred, st);
            let (t_ptr, _gt) = dptr(target, st);
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = opt_dptr_mut(out.none.then_some(&mut out.losses), st);
            let (pa_ptr, _gpa) = dptr_mut(&mut out.partials, st);
            let mut params = BoxLossParams {
                pred: io.input,
                target: t_ptr,
                n: plan.items as i64,
                eps: cfg.eps,
                tw_alpha,
                tw_threshold,
                up_scalar,
                up: u_ptr,
                scale: out.scale,
                losses: l_ptr,
                partials: pa_ptr,
                grad: io.grad_or_input(),
                has_tw,
                ..BoxLossParams::default()
            };
            params.set_options(cfg);
            let f = self.function(fam, Op::BoxLoss.kernel_stem())?;
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: BoxLossParams's contract: pred, target and grad (pred itself in place)
            // have 4n f32, up n f64 (the plan), losses n f64 (reduction none only), partials
            // one per block of the elem_grid(n) grid of 256 threads. The guards live until
            // after the launch.
            unsafe { b.launch(elem_config(out.blocks)) }.w()?;
        }
        self.elem_loss(fam, out, None)
    }

    /// Pairwise IoU of `boxes1` `[N, 4]` and `boxes2` `[M, 4]` into `out` `[N, M]` on the
    /// device (math in f64), as `torchvision.ops.box_iou`; validated by the host's
    /// [`BoxIouPlan::new`].
    pub fn box_iou_dev(
        &self,
        format: BoxFormat,
        boxes1: &CudaSlice<f32>,
        boxes2: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let plan = BoxIouPlan::new(format, boxes1.len(), boxes2.len(), out.len())?;
        self.box_iou_launch(&plan, boxes1, boxes2, out)
    }

    /// Launches `box_iou_pairwise` on the plan's buffers.
    fn box_iou_launch(
        &self,
        plan: &BoxIouPlan,
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
        let params = BoxIouParams {
            b1: a_ptr,
            b2: b_ptr,
            n: plan.n as i64,
            m: plan.m as i64,
            out: o_ptr,
            format: i32::from(plan.format.code()),
            _pad: 0,
        };
        let f = self.function(Family::BoxLoss, Op::BoxIou.kernel_stem())?;
        let mut b = st.launch_builder(&f);
        b.arg(&params);
        // SAFETY: BoxIouParams's contract: boxes1 has 4n f32, boxes2 4m, out n*m (the plan);
        // grid-stride loop, block size 256.
        unsafe { b.launch(elem_config(blocks)) }.w()?;
        Ok(())
    }
}

impl BoxLossOps<f32> for CudaBackend {
    fn run_box_loss(&self, call: PairCall<'_, BoxLoss, f32>) -> Result<Loss> {
        self.via_device(call, |plan, pred, target, up| {
            self.box_loss_launch(plan, pred, target, up)
        })
    }

    fn run_box_iou(&self, call: IouCall<'_, f32>) -> Result<()> {
        let (plan, boxes1, boxes2, out) = call.into_parts();
        if out.is_empty() {
            return Ok(());
        }
        let a = self.upload(boxes1)?;
        let b = self.upload(boxes2)?;
        let mut o = self.stream.alloc_zeros::<f32>(out.len()).w()?;
        self.box_iou_launch(&plan, &a, &b, &mut o)?;
        self.stream.memcpy_dtoh(&o, out).w()?;
        self.stream.synchronize().w()
    }
}
