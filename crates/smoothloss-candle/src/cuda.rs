//! The forward on candle's CUDA device (feature `cuda`): smoothloss-cuda's kernels on candle's
//! own stream and buffers (both use cudarc 0.19: the `CudaSlice` is shared, never copied to the
//! host). Cross-entropy in `f32`, `bf16` and `f16`; the other losses in `f32`. The loss values
//! stay on the device; the only read-back is the device's check of the targets' values (a few
//! bytes, synchronising), so that bad targets give the host's typed error here too.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::cuda::{CudaDType, CudaDevice};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Layout, Result, Storage, Tensor};
use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, Huber, Io, ProbIou, SigmoidFocal, SmoothL1,
};
use smoothloss_cuda::cudarc::driver::{CudaSlice, CudaStream};
use smoothloss_cuda::{CeElement, CudaBackend, DeviceCeTargets, DeviceLoss, DeviceUpstream};

use crate::fused::{Call, CeCall, PairCall};

pub(crate) fn wrap(e: smoothloss_core::LossError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// One smoothloss backend per candle stream (kernels loaded once per context).
pub(crate) fn backend(dev: &CudaDevice) -> Result<CudaBackend> {
    static CACHE: Mutex<Vec<(Arc<CudaStream>, CudaBackend)>> = Mutex::new(Vec::new());
    let stream = dev.cuda_stream();
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, b)) = cache.iter().find(|(s, _)| Arc::ptr_eq(s, &stream)) {
        return Ok(b.clone());
    }
    let b = CudaBackend::on_stream(stream.clone()).map_err(wrap)?;
    cache.push((stream, b.clone()));
    Ok(b)
}

/// The whole buffer of a contiguous layout starting at 0 (else a clear error).
pub(crate) fn whole<'a, T: CudaDType>(
    what: &str,
    s: &'a CudaStorage,
    l: &Layout,
) -> Result<&'a CudaSlice<T>> {
    let slice = s.as_cuda_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((0, end)) if end == slice.len() => Ok(slice),
        Some(_) => candle_core::bail!(
            "smoothloss on CUDA: {what} is a view into a larger buffer; pass `.copy()?` of it"
        ),
        None => candle_core::bail!("smoothloss on CUDA: {what} is not contiguous"),
    }
}

