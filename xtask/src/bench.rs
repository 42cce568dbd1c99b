//! `cargo xtask bench --backend cpu [--json] [--threads N] [--quick] [--no-peers]`
//!
//! Times the CPU backend without criterion (warm-up, then the median of repeated runs), next
//! to the copy bandwidth measured in the same run (the floor: logits read once and gradient
//! written once at the best copy speed: memcpy or a streaming-store copy), and next to PyTorch on the same shapes and thread count when
//! `python3 -c 'import torch'` works (`benches/peers/torch_ce.py`, `benches/peers/torch_box.py`).
//!
//! Rows: cross-entropy forward + backward fused (f32, label smoothing 0.1, mean, separate
//! gradient buffer) at 1024x32000, 256x128256, 16384x1000 and 128x10; GIoU and CIoU box losses
//! forward + backward (mean, xyxy) over 1,048,576 pairs.

use serde_json::json;
use smoothloss_core::backend::{BoxLossOps, CrossEntropyOps};
use smoothloss_core::{
    BoxFormat, BoxLoss, BoxLossKind, CeTargets, CrossEntropy, Reduction, Upstream,
};
use smoothloss_cpu::CpuBackend;
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

const CE_SHAPES: [(usize, usize); 4] = [(1024, 32000), (256, 128_256), (16384, 1000), (128, 10)];
const BOX_PAIRS: usize = 1 << 20;

struct Opts {
    json: bool,
    threads: Vec<usize>,
    quick: bool,
    no_peers: bool,
    plot: Option<std::path::PathBuf>,
    /// Which backends: "cpu", "cuda" or "all" (CPU always; CUDA when a device is usable).
    backend: String,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        json: false,
        threads: Vec::new(),
        quick: false,
        no_peers: false,
        plot: None,
        backend: "all".into(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => o.json = true,
            "--quick" => o.quick = true,
            "--no-peers" => o.no_peers = true,
            "--backend" => match it.next().map(String::as_str) {
                Some(b @ ("cpu" | "cuda" | "all")) => o.backend = b.to_string(),
                Some(b) => {
                    return Err(format!("bench: unknown backend `{b}` (cpu|cuda|all)"));
                }
                None => return Err("--backend needs a value".into()),
            },
            "--threads" => {
                let v = it.next().ok_or("--threads needs a value")?;
                let n: usize = v.parse().map_err(|_| format!("bad --threads `{v}`"))?;
                o.threads.push(n.max(1));
            }
            "--plot" => {
                let f = it.next().ok_or("--plot needs a file name (.svg)")?;
                o.plot = Some(f.into());
            }
            other => return Err(format!("bench: unknown option `{other}`")),
        }
    }
    if o.threads.is_empty() {
        let max = std::thread::available_parallelism().map_or(1, |n| n.get());
        o.threads.push(1);
        if max > 1 {
            o.threads.push(max);
        }
    }
    Ok(o)
}

/// Deterministic xorshift generator for inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        // Sum of four uniforms, centred and scaled: cheap and close enough for timing.
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 1.732
    }
}

fn ce_inputs(rows: usize, classes: usize) -> (Vec<f32>, Vec<i64>) {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let x = (0..rows * classes).map(|_| r.normal()).collect();
    let t = (0..rows)
        .map(|_| (r.next() % classes as u64) as i64)
        .collect();
    (x, t)
}

fn box_pairs(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let mut p = Vec::with_capacity(4 * n);
    let mut t = Vec::with_capacity(4 * n);
    for _ in 0..n {
        let (x, y) = (r.unit() * 1000.0, r.unit() * 1000.0);
        let (w, h) = (10.0 + r.unit() * 100.0, 10.0 + r.unit() * 100.0);
        p.extend([x, y, x + w, y + h]);
        let (dx, dy) = ((r.unit() - 0.5) * 60.0, (r.unit() - 0.5) * 60.0);
        let (dw, dh) = ((r.unit() - 0.5) * 20.0, (r.unit() - 0.5) * 20.0);
        t.extend([x + dx, y + dy, x + dx + w + dw, y + dy + h + dh]);
    }
    (p, t)
}

/// Median seconds per call of `f` (warm-up, then `reps` samples, each of enough calls to last
/// about 2 ms), and the CPU seconds per call over the samples (all threads).
fn time_median(reps: usize, f: impl FnMut()) -> (f64, f64) {
    let (v, cpu) = time_samples(reps, f);
    if std::env::var_os("SMOOTHLOSS_BENCH_MIN").is_some() {
        // Diagnostics on a busy machine: the fastest sample instead of the median.
        return (v[0], cpu);
    }
    (v[v.len() / 2], cpu)
}

