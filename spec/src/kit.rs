//! The test kit: what a test of the spec (and, later, of a backend) needs besides the loss
//! itself, in one place.
//!
//! - [`Rng`]: the deterministic generator of the random cases (re-exported from
//!   [`crate::random`]).
//! - Closeness: [`assert_close`] and [`check_close`] compare a tensor with the expected one by a
//!   [`Tolerance`], i.e. by one of the `TOL-*` rules of `spec/formulas/tolerance.md` (the
//!   constants of [`crate::tolerance`]); these are the only figures for comparing an
//!   implementation with expected values. [`close`] and [`rel_error`] are the scalar building
//!   blocks, for checks that `TOL-*` does not cover (a finite-difference estimate, an algebraic
//!   identity between two formulas), where the test states its own bound next to its reason.
//! - Bits: [`same_bits_f32`] / [`same_bits_f64`] (and their `assert_` forms) compare two slices
//!   bit for bit, as `TOL-3` (determinism) requires, and name the first differing index.
//! - Coverage: [`covers!`](crate::covers) marks the formula IDs a test asserts (see
//!   `spec/formulas/README.md`, "Formula IDs").
//!
//! ```
//! use smoothloss_spec::Tolerance;
//! use smoothloss_spec::kit;
//!
//! kit::assert_close(&[1.0 + 1e-12, f64::NAN], &[1.0, f64::NAN], Tolerance::REFERENCE);
//! assert!(kit::close(2.0, 2.001, 0.0, 1e-3));
//! assert_eq!(kit::same_bits_f32(&[1.0, 2.0], &[1.0, 2.5]).unwrap_err().index, 1);
//! ```

pub use crate::random::Rng;
use crate::tolerance::{Mismatch, Tolerance};
use std::sync::OnceLock;

/// `|got - want| <= abs + rel * |want|`, with NaN matching NaN and an infinity matching the same
/// infinity (the non-finite rule of `TOL-1`).
pub fn close(got: f64, want: f64, abs: f64, rel: f64) -> bool {
    if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() {
        got == want
    } else {
        (got - want).abs() <= abs + rel * want.abs()
    }
}

/// Relative error `|got - want| / |want|`: 0 when the two are equal (both NaN included) and
/// `+inf` when they differ and `want` is 0 or one of them is not finite.
pub fn rel_error(got: f64, want: f64) -> f64 {
    if got == want || (got.is_nan() && want.is_nan()) {
        0.0
    } else if !got.is_finite() || !want.is_finite() || want == 0.0 {
        f64::INFINITY
    } else {
        (got - want).abs() / want.abs()
    }
}

/// Compares `got` with `want` by the `TOL-*` rule `tol` ([`Tolerance::check`]); `Err` is a
/// message naming the worst element and the tolerance.
pub fn check_close(got: &[f64], want: &[f64], tol: Tolerance) -> Result<(), String> {
    tol.check(got, want).map_err(|m: Mismatch| {
        if got.len() != want.len() {
            format!("length {} where {} was expected", got.len(), want.len())
        } else {
            format!("{m} ({tol:?})")
        }
    })
}

/// Panics unless `got` matches `want` by the `TOL-*` rule `tol` (see [`check_close`]).
#[track_caller]
pub fn assert_close(got: &[f64], want: &[f64], tol: Tolerance) {
    if let Err(e) = check_close(got, want, tol) {
        panic!("not close: {e}\n got  {got:?}\n want {want:?}");
    }
}

/// The first position where two slices differ bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub struct BitMismatch {
    /// First differing index (the shorter length when the lengths differ).
    pub index: usize,
    /// What differs there.
    pub what: String,
}

impl std::fmt::Display for BitMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "element {}: {}", self.index, self.what)
    }
}

macro_rules! same_bits {
    ($name:ident, $assert:ident, $t:ty) => {
        #[doc = concat!("`TOL-3` equality of two `", stringify!($t), "` slices: same length and, ")]
        #[doc = "element by element, the same bits (`to_bits`), except that any NaN equals any"]
        #[doc = "NaN (payloads aside, as `TOL-3` says). `0.0` and `-0.0` differ. `Err` names the"]
        #[doc = "first differing index."]
        pub fn $name(a: &[$t], b: &[$t]) -> Result<(), BitMismatch> {
            if a.len() != b.len() {
                return Err(BitMismatch {
                    index: a.len().min(b.len()),
                    what: format!("lengths {} and {}", a.len(), b.len()),
                });
            }
            match a
                .iter()
                .zip(b)
                .position(|(x, y)| x.to_bits() != y.to_bits() && !(x.is_nan() && y.is_nan()))
            {
                None => Ok(()),
                Some(i) => Err(BitMismatch {
                    index: i,
                    what: format!(
                        "{:e} ({:#x}) and {:e} ({:#x})",
                        a[i],
                        a[i].to_bits(),
                        b[i],
                        b[i].to_bits()
                    ),
                }),
            }
        }

        #[doc = concat!("Panics unless [`", stringify!($name), "`] holds.")]
        #[track_caller]
        pub fn $assert(a: &[$t], b: &[$t]) {
            if let Err(e) = $name(a, b) {
                panic!("not bit-identical: {e}");
            }
        }
    };
}

