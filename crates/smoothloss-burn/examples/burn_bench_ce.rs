//! A forward + backward step of the loss alone (cross-entropy, f32, burn 0.22's flex CPU
//! backend with autodiff), side by side in one run, alternating, every row once per repeat:
//! the raw smoothloss call (gradient into a preallocated buffer, and into a fresh one), the
//! burn adapter's forward alone (value and kept gradient), the adapter's forward +
//! `loss.backward()`, and burn-nn's `CrossEntropyLoss`. Median ms of the repeats; peak heap
//! bytes allocated during a step (a counting allocator) and peak RSS growth during a step
//! (`VmHWM` after resetting it through `/proc/self/clear_refs`, minus `VmRSS` before; Linux
//! only, `-` where it cannot be read).
//!
//! `RAYON_NUM_THREADS=1 cargo run -p smoothloss-burn --release --example burn_bench_ce -- [reps]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use burn_nn::loss::CrossEntropyLossConfig;
use burn_tensor::{Device, Int, Tensor, TensorData};
use smoothloss_burn::{CrossEntropy, cross_entropy};
use smoothloss_core::{Input, Losses};

struct Counting;
static CUR: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the same arguments; the counters
// are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = CUR.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let now = CUR.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CUR.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A `kB` line of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
fn status_kb(key: &str) -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time of the whole process so far, every thread (rayon's pool included), in ns: the sum
/// of the first field of `/proc/self/task/*/schedstat` (time on a CPU; Linux only, 0
/// elsewhere). On a loaded machine this is the figure to read: waiting for a core is not in it.
fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `/proc/loadavg`'s first three fields (the machine's load), `-` where it cannot be read.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "-".into())
}

/// Runs `f` once; returns (wall ms, CPU ms of the process, peak heap bytes above the level at
/// the start, peak RSS growth in bytes when readable, value).
fn step(f: &mut dyn FnMut() -> f32) -> (f64, f64, usize, Option<usize>, f32) {
    // "5" resets the peak RSS (VmHWM) to the current RSS.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss0 = status_kb("VmRSS:");
    let base = CUR.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let c0 = cpu_ns();
    let t = Instant::now();
    let v = f();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let cpu = cpu_ns().saturating_sub(c0) as f64 / 1e6;
    let rss = match (reset, rss0, status_kb("VmHWM:")) {
        (true, Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    (
        ms,
        cpu,
        PEAK.load(Ordering::Relaxed).saturating_sub(base),
        rss,
        v,
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!(
        "# burn CE fwd+bwd, f32, flex + autodiff, RAYON_NUM_THREADS={threads}, {reps} alternating repeats after one warm-up pass, load average {}",
        loadavg()
    );
    let device = Device::flex().autodiff();
    for (n, c) in [(1024usize, 32000usize), (16384, 1000)] {
        let x: Vec<f32> = (0..n * c)
            .map(|i| ((i.wrapping_mul(2654435761) % 1000) as f32 / 100.0) - 5.0)
            .collect();
        let t: Vec<i64> = (0..n).map(|i| ((i * 7919) % c) as i64).collect();
        let cfg = CrossEntropy::new();
        let backend = smoothloss_cpu::CpuBackend::new();
        let base = Tensor::<2>::from_data(TensorData::new(x.clone(), [n, c]), &device);
        let tt = Tensor::<1, Int>::from_data(TensorData::new(t.clone(), [n]), &device);
        let burn_ce = CrossEntropyLossConfig::new().init(&device);
        let mut g = vec![0.0_f32; n * c];
        let names = [
            "raw (prealloc grad)",
            "raw (fresh grad)",
            "adapter forward (value + kept grad)",
            "adapter forward + backward",
            "burn-nn CrossEntropyLoss",
        ];
        let mut times = vec![Vec::new(); names.len()];
        let mut cpus = vec![Vec::new(); names.len()];
        let mut peaks = vec![0usize; names.len()];
        let mut rss = vec![Some(0usize); names.len()];
        let mut vals = vec![0.0f32; names.len()];
        // One warm-up pass of every row (first touches of the inputs and buffers), untimed.
        for rep in 0..=reps {
            for k in 0..names.len() {
                let mut f: Box<dyn FnMut() -> f32> = match k {
                    0 => Box::new(|| {
                        backend
                            .cross_entropy(&cfg, Input::matrix(&x, n, c).with_grad(&mut g), &t)
                            .unwrap()
                            .value() as f32
                    }),
                    1 => Box::new(|| {
                        let mut g = vec![0.0_f32; n * c];
                        let v = backend
                            .cross_entropy(&cfg, Input::matrix(&x, n, c).with_grad(&mut g), &t)
                            .unwrap()
                            .value() as f32;
                        std::hint::black_box(&g);
                        v
                    }),
                    2 => Box::new(|| {
                        let z = base.clone().require_grad();
                        let loss = cross_entropy(z, tt.clone(), &cfg).unwrap();
                        loss.into_scalar::<f32>()
                    }),
                    3 => Box::new(|| {
                        let z = base.clone().require_grad();
                        let loss = cross_entropy(z.clone(), tt.clone(), &cfg).unwrap();
                        let gr = loss.clone().backward();
                        std::hint::black_box(z.grad(&gr).unwrap());
                        loss.into_scalar::<f32>()
                    }),
                    _ => Box::new(|| {
                        let z = base.clone().require_grad();
                        let loss = burn_ce.forward(z.clone(), tt.clone());
                        let gr = loss.clone().backward();
                        std::hint::black_box(z.grad(&gr).unwrap());
                        loss.into_scalar::<f32>()
                    }),
                };
                let (ms, cpu, peak, r, v) = step(&mut *f);
                if rep == 0 {
                    continue;
                }
                times[k].push(ms);
                cpus[k].push(cpu);
                peaks[k] = peaks[k].max(peak);
                rss[k] = rss[k].zip(r).map(|(a, b)| a.max(b));
                vals[k] = v;
            }
        }
        let raw = median(&mut times[0].clone());
        let raw_cpu = median(&mut cpus[0].clone());
        println!("\n## {n}x{c} (load average after: {})", loadavg());
        println!(
            "| call | median wall ms | vs raw | median CPU ms | CPU vs raw | peak heap MB | peak RSS MB | loss |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for k in 0..names.len() {
            let m = median(&mut times[k]);
            let mc = median(&mut cpus[k]);
            let r = rss[k].map_or("-".to_string(), |b| format!("{:.0}", b as f64 / 1e6));
            println!(
                "| {} | {:.1} | {:.2}x | {:.1} | {:.2}x | {:.0} | {} | {:.6} |",
                names[k],
                m,
                m / raw,
                mc,
                mc / raw_cpu,
                peaks[k] as f64 / 1e6,
                r,
                vals[k]
            );
        }
    }
}
