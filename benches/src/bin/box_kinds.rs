//! `box_kinds`: the detection box losses (issue 13) on the CPU beside the PyTorch code that
//! defines each (`benches/peers/torch_box_kinds.py`: ultralytics `bbox_iou`, torchvision, the
//! case generator's PyTorch code) and the copy-bandwidth floor, all in one run.
//!
//! `cargo run --release -p smoothloss-benches --bin box_kinds -- [--pairs N] [--repeats R]
//! [--threads T] [--no-peers] [--only NAME,NAME]`
//!
//! Every row: forward + backward fused, reduction mean, `xyxy`, f32, `N` pairs
//! (`smoothloss_benches::box_pairs`, default 1,048,576), `T` threads (default 1). Samples
//! alternate: one of ours (the median of a few calls), one of the peer's (one forward +
//! backward in the persistent peer process), then the copy bandwidth, `R` times; the table
//! gives the medians of the wall-clock time and of the CPU time (ours: the process's threads'
//! schedstat time; the peer's: its `time.process_time()`), both ratios, and the floor (8 floats
//! read and 4 written per pair at the copy bandwidth of the same sample) as a share of our
//! wall-clock and CPU time. On a machine shared with other work the CPU times are the figures
//! that time slicing does not inflate.

use smoothloss_benches::timing;

