//! The fused linear cross-entropy on device buffers (`LCE-*`), in `f32`, `bf16` or `f16`:
//! `CudaBackend::linear_cross_entropy_dev`. Per chunk of rows, on the backend's stream:
//!
//! 1. `z_c = b 1^T + h_c W^T` in the inputs' type `T` (cuBLAS `gemmEx`, `CUBLAS_COMPUTE_32F`:
//!    products accumulated in `f32`, rounded to `T` once, as PyTorch's `h @ W.T` in `T`);
//! 2. the cross-entropy kernel of `T` in place on `z_c` (`cross_entropy_dev`, the chunk's
//!    configuration `LcePlan::chunk_ce` at reduction `none`, the whole batch's `1 / D` in the
//!    upstream, `LCE-2`): `z_c` becomes `G_c` in `T`;
//! 3. `dH_c = G_c W` (written in `T`), `dW += G_c^T h_c` and `db += G_c^T 1` into `f32`
//!    buffers (`gemmEx` with an `f32` output: the accumulation over chunks is `f32`, never
//!    `T`, the divergence Liger-Kernel's users reported with `bf16` `dW`, #512 / #827).
//!
//! The chunk size is the configuration's, else chosen from the device's free memory
//! (`cuMemGetInfo`: a quarter of it for the chunk's logits, [`chunk_rows_for_free`]).
//! Compiled here, never run (no device): `tests/gpu/linear_ce_dev.rs` (ignored without one).

use super::{blas_err, cublas_library_present, dim};
use crate::CudaBackend;
use crate::cross_entropy::{CeElement, DeviceCeTargets};
use crate::error::WrapErr;
use crate::launch::DeviceUpstream;
use cudarc::cublas::CudaBlas;
use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cudaDataType_t};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use smoothloss_core::linear_cross_entropy::{GradLens, LinearShape};
use smoothloss_core::{
    CeTargets, Io, LinearCrossEntropy, Loss, LossError, Reduction, Result, Upstream,
};

/// An element type of the device linear cross-entropy: its cuBLAS data type and a
/// conversion from `f32` (the ones vector of the bias GEMMs).
pub trait LceElement: CeElement {
    /// The cuBLAS data type of `T`.
    const CUDA_TYPE: cudaDataType_t;
    /// `x` rounded to `T`.
    fn from_f32(x: f32) -> Self;
}

impl LceElement for f32 {
    const CUDA_TYPE: cudaDataType_t = cudaDataType_t::CUDA_R_32F;
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl LceElement for half::bf16 {
    const CUDA_TYPE: cudaDataType_t = cudaDataType_t::CUDA_R_16BF;
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
}

impl LceElement for half::f16 {
    const CUDA_TYPE: cudaDataType_t = cudaDataType_t::CUDA_R_16F;
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
}

/// The inputs of [`CudaBackend::linear_cross_entropy_dev`]: `hidden [N, H]`, `weight [V, H]`,
/// an optional bias `[V]` (device buffers of `T`, row-major), where the gradients go and the
/// upstream gradient.
#[derive(Debug)]
pub struct DeviceLinear<'a, T> {
    /// Hidden states `[N, H]`.
    pub hidden: &'a CudaSlice<T>,
    /// Classifier weight `[V, H]`.
    pub weight: &'a CudaSlice<T>,
    /// Classifier bias `[V]`.
    pub bias: Option<&'a CudaSlice<T>>,
    /// The hidden dimension `H`.
    pub hidden_dim: usize,
    /// The gradients' destinations (none: forward only).
    pub grads: Option<DeviceLinearGrads<'a, T>>,
    /// The upstream gradient of the returned loss values.
    pub upstream: DeviceUpstream<'a>,
}

/// Where the device gradients go: `d hidden` in `T`, `d weight` and `d bias` in `f32`
/// (accumulated over the chunks in `f32`; overwritten, not added to).
#[derive(Debug)]
pub struct DeviceLinearGrads<'a, T> {
    /// `[N, H]`, in `T`.
    pub hidden: &'a mut CudaSlice<T>,
    /// `[V, H]`, in `f32`.
    pub weight: &'a mut CudaSlice<f32>,
    /// `[V]`, in `f32`.
    pub bias: Option<&'a mut CudaSlice<f32>>,
}

