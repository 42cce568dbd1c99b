//! `cargo xtask bench --plot FILE`: cross-entropy throughput against the number of classes,
//! one line per backend and thread count (and PyTorch eager and `torch.compile` when
//! importable) with the copy floor and the in-cache ceiling, drawn as SVG with plotters.

use crate::fmt_s;
use crate::peers::{peer_time, run_peer};
use plotters::prelude::*;
use smoothloss_benches::ce_inputs;
use smoothloss_benches::timing::{copy_bandwidth, time_median};
use smoothloss_core::CrossEntropy;
use smoothloss_core::{Input, Losses};
use smoothloss_cpu::CpuBackend;
use std::hint::black_box;
use std::path::Path;

/// The class counts of the sweep; each shape holds about [`SWEEP_LOGITS`] logits.
pub const SWEEP_CLASSES: [usize; 13] = [
    2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 4000, 32000, 128_256,
];
/// Logits per sweep point (rows = this / classes).
pub const SWEEP_LOGITS: usize = 1 << 23;

/// The `(rows, classes)` shapes of the sweep.
pub fn sweep_shapes() -> Vec<(usize, usize)> {
    SWEEP_CLASSES
        .iter()
        .map(|&c| ((SWEEP_LOGITS / c).max(1), c))
        .collect()
}

/// One line of the plot: a name and `(classes, logits per second)` points.
pub struct Series {
    pub name: String,
    pub points: Vec<(usize, f64)>,
}

/// `--plot FILE`: refuses, before any benchmark runs, a name that does not end in `.svg` or a
/// file that cannot be written (the message names the file).
pub fn check_target(path: &Path) -> Result<(), String> {
    if path.extension().is_none_or(|e| e != "svg") {
        return Err(format!(
            "--plot writes SVG; give a file name ending in .svg (got {})",
            path.display()
        ));
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("--plot {}: cannot write: {e}", path.display()))?;
    if !existed {
        // Leave no empty file behind if the benchmark fails before drawing.
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Draws `series` (throughput in logits/s against classes, log-scaled x) into an SVG file.
pub fn draw(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    check_target(path)?;
    let named = |e: String| format!("--plot {}: {e}", path.display());
    draw_svg(path, title, series).map_err(named)
}

fn draw_svg(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1 / 1e9))
        .fold(0.0_f64, f64::max)
        .max(0.1)
        * 1.15;
    let xmin = *SWEEP_CLASSES.first().unwrap_or(&2) as f64 * 0.8;
    let xmax = *SWEEP_CLASSES.last().unwrap_or(&128_256) as f64 * 1.25;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0.0..ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("classes C (rows N = 2^23 / C)")
        .y_desc("G logits / s (forward + backward)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, s) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let pts: Vec<(f64, f64)> = s.points.iter().map(|&(c, v)| (c as f64, v / 1e9)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// One point of the sweep: `classes` at `threads`, every figure in logits per second.
pub struct SweepPoint {
    pub rows: usize,
    pub classes: usize,
    pub threads: usize,
    /// Forward + backward, gradient in a separate (64-byte aligned) buffer.
    pub separate: f64,
    /// Forward + backward, gradient written over the logits.
    pub in_place: f64,
    /// Forward only (no gradient: the reading pass alone).
    pub forward: f64,
    /// Forward + backward and forward only on [`CACHE_LOGITS`] logits (in L2: the compute
    /// ceiling of the same code).
    pub cache_separate: f64,
    pub cache_forward: f64,
    pub torch: Option<f64>,
    pub compile: Option<f64>,
    /// Logits per CPU second (all threads) of the separate-gradient call, of PyTorch eager
    /// and of `torch.compile`: the figures that a machine shared with other work leaves
    /// comparable.
    pub cpu_separate: f64,
    pub cpu_torch: Option<f64>,
    pub cpu_compile: Option<f64>,
}

/// Logits of the in-cache points (128 KiB of logits and 128 KiB of gradient: inside L2).
pub const CACHE_LOGITS: usize = 1 << 15;

/// Timestamp-counter ticks per second, measured against the wall clock over 50 ms.
pub fn tsc_hz() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let t = std::time::Instant::now();
        // SAFETY: `rdtsc` is part of the x86_64 baseline and reads no memory.
        let c0 = unsafe { std::arch::x86_64::_rdtsc() };
        while t.elapsed().as_secs_f64() < 0.05 {
            std::hint::spin_loop();
        }
        // SAFETY: as above.
        let c1 = unsafe { std::arch::x86_64::_rdtsc() };
        return (c1 - c0) as f64 / t.elapsed().as_secs_f64();
    }
    #[allow(unreachable_code)]
    0.0
}

