//! One process, one configuration: the CPU fused linear cross-entropy (`LCE-*`) forward +
//! backward on `f32` at `N x H x V`, timed, with the process's memory. The side-by-side driver
//! with PyTorch's composite is `benches/peers/bench_linear_ce.py`.
//!
//! `lce_bench N H V THREADS REPEATS [CHUNK_ROWS]` prints one JSON line:
//! `{"impl": "smoothloss", "shape": .., "threads": .., "times_s": [..], "base_rss_kib": ..,
//! "peak_rss_kib": ..}`; `base` is the resident size once the inputs and the gradient buffers
//! exist (touched), `peak` the process's maximum (`getrusage`'s `ru_maxrss`, read from
//! `/proc/self/status` `VmHWM`).

use smoothloss_core::{CrossEntropy, Linear, LinearCrossEntropy, Losses};
use smoothloss_cpu::CpuBackend;
use std::time::Instant;

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// A deterministic pseudo-random vector in `[-a, a)` (xorshift).
fn fill(n: usize, seed: u64, a: f32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
        })
        .collect()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    if args.len() < 5 {
        eprintln!("usage: lce_bench N H V THREADS REPEATS [CHUNK_ROWS]");
        std::process::exit(2);
    }
    let (n, h, v, threads, repeats) = (args[0], args[1], args[2], args[3], args[4]);
    let backend = CpuBackend::with_threads(threads);
    let hidden = fill(n * h, 1, 1.0);
    let weight = fill(v * h, 2, 1.0 / (h as f32).sqrt());
    let bias = fill(v, 3, 0.1);
    let targets: Vec<i64> = (0..n).map(|i| ((i * 7919) % v) as i64).collect();
    // Filled with ones, not zeros: a zeroed allocation is not resident until written, and the
    // base must include the gradient buffers.
    let (mut dh, mut dw, mut db) = (vec![1.0f32; n * h], vec![1.0f32; v * h], vec![1.0f32; v]);
    let mut cfg = LinearCrossEntropy::new(CrossEntropy::smooth_loss(0.1));
    if let Some(&c) = args.get(5) {
        cfg = cfg.with_chunk_rows(c);
    }
    let base = status_kib("VmRSS:");
    let mut times = Vec::new();
    let mut loss = 0.0;
    for r in 0..=repeats {
        let t = Instant::now();
        let input = Linear::new(&hidden, &weight, h)
            .with_bias(&bias)
            .with_grads(&mut dh, &mut dw)
            .with_bias_grad(&mut db);
        loss = match backend.linear_cross_entropy(&cfg, input, &targets) {
            Ok(l) => l.value(),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        if r > 0 {
            times.push(t.elapsed().as_secs_f64()); // the first run is the warm-up
        }
    }
    println!(
        "{{\"impl\": \"smoothloss\", \"shape\": \"{n}x{h}x{v}\", \"threads\": {threads}, \"times_s\": {times:?}, \"loss\": {loss}, \"base_rss_kib\": {base}, \"peak_rss_kib\": {}, \"grad_bytes\": {}}}",
        status_kib("VmHWM:"),
        (dh.len() + dw.len() + db.len()) * 4
    );
}