impl<'a, T> DeviceLinear<'a, T> {
    /// `hidden [N, H]` and `weight [V, H]`, forward only.
    pub fn new(hidden: &'a CudaSlice<T>, weight: &'a CudaSlice<T>, hidden_dim: usize) -> Self {
        Self {
            hidden,
            weight,
            bias: None,
            hidden_dim,
            grads: None,
            upstream: DeviceUpstream::Scalar(1.0),
        }
    }

    /// Adds the bias `[V]`.
    pub fn with_bias(mut self, bias: &'a CudaSlice<T>) -> Self {
        self.bias = Some(bias);
        self
    }

    /// Writes `d hidden` (in `T`) and `d weight` (in `f32`).
    pub fn with_grads(
        mut self,
        hidden: &'a mut CudaSlice<T>,
        weight: &'a mut CudaSlice<f32>,
    ) -> Self {
        let bias = self.grads.take().and_then(|g| g.bias);
        self.grads = Some(DeviceLinearGrads {
            hidden,
            weight,
            bias,
        });
        self
    }

    /// Also writes `d bias` (in `f32`; after [`DeviceLinear::with_grads`], else ignored and
    /// refused by the planner as a bias gradient without the others).
    pub fn with_bias_grad(mut self, bias: &'a mut CudaSlice<f32>) -> Self {
        if let Some(g) = self.grads.as_mut() {
            g.bias = Some(bias);
        }
        self
    }

    /// Scales the gradients by an upstream gradient (one per row for reduction `none`).
    pub fn with_upstream(mut self, upstream: DeviceUpstream<'a>) -> Self {
        self.upstream = upstream;
        self
    }
}

/// `LCE-4` on a device: rows per chunk when a quarter of `free` bytes hold the chunk's logits
/// (`vocab` values of `elem_bytes` per row): a multiple of 16 where that fits, at least 1, at
/// most `rows`.
pub fn chunk_rows_for_free(free: usize, vocab: usize, elem_bytes: usize, rows: usize) -> usize {
    let per_row = vocab.max(1).saturating_mul(elem_bytes.max(1));
    let r = (free / 4) / per_row;
    let r = if r >= 16 { r / 16 * 16 } else { r.max(1) };
    r.min(rows.max(1))
}

/// A cuBLAS operand: a device address, its length in elements and its data type.
type Operand = (u64, usize, cudaDataType_t);

