//! [`ChunkGemm`] on `f32` data: the chunk products of the vocab-parallel linear cross-entropy
//! (`VP-6`) by the same fixed-block `sgemm` calls as the CPU's own linear cross-entropy
//! (`LCE-1`, `LCE-3`), so results are bit-identical for any thread count.

use super::gemm::{Out, Split, View, gemm};
use super::{HIDDEN_BLOCK, VOCAB_BLOCK};
use crate::CpuBackend;
use smoothloss_core::{ChunkDims, ChunkGemm, Result};

impl ChunkGemm<f32> for CpuBackend {
    fn chunk_logits(
        &self,
        h: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        k: usize,
        z: &mut [f32],
    ) -> Result<()> {
        let (m, n) = ChunkDims::logits(h.len(), w.len(), b.map(<[f32]>::len), k, z.len())?;
        if n == 0 {
            return Ok(());
        }
        // The bias first, then the product added onto it (as LCE-1's reference adds it last).
        let beta = match b {
            Some(b) => {
                z.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(b));
                1.0
            }
            None => 0.0,
        };
        let out = Out {
            data: z,
            rows: m,
            cols: n,
            ld: n,
        };
        let wt = View::rows(w, n, k).t();
        gemm(
            self,
            View::rows(h, m, k),
            wt,
            out,
            beta,
            Split::Cols(VOCAB_BLOCK),
        );
        Ok(())
    }

    fn chunk_grad_hidden(&self, g: &[f32], w: &[f32], k: usize, dh: &mut [f32]) -> Result<()> {
        let (m, n) = ChunkDims::grad_hidden(g.len(), w.len(), k, dh.len())?;
        if n == 0 {
            // An empty slice of the vocabulary contributes nothing.
            dh.fill(0.0);
            return Ok(());
        }
        let out = Out {
            data: dh,
            rows: m,
            cols: k,
            ld: k,
        };
        gemm(
            self,
            View::rows(g, m, n),
            View::rows(w, n, k),
            out,
            0.0,
            Split::Cols(HIDDEN_BLOCK),
        );
        Ok(())
    }

    fn chunk_grad_weight(&self, g: &[f32], h: &[f32], k: usize, dw: &mut [f32]) -> Result<()> {
        let (m, n) = ChunkDims::grad_weight(g.len(), h.len(), k, dw.len())?;
        if n == 0 {
            return Ok(());
        }
        let out = Out {
            data: dw,
            rows: n,
            cols: k,
            ld: k,
        };
        gemm(
            self,
            View::rows(g, m, n).t(),
            View::rows(h, m, k),
            out,
            1.0,
            Split::Rows(VOCAB_BLOCK),
        );
        Ok(())
    }
}
