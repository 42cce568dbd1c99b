//! Pass 2 of the long-row path with AVX2 + FMA: the gradient `a e_j - B_j` of one chunk, as a
//! call ([`pass2_dispatch`]) or as a resumable job ([`P2`]) that pass 1 of the next row
//! advances between its own vectors (`avx2::pass1` with `JOB`); with the softcap's chain rule
//! (`CE-10`) as well ([`P2::new_chain`]: `(a e_j - B_j) d_j`).

use super::super::plan::{Kind, KindMarker, with_kind};
use super::avx2::wq8;
use std::arch::x86_64::*;

/// # Safety
/// As `kernels::pass2`, with AVX2 + FMA available.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pass2_dispatch(
    kind: Kind,
    e: *const f32,
    out: *mut f32,
    n: usize,
    nt: bool,
    a: f32,
    b: f32,
    bq: f32,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
) {
    // SAFETY: (all arms) forwarded contract of `kernels::pass2`.
    unsafe {
        with_kind!(kind, |K| if nt {
            pass2::<K, true>(e, out, n, a, b, bq, w, q, qa, qb)
        } else {
            pass2::<K, false>(e, out, n, a, b, bq, w, q, qa, qb)
        })
    }
}

/// `w_j q'_j` for eight lanes at `j`.
///
/// Eight gradient lanes at `i`: `a e_i - B_i`.
///
/// # Safety
/// `e` and (as used by `K`) `w` / `q` hold at least `i + 8` readable values.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn grad8<K: KindMarker>(
    e: *const f32,
    wp: *const f32,
    qp: *const f32,
    i: usize,
    av: __m256,
    bv: __m256,
    bqv: __m256,
    qav: __m256,
    qbv: __m256,
) -> __m256 {
    // SAFETY: caller guarantees `i + 8` readable values in the used buffers.
    unsafe {
        let v = _mm256_loadu_ps(e.add(i));
        match K::KIND {
            Kind::Plain => _mm256_fmsub_ps(av, v, bv),
            Kind::Weighted => {
                _mm256_fnmadd_ps(bv, _mm256_loadu_ps(wp.add(i)), _mm256_mul_ps(av, v))
            }
            _ => _mm256_fnmadd_ps(bqv, wq8::<K>(i, wp, qp, qav, qbv), _mm256_mul_ps(av, v)),
        }
    }
}

/// `cnt` (1..=8) gradient lanes at `i`, as [`grad8`], with masked loads and store.
///
/// # Safety
/// `e` and (as used by `K`) `w` / `q` hold at least `i + cnt` readable values and `out`
/// `i + cnt` writable ones; `e` and `out` are equal or disjoint.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn grad_part<K: KindMarker>(
    e: *const f32,
    out: *mut f32,
    wp: *const f32,
    qp: *const f32,
    i: usize,
    cnt: usize,
    av: __m256,
    bv: __m256,
    bqv: __m256,
    qav: __m256,
    qbv: __m256,
) {
    let mask = part_mask(cnt);
    // SAFETY: the masked loads and store touch lanes `0..cnt` only, all inside the
    // buffers by the caller's contract (masked-off lanes are never accessed).
    unsafe {
        let g = grad_masked::<K>(e, wp, qp, i, mask, av, bv, bqv, qav, qbv);
        _mm256_maskstore_ps(out.add(i), mask, g);
    }
}

/// The mask of lanes `0..cnt` (`cnt` at most 8).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn part_mask(cnt: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(cnt as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// The gradient lanes at `i` selected by `mask` (lanes `0..cnt`), as [`grad8`], with masked
/// loads (0 in the other lanes' inputs).
///
/// # Safety
/// `e` and (as used by `K`) `w` / `q` hold readable values at the selected lanes.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn grad_masked<K: KindMarker>(
    e: *const f32,
    wp: *const f32,
    qp: *const f32,
    i: usize,
    mask: __m256i,
    av: __m256,
    bv: __m256,
    bqv: __m256,
    qav: __m256,
    qbv: __m256,
) -> __m256 {
    // SAFETY: masked-off lanes are never accessed; the others are readable (contract).
    unsafe {
        let v = _mm256_maskload_ps(e.add(i), mask);
        match K::KIND {
            Kind::Plain => _mm256_fmsub_ps(av, v, bv),
            Kind::Weighted => _mm256_fnmadd_ps(
                bv,
                _mm256_maskload_ps(wp.add(i), mask),
                _mm256_mul_ps(av, v),
            ),
            _ => {
                let qv = _mm256_fmadd_ps(qav, _mm256_maskload_ps(qp.add(i), mask), qbv);
                let c = if matches!(K::KIND, Kind::Probs) {
                    qv
                } else {
                    _mm256_mul_ps(qv, _mm256_maskload_ps(wp.add(i), mask))
                };
                _mm256_fnmadd_ps(bqv, c, _mm256_mul_ps(av, v))
            }
        }
    }
}

