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

// The whole block in registers (`lanes::fast_rows`): eight full rows of a fixed `C` (2 to 32
// classes, a const parameter, so that every loop over the columns unrolls and the transposes'
// lane tables are constants), the per-lane `f64` part as `f64` vectors, and no store before the
// block is known to hold no row that leaves the lanes. The same operations in the same order as
// `lanes::body` (the scalar build and the AVX2 build's general block), so the same bits.

/// The most classes [`block`] takes.
pub(in super::super) const MAX_C: usize = 32;

/// Per-call constants of [`block`].
pub(in super::super) struct BlockConsts<'a> {
    /// Label smoothing `eps`, `eps / C` and `sum_j w_j`.
    pub(in super::super) eps: f64,
    pub(in super::super) eps_c: f64,
    pub(in super::super) w_sum: f64,
    /// The ignored class, if any.
    pub(in super::super) ignore: Option<i64>,
    /// Every row's upstream factor when it is the same for all (`ui` is then not read).
    pub(in super::super) uniform_us: Option<f64>,
    /// Class weights (`f64` for `w_y`, `f32` for the gradient and `sum w_j d_j`), weighted
    /// kind only (`C` long).
    pub(in super::super) w64: &'a [f64],
    pub(in super::super) w32: &'a [f32],
}

/// The columns of eight rows of `C` classes (`x`: the `8 C` logits, row-major). `C >= 8`:
/// blocks of eight columns, the last one ending at column `C`, one 8x8 transpose each (an
/// overlap read twice, no mask, nothing outside the rows). `C < 8`: the `C` vectors of the block, each column gathered from
/// them by constant permutes and blends.
#[inline(always)]
fn load_cols<const C: usize>(x: &[f32]) -> [__m256; C] {
    assert!(x.len() == L * C && (2..=MAX_C).contains(&C));
    let p = x.as_ptr();
    // SAFETY: only called inside AVX2 functions of this file; every load reads eight `f32` at
    // `l C`, `l C + C - 8` (`C >= 8`, `l < 8`) or `8 v` (`v < C`), inside the `8 C` of `x`.
    unsafe {
        let zero = _mm256_setzero_ps();
        let mut cols = [zero; C];
        if C >= L {
            // Column blocks at 0, 8, ..., the last one ending at column `C` (overlapping the
            // one before when `C` is not a multiple of 8).
            for b in 0..C.div_ceil(L) {
                let off = if (b + 1) * L > C { C - L } else { b * L };
                let mut r = [zero; L];
                for (l, rl) in r.iter_mut().enumerate() {
                    *rl = _mm256_loadu_ps(p.add(l * C + off));
                }
                for (k, col) in transpose(r).into_iter().enumerate() {
                    cols[off + k] = col;
                }
            }
        } else {
            let mut v = [zero; C];
            for (s, vs) in v.iter_mut().enumerate() {
                *vs = _mm256_loadu_ps(p.add(L * s));
            }
            for (j, col) in cols.iter_mut().enumerate() {
                // Lane `l` of column `j` is element `l C + j` of the block.
                let (mut idx, mut src) = ([0i32; L], [0i32; L]);
                for l in 0..L {
                    idx[l] = ((l * C + j) % L) as i32;
                    src[l] = ((l * C + j) / L) as i32;
                }
                let iv = _mm256_loadu_si256(idx.as_ptr().cast());
                let sv = _mm256_loadu_si256(src.as_ptr().cast());
                let mut cj = zero;
                for (s, &vs) in v.iter().enumerate() {
                    let from =
                        _mm256_castsi256_ps(_mm256_cmpeq_epi32(sv, _mm256_set1_epi32(s as i32)));
                    cj = _mm256_blendv_ps(cj, _mm256_permutevar8x32_ps(vs, iv), from);
                }
                *col = cj;
            }
        }
        cols
    }
}

