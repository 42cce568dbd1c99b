//! Per-element math of smooth L1 and Huber: `(loss, dloss/dpred)`, branchless `f32`.

use crate::math::sel;

/// PyTorch's sign: -1, 0 or 1 (NaN stays NaN, zero keeps its sign).
#[inline(always)]
fn sign(d: f32) -> f32 {
    sel(d > 0.0, 1.0, sel(d < 0.0, -1.0, d * 0.0))
}

/// Smooth L1 of one element: `(loss, dloss/dpred)`; `inv_beta = 1 / beta` (unused when
/// `beta == 0`).
#[inline(always)]
pub(crate) fn smooth_l1_el(p: f32, t: f32, beta: f32, inv_beta: f32) -> (f32, f32) {
    let d = p - t;
    let z = d.abs();
    let quad = z < beta;
    // 0.5 d (d / beta): |d / beta| < 1 in this branch, so no intermediate overflows for a
    // large beta (0.5 d^2 / beta would overflow for |d| > 1.8e19).
    let loss = sel(quad, 0.5 * d * (d * inv_beta), z - 0.5 * beta);
    let g = sel(quad, d * inv_beta, sign(d));
    (loss, g)
}

/// Huber of one element: `(loss, dloss/dpred)`.
#[inline(always)]
pub(crate) fn huber_el(p: f32, t: f32, delta: f32) -> (f32, f32) {
    let d = p - t;
    let z = d.abs();
    let quad = z < delta;
    let loss = sel(quad, 0.5 * d * d, delta * (z - 0.5 * delta));
    let g = sel(quad, d, delta * sign(d));
    (loss, g)
}