/// Pass 2 of one chunk as a resumable job: [`P2::new`] writes the head (up to the first
/// 64-byte line of `out` when streaming), [`P2::step`] one block of 16 elements (a whole
/// line when streaming), [`P2::finish`] the rest. Pass 1 of the next row runs the steps
/// between its own vectors, so the gradient stores spread over its `exp` work.
///
/// Invariant (upheld by `new`'s contract): `e` is valid for `n` reads and `out` for `n`
/// writes (equal or disjoint), `wp` / `qp` for `n` reads when `K` uses them; `d`, when not
/// null (a chain job, [`P2::new_chain`]), for `n` reads.
#[derive(Clone, Copy)]
pub(super) struct P2 {
    e: *const f32,
    out: *mut f32,
    /// `CE-10`'s `dz'/dz` of a chain job (null otherwise): the gradient is `(a e_j - B_j) d_j`.
    d: *const f32,
    pub(super) n: usize,
    pub(super) pos: usize,
    wp: *const f32,
    qp: *const f32,
    av: __m256,
    bv: __m256,
    bqv: __m256,
    qav: __m256,
    qbv: __m256,
}

impl P2 {
    /// A job that does nothing (`n = 0`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn none() -> P2 {
        let z = _mm256_setzero_ps();
        P2 {
            e: std::ptr::null(),
            out: std::ptr::null_mut(),
            d: std::ptr::null(),
            n: 0,
            pos: 0,
            wp: std::ptr::null(),
            qp: std::ptr::null(),
            av: z,
            bv: z,
            bqv: z,
            qav: z,
            qbv: z,
        }
    }

    /// Starts the job and writes the head.
    ///
    /// # Safety
    /// As `kernels::pass2` (`e`, `out`, `w`, `q` for `n` elements), AVX2 + FMA
    /// available.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn new<K: KindMarker, const NT: bool>(
        e: *const f32,
        out: *mut f32,
        n: usize,
        a: f32,
        b: f32,
        bq: f32,
        w: &[f32],
        q: &[f32],
        qa: f32,
        qb: f32,
    ) -> P2 {
        if K::WEIGHTED {
            assert!(w.len() >= n);
        }
        if K::PROBS {
            assert!(q.len() >= n);
        }
        let mut p = P2 {
            e,
            out,
            d: std::ptr::null(),
            n,
            pos: 0,
            wp: w.as_ptr(),
            qp: q.as_ptr(),
            av: _mm256_set1_ps(a),
            bv: _mm256_set1_ps(b),
            bqv: _mm256_set1_ps(bq),
            qav: _mm256_set1_ps(qa),
            qbv: _mm256_set1_ps(qb),
        };
        if NT {
            // Streaming stores only for whole 64-byte lines of `out`: a line shared
            // with the neighbouring call (row or chunk boundary) would be written by
            // two streaming stores far apart in time, and the write-combining buffer
            // flushes such a half line as a slow partial write. Those lines get
            // ordinary stores (from both sides, so every line is written by one kind
            // of store only).
            let mis = (out as usize % 64) / 4;
            let head = if mis == 0 { 0 } else { (16 - mis).min(n) };
            while p.pos < head {
                let cnt = (head - p.pos).min(8);
                // SAFETY: `pos + cnt <= head <= n` (type invariant for the buffers).
                unsafe { p.part::<K>(cnt) };
            }
        }
        p
    }

    /// `cnt` (1..=8) lanes at `pos` with masked loads and stores, the same formula as
    /// the full vectors (so every element's bits are independent of where the vector
    /// boundaries fall).
    ///
    /// # Safety
    /// `pos + cnt <= n`; AVX2 + FMA available.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn part<K: KindMarker>(&mut self, cnt: usize) {
        let p = &*self;
        // SAFETY: `pos + cnt <= n` (caller); the masked loads and store touch only
        // those `cnt` elements of `e`, `w`, `q` (when used) and `out` (type
        // invariant), and all lanes are loaded before the store.
        unsafe {
            grad_part::<K>(
                p.e, p.out, p.wp, p.qp, p.pos, cnt, p.av, p.bv, p.bqv, p.qav, p.qbv,
            )
        };
        self.pos += cnt;
    }

    /// One block of 16 elements, if that many remain.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn step<K: KindMarker, const NT: bool>(&mut self) {
        let (i, p) = (self.pos, &*self);
        if i + 16 > p.n {
            return;
        }
        if !NT {
            // SAFETY: `i == pos` and `i + 16 <= n`, checked just above.
            unsafe { self.step_at::<K>(i) };
            return;
        }
        // SAFETY: `i + 16 <= n`: `e` readable, `out` writable, `w` / `q` readable
        // there (type invariant); `out + i` is 64-byte aligned (the head was peeled in
        // `new`, and `pos` advances by 16 floats since).
        unsafe {
            let g0 = grad8::<K>(p.e, p.wp, p.qp, i, p.av, p.bv, p.bqv, p.qav, p.qbv);
            let g1 = grad8::<K>(p.e, p.wp, p.qp, i + 8, p.av, p.bv, p.bqv, p.qav, p.qbv);
            _mm256_stream_ps(p.out.add(i), g0);
            _mm256_stream_ps(p.out.add(i + 8), g1);
        }
        self.pos = i + 16;
    }

    /// The block of 16 elements at `i` (which must be `pos`), without the bounds
    /// check of [`P2::step`]; ordinary stores.
    ///
    /// # Safety
    /// `i == pos` and `i + 16 <= n`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn step_at<K: KindMarker>(&mut self, i: usize) {
        debug_assert!(i == self.pos && i + 16 <= self.n);
        let p = &*self;
        // Start the read-for-ownership of the gradient line one chunk ahead, so the
        // stores do not wait on memory (paired A/B: ~9% less time per call at
        // 1024x32000 and 16384x1000; `prefetchw` or two chunks ahead: no better).
        // A prefetch never faults; the address may lie past the buffer.
        _mm_prefetch::<_MM_HINT_T0>(p.out.wrapping_add(p.n + i) as *const i8);
        // SAFETY: `i + 16 <= n` (caller): `e` readable, `out` writable, `w` / `q`
        // readable there (type invariant).
        unsafe {
            let g0 = grad8::<K>(p.e, p.wp, p.qp, i, p.av, p.bv, p.bqv, p.qav, p.qbv);
            let g1 = grad8::<K>(p.e, p.wp, p.qp, i + 8, p.av, p.bv, p.bqv, p.qav, p.qbv);
            _mm256_storeu_ps(p.out.add(i), g0);
            _mm256_storeu_ps(p.out.add(i + 8), g1);
        }
        self.pos = i + 16;
    }

    /// Writes everything left.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn finish<K: KindMarker, const NT: bool>(&mut self) {
        while self.pos + 16 <= self.n {
            self.step::<K, NT>();
        }
        while self.pos + 8 <= self.n {
            let (i, p) = (self.pos, &*self);
            // SAFETY: `i + 8 <= n` (type invariant for the buffers).
            unsafe {
                let g = grad8::<K>(p.e, p.wp, p.qp, i, p.av, p.bv, p.bqv, p.qav, p.qbv);
                _mm256_storeu_ps(p.out.add(i), g);
            }
            self.pos = i + 8;
        }
        if self.pos < self.n {
            let cnt = self.n - self.pos;
            // SAFETY: `pos + cnt == n`.
            unsafe { self.part::<K>(cnt) };
        }
    }

    /// A chain job (`CE-10`): [`P2::new`] without streaming stores, whose blocks write `(a e_j -
    /// B_j) d_j` ([`P2::step_at_chain`], [`P2::finish_chain`]).
    ///
    /// # Safety
    /// As [`P2::new`], and `d` is valid for `n` reads.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn new_chain<K: KindMarker>(
        e: *const f32,
        d: *const f32,
        out: *mut f32,
        n: usize,
        a: f32,
        b: f32,
        bq: f32,
        w: &[f32],
        q: &[f32],
        qa: f32,
        qb: f32,
    ) -> P2 {
        // SAFETY: forwarded contract (without streaming stores nothing is written here).
        let p = unsafe { P2::new::<K, false>(e, out, n, a, b, bq, w, q, qa, qb) };
        P2 { d, ..p }
    }

    /// [`P2::step_at`] of a chain job: each gradient lane times its `d_j` (one `f32` product
    /// after the two roundings of `a e_j - B_j`).
    ///
    /// # Safety
    /// `i == pos`, `i + 16 <= n`, and this is a chain job.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn step_at_chain<K: KindMarker>(&mut self, i: usize) {
        debug_assert!(i == self.pos && i + 16 <= self.n && !self.d.is_null());
        let p = &*self;
        // As `step_at`: the gradient's lines prefetched one chunk ahead (a prefetch never
        // faults; the address may lie past the buffer).
        _mm_prefetch::<_MM_HINT_T0>(p.out.wrapping_add(p.n + i) as *const i8);
        // SAFETY: `i + 16 <= n` (caller): `e`, `d`, `w` / `q` (as used) readable and `out`
        // writable there (type invariant, chain job); each element is read before it is
        // written (`e` may be `out`).
        unsafe {
            let g0 = grad8::<K>(p.e, p.wp, p.qp, i, p.av, p.bv, p.bqv, p.qav, p.qbv);
            let g1 = grad8::<K>(p.e, p.wp, p.qp, i + 8, p.av, p.bv, p.bqv, p.qav, p.qbv);
            let d0 = _mm256_loadu_ps(p.d.add(i));
            let d1 = _mm256_loadu_ps(p.d.add(i + 8));
            _mm256_storeu_ps(p.out.add(i), _mm256_mul_ps(g0, d0));
            _mm256_storeu_ps(p.out.add(i + 8), _mm256_mul_ps(g1, d1));
        }
        self.pos = i + 16;
    }

    /// [`P2::finish`] of a chain job: the blocks of 16 left, then 8, then a masked tail, each
    /// element with the same operations.
    ///
    /// # Safety
    /// This is a chain job.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn finish_chain<K: KindMarker>(&mut self) {
        while self.pos + 16 <= self.n {
            // SAFETY: `pos + 16 <= n`; a chain job (caller).
            unsafe { self.step_at_chain::<K>(self.pos) };
        }
        let (i, p) = (self.pos, &*self);
        if i + 8 <= p.n {
            // SAFETY: `i + 8 <= n`: as `step_at_chain`.
            unsafe {
                let g = grad8::<K>(p.e, p.wp, p.qp, i, p.av, p.bv, p.bqv, p.qav, p.qbv);
                let d = _mm256_loadu_ps(p.d.add(i));
                _mm256_storeu_ps(p.out.add(i), _mm256_mul_ps(g, d));
            }
            self.pos = i + 8;
        }
        let (i, p) = (self.pos, &*self);
        if i < p.n {
            let mask = part_mask(p.n - i);
            // SAFETY: the masked loads and store touch lanes `0..n - i` only, inside the
            // buffers (type invariant, chain job).
            unsafe {
                let g = grad_masked::<K>(p.e, p.wp, p.qp, i, mask, p.av, p.bv, p.bqv, p.qav, p.qbv);
                let d = _mm256_maskload_ps(p.d.add(i), mask);
                _mm256_maskstore_ps(p.out.add(i), mask, _mm256_mul_ps(g, d));
            }
            self.pos = p.n;
        }
    }
}

/// # Safety
/// As `kernels::pass2`, with AVX2 + FMA available.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn pass2<K: KindMarker, const NT: bool>(
    e: *const f32,
    out: *mut f32,
    n: usize,
    a: f32,
    b: f32,
    bq: f32,
    w: &[f32],
    q: &[f32],
    qa: f32,
    qb: f32,
) {
    // SAFETY: forwarded contract.
    let mut p = unsafe { P2::new::<K, NT>(e, out, n, a, b, bq, w, q, qa, qb) };
    p.finish::<K, NT>();
}