/// Writes the gradient columns `g` of eight rows of `C` classes to `out` (`8 C`, row-major):
/// the inverse of [`load_cols`] (`C >= 8`: the overlapping columns written twice with the same
/// values).
#[inline(always)]
fn store_cols<const C: usize>(out: &mut [f32], g: &[__m256; C]) {
    assert!(out.len() == L * C && (2..=MAX_C).contains(&C));
    let p = out.as_mut_ptr();
    // SAFETY: as in [`load_cols`], for stores into `out`.
    unsafe {
        if C >= L {
            for b in 0..C.div_ceil(L) {
                let off = if (b + 1) * L > C { C - L } else { b * L };
                let mut a = [_mm256_setzero_ps(); L];
                a.copy_from_slice(&g[off..off + L]);
                for (l, rl) in transpose(a).into_iter().enumerate() {
                    _mm256_storeu_ps(p.add(l * C + off), rl);
                }
            }
        } else {
            for s in 0..C {
                // Lane `k` of output vector `s` is row `(8 s + k) / C`, column `(8 s + k) % C`.
                let (mut row, mut col) = ([0i32; L], [0i32; L]);
                for k in 0..L {
                    row[k] = ((L * s + k) / C) as i32;
                    col[k] = ((L * s + k) % C) as i32;
                }
                let rv = _mm256_loadu_si256(row.as_ptr().cast());
                let cv = _mm256_loadu_si256(col.as_ptr().cast());
                let mut o = _mm256_setzero_ps();
                for (j, &gj) in g.iter().enumerate() {
                    let from =
                        _mm256_castsi256_ps(_mm256_cmpeq_epi32(cv, _mm256_set1_epi32(j as i32)));
                    o = _mm256_blendv_ps(o, _mm256_permutevar8x32_ps(gj, rv), from);
                }
                _mm256_storeu_ps(p.add(L * s), o);
            }
        }
    }
}

/// The sum of `v` as the scalar build adds it: `C < 8` in sequence from 0; else per block of
/// eight columns [`tree`] (padding columns 0), the blocks added in order from 0.
#[inline(always)]
fn sum_cols<const C: usize>(v: &[__m256; C]) -> __m256 {
    // SAFETY: only called inside AVX2 functions of this file (plain vector adds).
    unsafe {
        let zero = _mm256_setzero_ps();
        let mut s = zero;
        if C < L {
            for &vj in v {
                s = _mm256_add_ps(s, vj);
            }
        } else {
            for b in 0..C.div_ceil(L) {
                let mut blk = [zero; L];
                for k in 0..L.min(C - b * L) {
                    blk[k] = v[b * L + k];
                }
                s = _mm256_add_ps(s, tree(&blk));
            }
        }
        s
    }
}

/// `f64` lanes `0..4` and `4..8` of `v`.
#[inline(always)]
fn widen(v: __m256) -> [__m256d; 2] {
    // SAFETY: only called inside AVX2 functions of this file.
    unsafe {
        [
            _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
        ]
    }
}

/// `[lo, hi]` rounded to `f32` (`as f32`) in one vector.
#[inline(always)]
fn narrow(v: [__m256d; 2]) -> __m256 {
    // SAFETY: only called inside AVX2 functions of this file.
    unsafe {
        _mm256_insertf128_ps::<1>(
            _mm256_castps128_ps256(_mm256_cvtpd_ps(v[0])),
            _mm256_cvtpd_ps(v[1]),
        )
    }
}

/// The low halves of the eight `i64` lanes of `a` (lanes 0-3) and `b` (lanes 4-7) as `i32`.
#[inline(always)]
fn pack_lo(a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: only called inside AVX2 functions of this file.
    unsafe {
        let lo = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        _mm256_permute2x128_si256::<0x20>(
            _mm256_permutevar8x32_epi32(a, lo),
            _mm256_permutevar8x32_epi32(b, lo),
        )
    }
}

