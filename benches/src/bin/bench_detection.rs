//! `cargo run -p smoothloss-benches --release --bin bench_detection [-- --rounds R]`: the
//! dense-detector losses on the CPU backend (one thread, `f32`, value and gradient) over
//! 1,048,576 items, side by side in one run with ultralytics' own `DFLoss`, `VarifocalLoss`
//! and `probiou` + autograd (`benches/peers/ultralytics_detection.py`, one thread), the two
//! alternated round by round, and the bytes-moved floor (the loss's reads and writes at the
//! copy bandwidth measured in the same run):
//!
//! * `dfl`: 1,048,576 rows of 16 logits (262,144 boxes, `DistributionFocal::ultralytics()`,
//!   reduction sum): reads 16 + 1 floats, writes 16 per row;
//! * `varifocal`: 1,048,576 logits (`Varifocal::ultralytics()`, labels and scores): reads 3
//!   floats, writes 1 per element;
//! * `probiou`: 1,048,576 pairs (`ProbIou::new()`, mean): reads 10 floats, writes 5 per pair;
//! * `qfl`: 1,048,576 logits `[16384, 64]` (`QualityFocal::new()`, mean over rows; one row in
//!   eight has a foreground label) against mmdetection's `quality_focal_loss` (its source, in
//!   the peer script): reads 1, writes 1 float per logit (the labels and scores per row).
//!
//! Prints one line per loss: medians over the rounds, the ratio to ultralytics, and to the
//! floor.

use smoothloss_core::{
    DistributionFocal, Input, Losses, ProbIou, QualityFocal, Reduction, Varifocal,
};
use smoothloss_cpu::CpuBackend;
use std::path::PathBuf;
use std::process::Command;

use smoothloss_benches::timing;

const N: usize = 1 << 20;

