//! Cross-entropy on the device (`kernels/cross_entropy.cu`): the logits' element types, the
//! launch-plan knobs, the launches of `ce_prepare`, the row kernel and `ce_reduce_rows`, and the
//! host-slice trait.

use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};
use smoothloss_core::op::Op;
use smoothloss_core::{
    CeCall, CeOutput, CePlan, CeRowOutputs, CeTargets, CeTargetsShape, CrossEntropy,
    CrossEntropyOps, Extent, Io, Loss, LossError, Parts, Reduction, Result, Upstream,
};

use crate::device::CudaBackend;
use crate::error::WrapErr;
use crate::geometry;
use crate::kernels::{CE_PREPARE, CE_REDUCE_ROWS, Family, entry_name};
use crate::launch::{
    DeviceLoss, DeviceUpstream, HostIo, NULL, TargetCheck, dev_extent, dptr, dptr_mut, io_ptrs,
    opt_dptr, opt_dptr_mut, up_args,
};
use crate::params::{CePrepareParams, CeReduceRowsParams, CeRowOptParams, CeRowParams};

/// Element types accepted as cross-entropy logits on the device: math in `f32`, the gradient
/// written in the logits' type.
pub trait CeElement: DeviceRepr + ValidAsZeroBits + Copy + Send + Sync + 'static {
    /// Short dtype name: reports, and the entry points' names (`kernels::CE_DTYPES`).
    const DTYPE: &'static str;

    /// The row kernel for this type and `cluster` blocks per row (1, 2, 4 or 8), named by
    /// `smoothloss_core::kernel_name`.
    fn ce_kernel(cluster: u32) -> &'static str {
        entry_name(Op::CrossEntropy, Self::DTYPE, cluster)
    }

    /// The row kernel of calls with the options of `CE-10` .. `CE-15`
    /// (`kernels::CE_VARIANTS`).
    fn ce_kernel_opt(cluster: u32) -> &'static str {
        entry_name(Op::CrossEntropy, &format!("{}opt", Self::DTYPE), cluster)
    }
    /// The row kernel of the warp-per-row layout (`geometry::CE_WARP_ROWS`; no cluster,
    /// no option).
    fn ce_kernel_warp() -> &'static str {
        entry_name(
            Op::CrossEntropy,
            &format!("{}{}", Self::DTYPE, crate::kernels::CE_WARP_VARIANT),
            1,
        )
    }
}

impl CeElement for f32 {
    const DTYPE: &'static str = "f32";
}

impl CeElement for half::bf16 {
    const DTYPE: &'static str = "bf16";
}

impl CeElement for half::f16 {
    const DTYPE: &'static str = "f16";
}

/// Cross-entropy targets on the device.
#[derive(Debug, Clone, Copy)]
pub enum DeviceCeTargets<'a, T> {
    /// One class index per row (or the ignore index).
    Classes(&'a CudaSlice<i64>),
    /// A target distribution per row, `[rows, classes]`, in the logits' dtype.
    Probs(&'a CudaSlice<T>),
}

impl<T> DeviceCeTargets<'_, T> {
    /// The targets' shape, as the core planner sees it ([`CeTargets::shape`]).
    pub fn shape(&self) -> CeTargetsShape {
        match self {
            DeviceCeTargets::Classes(t) => CeTargetsShape::Classes(t.len()),
            DeviceCeTargets::Probs(p) => CeTargetsShape::Probs(p.len()),
        }
    }
}

impl CudaBackend {
    /// The same backend with other shared-memory budgets (bytes) for one cross-entropy block:
    /// `target` (smaller splits rows over more blocks of a cluster) and `max` (at most the
    /// device's opt-in limit; rows whose slices do not fit it are re-read from global memory),
    /// see [`geometry::ce_plan`]. A tuning and testing knob; the defaults are
    /// [`geometry::CE_SMEM_TARGET`] and the device's limit.
    pub fn with_ce_shared_memory(&self, target: usize, max: usize) -> Self {
        Self {
            ce_smem_target: target,
            smem_opt_in_max: max.min(self.smem_opt_in_max),
            ..self.clone()
        }
    }

