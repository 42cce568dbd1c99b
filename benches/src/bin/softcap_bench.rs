//! Paired timing of the cross-entropy's logit softcap (`CE-10`) against the default path, one
//! process, interleaved rounds: `cargo run --release -p smoothloss-benches --bin softcap_bench
//! -- [--rounds R] [--threads T] [--cap CAP] [--avx2]`.
//!
//! Per shape (1024 x 32000 and 16384 x 1000, `f32`, label smoothing 0.1, `mean`, a separate
//! gradient buffer), each round times one call of the default configuration, then one with the
//! softcap (same inputs, same buffers), alternately: wall clock and this process's CPU time
//! (`/proc/self/task/*/schedstat`) per call. Prints the per-shape medians and the median of
//! the paired ratios (softcap / default of the same round), the figure to read on a shared
//! machine, with the load average at the start and the end. `--avx2` runs the AVX2 + FMA
//! kernels on a CPU that has AVX-512 (what a machine without it runs).

use smoothloss_benches::ce_inputs;
use smoothloss_benches::timing::cpu_ns;
use smoothloss_core::{CrossEntropy, Input, Losses};
use smoothloss_cpu::{CpuBackend, SimdLevel};
use std::hint::black_box;
use std::time::Instant;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rounds = 15usize;
    let mut threads = 1usize;
    let mut cap = 30.0f64;
    let mut avx2 = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--avx2" {
            avx2 = true;
            continue;
        }
        let v = it.next().and_then(|v| v.parse::<f64>().ok());
        match (a.as_str(), v) {
            ("--rounds", Some(v)) => rounds = (v as usize).max(1),
            ("--threads", Some(v)) => threads = (v as usize).max(1),
            ("--cap", Some(v)) if v > 0.0 => cap = v,
            _ => {
                eprintln!("usage: softcap_bench [--rounds R] [--threads T] [--cap CAP] [--avx2]");
                std::process::exit(2);
            }
        }
    }
    let mut cpu = CpuBackend::with_threads(threads);
    if avx2 && cpu.simd_level() == SimdLevel::Avx512 {
        cpu = cpu.with_simd_level(SimdLevel::Avx2Fma);
    }
    let base = CrossEntropy::new().with_label_smoothing(0.1);
    let capped = base.clone().with_softcap(cap);
    println!(
        "softcap {cap} vs default, f32, smoothing 0.1, mean, fwd+bwd, {threads} thread(s), {rounds} rounds, simd {:?}, loadavg at start {}",
        cpu.simd_level(),
        loadavg()
    );
    println!(
        "{:>14} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "shape", "default", "def cpu", "softcap", "cap cpu", "ratio", "cpu rat"
    );
    for (n, c) in [(1024usize, 32000usize), (16384, 1000)] {
        let (x, t) = ce_inputs(n, c);
        let mut g = vec![0.0f32; n * c];
        let mut call = |cfg: &CrossEntropy| {
            let (c0, t0) = (cpu_ns(), Instant::now());
            let l = cpu
                .cross_entropy(cfg, Input::matrix(&x, n, c).with_grad(&mut g[..]), &t)
                .expect("valid input");
            black_box(l);
            (t0.elapsed().as_secs_f64(), (cpu_ns() - c0) as f64 * 1e-9)
        };
        for _ in 0..2 {
            call(&base);
            call(&capped);
        }
        let (mut wd, mut cd, mut ws, mut cs, mut rw, mut rc) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            let (a, ac) = call(&base);
            let (b, bc) = call(&capped);
            wd.push(a);
            cd.push(ac);
            ws.push(b);
            cs.push(bc);
            rw.push(b / a);
            rc.push(bc / ac);
        }
        println!(
            "{:>14} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.3} {:>8.3}",
            format!("{n}x{c}"),
            median(&mut wd) * 1e3,
            median(&mut cd) * 1e3,
            median(&mut ws) * 1e3,
            median(&mut cs) * 1e3,
            median(&mut rw),
            median(&mut rc)
        );
    }
    println!("loadavg at end {}", loadavg());
}