/// Logits per wall second and per CPU second (all threads) of `f`, one call handling `elems`
/// logits.
fn rates(reps: usize, elems: usize, f: impl FnMut()) -> (f64, f64) {
    let (wall, cpu) = time_median(reps, f);
    (elems as f64 / wall, elems as f64 / cpu.max(1e-12))
}

/// Logits per second of `f`, one call handling `elems` logits.
fn rate(reps: usize, elems: usize, f: impl FnMut()) -> f64 {
    rates(reps, elems, f).0
}

/// The gradient buffer of a sweep point: `len` floats starting on a 64-byte line (as
/// PyTorch's allocator gives), inside an owned `Vec` with room for the offset.
fn aligned(len: usize) -> (Vec<f32>, usize) {
    let v = vec![0.0f32; len + 16];
    let lead = (64 - v.as_ptr() as usize % 64) % 64 / 4;
    (v, lead)
}

/// Times our call at `(n, c)`: separate, in place, forward only; plus the in-cache pair; and
/// the separate call per CPU second.
fn time_point(cpu: &CpuBackend, n: usize, c: usize, reps: usize) -> [f64; 6] {
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let mut out = [0.0; 6];
    for (k, rows) in [n, (CACHE_LOGITS / c).max(1)].into_iter().enumerate() {
        let (x, t) = ce_inputs(rows, c);
        let (mut gb, lead) = aligned(x.len());
        let g = &mut gb[lead..lead + x.len()];
        let e = rows * c;
        let (sep, sep_cpu) = rates(reps, e, || {
            let l = cpu
                .cross_entropy(&cfg, Input::matrix(&x, rows, c).with_grad(&mut g[..]), &t)
                .expect("valid input");
            black_box(l);
        });
        let fwd = rate(reps, e, || {
            let l = cpu
                .cross_entropy(&cfg, Input::matrix(&x, rows, c), &t)
                .expect("valid input");
            black_box(l);
        });
        if k == 0 {
            let mut xi = x.clone();
            let inp = rate(reps, e, || {
                let l = cpu
                    .cross_entropy(&cfg, Input::in_place(&mut xi).shaped(rows, c), &t)
                    .expect("valid input");
                black_box(l);
            });
            out[0] = sep;
            out[1] = inp;
            out[2] = fwd;
            out[5] = sep_cpu;
        } else {
            out[3] = sep;
            out[4] = fwd;
        }
    }
    out
}