/// Sorted seconds per call of `reps` samples, and CPU seconds per call.
fn time_samples(reps: usize, mut f: impl FnMut()) -> (Vec<f64>, f64) {
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
fn cpu_ns() -> u64 {
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
fn copy_bandwidth(threads: usize, reps: usize) -> (f64, &'static str) {
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
fn stream_copy(dst: &mut [f32], src: &[f32]) {
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
unsafe fn stream_body(dst: &mut [f32], src: &[f32]) {
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

struct Row {
    loss: String,
    shape: String,
    threads: usize,
    median_s: f64,
    cpu_s: f64,
    elems: usize,
    bytes_floor: usize,
    floor_fraction: f64,
    torch_s: Option<f64>,
}

fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs a peer script and returns its JSON lines.
fn run_peer(script: &str, args: &[String]) -> Vec<serde_json::Value> {
    let path = crate::project_root().join(script);
    if !path.exists() {
        return Vec::new();
    }
    let out = Command::new("python3").arg(&path).args(args).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        Ok(o) => {
            eprintln!(
                "bench: {script} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Vec::new()
        }
        Err(e) => {
            eprintln!("bench: cannot run {script}: {e}");
            Vec::new()
        }
    }
}

fn peer_time(peers: &[serde_json::Value], loss: &str, shape: &str, threads: usize) -> Option<f64> {
    peers
        .iter()
        .find(|v| {
            v["loss"] == loss
                && v["shape"] == shape
                && v["threads"].as_u64() == Some(threads as u64)
        })
        .and_then(|v| v["median_s"].as_f64())
}

/// Entry point of `cargo xtask bench`.
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    if o.backend == "cuda" {
        return run_cuda(&o, true);
    }
    let reps = if o.quick { 3 } else { 9 };
    let torch = !o.no_peers && torch_available();
    if !torch && !o.no_peers {
        eprintln!("bench: PyTorch not importable; peer columns left empty");
    }
    // Diagnostics: SMOOTHLOSS_BENCH_ONLY=NxC times that one cross-entropy shape only.
    let only = std::env::var("SMOOTHLOSS_BENCH_ONLY").ok();
    let shapes: Vec<(usize, usize)> = match only.as_deref().and_then(|o| o.split_once('x')) {
        Some((n, c)) => vec![(
            n.parse().map_err(|_| "bad SMOOTHLOSS_BENCH_ONLY")?,
            c.parse().map_err(|_| "bad SMOOTHLOSS_BENCH_ONLY")?,
        )],
        None => CE_SHAPES.to_vec(),
    };
    let mut rows = Vec::new();
    let mut bandwidths = Vec::new();
    for &threads in &o.threads {
        let (bw, copy_name) = copy_bandwidth(threads, reps.max(5));
        bandwidths.push((threads, bw, copy_name));
        let cpu = CpuBackend::with_threads(threads);
        let cfg = CrossEntropy::new().with_label_smoothing(0.1);
        for &(n, c) in &shapes {
            let (x, t) = ce_inputs(n, c);
            // The gradient buffer starts on a 64-byte line, as tensors from PyTorch's CPU
            // allocator do (a plain `Vec` from malloc usually does not; see
            // `CpuBackend::streams_gradient` for what that changes).
            let mut gbuf = vec![0.0f32; x.len() + 16];
            let lead = (64 - gbuf.as_ptr() as usize % 64) % 64 / 4;
            let g = &mut gbuf[lead..lead + x.len()];
            let (s, cpu_s) = time_median(reps, || {
                let l = cpu
                    .cross_entropy(
                        &cfg,
                        &x,
                        n,
                        c,
                        CeTargets::Classes(&t),
                        Upstream::ONE,
                        Some(&mut g[..]),
                    )
                    .expect("valid input");
                black_box(l);
            });
            let bytes = n * c * 8;
            rows.push(Row {
                loss: "cross_entropy".into(),
                shape: format!("{n}x{c}"),
                threads,
                median_s: s,
                cpu_s,
                elems: n * c,
                bytes_floor: bytes,
                floor_fraction: bytes as f64 / bw / s,
                torch_s: None,
            });
        }
        // The in-place variant (gradient over the logits, as Liger-Kernel does): no separate
        // gradient buffer, so no read-for-ownership of its lines. Each timed call runs on the
        // previous call's output (finite values; the kernel's cost does not depend on them).
        for &(n, c) in &shapes {
            let (mut x, t) = ce_inputs(n, c);
            let (s, cpu_s) = time_median(reps, || {
                let l = cpu
                    .cross_entropy_in_place(
                        &cfg,
                        &mut x,
                        n,
                        c,
                        CeTargets::Classes(&t),
                        Upstream::ONE,
                    )
                    .expect("valid input");
                black_box(l);
            });
            let bytes = n * c * 8;
            rows.push(Row {
                loss: "cross_entropy_inplace".into(),
                shape: format!("{n}x{c}"),
                threads,
                median_s: s,
                cpu_s,
                elems: n * c,
                bytes_floor: bytes,
                floor_fraction: bytes as f64 / bw / s,
                torch_s: None,
            });
        }
        if only.is_some() {
            continue;
        }
        let (p, tt) = box_pairs(BOX_PAIRS);
        let mut g = vec![0.0f32; p.len()];
        for kind in [BoxLossKind::Giou, BoxLossKind::Ciou] {
            let cfg = BoxLoss::new(kind, BoxFormat::Xyxy).with_reduction(Reduction::Mean);
            let (s, cpu_s) = time_median(reps, || {
                let l = cpu
                    .box_loss(&cfg, &p, &tt, Upstream::ONE, Some(&mut g))
                    .expect("valid input");
                black_box(l);
            });
            // pred + target read (32 B), gradient written (16 B) per pair.
            let bytes = BOX_PAIRS * 48;
            rows.push(Row {
                loss: kind.as_str().into(),
                shape: format!("{BOX_PAIRS}x4"),
                threads,
                median_s: s,
                cpu_s,
                elems: BOX_PAIRS,
                bytes_floor: bytes,
                floor_fraction: bytes as f64 / bw / s,
                torch_s: None,
            });
        }
        if torch {
            let shape_arg = shapes
                .iter()
                .map(|(n, c)| format!("{n}x{c}"))
                .collect::<Vec<_>>()
                .join(",");
            let prep = if o.quick { "3" } else { "7" }.to_string();
            let mut peers = run_peer(
                "benches/peers/torch_ce.py",
                &[
                    "--shapes".into(),
                    shape_arg,
                    "--threads".into(),
                    threads.to_string(),
                    "--repeats".into(),
                    prep.clone(),
                ],
            );
            peers.extend(run_peer(
                "benches/peers/torch_box.py",
                &[
                    "--pairs".into(),
                    BOX_PAIRS.to_string(),
                    "--threads".into(),
                    threads.to_string(),
                    "--repeats".into(),
                    prep,
                ],
            ));
            for r in rows.iter_mut().filter(|r| r.threads == threads) {
                // PyTorch has no in-place cross-entropy backward: the in-place rows are
                // compared with the same F.cross_entropy + backward() time.
                let key = match r.loss.as_str() {
                    "cross_entropy_inplace" => "cross_entropy",
                    other => other,
                };
                r.torch_s = peer_time(&peers, key, &r.shape, threads);
            }
        }
    }
    let busy = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    if o.json {
        for (threads, bw, copy_name) in &bandwidths {
            println!(
                "{}",
                json!({"loss": "copy", "copy": copy_name, "backend": "cpu", "threads": threads, "copy_gb_per_s": bw / 1e9})
            );
        }
        for r in &rows {
            let mut v = json!({
                "loss": r.loss,
                "backend": "cpu",
                "shape": r.shape,
                "dtype": "f32",
                "threads": r.threads,
                "median_s": r.median_s,
                "cpu_s_per_call": r.cpu_s,
                "elems_per_s": r.elems as f64 / r.median_s,
                "gb_per_s": r.bytes_floor as f64 / r.median_s / 1e9,
                "floor_fraction": r.floor_fraction,
            });
            if let Some(ts) = r.torch_s {
                v["torch_median_s"] = json!(ts);
                v["ratio"] = json!(ts / r.median_s);
            }
            println!("{v}");
        }
    } else {
        for (threads, bw, copy_name) in &bandwidths {
            println!(
                "copy bandwidth, {threads} thread(s): {:.2} GB/s (read + write, best of memcpy and a streaming-store copy: {copy_name})",
                bw / 1e9
            );
        }
        println!("load average at the end: {}", busy.trim());
        println!(
            "{:<21} {:<12} {:<5} {:>7} {:>12} {:>12} {:>12} {:>8} {:>8} {:>12} {:>8}",
            "loss",
            "shape",
            "dtype",
            "threads",
            "median",
            "cpu/call",
            "elems/s",
            "GB/s",
            "% floor",
            "PyTorch",
            "ratio"
        );
        for r in &rows {
            let (ts, ratio) = match r.torch_s {
                Some(t) => (fmt_s(t), format!("{:.1}x", t / r.median_s)),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{:<21} {:<12} {:<5} {:>7} {:>12} {:>12} {:>12} {:>8.2} {:>7.1}% {:>12} {:>8}",
                r.loss,
                r.shape,
                "f32",
                r.threads,
                fmt_s(r.median_s),
                fmt_s(r.cpu_s),
                format!("{:.3e}", r.elems as f64 / r.median_s),
                r.bytes_floor as f64 / r.median_s / 1e9,
                100.0 * r.floor_fraction,
                ts,
                ratio
            );
        }
    }
    if o.backend == "all" {
        run_cuda(&o, false)?;
    }
    if let Some(path) = &o.plot {
        plot_sweep(path, o.threads[0], reps, torch)?;
    }
    Ok(())
}

fn fmt_s(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} us", s * 1e6)
    }
}

/// `--plot`: cross-entropy throughput against the number of classes (label smoothing 0.1,
/// forward + backward) for the CPU backend and PyTorch, on `threads` threads. The CUDA backend
/// is benchmarked by `cuda_bench` in `cargo xtask gpu-bundle` (device buffers, no host copies);
/// it is not part of this host-side sweep.
fn plot_sweep(
    path: &std::path::Path,
    threads: usize,
    reps: usize,
    torch: bool,
) -> Result<(), String> {
    use crate::bench_plot::{Series, draw, sweep_shapes};
    let shapes = sweep_shapes();
    let cpu = CpuBackend::with_threads(threads);
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let mut ours = Vec::new();
    for &(n, c) in &shapes {
        let (x, t) = ce_inputs(n, c);
        let mut g = vec![0.0f32; x.len()];
        let (s, _) = time_median(reps, || {
            let l = cpu
                .cross_entropy(
                    &cfg,
                    &x,
                    n,
                    c,
                    CeTargets::Classes(&t),
                    Upstream::ONE,
                    Some(&mut g),
                )
                .expect("valid input");
            black_box(l);
        });
        eprintln!("bench --plot: cpu {n}x{c}: {}", fmt_s(s));
        ours.push((c, (n * c) as f64 / s));
    }
    let mut series = vec![Series {
        name: format!("smoothloss cpu, {threads} thread(s)"),
        points: ours,
    }];
    if torch {
        let shape_arg = shapes
            .iter()
            .map(|(n, c)| format!("{n}x{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let peers = run_peer(
            "benches/peers/torch_ce.py",
            &[
                "--shapes".into(),
                shape_arg,
                "--threads".into(),
                threads.to_string(),
                "--repeats".into(),
                reps.min(5).to_string(),
            ],
        );
        let pts: Vec<(usize, f64)> = shapes
            .iter()
            .filter_map(|&(n, c)| {
                peer_time(&peers, "cross_entropy", &format!("{n}x{c}"), threads)
                    .map(|t| (c, (n * c) as f64 / t))
            })
            .collect();
        if !pts.is_empty() {
            series.push(Series {
                name: format!("PyTorch F.cross_entropy, {threads} thread(s)"),
                points: pts,
            });
        }
    }
    draw(
        path,
        "cross-entropy, label smoothing 0.1, f32, forward + backward",
        &series,
    )?;
    eprintln!("bench --plot: wrote {}", path.display());
    Ok(())
}

/// The CUDA backend's figures: `cuda_bench` (device buffers, CUDA events, copy bandwidth measured
/// in the same run) built and run when a device is usable. `required` makes a missing device an
/// error (`--backend cuda`); otherwise it is reported and skipped.
fn run_cuda(o: &Opts, required: bool) -> Result<(), String> {
    if let Err(e) = smoothloss_cuda::CudaBackend::new(0) {
        let msg = format!("cuda: skipped, no usable device ({e})");
        if required {
            return Err(msg);
        }
        eprintln!("bench: {msg}");
        return Ok(());
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(crate::project_root()).args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "smoothloss-cuda",
        "--bin",
        "cuda_bench",
        "--",
    ]);
    if o.quick {
        cmd.arg("--quick");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cuda_bench: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cuda_bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if o.json {
            let mut w = v.clone();
            w["backend"] = json!("cuda");
            if let Some(ms) = v["median_ms"].as_f64() {
                w["median_s"] = json!(ms * 1e-3);
            }
            if let Some(p) = v["pct_of_floor"].as_f64() {
                w["floor_fraction"] = json!(p / 100.0);
            }
            if let (Some(r), Some(c)) = (v["rows"].as_u64(), v["classes"].as_u64()) {
                w["loss"] = v["bench"].clone();
                w["shape"] = json!(format!("{r}x{c}"));
                if let Some(ms) = v["median_ms"].as_f64() {
                    w["elems_per_s"] = json!((r * c) as f64 / (ms * 1e-3));
                }
            }
            println!("{w}");
        } else {
            println!("cuda: {line}");
        }
    }
    Ok(())
}
