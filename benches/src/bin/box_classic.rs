//! `box_classic`: the torchvision box kinds (IoU, GIoU, DIoU, CIoU, EIoU) on the CPU, one JSON
//! line per kind, for paired before/after comparisons: it uses only the API these kinds have
//! had from the start, so the same file builds against an older checkout.
//!
//! `cargo run --release -p smoothloss-benches --bin box_classic -- [--pairs N] [--threads T]`
//! prints `{"loss", "pairs", "threads", "median_s", "cpu_s"}` per kind (forward + backward,
//! mean, xyxy, f32, the inputs of `smoothloss_benches::box_pairs`).

use smoothloss_benches::timing;

use smoothloss_benches::box_pairs;
use smoothloss_core::{BoxFormat, BoxLoss, BoxLossKind, Input, Losses, Reduction};
use smoothloss_cpu::CpuBackend;
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str, d: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, threads) = (get("--pairs", 1 << 20), get("--threads", 1));
    let (p, t) = box_pairs(n);
    let cpu = CpuBackend::with_threads(threads);
    let mut g = vec![0.0f32; p.len()];
    for name in ["iou", "giou", "diou", "ciou", "eiou"] {
        let kind = BoxLossKind::parse(name).expect("a torchvision kind");
        let cfg = BoxLoss::new(kind, BoxFormat::Xyxy).with_reduction(Reduction::Mean);
        let (s, cpu_s) = timing::time_median(9, || {
            let l = cpu
                .box_loss(&cfg, Input::new(&p).with_grad(&mut g), &t)
                .expect("valid call");
            black_box(l);
        });
        println!(
            "{{\"loss\":\"{name}\",\"pairs\":{n},\"threads\":{threads},\"median_s\":{s:e},\"cpu_s\":{cpu_s:e}}}"
        );
    }
}