    /// The same backend splitting a cross-entropy row over at most `k` blocks (rounded down to
    /// 1, 2, 4 or 8, and never more than the device supports): `1` disables thread-block
    /// clusters. A tuning and testing knob.
    pub fn with_ce_max_cluster(&self, k: u32) -> Self {
        let k = [8u32, 4, 2, 1]
            .into_iter()
            .find(|&c| c <= k.max(1))
            .unwrap_or(1);
        Self {
            ce_max_cluster: k.min(self.ce_max_cluster),
            ..self.clone()
        }
    }

    /// The same backend with at most `n` threads per cross-entropy block (rounded down to a
    /// power of two in 32..=512; more work per thread). A tuning and testing knob.
    pub fn with_ce_max_threads(&self, n: u32) -> Self {
        let n = n.clamp(32, geometry::CE_MAX_THREADS);
        Self {
            ce_max_threads: 1 << (31 - n.leading_zeros()),
            ..self.clone()
        }
    }

    /// The launch plan of a cross-entropy call on this device (`aligned16`: every buffer
    /// starts on a 16-byte boundary).
    pub fn ce_plan(&self, classes: usize, elem_bytes: usize, aligned16: bool) -> geometry::CePlan {
        geometry::ce_plan(
            classes,
            elem_bytes,
            aligned16,
            self.ce_max_cluster,
            self.ce_smem_target,
            self.smem_opt_in_max,
        )
        .with_max_threads(self.ce_max_threads)
    }

    /// Cross-entropy on device buffers: `logits` `[rows, classes]` row-major in `T` (f32, bf16
    /// or f16; math in f32), read only, with the gradient into a separate buffer, or with the
    /// gradient written over the logits ([`Io::InPlace`], as Liger-Kernel), in `T`. Validated
    /// by the host front door's [`CrossEntropy::plan`] from the buffers' lengths (so its
    /// errors are the host's); out-of-range class targets are found on the device and
    /// reported by [`DeviceLoss::to_host`] as [`CrossEntropy::check_targets`] reports them.
    /// The kernels compute in `f32`, so the `f32` domain of `TOL-4` applies as on the host's
    /// `f32` data: class weights above `f32::MAX` ([`CrossEntropy::check_f32`]) and a scalar
    /// upstream above it are refused with the host's `InvalidParameter` (a per-row upstream
    /// in a device buffer is not read back to be checked).
    pub fn cross_entropy_dev<T: CeElement>(
        &self,
        cfg: &CrossEntropy,
        logits: Io<'_, CudaSlice<T>>,
        [rows, classes]: [usize; 2],
        targets: DeviceCeTargets<'_, T>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        let ext = dev_extent(&logits, Some([rows, classes]), &upstream);
        let plan = ce_dev_plan(cfg, &ext, targets.shape(), &upstream)?;
        self.ce_launch(&plan, logits, targets, upstream, &mut RowOuts::default())
    }

