//! Paired A/B timing of the long-row and confident-row cross-entropy (issues 14 and 15): one
//! process times every case once and prints one line per case; a driver runs the processes of
//! two builds alternately (BENCHMARKS.md, "Issues 14/15, long rows and confident rows").
//!
//! ```text
//! cargo run --release -p smoothloss-cpu --example ce_ab [-- --stream on|off|auto]
//! ```
//!
//! Each line: `case shape mode cpu_ms wall_ms` where `cpu_ms` is the CPU time per call of every
//! thread of the process (`/proc/self/task/*/schedstat`, nanoseconds), `wall_ms` the wall time
//! per call, both the median of 5 timings of `reps` calls. Inputs: standard normal logits
//! (fixed seed), uniform class targets; `conf` adds 15 to each row's target logit (every row
//! confident). Label smoothing 0.1, mean, one thread, `f32`. The first line is the copy
//! bandwidth (read + write of a 128 MiB buffer, best of `copy_from_slice` and a streaming
//! copy, GB/s). `CE_AB_ONLY=rand-16384x1000` (or `conf-...`) times that case only, and
//! `CE_AB_REPS=k` sets the calls per timing (for `valgrind --tool=callgrind`); `CE_AB_SHAPE=NxC`
//! times that shape (random and confident rows) instead of the list.
//!
//! `--levels R` (on a CPU with AVX-512): R rounds per case, each timing the AVX-512 level and
//! then the AVX2 + FMA level in this process; prints each level's median wall ms and the median
//! (min-max) of the R paired ratios AVX-512 / AVX2, split and in place.

use smoothloss_core::{CrossEntropy, Input, Losses};
use smoothloss_cpu::{CpuBackend, SimdLevel};
use std::hint::black_box;
use std::time::Instant;

/// Nanoseconds of CPU time of every thread of this process.
fn cpu_ns() -> u64 {
    let mut t = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let p = e.path().join("schedstat");
            if let Ok(s) = std::fs::read_to_string(p) {
                t += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    t
}

/// A xorshift generator and Box-Muller normals (fixed seed: the same inputs in every process).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (a, b) = (self.unit(), self.unit());
        ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
    }
}

/// Median of 5 timings of `reps` calls: (cpu seconds per call, wall seconds per call).
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    f();
    let mut c = Vec::new();
    let mut w = Vec::new();
    for _ in 0..5 {
        let (c0, t0) = (cpu_ns(), Instant::now());
        for _ in 0..reps {
            f();
        }
        w.push(t0.elapsed().as_secs_f64() / reps as f64);
        c.push((cpu_ns() - c0) as f64 * 1e-9 / reps as f64);
    }
    c.sort_by(f64::total_cmp);
    w.sort_by(f64::total_cmp);
    (c[2], w[2])
}

