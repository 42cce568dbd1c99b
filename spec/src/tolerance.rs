//! The comparison rules `TOL-1` and `TOL-2` of `spec/formulas/tolerance.md`, as code: that file
//! states the rules, their figures and why; this module holds the figures and applies them, and
//! no other place in the spec states a tolerance for comparing results with expected values.

/// One set of figures of the element-wise rule of `TOL-2` (with `scaled = 0` it is the rule of
/// `TOL-1`), including its non-finite rule: NaN matches NaN, an infinity the same infinity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Absolute part.
    pub abs: f64,
    /// Relative part.
    pub rel: f64,
    /// Part relative to the largest magnitude in the tensor (absorbs cancellation in small
    /// entries of a row whose scale is set by its largest entries).
    pub scaled: f64,
    /// The relative error each capped logit `z'` of a softcap (`CE-10`) may carry: `f32`
    /// backends hold `z'` in `f32`, within 3 ulp (`3 * 2^-23`); 0 for `f64` data. It multiplies
    /// the sensitivities of [`crate::conformance::AbsScale`] (`TOL-2`'s softcap terms).
    pub capped_logit: f64,
}

/// The worst element of a failed comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mismatch {
    /// Index of the worst element.
    pub index: usize,
    /// Value computed.
    pub got: f64,
    /// Value expected.
    pub want: f64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "element {}: got {:e}, want {:e} (|diff| {:e})",
            self.index,
            self.got,
            self.want,
            (self.got - self.want).abs()
        )
    }
}

impl Tolerance {
    /// `CE-10`'s bound on an `f32` capped logit: within 3 ulp of `z'` (`3 * 2^-23 |z'|`).
    pub const F32_CAPPED_LOGIT: f64 = 3.0 / 8_388_608.0;

    /// `TOL-1`: the f64 reference against PyTorch's float64 results.
    pub const REFERENCE: Tolerance = Tolerance {
        abs: 1e-9,
        rel: 1e-9,
        scaled: 0.0,
        capped_logit: 0.0,
    };

    /// `TOL-2`: an `f32` backend against the f64 reference evaluated on the same f32-rounded
    /// inputs.
    pub const F32: Tolerance = Tolerance {
        abs: 1e-7,
        rel: 4e-6,
        scaled: 4e-7,
        capped_logit: Self::F32_CAPPED_LOGIT,
    };

    /// `TOL-2` for the PyTorch cases run through an `f32` backend: the inputs are rounded to
    /// f32 before the call, so ill-conditioned cases move by more than the arithmetic error.
    pub const F32_TORCH_CASES: Tolerance = Tolerance {
        abs: 1e-6,
        rel: 1e-5,
        scaled: 1e-6,
        capped_logit: Self::F32_CAPPED_LOGIT,
    };

    /// `LCE-5`: the fused linear cross-entropy on `f32` data against the f64 reference on the
    /// same inputs (the logits come from an `f32` GEMM, `H` products summed in `f32`).
    pub const LCE_F32: Tolerance = Tolerance {
        abs: 2e-7,
        rel: 4e-6,
        scaled: 4e-7,
        capped_logit: Self::F32_CAPPED_LOGIT,
    };

    /// `LCE-5`: the fused linear cross-entropy on `f32` data against PyTorch's float64
    /// composite (inputs rounded to `f32` as well).
    pub const LCE_F32_TORCH_CASES: Tolerance = Tolerance {
        abs: 1e-6,
        rel: 1e-5,
        scaled: 1e-6,
        capped_logit: Self::F32_CAPPED_LOGIT,
    };

    /// Compares two tensors; `Err` holds the worst offending element (largest excess).
    pub fn check(&self, got: &[f64], want: &[f64]) -> Result<(), Mismatch> {
        self.check_scaled(got, want, |_| 1.0)
    }

    /// [`Tolerance::check`] with the absolute term of entry `k` scaled by
    /// `max(1, abs_scale(k))` (`TOL-2`): `abs_scale(k)` is the magnitude of the factors the
    /// formula multiplies entry `k` by (its item's upstream gradient times the call's largest
    /// weight), so that an entry whose exact value cancels to 0 may err as the terms that
    /// cancelled do. It never tightens the rule of [`Tolerance::check`].
    pub fn check_scaled(
        &self,
        got: &[f64],
        want: &[f64],
        abs_scale: impl Fn(usize) -> f64,
    ) -> Result<(), Mismatch> {
        self.check_scaled_plus(got, want, abs_scale, |_| 0.0)
    }

    /// [`Tolerance::check_scaled`] with `capped_logit * sensitivity(k)` added to the bound of
    /// entry `k` (`TOL-2`'s softcap terms: `sensitivity(k)` is how far entry `k` moves per unit
    /// of relative error in the capped logits, [`crate::conformance::AbsScale`]).
    pub fn check_scaled_plus(
        &self,
        got: &[f64],
        want: &[f64],
        abs_scale: impl Fn(usize) -> f64,
        sensitivity: impl Fn(usize) -> f64,
    ) -> Result<(), Mismatch> {
        if got.len() != want.len() {
            return Err(Mismatch {
                index: got.len().min(want.len()),
                got: got.len() as f64,
                want: want.len() as f64,
            });
        }
        let scale = want
            .iter()
            .filter(|w| w.is_finite())
            .fold(0.0_f64, |m, w| m.max(w.abs()));
        let mut worst: Option<(f64, Mismatch)> = None;
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let abs = self.abs * abs_scale(i).abs().max(1.0);
            let bound = abs
                + self.rel * w.abs()
                + self.scaled * scale
                + self.capped_logit * sensitivity(i).abs();
            let ok = if w.is_nan() {
                g.is_nan()
            } else if w.is_infinite() {
                g == w
            } else {
                (g - w).abs() <= bound
            };
            if !ok {
                let excess = if g.is_finite() && w.is_finite() {
                    (g - w).abs() / bound
                } else {
                    f64::INFINITY
                };
                if worst.as_ref().is_none_or(|(e, _)| excess > *e) {
                    worst = Some((
                        excess,
                        Mismatch {
                            index: i,
                            got: g,
                            want: w,
                        },
                    ));
                }
            }
        }
        match worst {
            None => Ok(()),
            Some((_, m)) => Err(m),
        }
    }
}
