//! `cargo xtask bench --plot FILE`: cross-entropy throughput against the number of classes,
//! one line per backend (and PyTorch when importable), drawn as SVG with plotters.

use crate::fmt_s;
use crate::peers::{peer_time, run_peer};
use plotters::prelude::*;
use smoothloss_benches::ce_inputs;
use smoothloss_benches::timing::time_median;
use smoothloss_core::CrossEntropy;
use smoothloss_core::{Input, Losses};
use smoothloss_cpu::CpuBackend;
use std::hint::black_box;
use std::path::Path;

/// The class counts of the sweep; each shape holds about [`SWEEP_LOGITS`] logits.
pub const SWEEP_CLASSES: [usize; 7] = [10, 100, 1000, 4096, 16384, 32000, 128_256];
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
    let xmin = *SWEEP_CLASSES.first().unwrap_or(&10) as f64 * 0.8;
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

/// `--plot`: cross-entropy throughput against the number of classes (label smoothing 0.1,
/// forward + backward) for the CPU backend and PyTorch, on `threads` threads. The CUDA backend
/// is benchmarked by `cuda_bench` in `cargo xtask gpu-bundle` (device buffers, no host copies);
/// it is not part of this host-side sweep.
pub fn plot_sweep(
    path: &std::path::Path,
    threads: usize,
    reps: usize,
    torch: bool,
) -> Result<(), String> {
    let shapes = sweep_shapes();
    let cpu = CpuBackend::with_threads(threads);
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let mut ours = Vec::new();
    for &(n, c) in &shapes {
        let (x, t) = ce_inputs(n, c);
        let mut g = vec![0.0f32; x.len()];
        let (s, _) = time_median(reps, || {
            let l = cpu
                .cross_entropy(&cfg, Input::matrix(&x, n, c).with_grad(&mut g), &t)
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
        assert_eq!(sweep_shapes()[0], (SWEEP_LOGITS / 10, 10));
    }
}
