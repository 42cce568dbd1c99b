//! Fused linear cross-entropy (`LCE-*`) on the CUDA backend: `f32` host slices, the chunk
//! GEMMs by cuBLAS (cudarc's `cublas` feature, loaded at run time) with the cross-entropy
//! kernel in place on each chunk between them, as the CPU path (`LCE-4`).
//!
//! Per chunk of the plan's rows, all on the backend's stream: `z_c = b 1^T` (a `k = 1`
//! GEMM) then `z_c += h_c W^T` (`sgemm`), the cross-entropy kernel in place at reduction
//! `none` with the upstream of `LCE-2` (the whole batch's `mean` denominator), then
//! `dH_c = G_c W`, `dW += G_c^T h_c`, `db += G_c^T 1` (`sgemm`, `f32` accumulation: `db`
//! too, where the CPU sums it in `f64`). Row-major matrices are cuBLAS's column-major
//! transposes, so every GEMM is written for the transposed product.
//!
//! Not run on a GPU yet (no device here): compiled, its refusals tested; the GPU conformance
//! tests (`tests/conformance.rs`, ignored without a device) run it against the f64 reference
//! and the PyTorch cases. bf16 / f16 inputs on device buffers: `device.rs`
//! (`CudaBackend::linear_cross_entropy_dev`, cuBLAS `gemmEx` with `f32` compute, `f32` `dW`).

mod chunk_gemm;
mod device;
pub use device::{DeviceLinear, DeviceLinearGrads, LceElement, chunk_rows_for_free};

use std::sync::Arc;

use crate::CudaBackend;
use crate::cross_entropy::DeviceCeTargets;
use crate::error::WrapErr;
use crate::launch::DeviceUpstream;
use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use smoothloss_core::{
    CeTargets, Io, LceCall, Linear, LinearCrossEntropyOps, Loss, LossError, Losses, Reduction,
    ReferenceBackend, Result, Upstream,
};

/// Whether the cuBLAS library can be loaded. Never panics.
pub fn cublas_library_present() -> bool {
    #[cfg(not(feature = "dynamic-loading"))]
    return true; // linked at build time (`dynamic-linking`): present if this process started
    #[cfg(feature = "dynamic-loading")]
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate names and drops the
    // handles; it has no preconditions.
    unsafe {
        cudarc::cublas::sys::is_culib_present()
    }
}

impl CudaBackend {
    /// The backend's cuBLAS handle on its stream (created by the first call, then shared), or
    /// a typed error without libcublas.
    pub(crate) fn blas(&self) -> Result<Arc<CudaBlas>> {
        if !cublas_library_present() {
            return Err(LossError::Device(
                "the cuBLAS library (libcublas) could not be loaded".into(),
            ));
        }
        let mut cell = self.blas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = cell.as_ref() {
            return Ok(b.clone());
        }
        let b = Arc::new(CudaBlas::new(self.stream.clone()).map_err(blas_err)?);
        *cell = Some(b.clone());
        Ok(b)
    }
}

fn blas_err(e: impl std::fmt::Debug) -> LossError {
    LossError::Device(format!("cuBLAS: {e:?}"))
}

fn dim(x: usize) -> Result<i32> {
    i32::try_from(x).map_err(|_| LossError::TooLarge {
        what: "GEMM dimension",
        a: x,
        b: 1,
    })
}

/// `C = op(A) op(B) + beta C` in cuBLAS's column-major terms, `C` `m x n` with `ldc`.
#[allow(clippy::too_many_arguments)]
fn sgemm<A: DevicePtr<f32>, B: DevicePtr<f32>, C: DevicePtrMut<f32>>(
    blas: &CudaBlas,
    (ta, tb): (bool, bool),
    (m, n, k): (usize, usize, usize),
    a: &A,
    lda: usize,
    b: &B,
    ldb: usize,
    beta: f32,
    c: &mut C,
    ldc: usize,
) -> Result<()> {
    let op = |t| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
    let cfg = GemmConfig {
        transa: op(ta),
        transb: op(tb),
        m: dim(m)?,
        n: dim(n)?,
        k: dim(k)?,
        alpha: 1.0f32,
        lda: dim(lda)?,
        ldb: dim(ldb)?,
        beta,
        ldc: dim(ldc)?,
    };
    // Every operand's extent is checked against its buffer before the call.
    let need = |rows: usize, cols: usize, ld: usize| {
        if cols == 0 { 0 } else { (cols - 1) * ld + rows }
    };
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    if need(ar, ac, lda) > a.len() || need(br, bc, ldb) > b.len() || need(m, n, ldc) > c.len() {
        return Err(LossError::Device(
            "cuBLAS GEMM operands out of bounds".into(),
        ));
    }
    // SAFETY: the operands are device buffers of this backend's context whose extents, as
    // `(rows, cols, ld)` in column-major order, were checked above to lie inside them; cuBLAS
    // runs on the handle's stream (the backend's), which orders it after their writes.
    unsafe { blas.gemm(cfg, a, b, c) }.map_err(blas_err)
}

