//! Cross-entropy on the device (`kernels/cross_entropy.cu`): the logits' element types, the
//! launch-plan knobs, the launches of `ce_prepare`, the row kernel and `ce_reduce_rows`, and the
//! host-slice trait.

use super::*;

/// Element types accepted as cross-entropy logits on the device: math in `f32`, the gradient
/// written in the logits' type.
pub trait CeElement: DeviceRepr + ValidAsZeroBits + Copy + Send + Sync + 'static {
    /// The kernel entry points for this type: one block per row, clusters of 2, 4, 8.
    const CE_KERNELS: [&'static str; 4];
    /// Short dtype name for reports.
    const DTYPE: &'static str;
}

impl CeElement for f32 {
    const CE_KERNELS: [&'static str; 4] = [
        "ce_fwd_bwd_f32",
        "ce_fwd_bwd_f32_c2",
        "ce_fwd_bwd_f32_c4",
        "ce_fwd_bwd_f32_c8",
    ];
    const DTYPE: &'static str = "f32";
}

impl CeElement for half::bf16 {
    const CE_KERNELS: [&'static str; 4] = [
        "ce_fwd_bwd_bf16",
        "ce_fwd_bwd_bf16_c2",
        "ce_fwd_bwd_bf16_c4",
        "ce_fwd_bwd_bf16_c8",
    ];
    const DTYPE: &'static str = "bf16";
}