/// The PyTorch peer over the sweep's shapes (eager, or `torch.compile` when `compile`).
fn torch_sweep(threads: usize, reps: usize, compile: bool) -> Vec<serde_json::Value> {
    let shape_arg = sweep_shapes()
        .iter()
        .map(|(n, c)| format!("{n}x{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        "--shapes".into(),
        shape_arg,
        "--threads".into(),
        threads.to_string(),
        "--repeats".into(),
        reps.min(5).to_string(),
    ];
    if compile {
        args.push("--compile".into());
    }
    run_peer("benches/peers/torch_ce.py", &args)
}

/// `--plot`: cross-entropy throughput against the number of classes (label smoothing 0.1,
/// forward + backward) for the CPU backend (separate gradient and in place), PyTorch eager
/// and `torch.compile` (`SMOOTHLOSS_BENCH_NO_COMPILE` set: left out), one line per thread
/// count (`SMOOTHLOSS_BENCH_PLOT_CPU` set: logits per CPU second of all threads, ours and the
/// peers', for a machine shared with other work), with the copy floor of each thread count (8 bytes per logit at the copy bandwidth
/// of the same run) and the in-cache speed of the same call (the compute ceiling). Prints the
/// sweep as a table (and as JSON lines with `json`). The CUDA backend is benchmarked by
/// `cuda_bench` in `cargo xtask gpu-bundle`; it is not part of this host-side sweep.
pub fn plot_sweep(
    path: &std::path::Path,
    threads: &[usize],
    reps: usize,
    torch: bool,
    json: bool,
) -> Result<(), String> {
    let compile = torch && std::env::var_os("SMOOTHLOSS_BENCH_NO_COMPILE").is_none();
    // On a machine shared with other work: draw logits per CPU second (ours and the peers').
    let per_cpu = std::env::var_os("SMOOTHLOSS_BENCH_PLOT_CPU").is_some();
    let tsc = tsc_hz();
    let mut series = Vec::new();
    let mut points = Vec::new();
    let mut floors = Vec::new();
    for &th in threads {
        let (bw, copy_name) = copy_bandwidth(th, reps.max(5));
        floors.push((th, bw, copy_name));
        let cpu = CpuBackend::with_threads(th);
        let eager = if torch {
            torch_sweep(th, reps, false)
        } else {
            vec![]
        };
        let comp = if compile {
            torch_sweep(th, reps, true)
        } else {
            vec![]
        };
        for (n, c) in sweep_shapes() {
            let [
                separate,
                in_place,
                forward,
                cache_separate,
                cache_forward,
                cpu_separate,
            ] = time_point(&cpu, n, c, reps);
            let shape = format!("{n}x{c}");
            let peer_cpu = |peers: &[serde_json::Value], loss: &str| {
                peers
                    .iter()
                    .find(|v| v["loss"] == loss && v["shape"] == shape.as_str())
                    .and_then(|v| v["cpu_s"].as_f64())
                    .map(|t| (n * c) as f64 / t.max(1e-12))
            };
            let e = (n * c) as f64;
            let pt = SweepPoint {
                rows: n,
                classes: c,
                threads: th,
                separate,
                in_place,
                forward,
                cache_separate,
                cache_forward,
                torch: peer_time(&eager, "cross_entropy", &shape, th).map(|t| e / t),
                compile: peer_time(&comp, "cross_entropy_compile", &shape, th).map(|t| e / t),
                cpu_separate,
                cpu_torch: peer_cpu(&eager, "cross_entropy"),
                cpu_compile: peer_cpu(&comp, "cross_entropy_compile"),
            };
            eprintln!(
                "bench --plot: {th} thread(s) {shape}: {} separate, {} in place",
                fmt_s(e / separate),
                fmt_s(e / in_place)
            );
            points.push(pt);
        }
        let pts = |f: &dyn Fn(&SweepPoint) -> Option<f64>| -> Vec<(usize, f64)> {
            points
                .iter()
                .filter(|p| p.threads == th)
                .filter_map(|p| f(p).map(|v| (p.classes, v)))
                .collect()
        };
        let floor = bw / 8.0;
        series.push(Series {
            name: format!("copy floor (8 B/logit at {:.1} GB/s), {th} thr", bw / 1e9),
            points: pts(&|_| Some(floor)),
        });
        if per_cpu {
            series.push(Series {
                name: format!("smoothloss, separate gradient, per CPU s, {th} thr"),
                points: pts(&|p| Some(p.cpu_separate)),
            });
        } else {
            series.push(Series {
                name: format!("smoothloss, separate gradient, {th} thr"),
                points: pts(&|p| Some(p.separate)),
            });
            series.push(Series {
                name: format!("smoothloss, in place, {th} thr"),
                points: pts(&|p| Some(p.in_place)),
            });
            if th == threads[0] {
                series.push(Series {
                    name: format!("smoothloss in cache (2^15 logits: compute ceiling), {th} thr"),
                    points: pts(&|p| Some(p.cache_separate)),
                });
            }
        }
        for (name, f) in [
            (
                "PyTorch eager",
                &(|p: &SweepPoint| if per_cpu { p.cpu_torch } else { p.torch })
                    as &dyn Fn(&SweepPoint) -> Option<f64>,
            ),
            ("torch.compile", &|p: &SweepPoint| {
                if per_cpu { p.cpu_compile } else { p.compile }
            }),
        ] {
            let v = pts(f);
            if !v.is_empty() {
                series.push(Series {
                    name: format!("{name}, {th} thr"),
                    points: v,
                });
            }
        }
    }
    print_sweep(&points, &floors, tsc, json);
    let title = if per_cpu {
        "cross-entropy, label smoothing 0.1, f32, fwd + bwd, per CPU second (shared machine)"
    } else {
        "cross-entropy, label smoothing 0.1, f32, forward + backward"
    };
    draw(path, title, &series)?;
    eprintln!("bench --plot: wrote {}", path.display());
    Ok(())
}

/// The sweep as a table (or JSON lines): logits/s, % of the copy floor, TSC cycles per logit.
fn print_sweep(points: &[SweepPoint], floors: &[(usize, f64, &str)], tsc: f64, json: bool) {
    let g = |v: f64| v / 1e9;
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.3}", v / 1e9));
    if !json {
        println!("sweep: timestamp counter {:.3} GHz", tsc / 1e9);
        for (th, bw, name) in floors {
            println!(
                "sweep: copy {:.2} GB/s on {th} thread(s) ({name}): floor {:.3} G logits/s",
                bw / 1e9,
                bw / 8e9
            );
        }
        println!(
            "{:>7} {:>9} {:>3} | {:>7} {:>6} {:>6} | {:>7} {:>6} | {:>7} | {:>7} {:>7} | {:>6} {:>6} {:>6} | {:>7} {:>7} {:>6}",
            "C",
            "N",
            "thr",
            "sep G/s",
            "%floor",
            "cyc/l",
            "inp G/s",
            "%floor",
            "fwd G/s",
            "L2 sep",
            "L2 fwd",
            "p1 cyc",
            "p2 cyc",
            "L2 cyc",
            "torch",
            "compile",
            "x tc"
        );
    }
    for p in points {
        let floor = floors
            .iter()
            .find(|f| f.0 == p.threads)
            .map_or(1.0, |f| f.1 / 8.0);
        // TSC cycles per logit: of the whole call, of the reading pass alone in cache
        // (forward only), and of the gradient pass in cache (the difference).
        let cyc = |r: f64| tsc / r;
        let (p1, all) = (cyc(p.cache_forward), cyc(p.cache_separate));
        if json {
            println!(
                "{}",
                serde_json::json!({"loss": "cross_entropy_sweep", "rows": p.rows,
                    "classes": p.classes, "threads": p.threads, "separate": p.separate,
                    "in_place": p.in_place, "forward": p.forward,
                    "cache_separate": p.cache_separate, "cache_forward": p.cache_forward,
                    "floor": floor, "tsc_hz": tsc, "torch": p.torch, "compile": p.compile,
                    "cpu_separate": p.cpu_separate, "cpu_torch": p.cpu_torch,
                    "cpu_compile": p.cpu_compile})
            );
            continue;
        }
        println!(
            "{:>7} {:>9} {:>3} | {:>7.3} {:>5.1}% {:>6.2} | {:>7.3} {:>5.1}% | {:>7.3} | {:>7.3} {:>7.3} | {:>6.2} {:>6.2} {:>6.2} | {:>7} {:>7} {:>6}",
            p.classes,
            p.rows,
            p.threads,
            g(p.separate),
            100.0 * p.separate / floor,
            cyc(p.separate) * p.threads as f64,
            g(p.in_place),
            100.0 * p.in_place / floor,
            g(p.forward),
            g(p.cache_separate),
            g(p.cache_forward),
            p1,
            all - p1,
            all,
            opt(p.torch),
            opt(p.compile),
            p.compile
                .or(p.torch)
                .map_or("-".into(), |t| format!("{:.1}x", p.separate / t)),
        );
        let x = |v: Option<f64>| v.map_or("-".into(), |t| format!("{:.1}x", p.cpu_separate / t));
        println!(
            "        cpu: {:>7.3} {:>7} {:>7} {:>7} {:>7}",
            g(p.cpu_separate),
            opt(p.cpu_torch),
            opt(p.cpu_compile),
            x(p.cpu_torch),
            x(p.cpu_compile)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_and_refuses_other_formats() {
        let dir = std::env::temp_dir();
        let p = dir.join(format!("smoothloss-plot-{}.svg", std::process::id()));
        let s = vec![Series {
            name: "cpu".into(),
            points: vec![(10, 1e8), (1000, 5e8), (128_256, 8e8)],
        }];
        draw(&p, "test", &s).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("<svg") && text.contains("cpu"));
        assert!(draw(&dir.join("x.png"), "test", &s).is_err());
        // An unwritable target is refused up front, and the message names the file.
        let bad = dir.join("smoothloss-no-such-dir").join("p.svg");
        let err = check_target(&bad).unwrap_err();
        assert!(err.contains(&bad.display().to_string()), "{err}");
        assert!(check_target(&p).is_ok());
        // The class counts of issue 15, each shape about 2^23 logits.
        assert_eq!(
            SWEEP_CLASSES,
            [
                2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 4000, 32000, 128_256
            ]
        );
        assert_eq!(sweep_shapes()[0], (SWEEP_LOGITS / 2, 2));
    }
}
