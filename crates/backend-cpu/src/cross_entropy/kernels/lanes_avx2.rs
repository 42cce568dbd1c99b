//! AVX2 + FMA steps of the lanes path (`lanes.rs`): eight rows of `C` classes transposed into
//! column vectors (one row per lane) by in-register 8x8 shuffles, the exponentials and the
//! block-tree sums as vertical operations, and the gradient transposed back. Each function
//! gives the bits of its portable twin in `lanes.rs` (same operations, same order, lane by
//! lane).

use super::super::plan::KindMarker;
use crate::math::avx2::exp8_nonpos;
use std::arch::x86_64::*;

/// Rows (lanes) per block.
const L: usize = 8;
/// The most classes a block holds (`lanes::CAPACITY`).
pub(in super::super) const CAPACITY: usize = 128;
/// One value per lane.
type V = [f32; L];

/// The mask of the first `cnt` (0..=8) lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn mask(cnt: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(cnt as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// The 8x8 transpose of `r` (vector `k` of the result holds element `k` of every input).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn transpose(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

#[inline(always)]
fn ld(v: &V) -> __m256 {
    // SAFETY: `v` holds eight `f32`; only called inside AVX2 functions of this file.
    unsafe { _mm256_loadu_ps(v.as_ptr()) }
}

#[inline(always)]
fn st(v: &mut V, x: __m256) {
    // SAFETY: as in [`ld`].
    unsafe { _mm256_storeu_ps(v.as_mut_ptr(), x) }
}

/// `xt[j]` = column `j` of the `nb` rows of `x` (`nb * c` logits, row-major; lanes past `nb`
/// hold 0, the padding columns past `c` up to the next multiple of 8 are never read); returns the rows' maxima
/// (`m = if x > m { x } else { m }` from column 0 on) and `sum_j x_j * 0` (non-zero: NaN, for a
/// row with a non-finite logit). As `lanes::load_t`.
///
/// # Safety
/// AVX2 + FMA available; `1 <= c`, `1 <= nb <= 8`, `x.len() == nb * c`,
/// `xt.len() >= c.div_ceil(8) * 8`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe fn load_t(x: &[f32], c: usize, nb: usize, xt: &mut [V]) -> (V, V) {
    assert!(c >= 1 && (1..=L).contains(&nb) && x.len() == nb * c);
    assert!(xt.len() >= c.div_ceil(L) * L);
    let zero = _mm256_setzero_ps();
    let mut j0 = 0;
    while j0 < c {
        let cnt = (c - j0).min(L);
        let mk = mask(cnt);
        let mut r = [zero; 8];
        for (l, rv) in r.iter_mut().enumerate().take(nb) {
            // SAFETY: row `l < nb` holds columns `j0..j0 + cnt` at `l c + j0..`, inside `x`
            // (`x.len() == nb c`); a partial block reads only its `cnt` in-bounds lanes.
            *rv = unsafe {
                let p = x.as_ptr().add(l * c + j0);
                if cnt == L {
                    _mm256_loadu_ps(p)
                } else {
                    _mm256_maskload_ps(p, mk)
                }
            };
        }
        for (k, col) in transpose(r).into_iter().enumerate() {
            st(&mut xt[j0 + k], col);
        }
        j0 += L;
    }
    let mut m = ld(&xt[0]);
    let mut fin = zero;
    for col in &xt[..c] {
        let v = ld(col);
        m = _mm256_max_ps(v, m);
        fin = _mm256_add_ps(fin, _mm256_mul_ps(v, zero));
    }
    let (mut mo, mut fo) = ([0.0f32; L], [0.0f32; L]);
    st(&mut mo, m);
    st(&mut fo, fin);
    (mo, fo)
}

/// The block tree `((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7))`.
#[inline(always)]
fn tree(v: &[__m256; 8]) -> __m256 {
    // SAFETY: only called inside AVX2 functions of this file (plain vector adds).
    unsafe {
        _mm256_add_ps(
            _mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3])),
            _mm256_add_ps(_mm256_add_ps(v[4], v[5]), _mm256_add_ps(v[6], v[7])),
        )
    }
}