same_bits!(same_bits_f32, assert_same_bits_f32, f32);
same_bits!(same_bits_f64, assert_same_bits_f64, f64);

/// Marks the test it is called in as asserting the formulas whose IDs it names, and panics at
/// run time when one of them is not a formula ID of `spec/formulas/*.md`:
///
/// ```
/// smoothloss_spec::covers!("CE-2", "CE-8");
/// ```
///
/// `tests/formula_coverage.rs` counts an ID as checked only when some `covers!` naming it
/// stands in the body of a `#[test]` function (not ignored, not `should_panic`) that makes an
/// assertion; see `spec/formulas/README.md`.
#[macro_export]
macro_rules! covers {
    ($($id:literal),+ $(,)?) => {
        $crate::kit::covers(&[$($id),+])
    };
}

/// The function behind [`covers!`](crate::covers): panics unless every ID is defined in
/// `spec/formulas/*.md`.
#[track_caller]
pub fn covers(ids: &[&str]) {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        crate::formulas::all_ids()
            .expect("spec/formulas is readable")
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    });
    for id in ids {
        assert!(
            known.iter().any(|k| k == id),
            "covers!: {id} is not a formula ID of spec/formulas/*.md"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_follows_the_tol_1_non_finite_rule() {
        assert!(close(1.0, 1.0 + 1e-10, 1e-9, 0.0));
        assert!(!close(1.0, 1.0 + 1e-8, 1e-9, 1e-9));
        assert!(close(f64::NAN, f64::NAN, 0.0, 0.0));
        assert!(!close(1.0, f64::NAN, 1.0, 1.0));
        assert!(!close(f64::NAN, 1.0, 1.0, 1.0));
        assert!(close(f64::INFINITY, f64::INFINITY, 0.0, 0.0));
        assert!(!close(f64::NEG_INFINITY, f64::INFINITY, 1.0, 1.0));
        assert!(!close(1e300, f64::INFINITY, 1.0, 1.0));
    }

    #[test]
    fn rel_error_cases() {
        assert_eq!(rel_error(3.0, 3.0), 0.0);
        assert_eq!(rel_error(f64::NAN, f64::NAN), 0.0);
        assert!((rel_error(1.1, 1.0) - 0.1).abs() < 1e-15);
        assert_eq!(rel_error(1e-300, 0.0), f64::INFINITY);
        assert_eq!(rel_error(1.0, f64::INFINITY), f64::INFINITY);
    }

    #[test]
    fn check_close_reports_the_worst_element() {
        let e = check_close(&[1.0, 2.0, 3.5], &[1.0, 2.1, 3.0], Tolerance::REFERENCE).unwrap_err();
        assert!(e.starts_with("element 2:"), "{e}");
        let e = check_close(&[1.0], &[1.0, 2.0], Tolerance::REFERENCE).unwrap_err();
        assert!(e.contains("length 1"), "{e}");
        assert!(check_close(&[1.0 + 1e-10], &[1.0], Tolerance::REFERENCE).is_ok());
    }

    #[test]
    #[should_panic(expected = "not close")]
    fn assert_close_panics() {
        assert_close(&[1.0], &[1.0 + 1e-6], Tolerance::REFERENCE);
    }

    #[test]
    fn same_bits_reports_the_first_difference() {
        assert!(same_bits_f32(&[1.0, f32::NAN], &[1.0, -f32::NAN]).is_ok());
        let e = same_bits_f32(&[1.0, 0.0, 5.0], &[1.0, -0.0, 6.0]).unwrap_err();
        assert_eq!(e.index, 1);
        let e = same_bits_f64(&[1.0, 2.0], &[1.0, 2.0 + 1e-15]).unwrap_err();
        assert_eq!(e.index, 1);
        assert_eq!(same_bits_f64(&[1.0], &[]).unwrap_err().index, 0);
        assert!(same_bits_f64(&[], &[]).is_ok());
    }

    #[test]
    #[should_panic(expected = "not a formula ID")]
    fn covers_rejects_unknown_ids() {
        covers(&["CE-1", "CE-99"]);
    }
}