impl CeElement for half::f16 {
    const CE_KERNELS: [&'static str; 4] = [
        "ce_fwd_bwd_f16",
        "ce_fwd_bwd_f16_c2",
        "ce_fwd_bwd_f16_c4",
        "ce_fwd_bwd_f16_c8",
    ];
    const DTYPE: &'static str = "f16";
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
        let mut plan = geometry::ce_plan(
            classes,
            elem_bytes,
            aligned16,
            self.ce_max_cluster,
            self.ce_smem_target,
            self.smem_opt_in_max,
        );
        plan.threads = plan.threads.min(self.ce_max_threads);
        plan
    }

    /// Opts function `name` into `bytes` of dynamic shared memory when that is over the
    /// default limit (once per function and size).
    fn opt_in_smem(&self, name: &'static str, f: &CudaFunction, bytes: u32) -> Result<()> {
        if bytes as usize <= geometry::SMEM_DEFAULT_LIMIT {
            return Ok(());
        }
        let mut l = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if l.smem_opt_in.get(name).is_some_and(|&b| b >= bytes) {
            return Ok(());
        }
        f.set_attribute(
            cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )
        .w()?;
        l.smem_opt_in.insert(name, bytes);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn validate_ce_dev<T: CeElement>(
        &self,
        cfg: &CrossEntropy,
        logits_len: usize,
        rows: usize,
        classes: usize,
        targets: &DeviceCeTargets<'_, T>,
        upstream: &DeviceUpstream<'_>,
        grad_len: Option<usize>,
    ) -> Result<()> {
        let up = check_dev_upstream(upstream, cfg.reduction, rows)?;
        // Parameters, shapes and weights by the core validator on a stand-in target vector
        // (every row ignored, or class 0 without an ignore index); the real targets are
        // checked on the device (ce_prepare).
        let stand_in = vec![cfg.ignore_index.unwrap_or(0); rows];
        cfg.validate::<f32>(
            logits_len,
            rows,
            classes,
            &CeTargets::Classes(&stand_in),
            &up,
            grad_len,
        )?;
        match targets {
            DeviceCeTargets::Classes(t) => check_len("targets", rows, t.len()),
            DeviceCeTargets::Probs(p) => check_len("target_probs", rows * classes, p.len()),
        }
    }

    /// Cross-entropy on device buffers: `logits` `[rows, classes]` row-major in `T` (f32, bf16
    /// or f16; math in f32), the gradient (when `grad` is given) written in `T`. Out-of-range
    /// class targets are found on the device and reported by [`DeviceLoss::to_host`].
    #[allow(clippy::too_many_arguments)]
    pub fn cross_entropy_dev<T: CeElement>(
        &self,
        cfg: &CrossEntropy,
        logits: &CudaSlice<T>,
        rows: usize,
        classes: usize,
        targets: DeviceCeTargets<'_, T>,
        upstream: DeviceUpstream<'_>,
        grad: Option<&mut CudaSlice<T>>,
    ) -> Result<DeviceLoss> {
        self.validate_ce_dev(
            cfg,
            logits.len(),
            rows,
            classes,
            &targets,
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        let (z_ptr, _gz) = logits.device_ptr(&self.stream);
        let (g_ptr, _gg) = match grad {
            Some(g) => {
                let (p, guard) = g.device_ptr_mut(&self.stream);
                (p, Some(guard))
            }
            None => (NULL, None),
        };
        self.ce_launch::<T>(cfg, z_ptr, g_ptr, false, rows, classes, targets, upstream)
    }

    /// As [`CudaBackend::cross_entropy_dev`], writing the gradient over the logits (as
    /// Liger-Kernel does).
    #[allow(clippy::too_many_arguments)]
    pub fn cross_entropy_in_place_dev<T: CeElement>(
        &self,
        cfg: &CrossEntropy,
        logits: &mut CudaSlice<T>,
        rows: usize,
        classes: usize,
        targets: DeviceCeTargets<'_, T>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
        self.validate_ce_dev(cfg, logits.len(), rows, classes, &targets, &upstream, None)?;
        let (z_ptr, _gz) = logits.device_ptr_mut(&self.stream);
        self.ce_launch::<T>(cfg, z_ptr, NULL, true, rows, classes, targets, upstream)
    }

    /// Launches ce_prepare, the row kernel and (for mean/sum) ce_reduce_rows. `z_ptr` and
    /// `g_ptr` are device addresses of buffers of `rows * classes` elements of `T` (g may be 0),
    /// kept borrowed by the caller until this returns.
    #[allow(clippy::too_many_arguments)]
    fn ce_launch<T: CeElement>(
        &self,
        cfg: &CrossEntropy,
        z_ptr: u64,
        g_ptr: u64,
        in_place: bool,
        rows: usize,
        classes: usize,
        targets: DeviceCeTargets<'_, T>,
        upstream: DeviceUpstream<'_>,
    ) -> Result<DeviceLoss> {
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
        let chunk_i = chunk as i64;
        let rows_i = rows as i64;
        let classes_i = classes as i64;
        let ignore = cfg.ignore_index.unwrap_or(0);
        let has_ignore = i32::from(cfg.ignore_index.is_some());
        let eps = cfg.label_smoothing;
        {
            let (t_ptr, _gt) = match targets {
                DeviceCeTargets::Classes(t) => {
                    let (p, g) = t.device_ptr(st);
                    (p, Some(g))
                }
                DeviceCeTargets::Probs(_) => (NULL, None),
            };
            let (w_ptr, _gw) = match &weights {
                Some(w) => {
                    let (p, g) = w.device_ptr(st);
                    (p, Some(g))
                }
                None => (NULL, None),
            };
            let (s_ptr, _gs) = stats.device_ptr_mut(st);
            let (c_ptr, _gc) = check.device_ptr_mut(st);
            let (x_ptr, _gx) = scratch.device_ptr_mut(st);
            let counter = x_ptr;
            let part_w = x_ptr + 16;
            let part_bad = part_w + 8 * nb as u64;
            let f = self.function(fam, "ce_prepare")?;
            let lc = LaunchConfig {
                grid_dim: (row_blocks, 1, 1),
                block_dim: (geometry::CE_ROWS_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = st.launch_builder(&f);
            b.arg(&t_ptr)
                .arg(&rows_i)
                .arg(&chunk_i)
                .arg(&classes_i)
                .arg(&w_ptr)
                .arg(&ignore)
                .arg(&has_ignore)
                .arg(&s_ptr)
                .arg(&c_ptr)
                .arg(&part_w)
                .arg(&part_bad)
                .arg(&counter);
            // SAFETY: `ce_prepare(const long long* targets, long long rows, long long chunk,
            // long long classes, const float* weights, long long ignore_index, int has_ignore,
            // double* stats, long long* err, double* part_w, long long* part_bad,
            // unsigned int* counter)`: pointers as u64 device addresses (0 = null), then i64
            // and i32 scalars in that order. Block b reads targets[b*chunk .. min(rows,
            // (b+1)*chunk)) (`rows` i64, checked by validate_ce_dev; null for probability
            // targets); weights has `classes` f32 (validated length) and is only indexed at
            // in-range targets; stats and err have 2 elements each; part_w and part_bad are
            // `row_blocks` words each of `scratch` and counter its (zeroed) first word, as
            // ce_rows_grid's grid (rows_blocks * chunk >= rows) of CE_ROWS_THREADS threads.
            unsafe { b.launch(lc) }.w()?;
        }
        {
            let (t_ptr, _gt, p_ptr, _gp) = match targets {
                DeviceCeTargets::Classes(t) => {
                    let (p, g) = t.device_ptr(st);
                    (p, Some(g), NULL, None)
                }
                DeviceCeTargets::Probs(q) => {
                    let (p, g) = q.device_ptr(st);
                    (NULL, None, p, Some(g))
                }
            };
            let (w_ptr, _gw) = match &weights {
                Some(w) => {
                    let (p, g) = w.device_ptr(st);
                    (p, Some(g))
                }
                None => (NULL, None),
            };
            let (s_ptr, _gs) = if cfg.reduction == Reduction::Mean {
                let (p, g) = stats.device_ptr(st);
                (p, Some(g))
            } else {
                (NULL, None)
            };
            let (up_scalar, (u_ptr, _gu)) = match upstream {
                DeviceUpstream::Scalar(s) => (s, (NULL, None)),
                DeviceUpstream::PerElement(u) => {
                    let (p, g) = u.device_ptr(st);
                    (0.0, (p, Some(g)))
                }
            };
            let (l_ptr, _gl) = row_loss.device_ptr_mut(st);
            let in_place_i = i32::from(in_place);
            if classes > i32::MAX as usize {
                // The kernels index within a row with 32-bit integers.
                return Err(LossError::Unsupported {
                    backend: "cuda".into(),
                    what: format!("rows of {classes} classes (at most {} per row)", i32::MAX),
                });
            }
            let aligned16 = [z_ptr, g_ptr, p_ptr].iter().all(|&p| p % 16 == 0);
            let plan = self.ce_plan(classes, std::mem::size_of::<T>(), aligned16);
            let Some(grid) = plan.grid(rows) else {
                return Err(LossError::Unsupported {
                    backend: "cuda".into(),
                    what: format!(
                        "{rows} rows of {classes} classes ({} blocks per row; at most {} blocks)",
                        plan.cluster,
                        i32::MAX
                    ),
                });
            };
            let slice_i = plan.slice as i64;
            let name = T::CE_KERNELS[plan.cluster.trailing_zeros() as usize];
            let f = self.function(fam, name)?;
            self.opt_in_smem(name, &f, plan.smem_bytes)?;
            let lc = LaunchConfig {
                grid_dim: (grid, 1, 1),
                block_dim: (plan.threads, 1, 1),
                shared_mem_bytes: plan.smem_bytes,
            };
            let mut b = st.launch_builder(&f);
            b.arg(&z_ptr)
                .arg(&g_ptr)
                .arg(&in_place_i)
                .arg(&t_ptr)
                .arg(&p_ptr)
                .arg(&classes_i)
                .arg(&slice_i)
                .arg(&w_ptr)
                .arg(&wsum)
                .arg(&ignore)
                .arg(&has_ignore)
                .arg(&eps)
                .arg(&s_ptr)
                .arg(&up_scalar)
                .arg(&u_ptr)
                .arg(&l_ptr)
                .arg(&plan.flags);
            // SAFETY: `ce_fwd_bwd_<T>[_cK](T* z, T* g, int in_place, const long long* targets,
            // const T* probs, long long classes, long long slice, const float* weights,
            // double wsum, long long ignore_index, int has_ignore, double eps,
            // const double* stats, double up_scalar, const double* up, double* row_loss,
            // int flags)`: u64 device addresses for every pointer (0 = null), i32/i64/f64
            // scalars in that order; the entry point comes from `T::CE_KERNELS` (element type
            // of T's size, f32 or a 2-byte struct; cluster size `plan.cluster` compiled in, and
            // `grid` = rows * cluster). Block b of row b / K touches z/g/probs only in
            // [row*classes + rank*slice, min(row*classes + (rank+1)*slice, (row+1)*classes))
            // (all have rows*classes elements: validated), targets[row] and up[row] (`rows`
            // elements: validated), weights[0..classes) (validated), stats[1] (2 elements),
            // row_loss[row] (`rows` elements). 16-byte vectors only with CE_VEC16, which
            // ce_plan sets only when the three buffers start on 16-byte boundaries and a row
            // is a whole number of vectors. Dynamic shared memory: the 1024-byte header plus
            // `slice` elements when CE_SMEM_ROW (ce_plan's smem_bytes, opted into above when
            // over 48 KiB); threads a multiple of 32 and <= 512 (`__launch_bounds__`).
            unsafe { b.launch(lc) }.w()?;
        }
        let values = match cfg.reduction {
            Reduction::None => row_loss,
            Reduction::Sum | Reduction::Mean => {
                // SAFETY: uninitialised; the last block of ce_reduce_rows writes out[0] before
                // anything reads it (stream order).
                let mut out = unsafe { st.alloc::<f64>(1) }.w()?;
                let (v_ptr, _gv) = row_loss.device_ptr(st);
                let (d_ptr, _gd) = if cfg.reduction == Reduction::Mean {
                    let (p, g) = stats.device_ptr(st);
                    (p, Some(g))
                } else {
                    (NULL, None)
                };
                let (o_ptr, go) = out.device_ptr_mut(st);
                let (x_ptr, _gx) = scratch.device_ptr_mut(st);
                let counter = x_ptr + 8;
                let part = x_ptr + 16 + 16 * nb as u64;
                let f = self.function(fam, "ce_reduce_rows")?;
                let lc = LaunchConfig {
                    grid_dim: (row_blocks, 1, 1),
                    block_dim: (geometry::CE_ROWS_THREADS, 1, 1),
                    shared_mem_bytes: 0,
                };
                let one = 1.0f64;
                let mut b = st.launch_builder(&f);
                b.arg(&v_ptr)
                    .arg(&rows_i)
                    .arg(&chunk_i)
                    .arg(&one)
                    .arg(&d_ptr)
                    .arg(&o_ptr)
                    .arg(&part)
                    .arg(&counter);
                // SAFETY: `ce_reduce_rows(const double* values, long long n, long long chunk,
                // double divisor, const double* denom, double* out, double* part,
                // unsigned int* counter)`: u64 addresses (denom 0 = null), i64 and f64 scalars
                // in that order. Block b reads values[b*chunk .. min(rows, (b+1)*chunk)) of
                // row_loss (`rows` f64), denom[0] of stats (2 f64), writes out[0] (1 f64),
                // part[b] (the last `row_blocks` words of scratch) and counter (scratch's
                // second, zeroed word); ce_rows_grid's grid of CE_ROWS_THREADS threads.
                unsafe { b.launch(lc) }.w()?;
                drop(b);
                drop(go);
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
        })
    }
}

impl CrossEntropyOps<f32> for CudaBackend {
    fn cross_entropy(
        &self,
        cfg: &CrossEntropy,
        logits: &[f32],
        rows: usize,
        classes: usize,
        targets: CeTargets<'_, f32>,
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> Result<Vec<f64>> {
        cfg.validate(
            logits.len(),
            rows,
            classes,
            &targets,
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        let z = self.upload(logits)?;
        let up = self.upload_up(upstream)?;
        let mut g_dev = self.grad_buffer(&grad)?;
        let out = match targets {
            CeTargets::Classes(t) => {
                let t_dev = self.upload(t)?;
                self.cross_entropy_dev(
                    cfg,
                    &z,
                    rows,
                    classes,
                    DeviceCeTargets::Classes(&t_dev),
                    up.as_dev(),
                    g_dev.as_mut(),
                )?
            }
            CeTargets::Probs(p) => {
                let p_dev = self.upload(p)?;
                self.cross_entropy_dev(
                    cfg,
                    &z,
                    rows,
                    classes,
                    DeviceCeTargets::Probs(&p_dev),
                    up.as_dev(),
                    g_dev.as_mut(),
                )?
            }
        };
        self.finish(out, g_dev, grad)
    }

    fn cross_entropy_in_place(
        &self,
        cfg: &CrossEntropy,
        logits: &mut [f32],
        rows: usize,
        classes: usize,
        targets: CeTargets<'_, f32>,
        upstream: Upstream<'_>,
    ) -> Result<Vec<f64>> {
        cfg.validate(logits.len(), rows, classes, &targets, &upstream, None)?;
        let mut z = self.upload(logits)?;
        let up = self.upload_up(upstream)?;
        let out = match targets {
            CeTargets::Classes(t) => {
                let t_dev = self.upload(t)?;
                self.cross_entropy_in_place_dev(
                    cfg,
                    &mut z,
                    rows,
                    classes,
                    DeviceCeTargets::Classes(&t_dev),
                    up.as_dev(),
                )?
            }
            CeTargets::Probs(p) => {
                let p_dev = self.upload(p)?;
                self.cross_entropy_in_place_dev(
                    cfg,
                    &mut z,
                    rows,
                    classes,
                    DeviceCeTargets::Probs(&p_dev),
                    up.as_dev(),
                )?
            }
        };
        self.finish(out, Some(z), Some(logits))
    }
}