/// Copy bandwidth (bytes read + written per second) over 128 MiB, best of 5 of each method.
fn copy_bw() -> f64 {
    let n = 32 << 20;
    let src = vec![1.0f32; n];
    let mut buf = vec![0.0f32; n + 16];
    let lead = (64 - buf.as_ptr() as usize % 64) % 64 / 4;
    let dst = &mut buf[lead..lead + n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        black_box(&dst);
        best = best.min(t.elapsed().as_secs_f64());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            let t = Instant::now();
            // SAFETY: AVX checked above; `dst` is 64-byte aligned and `n` a multiple of 8.
            unsafe { stream_copy(&src, dst) };
            black_box(&dst);
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    (2 * n * 4) as f64 / best
}

/// # Safety
/// AVX available; `dst` 32-byte aligned, both of the same length, a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn stream_copy(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
        // SAFETY: 8 floats each; `d` is 32-byte aligned (the caller's alignment, steps of 8).
        unsafe { _mm256_stream_ps(d.as_mut_ptr(), _mm256_loadu_ps(s.as_ptr())) };
    }
    _mm_sfence();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let stream = args
        .iter()
        .position(|a| a == "--stream")
        .and_then(|k| args.get(k + 1))
        .map(String::as_str);
    let mut be = CpuBackend::with_threads(1);
    match stream {
        Some("on") => be = be.with_streaming_stores(true),
        Some("off") => be = be.with_streaming_stores(false),
        _ => {}
    }
    let levels = args
        .iter()
        .position(|a| a == "--levels")
        .and_then(|k| args.get(k + 1))
        .and_then(|v| v.parse::<usize>().ok());
    let only = std::env::var("CE_AB_ONLY").ok();
    let reps_env = std::env::var("CE_AB_REPS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    if only.is_none() {
        println!("copy - - {:.3} GB/s", copy_bw() * 1e-9);
    }
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    // `CE_AB_SHAPE=NxC`: that shape only (random and confident rows) instead of the list.
    let shape: Option<(usize, usize)> = std::env::var("CE_AB_SHAPE").ok().and_then(|v| {
        let (n, c) = v.split_once('x')?;
        Some((n.parse().ok()?, c.parse().ok()?))
    });
    let custom = shape.map(|(n, c)| [(n, c, 0.0), (n, c, 15.0)]);
    let cases: &[(usize, usize, f32)] = if let Some(cs) = &custom {
        cs
    } else {
        &[
            (1024, 32000, 0.0),
            (256, 128256, 0.0),
            (16384, 1000, 0.0),
            (4096, 100, 0.0),
            (1024, 32000, 15.0),
            (16384, 1000, 15.0),
            (4096, 100, 15.0),
        ]
    };
    for &(n, c, boost) in cases {
        let name = if boost > 0.0 { "conf" } else { "rand" };
        if only
            .as_ref()
            .is_some_and(|o| *o != format!("{name}-{n}x{c}"))
        {
            continue;
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n * c) as u64);
        let mut x: Vec<f32> = (0..n * c).map(|_| rng.normal()).collect();
        let t: Vec<i64> = (0..n).map(|_| (rng.next() % c as u64) as i64).collect();
        for (i, &y) in t.iter().enumerate() {
            x[i * c + y as usize] += boost;
        }
        let mut gbuf = vec![0.0f32; x.len() + 16];
        let lead = (64 - gbuf.as_ptr() as usize % 64) % 64 / 4;
        let g = &mut gbuf[lead..lead + x.len()];
        let reps = reps_env.unwrap_or((100_000_000 / (n * c)).clamp(2, 200));
        if let Some(rounds) = levels {
            let pair = [
                be.clone().with_simd_level(SimdLevel::Avx512),
                be.clone().with_simd_level(SimdLevel::Avx2Fma),
            ];
            for mode in ["split", "inplace"] {
                let mut xi = x.clone();
                let (mut w, mut r) = ([Vec::new(), Vec::new()], Vec::new());
                for _ in 0..rounds.max(1) {
                    let mut ws = [0.0; 2];
                    for (k, b) in pair.iter().enumerate() {
                        ws[k] = time(reps, || {
                            let input = if mode == "split" {
                                Input::matrix(&x, n, c).with_grad(&mut g[..])
                            } else {
                                // On the previous call's output, as the in-place timing below.
                                Input::in_place(&mut xi).shaped(n, c)
                            };
                            black_box(b.cross_entropy(&cfg, input, &t).expect("valid input"));
                        })
                        .1;
                        w[k].push(ws[k]);
                    }
                    r.push(ws[0] / ws[1]);
                }
                let med = |v: &mut Vec<f64>| {
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                };
                let (lo, hi) = (
                    r.iter().copied().fold(f64::INFINITY, f64::min),
                    r.iter().copied().fold(0.0, f64::max),
                );
                println!(
                    "{name} {n}x{c} {mode} avx512 {:.4} avx2 {:.4} ratio {:.3} ({lo:.3}-{hi:.3})",
                    med(&mut w[0]) * 1e3,
                    med(&mut w[1]) * 1e3,
                    med(&mut r)
                );
            }
            continue;
        }
        let (cs, ws) = time(reps, || {
            let l = be
                .cross_entropy(&cfg, Input::matrix(&x, n, c).with_grad(&mut g[..]), &t)
                .expect("valid input");
            black_box(l);
        });
        println!("{name} {n}x{c} split {:.4} {:.4}", cs * 1e3, ws * 1e3);
        // In place: each call runs on the previous call's output (finite gradients), so the
        // confident case is confident on the first call only; timed for random inputs only.
        if boost == 0.0 && only.is_none() {
            let mut xi = x.clone();
            let (cs, ws) = time(reps, || {
                let l = be
                    .cross_entropy(&cfg, Input::in_place(&mut xi).shaped(n, c), &t)
                    .expect("valid input");
                black_box(l);
            });
            println!("{name} {n}x{c} inplace {:.4} {:.4}", cs * 1e3, ws * 1e3);
        }
    }
}