/// `e[j] = exp(xt[j] - m)` for `j < c` (0 for the padding columns up to a multiple of 8) and
/// the sums `(S, s', sum w_j d_j)` (`s'`: the entries below 1; `w_j = 1` unweighted): per
/// block of 8 columns the tree [`tree`] (padding columns add 0), the blocks' sums added in
/// order from 0 (rows of fewer than 8 classes: the columns in sequence from 0). As
/// `lanes::exp_sums`, except that `s'` is only summed (in a second pass over
/// the stored `e`, the same tree) when some lane's `S` is below 1.5, the only lanes that use
/// it; the other lanes of `s'` are then 0.
///
/// # Safety
/// AVX2 + FMA available; `xt.len() >= c.div_ceil(8) * 8`, `e.len() >= xt.len()`, `w.len()
/// >= c` when weighted.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe fn exp_sums<K: KindMarker>(
    xt: &[V],
    e: &mut [V],
    c: usize,
    m: &V,
    w: &[f32],
) -> (V, V, V) {
    let nblk = c.div_ceil(L);
    assert!(xt.len() >= nblk * L && e.len() >= nblk * L);
    if K::WEIGHTED {
        assert!(w.len() >= c);
    }
    let (zero, one, mv) = (_mm256_setzero_ps(), _mm256_set1_ps(1.0), ld(m));
    let (mut sa, mut sz) = (zero, zero);
    let full = c / L;
    // One column: `e` stored, `(e, w d)` returned.
    let col = |e: &mut [V], j: usize| {
        let d = _mm256_sub_ps(ld(&xt[j]), mv);
        let ek = exp8_nonpos(d);
        st(&mut e[j], ek);
        let z = if K::WEIGHTED {
            _mm256_mul_ps(_mm256_set1_ps(w[j]), d)
        } else {
            d
        };
        (ek, z)
    };
    let pair = |e: &mut [V], j: usize| {
        let (e0, z0) = col(e, j);
        let (e1, z1) = col(e, j + 1);
        (_mm256_add_ps(e0, e1), _mm256_add_ps(z0, z1))
    };
    for b in 0..full {
        // The tree in registers: pairs, then quads, then the block.
        let j0 = b * L;
        let (e01, z01) = pair(e, j0);
        let (e23, z23) = pair(e, j0 + 2);
        let (e45, z45) = pair(e, j0 + 4);
        let (e67, z67) = pair(e, j0 + 6);
        let te = _mm256_add_ps(_mm256_add_ps(e01, e23), _mm256_add_ps(e45, e67));
        let tz = _mm256_add_ps(_mm256_add_ps(z01, z23), _mm256_add_ps(z45, z67));
        sa = _mm256_add_ps(sa, te);
        sz = _mm256_add_ps(sz, tz);
    }
    if c < L {
        // A single partial block: the columns added in sequence (no tree over padding).
        for j in 0..c {
            let (ek, zk) = col(e, j);
            sa = _mm256_add_ps(sa, ek);
            sz = _mm256_add_ps(sz, zk);
        }
    } else if full < nblk {
        let j0 = full * L;
        let (mut ve, mut vz) = ([zero; 8], [zero; 8]);
        for k in 0..c - j0 {
            (ve[k], vz[k]) = col(e, j0 + k);
        }
        for k in c - j0..L {
            st(&mut e[j0 + k], zero);
        }
        sa = _mm256_add_ps(sa, tree(&ve));
        sz = _mm256_add_ps(sz, tree(&vz));
    }
    let conf = _mm256_and_ps(
        _mm256_cmp_ps::<_CMP_LT_OQ>(sa, _mm256_set1_ps(1.5)),
        _mm256_cmp_ps::<_CMP_GT_OQ>(sa, zero),
    );
    let mut sb = zero;
    if _mm256_movemask_ps(conf) != 0 && c < L {
        for ej in &e[..c] {
            let ek = ld(ej);
            sb = _mm256_add_ps(sb, _mm256_and_ps(ek, _mm256_cmp_ps::<_CMP_LT_OQ>(ek, one)));
        }
    } else if _mm256_movemask_ps(conf) != 0 {
        for b in 0..nblk {
            let mut vb = [zero; 8];
            for (k, v) in vb.iter_mut().enumerate() {
                let ek = ld(&e[b * L + k]);
                *v = _mm256_and_ps(ek, _mm256_cmp_ps::<_CMP_LT_OQ>(ek, one));
            }
            sb = _mm256_add_ps(sb, tree(&vb));
        }
    }
    let (mut a, mut b, mut z) = ([0.0f32; L], [0.0f32; L], [0.0f32; L]);
    st(&mut a, sa);
    st(&mut b, sb);
    st(&mut z, sz);
    (a, b, z)
}

