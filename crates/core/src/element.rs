//! Floating-point element types a backend may accept.

/// A floating-point element that converts losslessly to `f64` (f32 and f64).
pub trait Element: Copy + Send + Sync + PartialOrd + std::fmt::Debug + 'static {
    /// Short name used in reports ("f32", "f64").
    const NAME: &'static str;
    /// Widening conversion.
    fn to_f64(self) -> f64;
    /// Rounding conversion (round to nearest).
    fn from_f64(v: f64) -> Self;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// Widens a slice to `f64`.
pub fn to_f64_vec<T: Element>(xs: &[T]) -> Vec<f64> {
    xs.iter().map(|x| x.to_f64()).collect()
}
