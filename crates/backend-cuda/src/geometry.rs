//! Launch geometry shared by the launches here and the CPU-emulation tests
//! (`tests/emulated/`), so both run the kernels with the same configuration.

/// Threads per block of the element-wise and box kernels.
pub const ELEM_THREADS: u32 = 256;
/// Most blocks of a grid-stride element-wise launch (also the number of partial sums).
pub const ELEM_MAX_BLOCKS: usize = 1024;
/// Threads of the final reduction block (`SL_REDUCE_THREADS` in `common.cuh`).
pub const REDUCE_THREADS: u32 = 1024;
/// Dynamic shared memory a cross-entropy block may use without an opt-in (bytes).
pub const SMEM_DEFAULT_LIMIT: usize = 48 * 1024;
/// Shared-memory header of a cross-entropy block (`SL_CE_HEADER_BYTES` in
/// `cross_entropy.cu`); the block's slice of the row follows it.
pub const CE_HEADER_BYTES: usize = 1024;
/// Most threads of a cross-entropy block (`SL_CE_MAX_THREADS`, the kernels'
/// `__launch_bounds__`).
pub const CE_MAX_THREADS: u32 = 512;
/// Default target for the shared memory of one cross-entropy block: small enough that
/// several blocks share an SM (their load and compute phases overlap) and no opt-in is
/// needed.
pub const CE_SMEM_TARGET: usize = SMEM_DEFAULT_LIMIT;
/// `flags` bit: the slice is kept in shared memory (`SL_CE_SMEM_ROW`).
pub const CE_SMEM_ROW: i32 = 1;
/// `flags` bit: 16-byte vector accesses (`SL_CE_VEC16`).
pub const CE_VEC16: i32 = 2;
/// `flags` bit: one warp per row, [`CePlan::rows_per_block`] rows per block, each warp in its
/// own region of header + slice, no block barrier (`SL_CE_WARP_ROWS`; short rows).
pub const CE_WARP_ROWS: i32 = 4;
/// Most rows per block of the warp-per-row layout (256 threads).
pub const CE_WARP_ROWS_MAX: u32 = 8;
/// Longest row of the warp-per-row layout, in 16-byte vectors (or elements without vectors):
/// 8 per lane, where a one-block row would have had at most 64 threads.
pub const CE_WARP_MAX_UNITS: usize = 256;

/// Threads of the cross-entropy row-wise helper kernels (`ce_prepare`, `ce_reduce_rows`;
/// `SL_CE_ROWS_THREADS`).
pub const CE_ROWS_THREADS: u32 = 256;
/// Rows per block of those kernels, while the grid has at most [`CE_ROWS_MAX_BLOCKS`].
pub const CE_ROWS_CHUNK: usize = 512;
/// Most blocks of those kernels.
pub const CE_ROWS_MAX_BLOCKS: usize = 1024;

/// Blocks and rows per block of `ce_prepare` / `ce_reduce_rows` over `rows` rows.
pub fn ce_rows_grid(rows: usize) -> (u32, usize) {
    let blocks = rows.div_ceil(CE_ROWS_CHUNK).clamp(1, CE_ROWS_MAX_BLOCKS);
    (blocks as u32, rows.div_ceil(blocks).max(1))
}

/// Blocks of an element-wise or box launch over `n` items.
pub fn elem_grid(n: usize) -> u32 {
    n.div_ceil(ELEM_THREADS as usize).clamp(1, ELEM_MAX_BLOCKS) as u32
}

/// How a cross-entropy launch splits its rows: `cluster` blocks per row (a thread-block
/// cluster when more than 1), each holding `slice` classes of the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CePlan {
    /// Blocks per row: 1, 2, 4 or 8.
    pub cluster: u32,
    /// Classes per block (the last block of a row may hold fewer, or none).
    pub slice: usize,
    /// Threads per block: a power of two in 32..=[`CE_MAX_THREADS`].
    pub threads: u32,
    /// Dynamic shared memory per block (bytes).
    pub smem_bytes: u32,
    /// [`CE_SMEM_ROW`] | [`CE_VEC16`] | [`CE_WARP_ROWS`] bits.
    pub flags: i32,
    /// Rows per block: `threads / 32` in the warp-per-row layout ([`CE_WARP_ROWS`]), else 1.
    pub rows_per_block: u32,
}

impl CePlan {
    /// Blocks of the launch: `rows * cluster` (`rows / rows_per_block` rounded up in the
    /// warp-per-row layout), or `None` past the grid's limit.
    pub fn grid(&self, rows: usize) -> Option<u32> {
        rows.div_ceil(self.rows_per_block.max(1) as usize)
            .checked_mul(self.cluster as usize)
            .filter(|&g| g <= i32::MAX as usize)
            .map(|g| g as u32)
    }

    /// Rows of the grid's last block in the warp-per-row layout (`CeRowParams::last_rows`:
    /// its other warps exit at once), 0 in the other layouts.
    pub fn last_rows(&self, rows: usize) -> i32 {
        let r = self.rows_per_block.max(1) as usize;
        if self.flags & CE_WARP_ROWS == 0 || rows == 0 {
            0
        } else {
            (rows - (rows.div_ceil(r) - 1) * r) as i32
        }
    }

    /// Bytes of one row's region (header + slice) in the warp-per-row layout, as the kernel
    /// computes it from the slice (`SL_CE_HEADER_BYTES` + the slice rounded up to 16 bytes).
    fn warp_region(slice: usize, elem_bytes: usize) -> usize {
        CE_HEADER_BYTES + (slice * elem_bytes).div_ceil(16) * 16
    }

