//! Wise-IoU v3 (`BOX-24`): the box loss whose focusing coefficient reads a running mean of the
//! IoU loss that the caller owns. The op holds the state for the forward; the caller's state
//! is updated from it once the forward succeeded (on an error it is left as it was).
//!
//! On the CPU in `f32` and `f64`; on candle's CUDA device (feature `cuda`) in `f32` through
//! smoothloss-cuda's `wise_iou_v3_dev` (its two box-loss launches; the running mean stays on
//! the host, so `N` values cross each way per call).

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use smoothloss_core::{BoxLoss, Element, Input, Losses, Reduction, ReferenceBackend, WiseIouState};

use crate::host::{contiguous, cpu};

const NAME: &str = "smoothloss-wise_iou_v3";

/// The recorded op: the configuration, the state it reads and updates, the kept gradient.
pub(crate) struct WiseIouOp {
    pub(crate) cfg: BoxLoss,
    pub(crate) state: Arc<Mutex<WiseIouState>>,
    pub(crate) want_grad: bool,
    pub(crate) grad: Mutex<Option<Tensor>>,
}

impl WiseIouOp {
    fn typed<T: Element + WithDType, B: Losses<T>>(
        &self,
        backend: &B,
        x: &[T],
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<CpuStorage> {
        if s2.dtype() != T::DTYPE {
            candle_core::bail!(
                "{NAME}: target must have pred's dtype {:?}, got {:?}",
                T::DTYPE,
                s2.dtype()
            );
        }
        let x = contiguous("pred", x, l1)?;
        let y = contiguous("target", T::cpu_storage_as_slice(s2)?, l2)?;
        let mut grad = if self.want_grad {
            vec![<T as Element>::from_f64(0.0); x.len()]
        } else {
            Vec::new()
        };
        let input = Input::new(x);
        let input = if self.want_grad {
            input.with_grad(&mut grad)
        } else {
            input
        };
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = *guard;
        let loss = backend
            .wise_iou_v3(&self.cfg, &mut state, input, y)
            .map_err(candle_core::Error::wrap)?;
        *guard = state;
        drop(guard);
        if self.want_grad {
            let g = Tensor::from_vec(grad, l1.dims(), &candle_core::Device::Cpu)?;
            crate::fused::keep(&self.grad, Some(g));
        }
        let values: Vec<T> = loss
            .values()
            .iter()
            .map(|&v| <T as Element>::from_f64(v))
            .collect();
        Ok(T::to_cpu_storage_owned(values))
    }
}

impl WiseIouOp {
    /// Checks the boxes' shapes; the loss tensor's shape.
    fn out_shape(&self, first: &[usize], second: &[usize]) -> Result<Shape> {
        if first != second {
            candle_core::bail!("{NAME}: target shape {second:?} differs from pred's {first:?}");
        }
        if first.last() != Some(&4) {
            candle_core::bail!("{NAME}: the last dimension must be 4, got {first:?}");
        }
        Ok(match self.cfg.reduction {
            Reduction::None => Shape::from(first[..first.len() - 1].to_vec()),
            _ => Shape::from(()),
        })
    }
}

impl CustomOp2 for WiseIouOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let shape = self.out_shape(l1.dims(), l2.dims())?;
        let out = match s1 {
            CpuStorage::F32(x) => self.typed(cpu(), x, l1, s2, l2)?,
            CpuStorage::F64(x) => self.typed(&ReferenceBackend, x, l1, s2, l2)?,
            other => candle_core::bail!(
                "{NAME}: {:?} boxes on the CPU; f32 and f64 are supported (convert with to_dtype)",
                other.dtype()
            ),
        };
        Ok((out, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::cuda::{whole, wrap};
        let shape = self.out_shape(l1.dims(), l2.dims())?;
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = *guard;
        let (out, grad) = crate::cuda::run_f32(NAME, s1, l1, self.want_grad, |b, io| {
            let y = whole::<f32>("target", s2, l2)?;
            let up = smoothloss_cuda::DeviceUpstream::Scalar(1.0);
            b.wise_iou_v3_dev(&self.cfg, &mut state, io, y, up)
                .map_err(wrap)
        })?;
        // Written back only once the whole forward succeeded.
        *guard = state;
        drop(guard);
        crate::fused::keep(&self.grad, grad);
        Ok((out, shape))
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let kept = self.grad.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(kept) = kept else {
            candle_core::bail!("{NAME}: no gradient was kept in the forward");
        };
        Ok((Some(crate::fused::scaled(kept, grad_res, true)?), None))
    }
}
