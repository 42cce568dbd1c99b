//! The fused linear cross-entropy as one candle op over `(hidden, weight, targets)`
//! (`CustomOp3`): the cross-entropy of `hidden W^T` without the `[N, V]` logits, the gradients
//! with respect to `hidden` and `weight`.
//!
//! Under `mean` / `sum` the forward computes the value and both gradients in one fused call and
//! keeps them; the backward hands them over (upstream 1) or scales them (one pass each). Under
//! `none` the weight's gradient `sum_i u_i (p_i - y_i) h_i^T` depends on the per-row upstream
//! `u`, which only the backward knows: the forward computes the values alone and the backward
//! runs the fused call once with `u`.
//!
//! On candle's CUDA device (feature `cuda`): smoothloss-cuda's `linear_cross_entropy_dev` on
//! candle's stream, `hidden` and `weight` in `f32`, `bf16` or `f16` (`d weight` accumulated in
//! `f32` and converted once to the weight's dtype), class targets only (the device path has no
//! probability targets), the loss value copied to the device from the host (the device call
//! returns it there).

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor, WithDType,
};
use smoothloss_core::{
    CeTargets, Element, Linear, LinearCrossEntropy, Losses, Reduction, ReferenceBackend, Upstream,
};

use crate::host::{classes, contiguous, cpu};

/// The recorded op.
pub(crate) struct LinearFused {
    pub(crate) cfg: LinearCrossEntropy,
    /// Whether some operand is tracked (the gradients are wanted).
    pub(crate) want_grad: bool,
    /// `(d hidden, d weight)` of the forward (`mean` / `sum`).
    pub(crate) kept: Mutex<Option<(Tensor, Tensor)>>,
}

/// `(N, V, H)` of `hidden [N, H]`, `weight [V, H]` and class targets `[N]` or probabilities
/// `[N, V]`.
fn dims(h: &[usize], w: &[usize], t: &[usize], classes: bool) -> Result<(usize, usize, usize)> {
    let ([n, hd], [v, hw]) = (h, w) else {
        candle_core::bail!(
            "smoothloss linear_cross_entropy: hidden must be [N, H] and weight [V, H], got {h:?} and {w:?}"
        );
    };
    if hd != hw {
        candle_core::bail!(
            "smoothloss linear_cross_entropy: hidden {h:?} and weight {w:?} differ in H"
        );
    }
    let want: &[usize] = if classes { &[*n] } else { &[*n, *v] };
    if t != want {
        candle_core::bail!("smoothloss linear_cross_entropy: targets must be {want:?}, got {t:?}");
    }
    Ok((*n, *v, *hd))
}

/// What one host call returns: the loss values and, when asked, `(d hidden, d weight)`.
type HostOut<T> = (Vec<T>, Option<(Vec<T>, Vec<T>)>);

/// What a call on candle storages returns: the loss values, `(d hidden, d weight)` as
/// tensors when asked, and the loss's shape.
type StorageOut = (CpuStorage, Option<(Tensor, Tensor)>, Shape);

/// One fused call on host slices: `grads` asks for the gradients, with `upstream`.
#[allow(clippy::too_many_arguments)]
fn call<T: Element, B: Losses<T>>(
    b: &B,
    cfg: &LinearCrossEntropy,
    h: &[T],
    w: &[T],
    hd: usize,
    targets: CeTargets<'_, T>,
    grads: bool,
    upstream: Upstream<'_>,
) -> Result<HostOut<T>> {
    let zero = <T as Element>::from_f64(0.0);
    let (mut dh, mut dw) = if grads {
        (vec![zero; h.len()], vec![zero; w.len()])
    } else {
        (Vec::new(), Vec::new())
    };
    let input = Linear::new(h, w, hd).with_upstream(upstream);
    let input = if grads {
        input.with_grads(&mut dh, &mut dw)
    } else {
        input
    };
    let loss = b
        .linear_cross_entropy(cfg, input, targets)
        .map_err(candle_core::Error::wrap)?;
    let values = loss
        .values()
        .iter()
        .map(|&v| <T as Element>::from_f64(v))
        .collect();
    Ok((values, grads.then_some((dh, dw))))
}

