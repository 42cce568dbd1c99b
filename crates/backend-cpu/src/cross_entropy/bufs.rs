//! The borrowed buffers of one task ([`Bufs`]) and the raw view of one row ([`RowBuf`]) that
//! the kernels read and write through.

/// Raw view of one row (or piece of a row): the logits `src`, the buffer `e` where pass 1
/// stores the exponentials, and the gradient `out`.
///
/// Invariant (upheld by [`RowBuf::new`] and [`RowBuf::sub`], the only constructors; the
/// fields are read, never written, outside this file): every non-null pointer is valid
/// for `len` elements for the lifetime `'a` (it comes from a slice borrowed for `'a`), and
/// `src`, `e`, `out` are pairwise either equal or non-overlapping. `e` and `out` are null when
/// no gradient is wanted.
pub(super) struct RowBuf<'a> {
    pub(super) src: *const f32,
    pub(super) e: *mut f32,
    pub(super) out: *mut f32,
    pub(super) len: usize,
    /// Write `out` with non-temporal stores (large outputs).
    pub(super) nt: bool,
    _borrow: std::marker::PhantomData<&'a mut [f32]>,
}

impl<'a> RowBuf<'a> {
    /// The view of `bufs`; `scratch` (at least `bufs.len()` long) receives the exponentials
    /// instead of the gradient buffer when there is a separate gradient buffer.
    pub(super) fn new(bufs: &'a mut Bufs<'_>, scratch: Option<&'a mut [f32]>, nt: bool) -> Self {
        let len = bufs.len();
        let (src, e, out, nt) = match bufs {
            Bufs::Split(x, g) => {
                assert_eq!(x.len(), g.len());
                match scratch {
                    Some(sc) => {
                        let sc = &mut sc[..len];
                        (x.as_ptr(), sc.as_mut_ptr(), g.as_mut_ptr(), nt)
                    }
                    None => (x.as_ptr(), g.as_mut_ptr(), g.as_mut_ptr(), false),
                }
            }
            Bufs::InPlace(g) => {
                let p = g.as_mut_ptr();
                (p as *const f32, p, p, false)
            }
            Bufs::ReadOnly(x) => (
                x.as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                false,
            ),
        };
        RowBuf {
            src,
            e,
            out,
            len,
            nt,
            _borrow: std::marker::PhantomData,
        }
    }

    pub(super) fn has_grad(&self) -> bool {
        !self.out.is_null()
    }

    /// Logit `j` (read before pass 1 writes anything).
    pub(super) fn logit(&self, j: usize) -> f32 {
        assert!(j < self.len);
        // SAFETY: `j < len` and `src` is valid for `len` reads (type invariant).
        unsafe { *self.src.add(j) }
    }

    /// The stored exponential `j` (after pass 1, before pass 2).
    pub(super) fn e_at(&self, j: usize) -> f32 {
        assert!(j < self.len && !self.e.is_null());
        // SAFETY: `j < len`, `e` non-null and valid for `len` elements (type invariant).
        unsafe { *self.e.add(j) }
    }

    /// Gradient entry `j` as written so far.
    pub(super) fn out_at(&self, j: usize) -> f32 {
        assert!(j < self.len && !self.out.is_null());
        // SAFETY: `j < len`, `out` non-null and valid for `len` elements (type invariant).
        unsafe { *self.out.add(j) }
    }

    /// Writes gradient entry `j`.
    pub(super) fn set_out(&mut self, j: usize, v: f32) {
        if self.out.is_null() {
            return;
        }
        assert!(j < self.len);
        // SAFETY: `j < len`, `out` valid for `len` writes (type invariant); no reference to
        // the buffer is alive while `self` is borrowed mutably.
        unsafe { *self.out.add(j) = v };
    }

    /// The view of elements `off..off + n`.
    pub(super) fn sub(&self, off: usize, n: usize) -> RowBuf<'_> {
        assert!(off + n <= self.len);
        let at = |p: *mut f32| {
            if p.is_null() {
                p
            } else {
                // SAFETY: `off <= len` and `p` is valid for `len` elements (type invariant), so
                // `p + off` stays inside (or one past) the same allocation.
                unsafe { p.add(off) }
            }
        };
        RowBuf {
            // SAFETY: as above; `src` is never null.
            src: unsafe { self.src.add(off) },
            e: at(self.e),
            out: at(self.out),
            len: n,
            nt: self.nt,
            _borrow: std::marker::PhantomData,
        }
    }

    /// Fills the gradient with `v`.
    pub(super) fn fill_out(&mut self, v: f32) {
        for j in 0..self.len {
            self.set_out(j, v);
        }
    }
}

/// Disjoint borrowed buffers of one task.
#[derive(Debug)]
pub(super) enum Bufs<'a> {
    /// Logits and a separate gradient buffer of the same length.
    Split(&'a [f32], &'a mut [f32]),
    /// The gradient is written over the logits.
    InPlace(&'a mut [f32]),
    /// No gradient.
    ReadOnly(&'a [f32]),
}

impl<'a> Bufs<'a> {
    pub(super) fn len(&self) -> usize {
        match self {
            Bufs::Split(x, _) | Bufs::ReadOnly(x) => x.len(),
            Bufs::InPlace(g) => g.len(),
        }
    }

    pub(super) fn has_grad(&self) -> bool {
        !matches!(self, Bufs::ReadOnly(_))
    }

    /// Splits into consecutive pieces of `piece` elements (the last may be shorter).
    pub(super) fn pieces(self, piece: usize) -> Vec<Bufs<'a>> {
        let piece = piece.max(1);
        match self {
            Bufs::Split(x, g) => x
                .chunks(piece)
                .zip(g.chunks_mut(piece))
                .map(|(x, g)| Bufs::Split(x, g))
                .collect(),
            Bufs::InPlace(g) => g.chunks_mut(piece).map(Bufs::InPlace).collect(),
            Bufs::ReadOnly(x) => x.chunks(piece).map(Bufs::ReadOnly).collect(),
        }
    }

    /// Fills the gradient part (if any) with `v`.
    pub(super) fn fill_grad(&mut self, v: f32) {
        match self {
            Bufs::Split(_, g) | Bufs::InPlace(g) => g.fill(v),
            Bufs::ReadOnly(_) => {}
        }
    }
}