/// `short::ln_split(n0, s)` on four lanes (the same operations, so the same bits).
#[inline(always)]
fn ln_split4(n0: __m256d, s: __m256d) -> __m256d {
    const SQRT_HALF_BITS: u64 = 0x3fe6_a09e_667f_3bcd;
    // SAFETY: only called inside AVX2 functions of this file.
    unsafe {
        let pd = _mm256_set1_pd;
        let one = pd(1.0);
        let hi = _mm256_add_pd(n0, s);
        let ix = _mm256_add_epi64(
            _mm256_castpd_si256(hi),
            _mm256_set1_epi64x(0x3ff0_0000_0000_0000u64.wrapping_sub(SQRT_HALF_BITS) as i64),
        );
        let kb = _mm256_or_si256(
            _mm256_srli_epi64::<52>(ix),
            _mm256_set1_epi64x(0x4330_0000_0000_0000),
        );
        let k = _mm256_sub_pd(
            _mm256_castsi256_pd(kb),
            pd(4_503_599_627_370_496.0 + 1023.0),
        );
        let t = _mm256_castsi256_pd(_mm256_add_epi64(
            _mm256_and_si256(ix, _mm256_set1_epi64x(0x000f_ffff_ffff_ffff)),
            _mm256_set1_epi64x(SQRT_HALF_BITS as i64),
        ));
        let k0 = _mm256_cmp_pd::<_CMP_EQ_OQ>(k, _mm256_setzero_pd());
        let num = _mm256_blendv_pd(_mm256_sub_pd(t, one), s, k0);
        let f = _mm256_div_pd(num, _mm256_add_pd(t, one));
        let f2 = _mm256_mul_pd(f, f);
        let mut p = _mm256_add_pd(pd(1.0 / 9.0), _mm256_mul_pd(f2, pd(1.0 / 11.0)));
        p = _mm256_add_pd(pd(1.0 / 7.0), _mm256_mul_pd(f2, p));
        p = _mm256_add_pd(pd(1.0 / 5.0), _mm256_mul_pd(f2, p));
        p = _mm256_add_pd(pd(1.0 / 3.0), _mm256_mul_pd(f2, p));
        p = _mm256_add_pd(one, _mm256_mul_pd(f2, p));
        _mm256_add_pd(
            _mm256_mul_pd(k, pd(std::f64::consts::LN_2)),
            _mm256_mul_pd(_mm256_mul_pd(pd(2.0), f), p),
        )
    }
}