/// `C = op(A) op(B) + beta C` by `cublasGemmEx`, `f32` compute, in cuBLAS's column-major
/// terms; every operand's extent checked against its buffer first.
#[allow(clippy::too_many_arguments)]
fn gemm_ex(
    blas: &CudaBlas,
    (ta, tb): (bool, bool),
    (m, n, k): (usize, usize, usize),
    a: Operand,
    lda: usize,
    b: Operand,
    ldb: usize,
    beta: f32,
    c: Operand,
    ldc: usize,
) -> Result<()> {
    let need = |rows: usize, cols: usize, ld: usize| {
        if cols == 0 || rows == 0 {
            0
        } else {
            (cols - 1) * ld + rows
        }
    };
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    if need(ar, ac, lda) > a.1 || need(br, bc, ldb) > b.1 || need(m, n, ldc) > c.1 {
        return Err(LossError::Device(
            "cuBLAS GEMM operands out of bounds".into(),
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let op = |t| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
    let alpha = 1.0f32;
    // SAFETY: `a`, `b`, `c` are addresses of live device buffers of this backend's context
    // (the caller holds their guards for the call), of the given types and lengths, whose
    // column-major extents `(rows, cols, ld)` were checked above to lie inside them; alpha and
    // beta are host `f32` (the handle's default pointer mode, and `f32` is the scale type of
    // CUBLAS_COMPUTE_32F); cuBLAS runs on the handle's stream, the backend's, ordered after
    // the writes of the operands.
    unsafe {
        cudarc::cublas::result::gemm_ex(
            *blas.handle(),
            op(ta),
            op(tb),
            dim(m)?,
            dim(n)?,
            dim(k)?,
            (&alpha as *const f32).cast(),
            a.0 as *const _,
            a.2,
            dim(lda)?,
            b.0 as *const _,
            b.2,
            dim(ldb)?,
            (&beta as *const f32).cast(),
            c.0 as *mut _,
            c.2,
            dim(ldc)?,
            cublasComputeType_t::CUBLAS_COMPUTE_32F,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(blas_err)
}

impl CudaBackend {
    /// Fused linear cross-entropy on device buffers (`LCE-*`): `hidden`, `weight` and `bias`
    /// in `T` (`f32`, `bf16` or `f16`), class targets `[N]` on the device, every option of the
    /// cross-entropy; the loss to the host, the gradients into the device buffers of
    /// [`DeviceLinear::with_grads`] (`d hidden` in `T`, `d weight` / `d bias` in `f32`).
    /// Validated by the host's `LinearCrossEntropy::plan` from the buffers' lengths (its
    /// errors); the targets are copied to the host (`8 N` bytes) for the whole batch's
    /// `mean` denominator and checked there as the host front door does. Refused with
    /// `LossError::Unsupported`: probability targets, and a `mean` whose scale `u / D` is not
    /// a finite `f32` (the host paths run those through the reference, `TOL-4`).
    pub fn linear_cross_entropy_dev<T: LceElement>(
        &self,
        cfg: &LinearCrossEntropy,
        input: DeviceLinear<'_, T>,
        targets: DeviceCeTargets<'_, T>,
    ) -> Result<Loss> {
        let DeviceCeTargets::Classes(t_dev) = targets else {
            return Err(LossError::Unsupported {
                backend: "cuda".into(),
                what: "probability targets in the device linear cross-entropy".into(),
            });
        };
        let shape = LinearShape {
            hidden_len: input.hidden.len(),
            weight_len: input.weight.len(),
            hidden_dim: input.hidden_dim,
            bias_len: input.bias.map(CudaSlice::len),
            grads: input.grads.as_ref().map(|g| GradLens {
                hidden: g.hidden.len(),
                weight: g.weight.len(),
                bias: g.bias.as_ref().map(|b| b.len()),
            }),
            upstream: input.upstream.shape(),
        };
        let plan = cfg.plan(
            &shape,
            smoothloss_core::CeTargetsShape::Classes(t_dev.len()),
        )?;
        cfg.ce.check_f32()?;
        if let DeviceUpstream::Scalar(u) = input.upstream {
            Upstream::Scalar(u).check_values(true)?;
        }
        if !cublas_library_present() {
            return Err(LossError::Device(
                "the cuBLAS library (libcublas) could not be loaded".into(),
            ));
        }
        let st = &self.stream;
        let t_host = st.clone_dtoh(t_dev).w()?;
        let (n, v, h) = (plan.rows(), plan.vocab(), plan.hidden);
        cfg.ce.check_targets(&t_host, v)?;
        let ce = &cfg.ce;
        let denom = plan.denominator(&CeTargets::<T>::Classes(&t_host));
        let scale = if ce.reduction == Reduction::Mean {
            1.0 / denom
        } else {
            1.0
        };
        let scaled = match input.upstream {
            DeviceUpstream::Scalar(u) => Some(u * scale),
            DeviceUpstream::PerElement(_) => None,
        };
        if !scale.is_finite()
            || scaled.is_some_and(|s| !(s.is_finite() && s.abs() <= f64::from(f32::MAX)))
        {
            return Err(LossError::Unsupported {
                backend: "cuda".into(),
                what: format!(
                    "a mean scale u / D = {scale} that is not a finite f32 on device buffers (the host entry runs it through the reference)"
                ),
            });
        }
        let chunk_rows = match cfg.chunk_rows {
            Some(_) => plan.chunk_rows,
            None => {
                st.context().bind_to_thread().w()?;
                let (free, _) = cudarc::driver::result::mem_get_info().w()?;
                chunk_rows_for_free(free, v, std::mem::size_of::<T>(), n)
            }
        };
        let blas = self.blas()?;
        let ty = T::CUDA_TYPE;
        let f32t = cudaDataType_t::CUDA_R_32F;
        let DeviceLinear {
            hidden,
            weight,
            bias,
            grads,
            upstream,
            ..
        } = input;
        let mut grads = grads;
        if let Some(g) = grads.as_mut() {
            st.memset_zeros(&mut *g.weight).w()?;
            if let Some(b) = g.bias.as_deref_mut() {
                st.memset_zeros(b).w()?;
            }
        }
        let ones = self.upload(&vec![T::from_f32(1.0); chunk_rows])?;
        let (ones_ptr, _go) = ones.device_ptr(st);
        let (h_ptr, _gh) = hidden.device_ptr(st);
        let (w_ptr, _gw) = weight.device_ptr(st);
        let es = std::mem::size_of::<T>() as u64;
        let mut losses = Vec::with_capacity(n);
        let mut z: CudaSlice<T> = st.alloc_zeros(chunk_rows * v).w()?;
        let mut z_last: Option<CudaSlice<T>> = None;
        for c in 0..n.div_ceil(chunk_rows) {
            let r = c * chunk_rows..n.min((c + 1) * chunk_rows);
            let nc = r.len();
            let zc = if nc == chunk_rows {
                &mut z
            } else {
                z_last.insert(st.alloc_zeros(nc * v).w()?)
            };
            let hc: Operand = (h_ptr + (r.start * h) as u64 * es, nc * h, ty);
            {
                let (z_ptr, _gz) = zc.device_ptr_mut(st);
                let zo: Operand = (z_ptr, nc * v, ty);
                // LCE-1: z_c^T (V x nc) = b 1^T, then += W (stored [H, V]: op T) h_c^T.
                let beta = match bias {
                    Some(b) => {
                        let (b_ptr, _gb) = b.device_ptr(st);
                        gemm_ex(
                            &blas,
                            (false, false),
                            (v, nc, 1),
                            (b_ptr, v, ty),
                            v,
                            (ones_ptr, nc, ty),
                            1,
                            0.0,
                            zo,
                            v,
                        )?;
                        1.0
                    }
                    None => 0.0,
                };
                gemm_ex(
                    &blas,
                    (true, false),
                    (v, nc, h),
                    (w_ptr, v * h, ty),
                    h,
                    hc,
                    h,
                    beta,
                    zo,
                    v,
                )?;
            }
            // LCE-2: the cross-entropy kernel of T in place (z_c becomes G_c).
            let up_chunk;
            let up = match (upstream, scaled) {
                (DeviceUpstream::PerElement(u), _) => {
                    let mut b = st.alloc_zeros::<f64>(nc).w()?;
                    st.memcpy_dtod(&u.slice(r.clone()), &mut b).w()?;
                    up_chunk = b;
                    DeviceUpstream::PerElement(&up_chunk)
                }
                (_, Some(s)) => DeviceUpstream::Scalar(s),
                (DeviceUpstream::Scalar(u), None) => DeviceUpstream::Scalar(u),
            };
            let t_chunk = self.upload(&t_host[r.clone()])?;
            let chunk_ce = plan.chunk_ce(r.clone());
            let io = if grads.is_some() {
                Io::InPlace(&mut *zc)
            } else {
                Io::Read(&*zc)
            };
            let out = self.cross_entropy_dev(
                &chunk_ce,
                io,
                [nc, v],
                DeviceCeTargets::Classes(&t_chunk),
                up,
            )?;
            losses.extend(out.to_host()?);
            // LCE-3.
            if let Some(g) = grads.as_mut() {
                let (z_ptr, _gz) = zc.device_ptr(st);
                let zo: Operand = (z_ptr, nc * v, ty);
                {
                    // dH_c^T (H x nc) = W^T ([H, V]) G_c^T ([V, nc]), in T.
                    let (dh_ptr, _gd) = g.hidden.device_ptr_mut(st);
                    let dhc: Operand = (dh_ptr + (r.start * h) as u64 * es, nc * h, ty);
                    gemm_ex(
                        &blas,
                        (false, false),
                        (h, nc, v),
                        (w_ptr, v * h, ty),
                        h,
                        zo,
                        v,
                        0.0,
                        dhc,
                        h,
                    )?;
                }
                {
                    // dW^T (H x V) += h_c^T ([H, nc]) G_c (op T of [V, nc]), into f32.
                    let (dw_ptr, _gd) = g.weight.device_ptr_mut(st);
                    let dw: Operand = (dw_ptr, v * h, f32t);
                    gemm_ex(&blas, (false, true), (h, v, nc), hc, h, zo, v, 1.0, dw, h)?;
                }
                if let Some(db) = g.bias.as_deref_mut() {
                    // db (V x 1) += G_c^T ([V, nc]) 1, into f32.
                    let (db_ptr, _gd) = db.device_ptr_mut(st);
                    let dbo: Operand = (db_ptr, v, f32t);
                    gemm_ex(
                        &blas,
                        (false, false),
                        (v, 1, nc),
                        zo,
                        v,
                        (ones_ptr, nc, ty),
                        nc,
                        1.0,
                        dbo,
                        v,
                    )?;
                }
            }
        }
        Ok(match ce.reduction {
            Reduction::None => Loss::PerItem(losses),
            Reduction::Sum => Loss::Reduced(losses.iter().sum()),
            Reduction::Mean => Loss::Reduced(losses.iter().sum::<f64>() / denom),
        })
    }
}
