//! The generator of the initial weights: the spec's [`smoothloss_spec::random::Rng`].
//!
//! The experiment used to carry its own SplitMix64 (Steele, Lea, Flood 2014). The spec's `Rng`
//! is the same generator with the same draws: the same `next_u64`, `unit` = `(bits >> 11) / 2^53`
//! (the old `next_f64` multiplied by `2^-53`, exact either way) and `range(lo, hi)` =
//! `lo + (hi - lo) * unit()` (the old `uniform`). Those draws define the published figures
//! (`EXPERIMENT.md`), so the test below pins the spec's generator to the old one: if the spec's
//! `Rng` ever changes, bring the experiment's own SplitMix64 back rather than change the figures.

pub use smoothloss_spec::random::Rng;

#[cfg(test)]
mod tests {
    use super::Rng;

    /// The experiment's former generator, verbatim.
    struct SplitMix64(u64);

    impl SplitMix64 {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn next_f64(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
        }

        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.next_f64()
        }
    }

    #[test]
    fn spec_rng_draws_what_the_experiment_always_drew() {
        for seed in [0, 1, 7, 42, u64::MAX] {
            let (mut a, mut b) = (Rng::new(seed), SplitMix64(seed));
            for _ in 0..1000 {
                assert_eq!(a.next_u64(), b.next_u64());
                assert_eq!(a.unit().to_bits(), b.next_f64().to_bits());
                let bound = 1.0 / 10f64.sqrt();
                assert_eq!(
                    a.range(-bound, bound).to_bits(),
                    b.uniform(-bound, bound).to_bits()
                );
            }
        }
        // The first draw of seed 0 (SplitMix64's published first output).
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
