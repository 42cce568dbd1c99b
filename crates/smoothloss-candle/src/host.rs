//! The forward on candle's CPU device: `f32` through the CPU backend (SIMD, rayon, fused),
//! `f64` through the `f64` reference; the gradient is moved into a tensor (no copy).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Device, Layout, Result, Tensor, WithDType};
use smoothloss_core::{Element, Input, Losses, ReferenceBackend};
use smoothloss_cpu::CpuBackend;
use std::borrow::Cow;
use std::sync::OnceLock;

use crate::fused::{Call, Second};

/// The CPU backend on rayon's global pool (as candle's own CPU ops: `RAYON_NUM_THREADS`).
pub(crate) fn cpu() -> &'static CpuBackend {
    static CPU: OnceLock<CpuBackend> = OnceLock::new();
    CPU.get_or_init(CpuBackend::new)
}

/// The elements a contiguous layout covers.
pub(crate) fn contiguous<'a, T>(what: &str, v: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => v.get(a..b).ok_or_else(|| {
            candle_core::Error::msg(format!("smoothloss: {what} out of its storage"))
        }),
        None => candle_core::bail!("smoothloss: {what} is not contiguous"),
    }
}

/// Class targets as `i64` (`u32` widened once, `i64` borrowed).
pub(crate) fn classes<'a>(s: &'a CpuStorage, l: &Layout) -> Result<Option<Cow<'a, [i64]>>> {
    Ok(match s {
        CpuStorage::I64(v) => Some(Cow::Borrowed(contiguous("targets", v, l)?)),
        CpuStorage::U32(v) => Some(Cow::Owned(
            contiguous("targets", v, l)?
                .iter()
                .map(|&t| i64::from(t))
                .collect(),
        )),
        CpuStorage::U8(v) => Some(Cow::Owned(
            contiguous("targets", v, l)?
                .iter()
                .map(|&t| i64::from(t))
                .collect(),
        )),
        _ => None,
    })
}

/// Runs `call` on the first operand's dtype; returns the loss values and, when `want_grad`,
/// the gradient as a tensor of the first operand's shape.
pub(crate) fn forward<L: Call>(
    call: &L,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    want_grad: bool,
) -> Result<(CpuStorage, Option<Tensor>)> {
    let cls = classes(s2, l2)?;
    call.check_shapes(l1.dims(), l2.dims(), cls.is_some())?;
    match s1 {
        CpuStorage::F32(x) => typed(call, cpu(), x, l1, s2, l2, cls.as_deref(), want_grad),
        CpuStorage::F64(x) => typed(
            call,
            &ReferenceBackend,
            x,
            l1,
            s2,
            l2,
            cls.as_deref(),
            want_grad,
        ),
        other => candle_core::bail!(
            "smoothloss {}: {:?} input on the CPU; f32 and f64 are supported (convert with to_dtype)",
            call.name(),
            other.dtype()
        ),
    }
}

fn typed<T: Element + WithDType, B: Losses<T>, L: Call>(
    call: &L,
    backend: &B,
    x: &[T],
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    classes: Option<&[i64]>,
    want_grad: bool,
) -> Result<(CpuStorage, Option<Tensor>)> {
    let x = contiguous("input", x, l1)?;
    let second = match classes {
        Some(c) => Second::Classes(c),
        None => Second::Values(contiguous("target", T::cpu_storage_as_slice(s2)?, l2)?),
    };
    let dims = l1.dims();
    let input = Input::new(x);
    // `vec!` of zeros is a fresh zeroed allocation (no pass over it here): the kernel writes
    // every element, and the vector then becomes the gradient tensor without a copy.
    let mut grad = if want_grad {
        vec![<T as Element>::from_f64(0.0); x.len()]
    } else {
        Vec::new()
    };
    let input = if want_grad {
        input.with_grad(&mut grad)
    } else {
        input
    };
    let loss = call
        .run(backend, input, dims, second)
        .map_err(candle_core::Error::wrap)?;
    let values: Vec<T> = loss
        .values()
        .iter()
        .map(|&v| <T as Element>::from_f64(v))
        .collect();
    let grad = if want_grad {
        Some(Tensor::from_vec(grad, dims, &Device::Cpu)?)
    } else {
        None
    };
    Ok((T::to_cpu_storage_owned(values), grad))
}

/// Pairwise IoU into a new `len`-element storage (`N * M`, from checked dimensions).
pub(crate) fn box_iou(
    format: smoothloss_core::BoxFormat,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    len: usize,
) -> Result<CpuStorage> {
    fn typed<T: Element + WithDType, B: Losses<T>>(
        b: &B,
        format: smoothloss_core::BoxFormat,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        len: usize,
    ) -> Result<CpuStorage> {
        let x = contiguous("boxes1", T::cpu_storage_as_slice(s1)?, l1)?;
        let y = contiguous("boxes2", T::cpu_storage_as_slice(s2)?, l2)?;
        let mut out = Vec::new();
        out.try_reserve_exact(len)
            .map_err(candle_core::Error::wrap)?;
        out.resize(len, <T as Element>::from_f64(0.0));
        b.box_iou(format, x, y, &mut out)
            .map_err(candle_core::Error::wrap)?;
        Ok(T::to_cpu_storage_owned(out))
    }
    match s1 {
        CpuStorage::F32(_) => typed::<f32, _>(cpu(), format, s1, l1, s2, l2, len),
        CpuStorage::F64(_) => typed::<f64, _>(&ReferenceBackend, format, s1, l1, s2, l2, len),
        other => candle_core::bail!(
            "smoothloss box_iou: {:?} boxes on the CPU; f32 and f64 are supported",
            other.dtype()
        ),
    }
}