/// The gradient `a e_j - b` (`-b w_j + a e_j` weighted, fused) of the block, transposed back
/// and written to the rows `l` with `keep[l]` (row `l` at `out[l c..(l + 1) c]`); the other
/// rows are not touched. As `lanes::grad_store`.
///
/// # Safety
/// AVX2 + FMA available; `out.len() == nb * c` with `1 <= nb <= 8`, `e.len() >=
/// c.div_ceil(8) * 8`, `w.len() >= c` when weighted; `tmp` (scratch) at least `8 * 129`
/// long.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe fn grad_store<K: KindMarker>(
    out: &mut [f32],
    c: usize,
    nb: usize,
    e: &[V],
    w: &[f32],
    a: &V,
    b: &V,
    keep: &[bool; L],
    tmp: &mut [f32],
) {
    let nblk = c.div_ceil(L);
    assert!((1..=L).contains(&nb) && out.len() == nb * c && e.len() >= nblk * L);
    if K::WEIGHTED {
        assert!(w.len() >= c);
    }
    let (av, bv) = (ld(a), ld(b));
    // The rows are written row-major into `tmp` (stride `c`) with whole-vector stores, the
    // blocks from the last to the first: a partial block's vector spills into the next row's
    // first columns, which the first block then overwrites. Masked stores (slow on Zen) are
    // avoided; `tmp` reaches `out` as one contiguous copy when every row is kept.
    assert!(c <= CAPACITY && tmp.len() >= L * (CAPACITY + 1));
    for blk in (0..nblk).rev() {
        let j0 = blk * L;
        let cnt = (c - j0).min(L);
        let mut g = [_mm256_setzero_ps(); 8];
        for (k, gk) in g.iter_mut().enumerate() {
            let ek = ld(&e[j0 + k]);
            *gk = if K::WEIGHTED {
                // Padding columns (`k >= cnt`) are overwritten or never copied: any weight
                // does.
                let wk = _mm256_set1_ps(if k < cnt { w[j0 + k] } else { 0.0 });
                _mm256_fnmadd_ps(bv, wk, _mm256_mul_ps(av, ek))
            } else {
                _mm256_fmsub_ps(av, ek, bv)
            };
        }
        for (l, rv) in transpose(g).into_iter().enumerate() {
            // SAFETY: `l c + j0 + 8 <= 7 c + c + 8 <= tmp.len()` (`j0 < c <= CAPACITY`).
            unsafe { _mm256_storeu_ps(tmp.as_mut_ptr().add(l * c + j0), rv) };
        }
    }
    if keep[..nb].iter().all(|&k| k) {
        out.copy_from_slice(&tmp[..nb * c]);
    } else {
        for (l, (o, t)) in out.chunks_exact_mut(c).zip(tmp.chunks_exact(c)).enumerate() {
            if keep[l] {
                o.copy_from_slice(t);
            }
        }
    }
}