/// `NB` blocks of eight full rows of `C` classes each (`x`: their `8 NB C` logits; `t`: their
/// targets; `ui`: their upstream factors): writes the `8 NB` losses (0 for an ignored row) and
/// returns each block's gradient columns (`grad`; the ignored rows' lanes 0), or returns `None`
/// and writes nothing when a row that is not ignored has a non-finite logit or upstream factor
/// (the caller then runs the blocks another way). As `lanes::body` row by row. Each step runs
/// for every block before the next step: the blocks' long dependency chains (the `exp`, then
/// the `f64` division and polynomial of `ln S`) overlap instead of waiting one after the other.
///
/// # Safety
/// AVX2 + FMA available (always inlined, into the callers' AVX2 or AVX-512 builds: no target
/// features of its own, no closures). Panics (before any write) unless `x.len() == 8 NB C`, `t.len() == 8
/// NB`, `ui.len() == 8 NB`, `losses.len() == 8 NB`, `2 <= C <= MAX_C` and, weighted, `k.w64`,
/// `k.w32` hold `C` weights.
#[inline(always)]
pub(in super::super) unsafe fn block<K: KindMarker, const C: usize, const NB: usize>(
    x: &[f32],
    t: &[i64],
    ui: &[f64],
    k: &BlockConsts<'_>,
    losses: &mut [f64],
    grad: bool,
) -> Option<[[__m256; C]; NB]> {
    let rows = L * NB;
    assert!(x.len() == rows * C && t.len() == rows && losses.len() == rows);
    assert!(k.uniform_us.is_some() || ui.len() == rows);
    if K::WEIGHTED {
        assert!(k.w64.len() >= C && k.w32.len() >= C);
    }
    // SAFETY: AVX2 + FMA (this function's contract, and the callers' builds); the loads and
    // stores below stay inside the slices checked above.
    unsafe {
        let zero = _mm256_setzero_ps();
        let one = _mm256_set1_ps(1.0);
        let mut cols = [[zero; C]; NB];
        for (b, cb) in cols.iter_mut().enumerate() {
            *cb = load_cols::<C>(&x[b * L * C..(b + 1) * L * C]);
        }
        let (mut m, mut fin) = ([zero; NB], [zero; NB]);
        for b in 0..NB {
            m[b] = cols[b][0];
            for &cj in &cols[b] {
                m[b] = _mm256_max_ps(cj, m[b]);
                fin[b] = _mm256_add_ps(fin[b], _mm256_mul_ps(cj, zero));
            }
        }
        let mut e = [[zero; C]; NB];
        let (mut sa, mut sb, mut sz) = ([zero; NB], [zero; NB], [zero; NB]);
        for b in 0..NB {
            let (mut zt, mut eb) = ([zero; C], [zero; C]);
            for j in 0..C {
                let d = _mm256_sub_ps(cols[b][j], m[b]);
                e[b][j] = exp8_nonpos(d);
                eb[j] = _mm256_and_ps(e[b][j], _mm256_cmp_ps::<_CMP_LT_OQ>(e[b][j], one));
                zt[j] = if K::WEIGHTED {
                    _mm256_mul_ps(_mm256_set1_ps(k.w32[j]), d)
                } else {
                    d
                };
            }
            (sa[b], sb[b], sz[b]) = (sum_cols(&e[b]), sum_cols(&eb), sum_cols(&zt));
        }
        // The rows' targets (low halves of the `i64`, in range: validated by the front door, and
        // clamped all the same), ignored lanes as class 0; `w_y` gathered (weighted).
        let (mut yv, mut ign) = ([_mm256_setzero_si256(); NB], [zero; NB]);
        let mut wy = [[_mm256_set1_pd(1.0); 2]; NB];
        for b in 0..NB {
            // SAFETY: `t` holds `8 NB` `i64` (checked above); the gathers read `w64[y]` with `y`
            // clamped to `0..C` (`w64` holds `C`, checked above).
            {
                let t0 = _mm256_loadu_si256(t.as_ptr().add(L * b).cast());
                let t1 = _mm256_loadu_si256(t.as_ptr().add(L * b + 4).cast());
                let (i0, i1) = match k.ignore {
                    Some(ig) => (
                        _mm256_cmpeq_epi64(t0, _mm256_set1_epi64x(ig)),
                        _mm256_cmpeq_epi64(t1, _mm256_set1_epi64x(ig)),
                    ),
                    None => (_mm256_setzero_si256(), _mm256_setzero_si256()),
                };
                let ign_i = pack_lo(i0, i1);
                let y = _mm256_andnot_si256(ign_i, pack_lo(t0, t1));
                yv[b] = _mm256_min_epi32(
                    _mm256_max_epi32(y, _mm256_setzero_si256()),
                    _mm256_set1_epi32(C as i32 - 1),
                );
                if K::WEIGHTED {
                    let wp = k.w64.as_ptr();
                    wy[b] = [
                        _mm256_i32gather_pd::<8>(wp, _mm256_castsi256_si128(yv[b])),
                        _mm256_i32gather_pd::<8>(wp, _mm256_extracti128_si256::<1>(yv[b])),
                    ];
                }
                ign[b] = _mm256_castsi256_ps(ign_i);
            }
        }
        let (mut zy, mut ey) = ([zero; NB], [zero; NB]);
        let mut eq = [[zero; C]; NB];
        for b in 0..NB {
            for j in 0..C {
                eq[b][j] =
                    _mm256_castsi256_ps(_mm256_cmpeq_epi32(yv[b], _mm256_set1_epi32(j as i32)));
                zy[b] = _mm256_blendv_ps(zy[b], cols[b][j], eq[b][j]);
                ey[b] = _mm256_blendv_ps(ey[b], e[b][j], eq[b][j]);
            }
        }
        let pd = _mm256_set1_pd;
        let (onep, om) = (pd(1.0), pd(1.0 - k.eps));
        let (eps_c, w_sum) = (pd(k.eps_c), pd(k.w_sum));
        let ra_c = pd(k.eps_c * k.w_sum);
        let inf = pd(f64::INFINITY);
        let mut loss = [[pd(0.0); 2]; NB];
        let (mut av, mut bv, mut gv) = ([[pd(0.0); 2]; NB], [[pd(0.0); 2]; NB], [[pd(0.0); 2]; NB]);
        let mut bad = 0;
        for b in 0..NB {
            // `S = n0 + s'` (one dominant maximum: `s'` the entries below 1), in `f64`.
            let conf = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_LT_OQ>(sa[b], _mm256_set1_ps(1.5)),
                _mm256_cmp_ps::<_CMP_GT_OQ>(sa[b], zero),
            );
            let n0 = widen(_mm256_and_ps(conf, one));
            let s1 = widen(_mm256_blendv_ps(sa[b], sb[b], conf));
            let (zyd, md, zd, eyd) = (widen(zy[b]), widen(m[b]), widen(sz[b]), widen(ey[b]));
            for h in 0..2 {
                let w = wy[b][h];
                // SAFETY: lanes `4 h..4 h + 4` of block `b` (`ui` holds `8 NB`, checked above).
                let u = match k.uniform_us {
                    Some(v) => pd(v),
                    None => _mm256_loadu_pd(ui[L * b + 4 * h..].as_ptr()),
                };
                let lg = ln_split4(n0[h], s1[h]);
                let inv = _mm256_div_pd(onep, _mm256_add_pd(n0[h], s1[h]));
                let nll = _mm256_mul_pd(w, _mm256_sub_pd(lg, _mm256_sub_pd(zyd[h], md[h])));
                loss[b][h] = if k.eps == 0.0 {
                    nll
                } else {
                    _mm256_add_pd(
                        _mm256_mul_pd(om, nll),
                        _mm256_mul_pd(eps_c, _mm256_sub_pd(_mm256_mul_pd(w_sum, lg), zd[h])),
                    )
                };
                let ra = _mm256_add_pd(_mm256_mul_pd(om, w), ra_c);
                let p = _mm256_mul_pd(eyd[h], inv);
                let top = _mm256_and_pd(
                    _mm256_cmp_pd::<_CMP_EQ_OQ>(eyd[h], onep),
                    _mm256_cmp_pd::<_CMP_EQ_OQ>(n0[h], onep),
                );
                let neg_s1 = _mm256_xor_pd(s1[h], pd(-0.0));
                let pm1 = _mm256_blendv_pd(_mm256_sub_pd(p, onep), _mm256_mul_pd(neg_s1, inv), top);
                let g = _mm256_add_pd(
                    _mm256_mul_pd(_mm256_mul_pd(om, w), pm1),
                    _mm256_mul_pd(eps_c, _mm256_sub_pd(_mm256_mul_pd(w_sum, p), w)),
                );
                av[b][h] = _mm256_mul_pd(_mm256_mul_pd(u, ra), inv);
                bv[b][h] = _mm256_mul_pd(u, eps_c);
                gv[b][h] = _mm256_mul_pd(u, g);
                // `!(u.is_finite() && ra.is_finite())`, for the rows that are not ignored.
                let finite = _mm256_and_pd(
                    _mm256_cmp_pd::<_CMP_LT_OQ>(_mm256_andnot_pd(pd(-0.0), u), inf),
                    _mm256_cmp_pd::<_CMP_LT_OQ>(_mm256_andnot_pd(pd(-0.0), ra), inf),
                );
                let kept = !_mm256_movemask_ps(ign[b]) >> (4 * h);
                bad |= !_mm256_movemask_pd(finite) & kept & 0xf;
            }
            let fin_bad = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(fin[b], zero));
            bad |= fin_bad & !_mm256_movemask_ps(ign[b]);
        }
        if bad != 0 {
            return None;
        }
        for b in 0..NB {
            // Ignored rows: loss 0 (the mask widened to `f64` lanes).
            let ign_i = _mm256_castps_si256(ign[b]);
            let halves = [
                _mm256_castsi256_si128(ign_i),
                _mm256_extracti128_si256::<1>(ign_i),
            ];
            for h in 0..2 {
                let mk = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(halves[h]));
                // SAFETY: lanes `4 h..4 h + 4` of block `b` (`losses` holds `8 NB`, checked
                // above).
                _mm256_storeu_pd(
                    losses[L * b + 4 * h..].as_mut_ptr(),
                    _mm256_andnot_pd(mk, loss[b][h]),
                );
            }
        }
        let mut out = [[zero; C]; NB];
        if !grad {
            return Some(out);
        }
        for b in 0..NB {
            let (a8, b8, g8) = (narrow(av[b]), narrow(bv[b]), narrow(gv[b]));
            for j in 0..C {
                let gj = if K::WEIGHTED {
                    _mm256_fnmadd_ps(b8, _mm256_set1_ps(k.w32[j]), _mm256_mul_ps(a8, e[b][j]))
                } else {
                    _mm256_fmsub_ps(a8, e[b][j], b8)
                };
                out[b][j] = _mm256_andnot_ps(ign[b], _mm256_blendv_ps(gj, g8, eq[b][j]));
            }
        }
        Some(out)
    }
}

/// [`store_cols`] for the callers in `lanes.rs`.
///
/// # Safety
/// AVX2 + FMA available; panics unless `out.len() == 8 C`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe fn store_block<const C: usize>(out: &mut [f32], g: &[__m256; C]) {
    store_cols::<C>(out, g)
}
