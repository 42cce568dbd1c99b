//! Shared bench inputs.

/// Deterministic xorshift generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately standard normal (centred sum of four uniforms).
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 1.732
    }
}

/// Cross-entropy inputs as `cargo xtask bench` and `benches/peers/torch_ce.py` use them:
/// standard normal logits `[rows, classes]` and uniform class targets.
pub fn ce_inputs(rows: usize, classes: usize) -> (Vec<f32>, Vec<i64>) {
    let mut r = Rng::new(0x9E37_79B9_7F4A_7C15);
    let x = (0..rows * classes).map(|_| r.normal()).collect();
    let t = (0..rows)
        .map(|_| (r.next_u64() % classes as u64) as i64)
        .collect();
    (x, t)
}
