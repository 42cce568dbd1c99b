//! The classification-quality losses of dense detectors (`QUAL-*`): the varifocal loss
//! (logits, scores and, for ultralytics' weight, labels: each the logits' shape) and the
//! quality focal loss (logits `[rows, classes]`, a label `[rows]` and a score `[rows]` per
//! row). Recorded as one candle op of two or three operands whose forward runs the fused call
//! and keeps the gradient, as [`Fused`](crate::fused::Fused) does.
//!
//! On the CPU: `f32` through the CPU backend, `f64` through the reference. On candle's CUDA
//! device (feature `cuda`): `f32` through smoothloss-cuda's `varifocal_dev` /
//! `quality_focal_dev` on candle's stream (labels `u32` / `u8` widened to `i64` once).

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use smoothloss_core::{
    Element, Input, Loss, Losses, QualityFocal, Reduction, ReferenceBackend, Varifocal,
    VarifocalTargets,
};

use crate::host::{classes, contiguous, cpu};

/// Which quality loss an op runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Quality {
    /// `QUAL-1` .. `QUAL-4`: operands `(logits, scores[, labels])`, element-wise.
    Varifocal(Varifocal),
    /// `QUAL-5` .. `QUAL-7`: operands `(logits [rows, C], labels [rows], scores [rows])`.
    Focal(QualityFocal),
}

/// The recorded op: the loss and the gradient its forward computed.
pub(crate) struct QualityOp {
    pub(crate) loss: Quality,
    pub(crate) want_grad: bool,
    pub(crate) grad: Mutex<Option<Tensor>>,
}

impl QualityOp {
    pub(crate) fn new(loss: Quality, want_grad: bool) -> Self {
        Self {
            loss,
            want_grad,
            grad: Mutex::new(None),
        }
    }

    fn reduction(&self) -> Reduction {
        match self.loss {
            Quality::Varifocal(c) => c.reduction,
            Quality::Focal(c) => c.reduction,
        }
    }

