//! `cargo xtask bench` (this binary, `smoothloss-benches`'s `bench`): `--backend cpu [--json] [--threads N] [--quick] [--no-peers]`
//!
//! Times the CPU backend without criterion (warm-up, then the median of repeated runs), next
//! to the copy bandwidth measured in the same run (the floor: logits read once and gradient
//! written once at the best copy speed: memcpy or a streaming-store copy), and next to PyTorch on the same shapes and thread count when
//! `python3 -c 'import torch'` works (`benches/peers/torch_ce.py`, `benches/peers/torch_box.py`).
//!
//! Rows: cross-entropy forward + backward fused (f32, label smoothing 0.1, mean, separate
//! gradient buffer) at 1024x32000, 256x128256, 16384x1000 and 128x10; GIoU and CIoU box losses
//! forward + backward (mean, xyxy) over 1,048,576 pairs.

//!
//! Modules: [`peers`] (the PyTorch scripts in
//! `benches/peers/`), [`plot`] (`--plot FILE.svg`), [`cuda`] (`cuda_bench` when a device is
//! usable). Inputs and timing (median timing, copy-bandwidth floor) come from the library
//! (`smoothloss_benches::{ce_inputs, box_pairs, timing}`), as for the criterion benches.

mod cuda;
mod peers;
mod plot;

use cuda::run_cuda;
use peers::{peer_time, run_peer, torch_available};
use plot::plot_sweep;
use serde_json::json;
use smoothloss_benches::timing::{copy_bandwidth, time_median};
use smoothloss_benches::{box_pairs, ce_inputs};
use smoothloss_core::{BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, Reduction};
use smoothloss_core::{Input, Losses};
use smoothloss_cpu::CpuBackend;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;

/// The workspace root (the parent of this crate's manifest directory): the peer scripts and
/// `cargo run -p smoothloss-cuda` are found from there whatever the current directory.
fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

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
    /// `SMOOTHLOSS_BENCH_ONLY=NxC`: that one cross-entropy shape only.
    only: Option<(usize, usize)>,
}

/// Diagnostics: `SMOOTHLOSS_BENCH_ONLY=NxC` (both positive) times that one cross-entropy shape
/// only; anything else set there is an error, not ignored.
fn only_shape(v: Option<&str>) -> Result<Option<(usize, usize)>, String> {
    let Some(v) = v else { return Ok(None) };
    let bad =
        || format!("SMOOTHLOSS_BENCH_ONLY={v:?}: expected NxC with N, C > 0 (e.g. 1024x32000)");
    let (n, c) = v.split_once('x').ok_or_else(bad)?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    let c: usize = c.trim().parse().map_err(|_| bad())?;
    if n == 0 || c == 0 || n.checked_mul(c).and_then(|e| e.checked_mul(8)).is_none() {
        return Err(bad());
    }
    Ok(Some((n, c)))
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        json: false,
        threads: Vec::new(),
        quick: false,
        no_peers: false,
        plot: None,
        backend: "all".into(),
        only: None,
    };
    o.only = only_shape(std::env::var("SMOOTHLOSS_BENCH_ONLY").ok().as_deref())?;
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
                // Found now, not after the whole benchmark.
                plot::check_target(std::path::Path::new(f))?;
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
    let only = o.only;
    let shapes: Vec<(usize, usize)> = match only {
        Some(shape) => vec![shape],
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
                    .cross_entropy(&cfg, Input::matrix(&x, n, c).with_grad(&mut g[..]), &t)
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
                    .cross_entropy(&cfg, Input::in_place(&mut x).shaped(n, c), &t)
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
                    .box_loss(&cfg, Input::new(&p).with_grad(&mut g), &tt)
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
        plot_sweep(path, &o.threads, reps, torch, o.json)?;
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

#[cfg(test)]
mod tests {
    use super::only_shape;

    #[test]
    fn bench_only_takes_a_positive_shape_and_refuses_anything_else() {
        assert_eq!(only_shape(None), Ok(None));
        assert_eq!(only_shape(Some("1024x32000")), Ok(Some((1024, 32000))));
        for bad in ["0x10", "10x0", "abc", "x", "10x", "-1x4", "1e3x2"] {
            let err = only_shape(Some(bad)).unwrap_err();
            assert!(err.contains("SMOOTHLOSS_BENCH_ONLY"), "{bad}: {err}");
        }
    }
}