    /// [`CudaBackend::cross_entropy_dev`] with the per-row outputs of `CE-14` written into
    /// device buffers (`rows` entries each): each row's log-sum-exp of its (softcapped)
    /// logits (`f32`; 0 for ignored rows) and its argmax hit (1 or 0; class targets only), from
    /// the same pass of the row kernel as the loss. Their lengths are checked by the host's
    /// [`CePlan::check_row_outputs`] (the same errors); hits with probability targets are
    /// refused as on the host. The z-loss apart (`CE-15`) is not offered here: its reduction
    /// needs the denominator, which this path keeps on the device (use the host entry
    /// `cross_entropy_rows`, or a z-loss of 0 and the lse).
    pub fn cross_entropy_rows_dev<T: CeElement>(
        &self,
        cfg: &CrossEntropy,
        logits: Io<'_, CudaSlice<T>>,
        [rows, classes]: [usize; 2],
        targets: DeviceCeTargets<'_, T>,
        upstream: DeviceUpstream<'_>,
        rows_out: DeviceRowOutputs<'_>,
    ) -> Result<DeviceLoss> {
        let ext = dev_extent(&logits, Some([rows, classes]), &upstream);
        let plan = ce_dev_plan(cfg, &ext, targets.shape(), &upstream)?;
        plan.check_row_outputs(
            rows_out.lse.as_ref().map(|l| l.len()),
            rows_out.hit.as_ref().map(|h| h.len()),
            targets.shape(),
        )?;
        let st = &self.stream;
        // SAFETY: uninitialised; the row kernel writes every row's entry (ignored and invalid
        // rows included) before the copies below read them (stream order).
        let mut outs = unsafe {
            RowOuts {
                lse: rows_out
                    .lse
                    .is_some()
                    .then(|| st.alloc::<f32>(rows))
                    .transpose()
                    .w()?,
                hit: rows_out
                    .hit
                    .is_some()
                    .then(|| st.alloc::<u8>(rows))
                    .transpose()
                    .w()?,
                row_z: None,
            }
        };
        let loss = self.ce_launch(&plan, logits, targets, upstream, &mut outs)?;
        // Lengths checked above (`rows` each), so the copies fit.
        if let (Some(d), Some(s)) = (rows_out.lse, &outs.lse) {
            st.memcpy_dtod(s, d).w()?;
        }
        if let (Some(d), Some(s)) = (rows_out.hit, &outs.hit) {
            st.memcpy_dtod(s, d).w()?;
        }
        Ok(loss)
    }