    /// The same plan with at most `n` threads per block (at least 32): fewer rows per block
    /// in the warp-per-row layout, fewer threads per row otherwise.
    pub fn with_max_threads(mut self, n: u32) -> Self {
        let n = n.max(32);
        if self.flags & CE_WARP_ROWS != 0 {
            let per_row = self.smem_bytes / self.rows_per_block.max(1);
            self.rows_per_block = self.rows_per_block.min(n / 32).max(1);
            self.threads = 32 * self.rows_per_block;
            self.smem_bytes = per_row * self.rows_per_block;
        } else {
            self.threads = self.threads.min(n);
        }
        self
    }

    /// The same rows with one block per row (the layout of the options' entry points, which
    /// have no warp-per-row layout): the plan `ce_plan` makes before it packs short rows into
    /// warps.
    pub fn block_per_row(mut self, elem_bytes: usize) -> Self {
        if self.flags & CE_WARP_ROWS != 0 {
            let units = if self.flags & CE_VEC16 != 0 {
                self.slice * elem_bytes / 16
            } else {
                self.slice
            };
            self.flags &= !CE_WARP_ROWS;
            self.threads = threads_for_units(units);
            self.smem_bytes = (CE_HEADER_BYTES + self.slice * elem_bytes) as u32;
            self.rows_per_block = 1;
        }
        self
    }
}

/// Threads of a one-block row of `units` 16-byte vectors (or elements): about four per
/// thread, a power of two in 32..=[`CE_MAX_THREADS`].
fn threads_for_units(units: usize) -> u32 {
    units
        .div_ceil(4)
        .next_power_of_two()
        .clamp(32, CE_MAX_THREADS as usize) as u32
}

/// Plans a cross-entropy launch over rows of `classes` elements of `elem_bytes` bytes
/// (2 or 4 for the kernels; any value gives a plan, never a panic).
///
/// `aligned16`: every logits / gradient / probability buffer starts on a 16-byte boundary
/// (16-byte vectors are then used when a row is a whole number of vectors).
/// `max_cluster`: 8 on sm_90 and newer, 1 before. The row is split over the fewest blocks
/// (1, 2, 4, 8) whose slice fits `smem_target` bytes with the header; failing that over
/// `max_cluster` blocks if a slice fits `smem_max` (the device's opt-in limit); failing
/// that one block per row re-reads the row from global memory. A one-block row of at most
/// [`CE_WARP_MAX_UNITS`] units whose region (header + slice) fits the target twice takes the
/// warp-per-row layout ([`CE_WARP_ROWS`]: up to [`CE_WARP_ROWS_MAX`] rows per block).
pub fn ce_plan(
    classes: usize,
    elem_bytes: usize,
    aligned16: bool,
    max_cluster: u32,
    smem_target: usize,
    smem_max: usize,
) -> CePlan {
    // 16-byte vectors of 1, 2, 4, 8 or 16 elements; other element sizes (0 or over 16
    // bytes, which no kernel takes) get a scalar plan instead of a division by zero.
    let vw = match elem_bytes {
        1 | 2 | 4 | 8 | 16 => 16 / elem_bytes,
        _ => 0,
    };
    let vec = aligned16 && vw > 0 && classes.is_multiple_of(vw);
    let unit = if vec { vw } else { 1 };
    let vec_flag = if vec { CE_VEC16 } else { 0 };
    let slice_of = |k: usize| classes.div_ceil(k).div_ceil(unit) * unit;
    let bytes_of = |k: usize| CE_HEADER_BYTES + slice_of(k) * elem_bytes;
    let threads_for = |slice: usize| threads_for_units(slice.div_ceil(unit));
    let plan = |k: usize| CePlan {
        cluster: k as u32,
        slice: slice_of(k),
        threads: threads_for(slice_of(k)),
        smem_bytes: bytes_of(k) as u32,
        flags: CE_SMEM_ROW | vec_flag,
        rows_per_block: 1,
    };
    let ks = [1usize, 2, 4, 8];
    let allowed = || ks.into_iter().filter(|&k| k <= max_cluster as usize);
    if let Some(k) = allowed().find(|&k| bytes_of(k) <= smem_target) {
        let p = plan(k);
        // Short rows (at most 8 units per lane): one warp per row, up to 8 rows per block, as
        // many as fit the target (at least 2, else the one-block row is kept).
        let region = CePlan::warp_region(p.slice, elem_bytes);
        let rpb = (smem_target / region).min(CE_WARP_ROWS_MAX as usize);
        if k == 1 && p.slice.div_ceil(unit) <= CE_WARP_MAX_UNITS && rpb >= 2 {
            return CePlan {
                threads: 32 * rpb as u32,
                smem_bytes: (rpb * region) as u32,
                flags: p.flags | CE_WARP_ROWS,
                rows_per_block: rpb as u32,
                ..p
            };
        }
        return p;
    }
    if let Some(k) = allowed().next_back().filter(|&k| bytes_of(k) <= smem_max) {
        return plan(k);
    }
    CePlan {
        cluster: 1,
        slice: classes,
        threads: CE_MAX_THREADS,
        smem_bytes: CE_HEADER_BYTES as u32,
        flags: vec_flag,
        rows_per_block: 1,
    }
}
