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
    /// [`CE_SMEM_ROW`] | [`CE_VEC16`] bits.
    pub flags: i32,
}

impl CePlan {
    /// Blocks of the launch: `rows * cluster`, or `None` past the grid's limit.
    pub fn grid(&self, rows: usize) -> Option<u32> {
        rows.checked_mul(self.cluster as usize)
            .filter(|&g| g <= i32::MAX as usize)
            .map(|g| g as u32)
    }
}

/// Plans a cross-entropy launch over rows of `classes` elements of `elem_bytes` bytes
/// (2 or 4 for the kernels; any value gives a plan, never a panic).
///
/// `aligned16`: every logits / gradient / probability buffer starts on a 16-byte boundary
/// (16-byte vectors are then used when a row is a whole number of vectors).
/// `max_cluster`: 8 on sm_90 and newer, 1 before. The row is split over the fewest blocks
/// (1, 2, 4, 8) whose slice fits `smem_target` bytes with the header; failing that over
/// `max_cluster` blocks if a slice fits `smem_max` (the device's opt-in limit); failing
/// that one block per row re-reads the row from global memory.
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
    let threads_for = |slice: usize| {
        // About four units (16-byte vectors or elements) per thread.
        (slice.div_ceil(unit).div_ceil(4))
            .next_power_of_two()
            .clamp(32, CE_MAX_THREADS as usize) as u32
    };
    let plan = |k: usize| CePlan {
        cluster: k as u32,
        slice: slice_of(k),
        threads: threads_for(slice_of(k)),
        smem_bytes: bytes_of(k) as u32,
        flags: CE_SMEM_ROW | vec_flag,
    };
    let ks = [1usize, 2, 4, 8];
    let allowed = || ks.into_iter().filter(|&k| k <= max_cluster as usize);
    if let Some(k) = allowed().find(|&k| bytes_of(k) <= smem_target) {
        return plan(k);
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
    }
}