    /// Launches ce_prepare, the row kernel and (for mean/sum) ce_reduce_rows on the plan's
    /// buffers; the row kernel also writes the per-row outputs `outs` holds (`rows` each).
    fn ce_launch<T: CeElement>(
        &self,
        plan: &CePlan<'_>,
        mut logits: Io<'_, CudaSlice<T>>,
        targets: DeviceCeTargets<'_, T>,
        upstream: DeviceUpstream<'_>,
        outs: &mut RowOuts,
    ) -> Result<DeviceLoss> {
        let (cfg, rows, classes) = (plan.cfg, plan.rows(), plan.classes());
        let io = io_ptrs(&mut logits, &self.stream);
        let (z_ptr, g_ptr, in_place) = (io.input, io.grad, io.in_place);
        let fam = Family::CrossEntropy;
        let st = &self.stream;
        let weights: Option<CudaSlice<f32>> = match &cfg.class_weights {
            Some(w) => {
                let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
                Some(st.clone_htod(&w32).w()?)
            }
            None => None,
        };
        let wsum: f64 = cfg
            .class_weights
            .as_ref()
            .map_or(classes as f64, |w| w.iter().map(|&v| v as f32 as f64).sum());
        // SAFETY: left uninitialised (no memset in the stream): ce_prepare's last block writes
        // both entries of stats and of check, and the row kernel writes row_loss[row] for
        // every row (rank 0, ignored and invalid rows included), before anything reads them
        // (stream order). The CPU emulation fills them with NaN / i64::MIN to test this.
        let (mut stats, mut check, mut row_loss) = unsafe {
            (
                st.alloc::<f64>(2).w()?,
                st.alloc::<i64>(2).w()?,
                st.alloc::<f64>(rows).w()?,
            )
        };
        // Scratch of the row-wise helper kernels, 8-byte words: two counters (zero), then
        // per-block weight sums, first bad rows and loss sums.
        let (row_blocks, chunk) = geometry::ce_rows_grid(rows);
        let nb = row_blocks as usize;
        let mut scratch = st.alloc_zeros::<u64>(2 + 3 * nb).w()?;
        let ignore_index = cfg.ignore_index.unwrap_or(0);
        let has_ignore = i32::from(cfg.ignore_index.is_some());
        let eps = cfg.label_smoothing;
        let (t_ptr, _gt) = match targets {
            DeviceCeTargets::Classes(t) => dptr(t, st),
            DeviceCeTargets::Probs(_) => (NULL, None),
        };
        let (w_ptr, _gw) = opt_dptr(weights.as_ref(), st);
        // CE-12: the row weights in f64, as the host's.
        let row_w: Option<CudaSlice<f64>> = match &cfg.row_weights {
            Some(r) => Some(st.clone_htod(r).w()?),
            None => None,
        };
        let (rw_ptr, _grw) = opt_dptr(row_w.as_ref(), st);
        {
            let (stats_ptr, _gs) = dptr_mut(&mut stats, st);
            let (err_ptr, _gc) = dptr_mut(&mut check, st);
            let (x_ptr, _gx) = dptr_mut(&mut scratch, st);
            let part_w = x_ptr + 16;
            let params = CePrepareParams {
                targets: t_ptr,
                rows: rows as i64,
                chunk: chunk as i64,
                classes: classes as i64,
                weights: w_ptr,
                ignore_index,
                stats: stats_ptr,
                err: err_ptr,
                part_w,
                part_bad: part_w + 8 * nb as u64,
                counter: x_ptr,
                row_w: rw_ptr,
                denom: cfg.denominator.unwrap_or(0.0),
                has_ignore,
                _pad: 0,
            };
            let f = self.function(fam, CE_PREPARE)?;
            let lc = LaunchConfig {
                grid_dim: (row_blocks, 1, 1),
                block_dim: (geometry::CE_ROWS_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = st.launch_builder(&f);
            b.arg(&params);
            // SAFETY: CePrepareParams's contract: targets has `rows` i64 (the plan; null for
            // probability targets), weights `classes` f32 (the plan), stats and err 2 each,
            // part_w / part_bad `row_blocks` words each of `scratch` and counter its zeroed
            // first word, on ce_rows_grid's grid of CE_ROWS_THREADS threads.
            unsafe { b.launch(lc) }.w()?;
        }
        {
            let (p_ptr, _gp) = match targets {
                DeviceCeTargets::Classes(_) => (NULL, None),
                DeviceCeTargets::Probs(q) => dptr(q, st),
            };
            let (s_ptr, _gs) = if cfg.reduction == Reduction::Mean {
                dptr(&stats, st)
            } else {
                (NULL, None)
            };
            let (up_scalar, (u_ptr, _gu)) = up_args(&upstream, st);
            let (l_ptr, _gl) = dptr_mut(&mut row_loss, st);
            if classes > i32::MAX as usize {
                // The kernels index within a row with 32-bit integers.
                return Err(LossError::Unsupported {
                    backend: "cuda".into(),
                    what: format!("rows of {classes} classes (at most {} per row)", i32::MAX),
                });
            }
            let aligned16 = [z_ptr, g_ptr, p_ptr].iter().all(|&p| p % 16 == 0);
            let opts = cfg.has_llm_options()
                || outs.lse.is_some()
                || outs.hit.is_some()
                || outs.row_z.is_some();
            let lp = self.ce_plan(classes, std::mem::size_of::<T>(), aligned16);
            // The options' entry points have no warp-per-row layout.
            let lp = if opts {
                lp.block_per_row(std::mem::size_of::<T>())
            } else {
                lp
            };
            let Some(grid) = lp.grid(rows) else {
                return Err(LossError::Unsupported {
                    backend: "cuda".into(),
                    what: format!(
                        "{rows} rows of {classes} classes ({} blocks per row; at most {} blocks)",
                        lp.cluster,
                        i32::MAX
                    ),
                });
            };
            let (lse_ptr, _gls) = opt_dptr_mut(outs.lse.as_mut(), st);
            let (hit_ptr, _ght) = opt_dptr_mut(outs.hit.as_mut(), st);
            let (rz_ptr, _grz) = opt_dptr_mut(outs.row_z.as_mut(), st);
            let base = CeRowParams {
                z: z_ptr,
                g: g_ptr,
                targets: t_ptr,
                probs: p_ptr,
                classes: classes as i64,
                slice: lp.slice as i64,
                weights: w_ptr,
                wsum,
                ignore_index,
                eps,
                stats: s_ptr,
                up_scalar,
                up: u_ptr,
                row_loss: l_ptr,
                in_place: i32::from(in_place),
                has_ignore,
                flags: lp.flags,
                last_rows: lp.last_rows(rows),
            };
            let opt_params = opts.then(|| CeRowOptParams {
                z: base.z,
                g: base.g,
                targets: base.targets,
                probs: base.probs,
                classes: base.classes,
                slice: base.slice,
                weights: base.weights,
                wsum: base.wsum,
                ignore_index: base.ignore_index,
                eps: base.eps,
                stats: base.stats,
                up_scalar: base.up_scalar,
                up: base.up,
                row_loss: base.row_loss,
                row_w: rw_ptr,
                softcap: cfg.softcap.unwrap_or(0.0),
                z_loss: cfg.z_loss,
                lse_out: lse_ptr,
                hit_out: hit_ptr,
                row_z: rz_ptr,
                in_place: base.in_place,
                has_ignore: base.has_ignore,
                flags: base.flags,
                _pad: 0,
            });
            let name = if opts {
                T::ce_kernel_opt(lp.cluster)
            } else if lp.flags & geometry::CE_WARP_ROWS != 0 {
                T::ce_kernel_warp()
            } else {
                T::ce_kernel(lp.cluster)
            };
            let f = self.function(fam, name)?;
            self.opt_in_smem(name, &f, lp.smem_bytes)?;
            let lc = LaunchConfig {
                grid_dim: (grid, 1, 1),
                block_dim: (lp.threads, 1, 1),
                shared_mem_bytes: lp.smem_bytes,
            };
            let mut b = st.launch_builder(&f);
            match &opt_params {
                Some(p) => b.arg(p),
                None => b.arg(&base),
            };
            // SAFETY: CeRowParams's (CeRowOptParams's) contract: the entry point is T's (`T::ce_kernel`, element
            // type of T's size) with `lp.cluster` compiled in and grid = lp.grid(rows) (rows *
            // cluster, or rows / rows_per_block rounded up with last_rows = lp.last_rows(rows)
            // for CE_WARP_ROWS, which only the default entry points get);
            // z / g / probs have rows*classes elements of T, targets and up `rows`, weights
            // `classes` (the plan), stats 2, row_loss, row_w (the plan) and the outputs of
            // `outs` `rows` (RowOuts' contract); CE_VEC16 only as ce_plan sets
            // it (aligned16 above); lp.smem_bytes opted into when over 48 KiB; threads a
            // multiple of 32 and <= 512. The guards live until after the launch.
            unsafe { b.launch(lc) }.w()?;
        }
        let values = match cfg.reduction {
            Reduction::None => row_loss,
            Reduction::Sum | Reduction::Mean => {
                // SAFETY: uninitialised; the last block of ce_reduce_rows writes out[0] before
                // anything reads it (stream order).
                let mut out = unsafe { st.alloc::<f64>(1) }.w()?;
                {
                    let (v_ptr, _gv) = dptr(&row_loss, st);
                    let (d_ptr, _gd) = if cfg.reduction == Reduction::Mean {
                        dptr(&stats, st)
                    } else {
                        (NULL, None)
                    };
                    let (o_ptr, _go) = dptr_mut(&mut out, st);
                    let (x_ptr, _gx) = dptr_mut(&mut scratch, st);
                    let params = CeReduceRowsParams {
                        values: v_ptr,
                        n: rows as i64,
                        chunk: chunk as i64,
                        divisor: 1.0,
                        denom: d_ptr,
                        out: o_ptr,
                        part: x_ptr + 16 + 16 * nb as u64,
                        counter: x_ptr + 8,
                    };
                    let f = self.function(fam, CE_REDUCE_ROWS)?;
                    let lc = LaunchConfig {
                        grid_dim: (row_blocks, 1, 1),
                        block_dim: (geometry::CE_ROWS_THREADS, 1, 1),
                        shared_mem_bytes: 0,
                    };
                    let mut b = st.launch_builder(&f);
                    b.arg(&params);
                    // SAFETY: CeReduceRowsParams's contract: values is row_loss (`rows` f64),
                    // denom stats (2 f64), out 1 f64, part the last `row_blocks` words of
                    // scratch and counter its second, zeroed word; ce_rows_grid's grid of
                    // CE_ROWS_THREADS threads.
                    unsafe { b.launch(lc) }.w()?;
                }
                out
            }
        };
        let target_check = match targets {
            DeviceCeTargets::Classes(_) => Some(TargetCheck::Classes(check, classes)),
            DeviceCeTargets::Probs(_) => None,
        };
        Ok(DeviceLoss {
            values,
            target_check,
            stream: st.clone(),
            per_item: cfg.reduction == Reduction::None,
        })
    }
}

impl CrossEntropyOps<f32> for CudaBackend {
    fn run_cross_entropy(&self, call: CeCall<'_, f32>) -> Result<Loss> {
        Ok(self.run_cross_entropy_rows(call, CeRowOutputs::new())?.loss)
    }

    fn run_cross_entropy_rows(
        &self,
        call: CeCall<'_, f32>,
        rows_out: CeRowOutputs<'_, f32>,
    ) -> Result<CeOutput> {
        let Parts {
            plan,
            io,
            with: targets,
            upstream,
        } = call.into_parts();
        let (cfg, rows) = (plan.cfg, plan.rows());
        let mut dev = HostIo::upload(self, io)?;
        let up = self.upload_up(upstream)?;
        let st = &self.stream;
        // SAFETY: uninitialised; the row kernel writes every row's entry (rank 0, ignored and
        // invalid rows included) before the copies back read them (stream order).
        let mut outs = unsafe {
            RowOuts {
                lse: rows_out
                    .lse
                    .is_some()
                    .then(|| st.alloc::<f32>(rows))
                    .transpose()
                    .w()?,
                hit: rows_out
                    .hit
                    .is_some()
                    .then(|| st.alloc::<u8>(rows))
                    .transpose()
                    .w()?,
                row_z: (cfg.z_loss != 0.0)
                    .then(|| st.alloc::<f64>(rows))
                    .transpose()
                    .w()?,
            }
        };
        let out = match targets {
            CeTargets::Classes(t) => {
                let t_dev = self.upload(t)?;
                let tg = DeviceCeTargets::Classes(&t_dev);
                self.ce_launch(&plan, dev.dev_io(), tg, up.as_dev(), &mut outs)?
            }
            CeTargets::Probs(p) => {
                let p_dev = self.upload(p)?;
                let tg = DeviceCeTargets::Probs(&p_dev);
                self.ce_launch(&plan, dev.dev_io(), tg, up.as_dev(), &mut outs)?
            }
        };
        let loss = dev.finish(self, out)?;
        if let (Some(h), Some(d)) = (rows_out.lse, &outs.lse) {
            st.memcpy_dtoh(d, h).w()?;
        }
        if let (Some(h), Some(d)) = (rows_out.hit, &outs.hit) {
            let b = st.clone_dtoh(d).w()?;
            for (o, v) in h.iter_mut().zip(b) {
                *o = v != 0;
            }
        }
        // CE-15: the z-loss apart, reduced on the host with the host's denominator.
        let z_loss = match &outs.row_z {
            Some(d) => {
                let z = st.clone_dtoh(d).w()?;
                plan.reduce(z, cfg.reduction_denominator(&targets, rows))
            }
            None => plan.reduce(vec![0.0; rows], cfg.reduction_denominator(&targets, rows)),
        };
        Ok(CeOutput { loss, z_loss })
    }
}

/// Where [`CudaBackend::cross_entropy_rows_dev`] writes the per-row outputs (`CE-14`): device
/// buffers of `rows` entries each, when given.
#[derive(Debug, Default)]
pub struct DeviceRowOutputs<'a> {
    /// Each row's log-sum-exp (`f32`).
    pub lse: Option<&'a mut CudaSlice<f32>>,
    /// Each row's argmax hit (1 or 0).
    pub hit: Option<&'a mut CudaSlice<u8>>,
}

/// The per-row outputs of one launch (`CE-14`, `CE-15`), `rows` entries each when present:
/// log-sum-exps (`f32`), argmax hits (0 or 1) and z-losses (`f64`).
#[derive(Debug, Default)]
pub(crate) struct RowOuts {
    pub(crate) lse: Option<CudaSlice<f32>>,
    pub(crate) hit: Option<CudaSlice<u8>>,
    pub(crate) row_z: Option<CudaSlice<f64>>,
}

/// The host-side checks of [`CudaBackend::cross_entropy_dev`], before any launch: the front
/// door's [`CrossEntropy::plan`], then `TOL-4`'s `f32` domain as the front door checks it for
/// `f32` data (the class weights, a scalar upstream), in the front door's order.
pub(crate) fn ce_dev_plan<'c>(
    cfg: &'c CrossEntropy,
    ext: &Extent,
    targets: CeTargetsShape,
    upstream: &DeviceUpstream<'_>,
) -> Result<CePlan<'c>> {
    let plan = cfg.plan(ext, targets)?;
    cfg.check_f32()?;
    if let DeviceUpstream::Scalar(s) = *upstream {
        Upstream::Scalar(s).check_values(true)?;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    //! The host-side checks of `cross_entropy_dev`, which need no device.

    use super::*;
    use smoothloss_core::{GradDest, Input, Losses, ReferenceBackend, UpstreamShape};

    fn ext(rows: usize, classes: usize, up: UpstreamShape) -> Extent {
        Extent {
            len: rows * classes,
            shape: Some([rows, classes]),
            grad: GradDest::None,
            upstream: up,
        }
    }

    /// Class weights and a scalar upstream beyond `f32::MAX` are refused before any launch,
    /// with the error the host front door gives for the same call on `f32` data.
    #[test]
    fn f32_domain_is_the_front_doors() {
        let (z, t) = (vec![0.5f32; 6], [0i64, 2]);
        let big = CrossEntropy::new().with_class_weights(vec![1.0, 1e39, 1.0]);
        let want = ReferenceBackend
            .cross_entropy(&big, Input::matrix(&z, 2, 3), &t)
            .unwrap_err();
        assert!(matches!(
            want,
            LossError::InvalidParameter {
                name: "class_weights",
                ..
            }
        ));
        let got = ce_dev_plan(
            &big,
            &ext(2, 3, UpstreamShape::Scalar(1.0)),
            CeTargetsShape::Classes(2),
            &DeviceUpstream::Scalar(1.0),
        )
        .unwrap_err();
        assert_eq!(got, want);
        // A scalar upstream beyond f32::MAX.
        let ce = CrossEntropy::new();
        let want = ReferenceBackend
            .cross_entropy(
                &ce,
                Input::matrix(&z, 2, 3).with_upstream(Upstream::Scalar(1e39)),
                &t,
            )
            .unwrap_err();
        let got = ce_dev_plan(
            &ce,
            &ext(2, 3, UpstreamShape::Scalar(1e39)),
            CeTargetsShape::Classes(2),
            &DeviceUpstream::Scalar(1e39),
        )
        .unwrap_err();
        assert_eq!(got, want);
        // f32::MAX itself and finite weights pass.
        let ok = CrossEntropy::new().with_class_weights(vec![1.0, f64::from(f32::MAX), 0.0]);
        assert!(
            ce_dev_plan(
                &ok,
                &ext(2, 3, UpstreamShape::Scalar(1.0)),
                CeTargetsShape::Classes(2),
                &DeviceUpstream::Scalar(1.0),
            )
            .is_ok()
        );
        // On f64 data the host keeps the f64 domain (the device has no f64 logits).
        let z64 = vec![0.5f64; 6];
        assert!(
            ReferenceBackend
                .cross_entropy(&big, Input::matrix(&z64, 2, 3), &t)
                .is_ok()
        );
    }
}