impl LinearCrossEntropyOps<f32> for CudaBackend {
    fn run_linear_cross_entropy(&self, call: LceCall<'_, f32>) -> Result<Loss> {
        if !cublas_library_present() {
            return Err(LossError::Device(
                "the cuBLAS library (libcublas) could not be loaded".into(),
            ));
        }
        let (plan, input, targets) = call.into_parts();
        let ce = &plan.cfg.ce;
        let (n, v, h) = (plan.rows(), plan.vocab(), plan.hidden);
        let denom = plan.denominator(&targets);
        let scale = if ce.reduction == Reduction::Mean {
            1.0 / denom
        } else {
            1.0
        };
        let scaled = match input.upstream {
            Upstream::Scalar(u) => Some(u * scale),
            Upstream::PerElement(_) => None,
        };
        if !scale.is_finite()
            || scaled.is_some_and(|s| !(s.is_finite() && s.abs() <= f64::from(f32::MAX)))
        {
            // TOL-4's degenerate scales: the reference, as on the CPU.
            return ReferenceBackend.linear_cross_entropy(plan.cfg, input, targets);
        }
        let st = &self.stream;
        let blas = self.blas()?;
        let Linear {
            hidden,
            weight,
            bias,
            grads,
            upstream,
            ..
        } = input;
        let h_dev = self.upload(hidden)?;
        let w_dev = self.upload(weight)?;
        let b_dev = bias.map(|b| self.upload(b)).transpose()?;
        let want = grads.is_some();
        let mut dh: CudaSlice<f32> = st.alloc_zeros(if want { n * h } else { 0 }).w()?;
        let mut dw: CudaSlice<f32> = st.alloc_zeros(if want { v * h } else { 0 }).w()?;
        let mut db: CudaSlice<f32> = st.alloc_zeros(if want { v } else { 0 }).w()?;
        let ones = self.upload(&vec![1.0f32; plan.chunk_rows])?;
        let mut losses = Vec::with_capacity(n);
        for r in plan.chunks() {
            let nc = r.len();
            let mut z: CudaSlice<f32> = st.alloc_zeros(nc * v).w()?;
            let hc = h_dev.slice(r.start * h..r.end * h);
            // LCE-1: z_c^T (V x nc) = b 1^T, then += W (stored [H, V]: op T) h_c^T ([H, nc]).
            let beta = match &b_dev {
                Some(b) => {
                    sgemm(
                        &blas,
                        (false, false),
                        (v, nc, 1),
                        b,
                        v,
                        &ones,
                        1,
                        0.0,
                        &mut z,
                        v,
                    )?;
                    1.0
                }
                None => 0.0,
            };
            sgemm(
                &blas,
                (true, false),
                (v, nc, h),
                &w_dev,
                h,
                &hc,
                h,
                beta,
                &mut z,
                v,
            )?;
            // LCE-2: the cross-entropy kernel in place (z_c becomes G_c).
            let up_dev;
            let up = match (upstream, scaled) {
                (Upstream::PerElement(u), _) => {
                    up_dev = self.upload(&u[r.clone()])?;
                    DeviceUpstream::PerElement(&up_dev)
                }
                (_, Some(s)) => DeviceUpstream::Scalar(s),
                (Upstream::Scalar(u), None) => DeviceUpstream::Scalar(u),
            };
            let io = if want {
                Io::InPlace(&mut z)
            } else {
                Io::Read(&z)
            };
            let chunk_ce = plan.chunk_ce(r.clone());
            let out = match targets {
                CeTargets::Classes(t) => {
                    let t_dev = self.upload(&t[r.clone()])?;
                    let tg = DeviceCeTargets::Classes(&t_dev);
                    self.cross_entropy_dev(&chunk_ce, io, [nc, v], tg, up)?
                }
                CeTargets::Probs(p) => {
                    let p_dev = self.upload(&p[r.start * v..r.end * v])?;
                    let tg = DeviceCeTargets::Probs(&p_dev);
                    self.cross_entropy_dev(&chunk_ce, io, [nc, v], tg, up)?
                }
            };
            losses.extend(out.to_host()?);
            if want {
                // LCE-3: dH_c^T (H x nc) = W^T ([H, V]) G_c^T ([V, nc]).
                let mut dhc = dh.slice_mut(r.start * h..r.end * h);
                sgemm(
                    &blas,
                    (false, false),
                    (h, nc, v),
                    &w_dev,
                    h,
                    &z,
                    v,
                    0.0,
                    &mut dhc,
                    h,
                )?;
                // dW^T (H x V) += h_c^T ([H, nc]) G_c (op T of [V, nc]).
                sgemm(
                    &blas,
                    (false, true),
                    (h, v, nc),
                    &hc,
                    h,
                    &z,
                    v,
                    1.0,
                    &mut dw,
                    h,
                )?;
                // db (V x 1) += G_c^T ([V, nc]) 1.
                if plan.bias_grad {
                    sgemm(
                        &blas,
                        (false, false),
                        (v, 1, nc),
                        &z,
                        v,
                        &ones,
                        nc,
                        1.0,
                        &mut db,
                        v,
                    )?;
                }
            }
        }
        if let Some(g) = grads {
            st.memcpy_dtoh(&dh, g.hidden).w()?;
            st.memcpy_dtoh(&dw, g.weight).w()?;
            if let Some(b) = g.bias {
                st.memcpy_dtoh(&db, b).w()?;
            }
            st.synchronize().w()?;
        }
        Ok(match ce.reduction {
            Reduction::None => Loss::PerItem(losses),
            Reduction::Sum => Loss::Reduced(losses.iter().sum()),
            Reduction::Mean => Loss::Reduced(losses.iter().sum::<f64>() / denom),
        })
    }
}