/// A loss call shape on the device.
pub(crate) trait CudaCall {
    /// Runs on `T` buffers (`x` the first operand, its dims checked).
    fn run_dev<T: CeElement + CudaDType>(
        &self,
        b: &CudaBackend,
        io: Io<'_, CudaSlice<T>>,
        dims: &[usize],
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<DeviceLoss>;
}

impl CudaCall for CeCall {
    fn run_dev<T: CeElement + CudaDType>(
        &self,
        b: &CudaBackend,
        io: Io<'_, CudaSlice<T>>,
        dims: &[usize],
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<DeviceLoss> {
        let [n, c] = *dims else {
            candle_core::bail!("smoothloss cross_entropy: logits must be [N, C], got {dims:?}");
        };
        let up = DeviceUpstream::Scalar(1.0);
        match s2.dtype() {
            DType::I64 | DType::U32 | DType::U8 => {
                let t = ClassIndices::of("targets", s2, l2)?;
                b.cross_entropy_dev(&self.0, io, [n, c], DeviceCeTargets::Classes(t.get()?), up)
            }
            _ => {
                let q = whole::<T>("target probabilities", s2, l2)?;
                b.cross_entropy_dev(&self.0, io, [n, c], DeviceCeTargets::Probs(q), up)
            }
        }
        .map_err(wrap)
    }
}

/// Calls the `*_dev` method of the pair loss `cfg` (found by its type: one line per loss).
fn pair_dev(
    cfg: &dyn std::any::Any,
    b: &CudaBackend,
    io: Io<'_, CudaSlice<f32>>,
    y: &CudaSlice<f32>,
) -> Option<smoothloss_core::Result<DeviceLoss>> {
    let up = DeviceUpstream::Scalar(1.0);
    macro_rules! dispatch {
        ($($cfg:ty => $method:ident;)*) => {$(
            if let Some(c) = cfg.downcast_ref::<$cfg>() {
                return Some(b.$method(c, io, y, up));
            }
        )*};
    }
    dispatch! {
        BoxLoss => box_loss_dev;
        SmoothL1 => smooth_l1_dev;
        Huber => huber_dev;
        BceWithLogits => bce_with_logits_dev;
        SigmoidFocal => sigmoid_focal_dev;
        ProbIou => probiou_loss_dev;
    }
    None
}

impl<C: smoothloss_core::PairLossCall> CudaCall for PairCall<C> {
    fn run_dev<T: CeElement + CudaDType>(
        &self,
        b: &CudaBackend,
        io: Io<'_, CudaSlice<T>>,
        _dims: &[usize],
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<DeviceLoss> {
        let io = f32_io(io)?;
        let y = whole::<f32>("target", s2, l2)?;
        match pair_dev(&self.0, b, io, y) {
            Some(r) => r.map_err(wrap),
            None => candle_core::bail!(
                "smoothloss {}: no CUDA kernel for this loss yet",
                <C as smoothloss_core::LossConfig>::OP.name()
            ),
        }
    }
}

impl CudaCall for crate::fused::DflCall {
    fn run_dev<T: CeElement + CudaDType>(
        &self,
        b: &CudaBackend,
        io: Io<'_, CudaSlice<T>>,
        _dims: &[usize],
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<DeviceLoss> {
        let io = f32_io(io)?;
        let targets = whole::<f32>("targets", s2, l2)?;
        b.distribution_focal_dev(&self.0, io, targets, DeviceUpstream::Scalar(1.0))
            .map_err(wrap)
    }
}

/// Class indices as `i64` on the device: an `i64` tensor as it is, `u32` / `u8` widened once
/// (one element per row).
pub(crate) enum ClassIndices<'a> {
    /// The caller's `i64` buffer.
    Given(&'a CudaSlice<i64>),
    /// The widened copy.
    Widened(CudaStorage),
}

impl<'a> ClassIndices<'a> {
    /// `what`'s class indices (`i64`, `u32` or `u8`), else a clear error.
    pub(crate) fn of(what: &str, s: &'a CudaStorage, l: &Layout) -> Result<Self> {
        match s.dtype() {
            DType::I64 => Ok(Self::Given(whole::<i64>(what, s, l)?)),
            DType::U32 | DType::U8 => Ok(Self::Widened(s.to_dtype(l, DType::I64)?)),
            other => candle_core::bail!(
                "smoothloss on CUDA: {what} must be class indices (u32, i64 or u8), got {other:?}"
            ),
        }
    }