    fn op_name(&self) -> &'static str {
        match self.loss {
            Quality::Varifocal(_) => "smoothloss-varifocal",
            Quality::Focal(_) => "smoothloss-quality_focal",
        }
    }

    /// Checks the shapes: the varifocal's scores and labels are the logits' shape; the quality
    /// focal loss's logits are `[rows, C]` with `[rows]` labels and scores.
    fn check_shapes(&self, first: &[usize], rest: &[&[usize]]) -> Result<()> {
        let name = self.op_name();
        match self.loss {
            Quality::Varifocal(_) => {
                for (what, d) in ["scores", "labels"].iter().zip(rest) {
                    if *d != first {
                        candle_core::bail!(
                            "{name}: {what} must have the logits' shape {first:?}, got {d:?}"
                        );
                    }
                }
            }
            Quality::Focal(_) => {
                let [rows, _] = *first else {
                    candle_core::bail!("{name}: logits must be [rows, classes], got {first:?}");
                };
                for (what, d) in ["labels", "scores"].iter().zip(rest) {
                    if *d != [rows] {
                        candle_core::bail!(
                            "{name}: {what} must be [{rows}] for logits {first:?}, got {d:?}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The loss tensor's shape: a scalar, or per element (varifocal) / per row (QFL) under
    /// `none`.
    fn out_shape(&self, first: &[usize]) -> Shape {
        match (self.reduction(), self.loss) {
            (Reduction::None, Quality::Varifocal(_)) => Shape::from(first.to_vec()),
            (Reduction::None, Quality::Focal(_)) => Shape::from(first[..1].to_vec()),
            _ => Shape::from(()),
        }
    }

    /// The forward on the CPU (`rest`: the operands after the logits).
    fn cpu(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        rest: &[(&CpuStorage, &Layout)],
    ) -> Result<(CpuStorage, Shape)> {
        let dims: Vec<&[usize]> = rest.iter().map(|(_, l)| l.dims()).collect();
        self.check_shapes(l1.dims(), &dims)?;
        let (out, grad) = match s1 {
            CpuStorage::F32(x) => self.typed(cpu(), x, l1, rest)?,
            CpuStorage::F64(x) => self.typed(&ReferenceBackend, x, l1, rest)?,
            other => candle_core::bail!(
                "{}: {:?} logits on the CPU; f32 and f64 are supported (convert with to_dtype)",
                self.op_name(),
                other.dtype()
            ),
        };
        self.keep(grad);
        Ok((out, self.out_shape(l1.dims())))
    }

    /// The forward on candle's CUDA device (`rest`: the operands after the logits).
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        rest: &[(&candle_core::CudaStorage, &Layout)],
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::cuda::{ClassIndices, whole, wrap};
        use smoothloss_cuda::DeviceUpstream;
        let dims: Vec<&[usize]> = rest.iter().map(|(_, l)| l.dims()).collect();
        self.check_shapes(l1.dims(), &dims)?;
        let up = DeviceUpstream::Scalar(1.0);
        let (out, grad) =
            crate::cuda::run_f32(
                self.op_name(),
                s1,
                l1,
                self.want_grad,
                |b, io| match &self.loss {
                    Quality::Varifocal(cfg) => {
                        let (s, l) = rest[0];
                        let scores = whole::<f32>("scores", s, l)?;
                        let labels = match rest.get(1) {
                            Some((s, l)) => Some(whole::<f32>("labels", s, l)?),
                            None => None,
                        };
                        b.varifocal_dev(cfg, io, scores, labels, up).map_err(wrap)
                    }
                    Quality::Focal(cfg) => {
                        let labels = ClassIndices::of("labels", rest[0].0, rest[0].1)?;
                        let (s, l) = rest[1];
                        let scores = whole::<f32>("scores", s, l)?;
                        b.quality_focal_dev(cfg, io, labels.get()?, scores, up)
                            .map_err(wrap)
                    }
                },
            )?;
        self.keep(grad);
        Ok((out, self.out_shape(l1.dims())))
    }

    /// Keeps the forward's gradient for the backward.
    fn keep(&self, grad: Option<Tensor>) {
        crate::fused::keep(&self.grad, grad);
    }

    fn typed<T: Element + WithDType, B: Losses<T>>(
        &self,
        backend: &B,
        x: &[T],
        l1: &Layout,
        rest: &[(&CpuStorage, &Layout)],
    ) -> Result<(CpuStorage, Option<Tensor>)> {
        let name = self.op_name();
        let floats = |what: &str, i: usize| -> Result<&[T]> {
            let (s, l) = rest[i];
            if s.dtype() != T::DTYPE {
                candle_core::bail!(
                    "{name}: {what} must have the logits' dtype {:?}, got {:?}",
                    T::DTYPE,
                    s.dtype()
                );
            }
            contiguous(what, T::cpu_storage_as_slice(s)?, l)
        };
        let x = contiguous("logits", x, l1)?;
        let dims = l1.dims();
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
        let loss: smoothloss_core::Result<Loss> = match &self.loss {
            Quality::Varifocal(cfg) => {
                let scores = floats("scores", 0)?;
                let labels = match rest.get(1) {
                    Some(_) => Some(floats("labels", 1)?),
                    None => None,
                };
                backend.varifocal(cfg, input, VarifocalTargets { scores, labels })
            }
            Quality::Focal(cfg) => {
                let (s, l) = rest[0];
                let Some(labels) = classes(s, l)? else {
                    candle_core::bail!(
                        "{name}: labels must be class indices (u32, i64 or u8), got {:?}",
                        s.dtype()
                    );
                };
                let scores = floats("scores", 1)?;
                let input = match *dims {
                    [r, c] => input.shaped(r, c),
                    _ => input,
                };
                backend.quality_focal(cfg, input, &labels, scores)
            }
        };
        let loss = loss.map_err(candle_core::Error::wrap)?;
        let values: Vec<T> = loss
            .values()
            .iter()
            .map(|&v| <T as Element>::from_f64(v))
            .collect();
        let grad = if self.want_grad {
            Some(Tensor::from_vec(grad, dims, &candle_core::Device::Cpu)?)
        } else {
            None
        };
        Ok((T::to_cpu_storage_owned(values), grad))
    }

    fn backward(&self, grad_res: &Tensor) -> Result<Tensor> {
        let kept = self.grad.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(kept) = kept else {
            candle_core::bail!("{}: no gradient was kept in the forward", self.op_name());
        };
        let rows = matches!(self.loss, Quality::Focal(_));
        crate::fused::scaled(kept, grad_res, rows)
    }
}

impl CustomOp2 for QualityOp {
    fn name(&self) -> &'static str {
        self.op_name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu(s1, l1, &[(s2, l2)])
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.cuda(s1, l1, &[(s2, l2)])
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.backward(grad_res)?), None))
    }
}

impl CustomOp3 for QualityOp {
    fn name(&self) -> &'static str {
        self.op_name()
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
        self.cpu(s1, l1, &[(s2, l2), (s3, l3)])
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
        self.cuda(s1, l1, &[(s2, l2), (s3, l3)])
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.backward(grad_res)?), None, None))
    }
}