/// SplitMix64 uniform floats in `[0, 1)`.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn peer(repeats: usize) -> Vec<(String, f64)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("peers/ultralytics_detection.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--threads", "1", "--repeats", &repeats.to_string()])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| Some((v["loss"].as_str()?.to_string(), v["median_s"].as_f64()?)))
            .collect(),
        Ok(o) => {
            eprintln!(
                "bench_detection: peer failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Vec::new()
        }
        Err(e) => {
            eprintln!("bench_detection: cannot run python3: {e}");
            Vec::new()
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3usize);
    // `--only dfl,qfl` times those losses only; `--no-peer` skips the peer (profiling).
    let only: Vec<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map_or_else(Vec::new, |s| s.split(',').map(String::from).collect());
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let no_peer = args.iter().any(|a| a == "--no-peer");
    let b = CpuBackend::with_threads(1);
    let mut r = Rng(1);
    // DFL: N rows of 16 bins.
    let dist: Vec<f32> = (0..N * 16).map(|_| (r.unit() - 0.5) * 16.0).collect();
    let dfl_t: Vec<f32> = (0..N).map(|_| r.unit() * 14.9).collect();
    let mut dfl_g = vec![0.0f32; dist.len()];
    let dfl_cfg = DistributionFocal::ultralytics().with_reduction(Reduction::Sum);
    // Varifocal: N logits, one positive class in 64.
    let vz: Vec<f32> = (0..N).map(|_| (r.unit() - 0.5) * 20.0).collect();
    let vl: Vec<f32> = (0..N)
        .map(|_| f32::from(u8::from(r.unit() < 1.0 / 64.0)))
        .collect();
    let vs: Vec<f32> = vl.iter().map(|l| l * r.unit()).collect();
    let mut vg = vec![0.0f32; N];
    let vcfg = Varifocal::ultralytics().with_avg_factor((N / 64) as f64);
    // ProbIoU: N pairs.
    let mut t = Vec::with_capacity(5 * N);
    let mut p = Vec::with_capacity(5 * N);
    for _ in 0..N {
        let tb = [
            r.unit() * 1000.0,
            r.unit() * 1000.0,
            5.0 + r.unit() * 60.0,
            5.0 + r.unit() * 60.0,
            (r.unit() - 0.5) * std::f32::consts::TAU,
        ];
        let d = [
            (r.unit() - 0.5) * 8.0,
            (r.unit() - 0.5) * 8.0,
            (r.unit() - 0.5) * 6.0,
            (r.unit() - 0.5) * 6.0,
            (r.unit() - 0.5) * 0.6,
        ];
        t.extend(tb);
        p.extend((0..5).map(|k| tb[k] + d[k]));
    }
    let mut pg = vec![0.0f32; p.len()];
    let pcfg = ProbIou::new();
    // QFL: [N / 64, 64] logits, one row in eight with a foreground class.
    let (qr, qc) = (N / 64, 64);
    let qz: Vec<f32> = (0..N).map(|_| (r.unit() - 0.5) * 16.0).collect();
    let ql: Vec<i64> = (0..qr)
        .map(|_| ((r.unit() * 64.0 * 8.0) as i64).min(64))
        .collect();
    let qs: Vec<f32> = ql
        .iter()
        .map(|&l| if l < 64 { r.unit() } else { 0.0 })
        .collect();
    let mut qg = vec![0.0f32; N];
    let qcfg = QualityFocal::new();

    let names = ["dfl", "varifocal", "probiou", "qfl"];
    let bytes = [
        N as f64 * 33.0 * 4.0,
        N as f64 * 16.0,
        N as f64 * 60.0,
        N as f64 * 8.0 + qr as f64 * 12.0,
    ];
    let k = names.len();
    let mut ours: Vec<Vec<f64>> = vec![Vec::new(); k];
    let mut ours_cpu: Vec<Vec<f64>> = vec![Vec::new(); k];
    let mut theirs: Vec<Vec<f64>> = vec![Vec::new(); k];
    let mut copy = Vec::new();
    for round in 0..rounds {
        let (bw, _) = timing::copy_bandwidth(1, 5);
        copy.push(bw);
        if want("dfl") {
            let s = timing::time_median(5, || {
                b.distribution_focal(
                    &dfl_cfg,
                    Input::matrix(&dist, N, 16).with_grad(&mut dfl_g),
                    &dfl_t,
                )
                .unwrap();
            });
            ours[0].push(s.0);
            ours_cpu[0].push(s.1);
        }
        if want("varifocal") {
            let s = timing::time_median(5, || {
                b.varifocal(
                    &vcfg,
                    Input::new(&vz).with_grad(&mut vg),
                    (&vs[..], &vl[..]),
                )
                .unwrap();
            });
            ours[1].push(s.0);
            ours_cpu[1].push(s.1);
        }
        if want("probiou") {
            let s = timing::time_median(5, || {
                b.probiou_loss(&pcfg, Input::new(&p).with_grad(&mut pg), &t)
                    .unwrap();
            });
            ours[2].push(s.0);
            ours_cpu[2].push(s.1);
        }
        if want("qfl") {
            let s = timing::time_median(5, || {
                b.quality_focal(
                    &qcfg,
                    Input::matrix(&qz, qr, qc).with_grad(&mut qg),
                    &ql,
                    &qs,
                )
                .unwrap();
            });
            ours[3].push(s.0);
            ours_cpu[3].push(s.1);
        }
        let peers = if no_peer { Vec::new() } else { peer(5) };
        for (name, s) in peers {
            if let Some(k) = names.iter().position(|n| *n == name) {
                theirs[k].push(s);
            }
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let bw = median(copy);
    println!(
        "copy bandwidth (1 thread, read + write): {:.2} GB/s",
        bw / 1e9
    );
    println!(
        "| loss | items | smoothloss cpu, 1 thread: wall (CPU time) | peer (ultralytics; QFL: mmdetection's function) + autograd, 1 thread | ratio | bytes-moved floor | smoothloss / floor |"
    );
    println!("|---|---|---|---|---|---|---|");
    for k in (0..k).filter(|&k| want(names[k])) {
        let (o, u) = (median(ours[k].clone()), median(theirs[k].clone()));
        let oc = median(ours_cpu[k].clone());
        let floor = bytes[k] / bw;
        println!(
            "| {} | {N} | {:.2} ms ({:.2} ms) | {:.2} ms | {:.1}x | {:.2} ms | {:.2}x |",
            names[k],
            o * 1e3,
            oc * 1e3,
            u * 1e3,
            u / o,
            floor * 1e3,
            o / floor
        );
    }
}