/// [`call`] on candle CPU storages: `f32` through the CPU backend, `f64` through the reference.
#[allow(clippy::too_many_arguments)]
fn on_storages(
    cfg: &LinearCrossEntropy,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    (s3, l3): (&CpuStorage, &Layout),
    grads: bool,
    upstream: Upstream<'_>,
) -> Result<StorageOut> {
    fn typed<T: Element + WithDType, B: Losses<T>>(
        b: &B,
        cfg: &LinearCrossEntropy,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        (s3, l3): (&CpuStorage, &Layout),
        cls: Option<&[i64]>,
        grads: bool,
        upstream: Upstream<'_>,
    ) -> Result<StorageOut> {
        let (n, _, hd) = dims(l1.dims(), l2.dims(), l3.dims(), cls.is_some())?;
        let h = contiguous("hidden", T::cpu_storage_as_slice(s1)?, l1)?;
        let w = contiguous("weight", T::cpu_storage_as_slice(s2)?, l2)?;
        let targets = match cls {
            Some(c) => CeTargets::Classes(c),
            None => CeTargets::Probs(contiguous("targets", T::cpu_storage_as_slice(s3)?, l3)?),
        };
        let (values, g) = call(b, cfg, h, w, hd, targets, grads, upstream)?;
        let g = match g {
            Some((dh, dw)) => Some((
                Tensor::from_vec(dh, l1.dims(), &Device::Cpu)?,
                Tensor::from_vec(dw, l2.dims(), &Device::Cpu)?,
            )),
            None => None,
        };
        let shape = if cfg.ce.reduction == Reduction::None {
            Shape::from(n)
        } else {
            Shape::from(())
        };
        Ok((T::to_cpu_storage_owned(values), g, shape))
    }
    let cls = classes(s3, l3)?;
    let (a, b, c) = ((s1, l1), (s2, l2), (s3, l3));
    match (s1, s2) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => {
            typed::<f32, _>(cpu(), cfg, a, b, c, cls.as_deref(), grads, upstream)
        }
        (CpuStorage::F64(_), CpuStorage::F64(_)) => typed::<f64, _>(
            &ReferenceBackend,
            cfg,
            a,
            b,
            c,
            cls.as_deref(),
            grads,
            upstream,
        ),
        _ => candle_core::bail!(
            "smoothloss linear_cross_entropy: hidden {:?} and weight {:?} on the CPU; both f32 or both f64 are supported",
            s1.dtype(),
            s2.dtype()
        ),
    }
}

/// A tensor's CPU storage (the backward reads the recorded operands).
fn read<R>(t: &Tensor, f: impl FnOnce(&CpuStorage, &Layout) -> Result<R>) -> Result<R> {
    let (s, l) = t.storage_and_layout();
    match &*s {
        Storage::Cpu(c) => f(c, l),
        _ => candle_core::bail!("smoothloss linear_cross_entropy: operands on two devices"),
    }
}

/// The op on candle's CUDA device.
#[cfg(feature = "cuda")]
mod device {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda::CudaDType;
    use candle_core::op::BackpropOp;
    use candle_core::{CudaStorage, DType, Layout, Result, Shape, Storage, Tensor, WithDType};
    use smoothloss_core::{LinearCrossEntropy, Reduction};
    use smoothloss_cuda::cudarc::driver::CudaSlice;
    use smoothloss_cuda::{DeviceCeTargets, DeviceLinear, DeviceUpstream, LceElement};

    use crate::cuda::{ClassIndices, whole, wrap};

    /// What a call on candle CUDA storages returns (as [`super::StorageOut`]).
    pub(super) type Out = (CudaStorage, Option<(Tensor, Tensor)>, Shape);

    /// One fused call on CUDA storages: `grads` asks for the gradients, with `upstream` (a
    /// per-row `f64` buffer under `none`).
    pub(super) fn on_storages(
        cfg: &LinearCrossEntropy,
        a: (&CudaStorage, &Layout),
        b: (&CudaStorage, &Layout),
        c: (&CudaStorage, &Layout),
        grads: bool,
        upstream: DeviceUpstream<'_>,
    ) -> Result<Out> {
        match (a.0.dtype(), b.0.dtype()) {
            (DType::F32, DType::F32) => typed::<f32>(cfg, a, b, c, grads, upstream),
            (DType::BF16, DType::BF16) => {
                typed::<smoothloss_cuda::half::bf16>(cfg, a, b, c, grads, upstream)
            }
            (DType::F16, DType::F16) => {
                typed::<smoothloss_cuda::half::f16>(cfg, a, b, c, grads, upstream)
            }
            (x, y) => candle_core::bail!(
                "smoothloss linear_cross_entropy on CUDA: hidden {x:?} and weight {y:?}; both f32, both bf16 or both f16 are supported"
            ),
        }
    }