use smoothloss_benches::box_pairs;
use smoothloss_core::{
    BoxFormat, BoxLoss, BoxLossKind, CiouConvention, Input, Losses, Reduction, WiseIouState,
};
use smoothloss_cpu::CpuBackend;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The rows: name (as the peer script knows it) and our configuration.
fn rows() -> Vec<(&'static str, BoxLoss)> {
    let k = |kind| BoxLoss::new(kind, BoxFormat::Xyxy).with_reduction(Reduction::Mean);
    vec![
        ("iou", k(BoxLossKind::Iou)),
        ("giou", k(BoxLossKind::Giou)),
        ("diou", k(BoxLossKind::Diou)),
        ("ciou", k(BoxLossKind::Ciou)),
        ("tv-giou", k(BoxLossKind::Giou)),
        ("tv-diou", k(BoxLossKind::Diou)),
        ("tv-ciou", k(BoxLossKind::Ciou)),
        (
            "ciou-mmdet",
            k(BoxLossKind::Ciou).with_ciou_convention(CiouConvention::Mmdetection),
        ),
        ("eiou", k(BoxLossKind::Eiou)),
        ("focal-eiou", k(BoxLossKind::Eiou).with_focal(0.5)),
        ("extended-iou", k(BoxLossKind::ExtendedIou)),
        ("siou", k(BoxLossKind::Siou)),
        ("wiou", k(BoxLossKind::Wiou)),
        // Wise-IoU v3 (`Losses::wise_iou_v3`, BOX-24), each call from the default state.
        ("wiou3", k(BoxLossKind::Wiou)),
        (
            "mpdiou",
            k(BoxLossKind::Mpdiou).with_image_size(1000.0, 1000.0),
        ),
        ("shape-iou", k(BoxLossKind::ShapeIou)),
        ("inner-ciou", k(BoxLossKind::Ciou).with_inner(0.8)),
        ("focaler-giou", k(BoxLossKind::Giou).with_focaler(0.0, 0.95)),
        // The paper's power 3 (an integer: multiplied out) and a power that is not one.
        ("alpha-ciou", k(BoxLossKind::Ciou).with_alpha_power(3.0)),
        ("alpha2.5-ciou", k(BoxLossKind::Ciou).with_alpha_power(2.5)),
        (
            "inner-focaler-siou",
            k(BoxLossKind::Siou).with_inner(0.8).with_focaler(0.0, 0.95),
        ),
    ]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--pairs", 1 << 20);
    let reps: usize = arg(&args, "--repeats", 7);
    let threads: usize = arg(&args, "--threads", 1);
    let only: String = arg(&args, "--only", String::new());
    // `--forward`: the value alone (no gradient buffer), ours only: the peers time forward and
    // backward.
    let forward = args.iter().any(|a| a == "--forward");
    let peers = !forward && !args.iter().any(|a| a == "--no-peers");
    let (p, t) = box_pairs(n);
    let cpu = CpuBackend::with_threads(threads);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut peer = peers.then(|| {
        Command::new("python3")
            .arg(root.join("peers/torch_box_kinds.py"))
            .args(["--pairs", &n.to_string(), "--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 peers/torch_box_kinds.py")
    });
    let mut peer_out = peer
        .as_mut()
        .map(|c| BufReader::new(c.stdout.take().expect("peer stdout")));
    let mut ask = |name: &str| -> Option<(f64, f64, String)> {
        let c = peer.as_mut()?;
        let stdin = c.stdin.as_mut()?;
        writeln!(stdin, "{name}").ok()?;
        stdin.flush().ok()?;
        let mut line = String::new();
        peer_out.as_mut()?.read_line(&mut line).ok()?;
        let v: serde_json::Value = serde_json::from_str(&line).ok()?;
        Some((
            v["seconds"].as_f64()?,
            v["cpu_seconds"].as_f64()?,
            v["peer"].as_str()?.to_string(),
        ))
    };
    let mut g = vec![0.0f32; p.len()];
    println!(
        "pairs {n}, f32, xyxy, mean, {}, {threads} thread(s), {reps} alternating samples; machine shared with other builds",
        if forward {
            "forward only"
        } else {
            "forward + backward"
        }
    );
    println!(
        "{:<19} {:>9} {:>9} {:>7} {:>8} {:>6} {:>6} {:>9} {:>9} {:>7} {:>7}  peer",
        "loss",
        "ours",
        "ours cpu",
        "Mpair/s",
        "floor",
        "%floor",
        "%f cpu",
        "PyTorch",
        "Pt cpu",
        "ratio",
        "cpu rat"
    );
    let mut bandwidths = Vec::new();
    for (name, cfg) in rows() {
        if !only.is_empty() && !only.split(',').any(|o| o == name) {
            continue;
        }
        let (mut ours, mut ours_cpu) = (Vec::new(), Vec::new());
        let (mut theirs, mut theirs_cpu) = (Vec::new(), Vec::new());
        let mut peer_name = String::from("-");
        let mut floor = Vec::new();
        for _ in 0..reps {
            let (s, cpu_s) = timing::time_median(3, || {
                let input = if forward {
                    Input::new(&p)
                } else {
                    Input::new(&p).with_grad(&mut g)
                };
                let l = if name == "wiou3" {
                    let mut state = WiseIouState::new();
                    cpu.wise_iou_v3(&cfg, &mut state, input, &t)
                } else {
                    cpu.box_loss(&cfg, input, &t)
                }
                .expect("valid call");
                black_box(l);
            });
            ours.push(s);
            ours_cpu.push(cpu_s);
            if let Some((s, c, pn)) = ask(name) {
                theirs.push(s);
                theirs_cpu.push(c);
                peer_name = pn;
            }
            let (bw, _) = timing::copy_bandwidth(threads, 2);
            bandwidths.push(bw);
            floor.push(if forward { 32.0 } else { 48.0 } * n as f64 / bw);
        }
        let o = median(&mut ours);
        let oc = median(&mut ours_cpu);
        let fl = median(&mut floor);
        let ms = |v: f64| format!("{:.2} ms", v * 1e3);
        let (pt, ptc, ratio, cratio) = if theirs.is_empty() {
            let d = || "-".to_string();
            (d(), d(), d(), d())
        } else {
            let m = median(&mut theirs);
            let mc = median(&mut theirs_cpu);
            (
                format!("{:.1} ms", m * 1e3),
                format!("{:.1} ms", mc * 1e3),
                format!("{:.1}x", m / o),
                format!("{:.1}x", mc / oc),
            )
        };
        println!(
            "{:<19} {:>9} {:>9} {:>7.1} {:>8} {:>5.0}% {:>5.0}% {:>9} {:>9} {:>7} {:>7}  {}",
            name,
            ms(o),
            ms(oc),
            n as f64 / o * 1e-6,
            ms(fl),
            100.0 * fl / o,
            100.0 * fl / oc,
            pt,
            ptc,
            ratio,
            cratio,
            peer_name
        );
    }
    if !bandwidths.is_empty() {
        println!(
            "copy bandwidth (read + write) over the run: median {:.1} GB/s, best {:.1} GB/s; floor = 48 bytes per pair at the sample's bandwidth",
            median(&mut bandwidths) * 1e-9,
            bandwidths.iter().cloned().fold(0.0, f64::max) * 1e-9
        );
    }
    if let Some(c) = peer.as_mut() {
        if let Some(stdin) = c.stdin.as_mut() {
            let _ = writeln!(stdin, "quit");
        }
        let _ = c.wait();
    }
}
