//! The pairwise ProbIoU matrix of oriented boxes (`OBB-6`, ultralytics' `batch_probiou`),
//! forward only: on the CPU in `f32` and `f64`, on candle's CUDA device (feature `cuda`) in
//! `f32` through smoothloss-cuda's `batch_probiou_dev`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, WithDType};
use smoothloss_core::{Element, Losses, ReferenceBackend};

use crate::host::{contiguous, cpu};

/// `[N, M]` ProbIoU of `[N, 5]` and `[M, 5]` boxes with ultralytics' `eps`.
pub(crate) struct BatchProbIou(pub f64);

fn typed<T: Element + WithDType, B: Losses<T>>(
    b: &B,
    eps: f64,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    len: usize,
) -> Result<CpuStorage> {
    let x = contiguous("boxes1", T::cpu_storage_as_slice(s1)?, l1)?;
    let y = contiguous("boxes2", T::cpu_storage_as_slice(s2)?, l2)?;
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(candle_core::Error::wrap)?;
    out.resize(len, <T as Element>::from_f64(0.0));
    b.batch_probiou(eps, x, y, &mut out)
        .map_err(candle_core::Error::wrap)?;
    Ok(T::to_cpu_storage_owned(out))
}

/// `(N, M)` of `[N, 5]` and `[M, 5]` boxes and the matrix's checked length.
fn pair_dims(a: &[usize], b: &[usize]) -> Result<(usize, usize, usize)> {
    let (n, m) = match (a, b) {
        ([n, 5], [m, 5]) => (*n, *m),
        (a, b) => candle_core::bail!(
            "smoothloss batch_probiou: boxes must be [N, 5] and [M, 5], got {a:?} and {b:?}"
        ),
    };
    let len =
        smoothloss_core::error::checked_size("probiou", n, m).map_err(candle_core::Error::wrap)?;
    Ok((n, m, len))
}

impl CustomOp2 for BatchProbIou {
    fn name(&self) -> &'static str {
        "smoothloss-batch_probiou"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, m, len) = pair_dims(l1.dims(), l2.dims())?;
        if s1.dtype() != s2.dtype() {
            candle_core::bail!(
                "smoothloss batch_probiou: boxes of two dtypes ({:?}, {:?})",
                s1.dtype(),
                s2.dtype()
            );
        }
        let out = match s1 {
            CpuStorage::F32(_) => typed::<f32, _>(cpu(), self.0, (s1, l1), (s2, l2), len)?,
            CpuStorage::F64(_) => {
                typed::<f64, _>(&ReferenceBackend, self.0, (s1, l1), (s2, l2), len)?
            }
            other => candle_core::bail!(
                "smoothloss batch_probiou: {:?} boxes on the CPU; f32 and f64 are supported",
                other.dtype()
            ),
        };
        Ok((out, Shape::from((n, m))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, m, len) = pair_dims(l1.dims(), l2.dims())?;
        let eps = self.0;
        let out = crate::cuda::pairwise(
            "smoothloss batch_probiou",
            (s1, l1),
            (s2, l2),
            len,
            |b, x, y, out| b.batch_probiou_dev(eps, x, y, out),
        )?;
        Ok((out, Shape::from((n, m))))
    }
}