    /// The `i64` buffer.
    pub(crate) fn get(&self) -> Result<&CudaSlice<i64>> {
        match self {
            Self::Given(t) => Ok(t),
            Self::Widened(w) => w.as_cuda_slice::<i64>(),
        }
    }
}

/// `Io<CudaSlice<T>>` as `f32` when `T` is `f32`, else an error naming the supported dtype.
fn f32_io<T: CeElement + 'static>(io: Io<'_, CudaSlice<T>>) -> Result<Io<'_, CudaSlice<f32>>> {
    use std::any::Any;
    match io {
        Io::Read(x) => match (x as &dyn Any).downcast_ref::<CudaSlice<f32>>() {
            Some(x) => Ok(Io::Read(x)),
            None => candle_core::bail!("smoothloss on CUDA: this loss runs on f32 only"),
        },
        Io::Separate { input, grad } => {
            match (
                (input as &dyn Any).downcast_ref::<CudaSlice<f32>>(),
                (grad as &mut dyn Any).downcast_mut::<CudaSlice<f32>>(),
            ) {
                (Some(input), Some(grad)) => Ok(Io::Separate { input, grad }),
                _ => candle_core::bail!("smoothloss on CUDA: this loss runs on f32 only"),
            }
        }
        Io::InPlace(_) => candle_core::bail!("smoothloss on CUDA: no in-place call here"),
    }
}

/// Runs `call` on the first operand's dtype on candle's stream.
pub(crate) fn forward<L: Call>(
    call: &L,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    want_grad: bool,
) -> Result<(CudaStorage, Option<Tensor>)> {
    let classes = matches!(s2.dtype(), DType::I64 | DType::U32 | DType::U8);
    call.check_shapes(l1.dims(), l2.dims(), classes)?;
    match s1.dtype() {
        DType::F32 => typed::<f32, L>(call, s1, l1, s2, l2, want_grad),
        DType::BF16 => typed::<smoothloss_cuda::half::bf16, L>(call, s1, l1, s2, l2, want_grad),
        DType::F16 => typed::<smoothloss_cuda::half::f16, L>(call, s1, l1, s2, l2, want_grad),
        other => candle_core::bail!(
            "smoothloss {} on CUDA: {other:?} input; f32, bf16 and f16 are supported",
            call.name()
        ),
    }
}

fn typed<T: CeElement + CudaDType + candle_core::WithDType, L: Call>(
    call: &L,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    want_grad: bool,
) -> Result<(CudaStorage, Option<Tensor>)> {
    run_on::<T>(s1, l1, want_grad, |b, io| {
        call.run_dev(b, io, l1.dims(), s2, l2)
    })
}

/// Runs the loss `f` on `f32` input `s1` (with a gradient buffer of its length when
/// `want_grad`): the loss values as candle storage of the input's dtype, left on the device,
/// and the gradient as a tensor of the input's shape. `name` heads the error of any other
/// dtype.
pub(crate) fn run_f32(
    name: &str,
    s1: &CudaStorage,
    l1: &Layout,
    want_grad: bool,
    f: impl FnOnce(&CudaBackend, Io<'_, CudaSlice<f32>>) -> Result<DeviceLoss>,
) -> Result<(CudaStorage, Option<Tensor>)> {
    if s1.dtype() != DType::F32 {
        candle_core::bail!(
            "{name} on CUDA: {:?} input; this loss runs on f32 (convert with to_dtype)",
            s1.dtype()
        );
    }
    run_on::<f32>(s1, l1, want_grad, f)
}

/// [`run_f32`] for any element type of the kernels.
fn run_on<T: CeElement + CudaDType + candle_core::WithDType>(
    s1: &CudaStorage,
    l1: &Layout,
    want_grad: bool,
    f: impl FnOnce(&CudaBackend, Io<'_, CudaSlice<T>>) -> Result<DeviceLoss>,
) -> Result<(CudaStorage, Option<Tensor>)> {
    let dev = s1.device().clone();
    let b = backend(&dev)?;
    let x = whole::<T>("input", s1, l1)?;
    let dims = l1.dims();
    let (loss, grad) = if want_grad {
        let mut g = dev.alloc_zeros::<T>(x.len())?;
        let io = Io::Separate {
            input: x,
            grad: &mut g,
        };
        (f(&b, io)?, Some(g))
    } else {
        (f(&b, Io::Read(x))?, None)
    };
    loss.check_targets().map_err(wrap)?;
    let values = loss.into_values();
    let n = values.len();
    let out = CudaStorage::wrap_cuda_slice(values, dev.clone())
        .to_dtype(&Layout::contiguous(n), <T as candle_core::WithDType>::DTYPE)?;
    let grad = grad.map(|g| {
        let s = CudaStorage::wrap_cuda_slice(g, dev.clone());
        Tensor::from_storage(Storage::Cuda(s), dims, BackpropOp::none(), false)
    });
    Ok((out, grad))
}

/// A pairwise matrix of `len` `f32` values from two `f32` box sets on the device, filled by
/// `f` (forward only).
pub(crate) fn pairwise(
    name: &str,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    len: usize,
    f: impl FnOnce(
        &CudaBackend,
        &CudaSlice<f32>,
        &CudaSlice<f32>,
        &mut CudaSlice<f32>,
    ) -> smoothloss_core::Result<()>,
) -> Result<CudaStorage> {
    if (s1.dtype(), s2.dtype()) != (DType::F32, DType::F32) {
        candle_core::bail!(
            "{name} on CUDA: {:?} and {:?} boxes; f32 is supported (convert with to_dtype)",
            s1.dtype(),
            s2.dtype()
        );
    }
    let dev = s1.device().clone();
    let b = backend(&dev)?;
    let (x, y) = (
        whole::<f32>("boxes1", s1, l1)?,
        whole::<f32>("boxes2", s2, l2)?,
    );
    let mut out = dev.alloc_zeros::<f32>(len)?;
    f(&b, x, y, &mut out).map_err(wrap)?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}

/// Pairwise IoU of `f32` boxes on the device.
pub(crate) fn box_iou(
    format: BoxFormat,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    len: usize,
) -> Result<CudaStorage> {
    pairwise(
        "smoothloss box_iou",
        (s1, l1),
        (s2, l2),
        len,
        |b, x, y, out| b.box_iou_dev(format, x, y, out),
    )
}
