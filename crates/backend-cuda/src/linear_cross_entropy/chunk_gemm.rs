//! [`ChunkGemm`] on the CUDA backend: the chunk products of the vocab-parallel linear
//! cross-entropy (`VP-6`) by cuBLAS `sgemm` on the backend's stream, so that
//! `smoothloss_core::vocab_parallel::linear_cross_entropy` runs with this backend's products
//! and an NCCL communicator (`NcclCollective`), one rank per GPU.
//!
//! The trait's operands are host slices (the vocab-parallel driver is host code, its row
//! statistics `f64`): each product uploads its operands, runs one `sgemm` (`f32` in, `f32`
//! accumulation, the same transposed column-major products as `LCE-1` / `LCE-3` of this
//! backend's own linear cross-entropy) and copies the result back. cuBLAS's `sgemm` is
//! deterministic for fixed shapes on one device (no split-K atomics are requested), so the
//! results do not depend on the call's history. Every length is checked first (typed errors,
//! nothing uploaded on a mismatch); without libcublas the products are `LossError::Device`.
//! The cuBLAS handle is the backend's own, created once ([`CudaBackend::blas`]); the operands
//! still cross the bus for every product (the trait's host slices: the weight slice of a rank
//! is uploaded again for each chunk of rows).

use super::sgemm;
use crate::CudaBackend;
use crate::error::WrapErr;
use cudarc::driver::CudaSlice;
use smoothloss_core::{ChunkDims, ChunkGemm, Result};

impl CudaBackend {
    /// Copies `dev` into `host` and waits for the stream.
    fn download_into(&self, dev: &CudaSlice<f32>, host: &mut [f32]) -> Result<()> {
        self.stream.memcpy_dtoh(dev, host).w()?;
        self.stream.synchronize().w()
    }
}

impl ChunkGemm<f32> for CudaBackend {
    fn chunk_logits(
        &self,
        h: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        k: usize,
        z: &mut [f32],
    ) -> Result<()> {
        let (m, n) = ChunkDims::logits(h.len(), w.len(), b.map(<[f32]>::len), k, z.len())?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        let blas = self.blas()?;
        let (hd, wd) = (self.upload(h)?, self.upload(w)?);
        // The bias first, then the product added onto it (LCE-1's order, as the CPU).
        let (mut zd, beta) = match b {
            Some(b) => {
                z.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(b));
                (self.upload(z)?, 1.0)
            }
            None => (self.stream.alloc_zeros::<f32>(m * n).w()?, 0.0),
        };
        // z^T (n x m) = W (stored [n, k]: op T) h^T ([k, m]).
        sgemm(
            &blas,
            (true, false),
            (n, m, k),
            &wd,
            k,
            &hd,
            k,
            beta,
            &mut zd,
            n,
        )?;
        self.download_into(&zd, z)
    }

    fn chunk_grad_hidden(&self, g: &[f32], w: &[f32], k: usize, dh: &mut [f32]) -> Result<()> {
        let (m, n) = ChunkDims::grad_hidden(g.len(), w.len(), k, dh.len())?;
        if n == 0 {
            // An empty slice of the vocabulary contributes nothing.
            dh.fill(0.0);
            return Ok(());
        }
        if m == 0 {
            return Ok(());
        }
        let blas = self.blas()?;
        let (gd, wd) = (self.upload(g)?, self.upload(w)?);
        let mut dhd = self.stream.alloc_zeros::<f32>(m * k).w()?;
        // dh^T (k x m) = W^T ([k, n]) g^T ([n, m]).
        sgemm(
            &blas,
            (false, false),
            (k, m, n),
            &wd,
            k,
            &gd,
            n,
            0.0,
            &mut dhd,
            k,
        )?;
        self.download_into(&dhd, dh)
    }

    fn chunk_grad_weight(&self, g: &[f32], h: &[f32], k: usize, dw: &mut [f32]) -> Result<()> {
        let (m, n) = ChunkDims::grad_weight(g.len(), h.len(), k, dw.len())?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        let blas = self.blas()?;
        let (gd, hd) = (self.upload(g)?, self.upload(h)?);
        let mut dwd = self.upload(dw)?;
        // dw^T (k x n) += h^T ([k, m]) g (op T of g^T [n, m]).
        sgemm(
            &blas,
            (false, true),
            (k, n, m),
            &hd,
            k,
            &gd,
            n,
            1.0,
            &mut dwd,
            k,
        )?;
        self.download_into(&dwd, dw)
    }
}