    fn typed<T: LceElement + CudaDType + WithDType>(
        cfg: &LinearCrossEntropy,
        (s1, l1): (&CudaStorage, &Layout),
        (s2, l2): (&CudaStorage, &Layout),
        (s3, l3): (&CudaStorage, &Layout),
        grads: bool,
        upstream: DeviceUpstream<'_>,
    ) -> Result<Out> {
        if !matches!(s3.dtype(), DType::I64 | DType::U32 | DType::U8) {
            candle_core::bail!(
                "smoothloss linear_cross_entropy on CUDA: targets must be class indices (u32, i64 or u8); probability targets run on the CPU"
            );
        }
        let (n, _, hd) = super::dims(l1.dims(), l2.dims(), l3.dims(), true)?;
        let dev = s1.device().clone();
        let backend = crate::cuda::backend(&dev)?;
        let h = whole::<T>("hidden", s1, l1)?;
        let w = whole::<T>("weight", s2, l2)?;
        let t = ClassIndices::of("targets", s3, l3)?;
        let mut g: Option<(CudaSlice<T>, CudaSlice<f32>)> = if grads {
            Some((
                dev.alloc_zeros::<T>(h.len())?,
                dev.alloc_zeros::<f32>(w.len())?,
            ))
        } else {
            None
        };
        let mut input = DeviceLinear::new(h, w, hd).with_upstream(upstream);
        if let Some((dh, dw)) = g.as_mut() {
            input = input.with_grads(dh, dw);
        }
        let loss = backend
            .linear_cross_entropy_dev(cfg, input, DeviceCeTargets::Classes(t.get()?))
            .map_err(wrap)?;
        let values: Vec<f32> = loss.values().iter().map(|&v| v as f32).collect();
        let count = values.len();
        let out = backend
            .stream()
            .clone_htod(&values)
            .map_err(candle_core::Error::wrap)?;
        let out = CudaStorage::wrap_cuda_slice(out, dev.clone())
            .to_dtype(&Layout::contiguous(count), <T as WithDType>::DTYPE)?;
        let tensor = |s: CudaStorage, dims: &[usize]| {
            Tensor::from_storage(Storage::Cuda(s), dims, BackpropOp::none(), false)
        };
        let g = match g {
            Some((dh, dw)) => {
                let dh = tensor(CudaStorage::wrap_cuda_slice(dh, dev.clone()), l1.dims());
                let dw = tensor(CudaStorage::wrap_cuda_slice(dw, dev.clone()), l2.dims())
                    .to_dtype(<T as WithDType>::DTYPE)?;
                Some((dh, dw))
            }
            None => None,
        };
        let shape = if cfg.ce.reduction == Reduction::None {
            Shape::from(n)
        } else {
            Shape::from(())
        };
        Ok((out, g, shape))
    }

    /// The backward of `none` on the device: the fused call once with the per-row upstream.
    pub(super) fn backward_none(
        cfg: &LinearCrossEntropy,
        [hidden, weight, targets]: [&Tensor; 3],
        grad_res: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let up = grad_res.to_dtype(DType::F64)?.contiguous()?;
        let (su, lu) = up.storage_and_layout();
        let (sh, lh) = hidden.storage_and_layout();
        let (sw, lw) = weight.storage_and_layout();
        let (st, lt) = targets.storage_and_layout();
        let (Storage::Cuda(su), Storage::Cuda(sh), Storage::Cuda(sw), Storage::Cuda(st)) =
            (&*su, &*sh, &*sw, &*st)
        else {
            candle_core::bail!("smoothloss linear_cross_entropy: operands on two devices");
        };
        let u = whole::<f64>("upstream", su, lu)?;
        let (_, g, _) = on_storages(
            cfg,
            (sh, lh),
            (sw, lw),
            (st, lt),
            true,
            DeviceUpstream::PerElement(u),
        )?;
        match g {
            Some(g) => Ok(g),
            None => candle_core::bail!("smoothloss linear_cross_entropy: no gradient computed"),
        }
    }
}

impl CustomOp3 for LinearFused {
    fn name(&self) -> &'static str {
        "smoothloss-linear_cross_entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let grads = self.want_grad && self.cfg.ce.reduction != Reduction::None;
        let (out, g, shape) = on_storages(
            &self.cfg,
            (s1, l1),
            (s2, l2),
            (s3, l3),
            grads,
            Upstream::ONE,
        )?;
        crate::fused::keep(&self.kept, g);
        Ok((out, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let grads = self.want_grad && self.cfg.ce.reduction != Reduction::None;
        let (out, g, shape) = device::on_storages(
            &self.cfg,
            (s1, l1),
            (s2, l2),
            (s3, l3),
            grads,
            smoothloss_cuda::DeviceUpstream::Scalar(1.0),
        )?;
        crate::fused::keep(&self.kept, g);
        Ok((out, shape))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        weight: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((dh, dw)) = kept {
            // `mean` / `sum`: a scalar upstream.
            let dh = crate::fused::scaled(dh, grad_res, false)?;
            let dw = crate::fused::scaled(dw, grad_res, false)?;
            return Ok((Some(dh), Some(dw), None));
        }
        // `none`: the fused call once with the per-row upstream.
        #[cfg(feature = "cuda")]
        if hidden.device().is_cuda() {
            let (dh, dw) = device::backward_none(&self.cfg, [hidden, weight, targets], grad_res)?;
            return Ok((Some(dh), Some(dw), None));
        }
        let up: Vec<f64> = grad_res
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let (_, g, _) = read(hidden, |s1, l1| {
            read(weight, |s2, l2| {
                read(targets, |s3, l3| {
                    on_storages(
                        &self.cfg,
                        (s1, l1),
                        (s2, l2),
                        (s3, l3),
                        true,
                        Upstream::PerElement(&up),
                    )
                })
            })
        })?;
        match g {
            Some((dh, dw)) => Ok((Some(dh), Some(dw), None)),
            None => candle_core::bail!("smoothloss linear_cross_entropy: no gradient computed"),
        }
    }
}
