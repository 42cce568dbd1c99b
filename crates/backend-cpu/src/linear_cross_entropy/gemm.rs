//! The chunk GEMMs of the linear cross-entropy: `matrixmultiply::sgemm` (single-threaded, `f32`
//! accumulation) on fixed blocks of the output, run on the backend's pool.
//!
//! The blocks are fixed by the shapes alone (never by the thread count) and each output
//! element is computed by one `sgemm` call whatever thread runs it, so results are
//! bit-identical for any number of threads. The split is along the dimension that keeps the
//! big operand packed once per block: the vocabulary for the logits and `d weight`, the hidden
//! dimension for `d hidden`.

use crate::CpuBackend;
use rayon::prelude::*;

/// A read-only strided matrix view: `rows x cols`, element `(i, j)` at `i * rs + j * cs`.
#[derive(Debug, Clone, Copy)]
pub(super) struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix (`data.len() >= rows * cols`).
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Whether every element lies inside `data` (an empty view always does).
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }

    /// Rows `r0..r0 + n`.
    fn row_block(self, r0: usize, n: usize) -> Self {
        Self {
            data: &self.data[(r0 * self.rs).min(self.data.len())..],
            rows: n,
            ..self
        }
    }

    /// Columns `c0..c0 + n`.
    fn col_block(self, c0: usize, n: usize) -> Self {
        Self {
            data: &self.data[(c0 * self.cs).min(self.data.len())..],
            cols: n,
            ..self
        }
    }
}

/// A row-major output `rows x cols` with row stride `ld` (a sub-matrix of a wider buffer).
#[derive(Debug)]
pub(super) struct Out<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
}

/// Along which output dimension the fixed blocks go.
#[derive(Debug, Clone, Copy)]
pub(super) enum Split {
    /// Blocks of this many output rows.
    Rows(usize),
    /// Blocks of this many output columns.
    Cols(usize),
}

/// A raw output pointer handed to the blocks (each writes its own disjoint region).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only used by `gemm` to write disjoint output blocks, each by one task,
// while `gemm` holds the unique borrow of the whole output.
unsafe impl Send for OutPtr {}
// SAFETY: as above; tasks never write the same element.
unsafe impl Sync for OutPtr {}

/// `c = a b + beta c` (`beta` 0 or 1; with 0 the output is not read, so NaN left in it does not
/// leak) over fixed blocks of `split`. Shapes are checked (a mismatch computes nothing: the
/// callers pass the plan's shapes, so it cannot happen).
pub(super) fn gemm(
    backend: &CpuBackend,
    a: View<'_>,
    b: View<'_>,
    c: Out<'_>,
    beta: f32,
    split: Split,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let fits = b.rows == k
        && c.rows == m
        && c.cols == n
        && c.cols <= c.ld
        && a.in_bounds()
        && b.in_bounds()
        && (m == 0 || n == 0 || (m - 1) * c.ld + n <= c.data.len());
    debug_assert!(fits, "gemm shapes disagree");
    if !fits || m == 0 || n == 0 {
        return;
    }
    let (extent, block) = match split {
        Split::Rows(b) => (m, b.max(1)),
        Split::Cols(b) => (n, b.max(1)),
    };
    let blocks = extent.div_ceil(block);
    let ld = c.ld;
    let ptr = OutPtr(c.data.as_mut_ptr());
    let run = |t: usize| {
        let (s, len) = (t * block, block.min(extent - t * block));
        let (ab, bb, coff, mm, nn) = match split {
            Split::Rows(_) => (a.row_block(s, len), b, s * ld, len, n),
            Split::Cols(_) => (a, b.col_block(s, len), s, m, len),
        };
        let p = ptr;
        // SAFETY: `ab` and `bb` are in bounds (`in_bounds` of the whole views, and a block is
        // a sub-range of them); the output block starts at `coff` and spans `mm` rows of
        // `nn <= n` columns with stride `ld`, inside `c.data` (checked above); blocks are
        // disjoint (distinct row or column ranges), so no two tasks write the same element,
        // and `c.data` is exclusively borrowed for the whole call.
        unsafe {
            matrixmultiply::sgemm(
                mm,
                k,
                nn,
                1.0,
                ab.data.as_ptr(),
                ab.rs as isize,
                ab.cs as isize,
                bb.data.as_ptr(),
                bb.rs as isize,
                bb.cs as isize,
                beta,
                p.0.add(coff),
                ld as isize,
                1,
            );
        }
    };
    if backend.threads() <= 1 || blocks == 1 {
        (0..blocks).for_each(run);
    } else {
        backend.install(|| (0..blocks).into_par_iter().for_each(run));
    }
}
