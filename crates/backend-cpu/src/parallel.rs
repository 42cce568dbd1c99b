//! Deterministic parallel helpers: work is split into blocks whose boundaries depend only on
//! the problem size (never on the number of threads), and per-block partial sums are combined in
//! block order, so results are bit-identical for any thread count.

use rayon::prelude::*;

/// Runs `f(first_item, items, out_block)` over fixed blocks of `block` items in parallel and
/// returns the per-block `f64` partial results in block order. `out` holds `stride` values per
/// item and is split along the same boundaries.
pub fn for_blocks<T: Send, F>(
    out: &mut [T],
    stride: usize,
    items: usize,
    block: usize,
    f: F,
) -> Vec<f64>
where
    F: Fn(usize, usize, &mut [T]) -> f64 + Sync,
{
    let block = block.max(1);
    let nblocks = items.div_ceil(block);
    if stride == 0 || out.is_empty() {
        return (0..nblocks)
            .into_par_iter()
            .map(|b| {
                let first = b * block;
                f(first, block.min(items - first), &mut [])
            })
            .collect();
    }
    out.par_chunks_mut(block * stride)
        .enumerate()
        .map(|(b, chunk)| {
            let first = b * block;
            f(first, block.min(items - first), chunk)
        })
        .collect()
}

/// Sums partials in order (deterministic).
pub fn ordered_sum(parts: &[f64]) -> f64 {
    parts.iter().sum()
}
