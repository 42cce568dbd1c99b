//! Timing: the median of repeated runs with the CPU time they used, and the copy bandwidth that
//! is the floor of a memory-bound loss.

use std::hint::black_box;
use std::time::Instant;

/// Median seconds per call of `f` (warm-up, then `reps` samples, each of enough calls to last
/// about 2 ms), and the CPU seconds per call over the samples (all threads).
pub fn time_median(reps: usize, f: impl FnMut()) -> (f64, f64) {
    let (v, cpu) = time_samples(reps, f);
    if std::env::var_os("SMOOTHLOSS_BENCH_MIN").is_some() {
        // Diagnostics on a busy machine: the fastest sample instead of the median.
        return (v[0], cpu);
    }
    (v[v.len() / 2], cpu)
}

/// Sorted seconds per call of `reps` samples, and CPU seconds per call.
pub fn time_samples(reps: usize, mut f: impl FnMut()) -> (Vec<f64>, f64) {
    let t0 = Instant::now();
    f();
    f();
    let once = (t0.elapsed().as_secs_f64() / 2.0).max(1e-9);
    let inner = ((2e-3 / once).ceil() as usize).clamp(1, 100_000);
    let c0 = cpu_ns();
    let mut v: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..inner {
                f();
            }
            t.elapsed().as_secs_f64() / inner as f64
        })
        .collect();
    let cpu = (cpu_ns() - c0) as f64 * 1e-9 / (reps.max(1) * inner) as f64;
    v.sort_by(f64::total_cmp);
    (v, cpu)
}

/// Nanoseconds all threads of this process have run on a CPU (`/proc/self/task/*/schedstat`),
/// to tell the cost of a call from the time it waited for a busy machine.
pub fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Copy bandwidth in bytes moved (read + written) per second, over `threads` threads: the
/// fastest sample of the faster of two copies, the C library's `memcpy` (`copy_from_slice`)
/// and a loop of non-temporal (streaming) stores, which on some machines moves far more than
/// `memcpy` (on this project's Zen 3 VM: about 18 GB/s against 10-12 on one thread). Returns the
/// bandwidth and the name of the copy that achieved it.
pub fn copy_bandwidth(threads: usize, reps: usize) -> (f64, &'static str) {
    let n = 32 << 20; // 32 Mi floats = 128 MiB each way, far beyond the caches
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    let block = n.div_ceil(threads);
    let mut best = (0.0, "memcpy");
    for (name, copy) in [
        (
            "memcpy",
            (|d: &mut [f32], s: &[f32]| d.copy_from_slice(s)) as fn(&mut [f32], &[f32]),
        ),
        ("streaming copy", stream_copy),
    ] {
        // The floor is the best copy the machine achieves: the fastest sample.
        let (v, _) = time_samples(reps, || {
            std::thread::scope(|sc| {
                for (d, s) in dst.chunks_mut(block).zip(src.chunks(block)) {
                    sc.spawn(move || copy(d, s));
                }
            });
            black_box(&dst);
        });
        assert!(
            dst.iter().step_by(4099).all(|&x| x == 1.0),
            "{name} copied wrongly"
        );
        dst.fill(0.0);
        let bw = (2 * n * 4) as f64 / v[0];
        if bw > best.0 {
            best = (bw, name);
        }
    }
    best
}

/// `dst.copy_from_slice(src)` with 32-byte non-temporal stores where AVX is available (plain
/// copies for the unaligned head and the tail).
pub fn stream_copy(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            let head = ((32 - dst.as_ptr() as usize % 32) % 32 / 4).min(n);
            dst[..head].copy_from_slice(&src[..head]);
            let body = (n - head) / 8 * 8;
            // SAFETY: AVX was detected just above.
            unsafe { stream_body(&mut dst[head..head + body], &src[head..head + body]) };
            dst[head + body..n].copy_from_slice(&src[head + body..n]);
            return;
        }
    }
    dst[..n].copy_from_slice(&src[..n]);
}

/// # Safety
/// AVX must be available; `dst` must be 32-byte aligned with a length a multiple of 8 and
/// `src` at least as long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
pub unsafe fn stream_body(dst: &mut [f32], src: &[f32]) {
    use std::arch::x86_64::{_mm_sfence, _mm256_loadu_ps, _mm256_stream_ps};
    assert!(
        src.len() >= dst.len()
            && dst.len().is_multiple_of(8)
            && (dst.as_ptr() as usize).is_multiple_of(32)
    );
    for i in (0..dst.len()).step_by(8) {
        // SAFETY: `i + 8 <= dst.len() <= src.len()`; `dst + i` is 32-byte aligned (asserted
        // alignment of `dst`, `i` a multiple of 8 floats).
        unsafe {
            _mm256_stream_ps(
                dst.as_mut_ptr().add(i),
                _mm256_loadu_ps(src.as_ptr().add(i)),
            )
        };
    }
    _mm_sfence();
}
