//! One process, one configuration: the CPU fused linear cross-entropy (`LCE-*`) forward +
//! backward on `f32` at `N x H x V`, timed, with the process's memory. The side-by-side driver
//! with PyTorch's composite is `benches/peers/bench_linear_ce.py`.
//!
//! `lce_bench N H V THREADS REPEATS [CHUNK_ROWS [SHARDS]]` prints one JSON line (`CHUNK_ROWS` 0:
//! the default; `SHARDS` > 0: the vocab-parallel linear cross-entropy, `VP-6`, on that many
//! in-process ranks, each a thread holding `V / SHARDS` classifier rows (the last the rest)
//! with a `CpuBackend::with_threads(max(1, THREADS / SHARDS))`, `"impl": "smoothloss-vp"`):
//! `{"impl": "smoothloss", "shape": .., "threads": .., "times_s": [..], "base_rss_kib": ..,
//! "peak_rss_kib": ..}`; `base` is the resident size once the inputs and the gradient buffers
//! exist (touched), `peak` the process's maximum (`getrusage`'s `ru_maxrss`, read from
//! `/proc/self/status` `VmHWM`).

use smoothloss_core::vocab_parallel::{self, InProcessGroup, LinearShard};
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
        eprintln!("usage: lce_bench N H V THREADS REPEATS [CHUNK_ROWS [SHARDS]]");
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
    if let Some(&c) = args.get(5).filter(|&&c| c > 0) {
        cfg = cfg.with_chunk_rows(c);
    }
    let shards = args.get(6).copied().unwrap_or(0);
    if shards > 0 {
        return sharded(
            &cfg,
            shards,
            threads,
            repeats,
            (n, h, v),
            &hidden,
            &weight,
            &bias,
            &targets,
        );
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

/// The vocab-parallel run: the classifier (and the gradient buffers) split by rows over
/// `shards` in-process ranks; `d hidden` is written on every rank (one buffer each).
#[allow(clippy::too_many_arguments)]
fn sharded(
    cfg: &LinearCrossEntropy,
    shards: usize,
    threads: usize,
    repeats: usize,
    (n, h, v): (usize, usize, usize),
    hidden: &[f32],
    weight: &[f32],
    bias: &[f32],
    targets: &[i64],
) {
    let per = v / shards;
    let widths: Vec<usize> = (0..shards)
        .map(|r| if r + 1 == shards { v - per * r } else { per })
        .collect();
    let backend = CpuBackend::with_threads((threads / shards).max(1));
    // One d hidden per rank, the classifier's gradients split by rows; touched before the base.
    let mut dh: Vec<Vec<f32>> = (0..shards).map(|_| vec![1.0f32; n * h]).collect();
    let (mut dw, mut db) = (vec![1.0f32; v * h], vec![1.0f32; v]);
    let base = status_kib("VmRSS:");
    let mut times = Vec::new();
    let mut loss = 0.0;
    for r in 0..=repeats {
        let t = Instant::now();
        let mut dw_parts: Vec<&mut [f32]> = Vec::new();
        let mut db_parts: Vec<&mut [f32]> = Vec::new();
        let (mut dw_rest, mut db_rest) = (&mut dw[..], &mut db[..]);
        for &w in &widths {
            let (a, b) = std::mem::take(&mut dw_rest).split_at_mut(w * h);
            dw_parts.push(a);
            dw_rest = b;
            let (a, b) = std::mem::take(&mut db_rest).split_at_mut(w);
            db_parts.push(a);
            db_rest = b;
        }
        let slots: Vec<_> = dh
            .iter_mut()
            .zip(dw_parts)
            .zip(db_parts)
            .map(|((a, b), c)| std::sync::Mutex::new(Some((a, b, c))))
            .collect();
        let out = InProcessGroup::run(shards, |comm| {
            let rank = comm.rank;
            let o = widths[..rank].iter().sum::<usize>();
            let w = widths[rank];
            let Some((dh, dw, db)) = slots[rank].lock().ok().and_then(|mut s| s.take()) else {
                return f64::NAN;
            };
            let input = Linear::new(hidden, &weight[o * h..(o + w) * h], h)
                .with_bias(&bias[o..o + w])
                .with_grads(&mut dh[..], dw)
                .with_bias_grad(db);
            match vocab_parallel::linear_cross_entropy(
                &backend,
                comm,
                cfg,
                LinearShard::new(input, v, o),
                targets,
            ) {
                Ok(l) => l.value(),
                Err(e) => {
                    eprintln!("error: {e}");
                    f64::NAN
                }
            }
        });
        loss = out[0];
        if loss.is_nan() {
            std::process::exit(1);
        }
        if r > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    println!(
        "{{\"impl\": \"smoothloss-vp\", \"shards\": {shards}, \"shape\": \"{n}x{h}x{v}\", \"threads\": {threads}, \"times_s\": {times:?}, \"loss\": {loss}, \"base_rss_kib\": {base}, \"peak_rss_kib\": {}, \"grad_bytes\": {}}}",
        status_kib("VmHWM:"),
        (shards * n * h + v * h + v) * 4
    );
}
