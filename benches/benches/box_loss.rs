//! Box losses on the CPU backend: GIoU and CIoU loss forward + backward (reduction mean) over
//! 1,048,576 `f32` pairs in `xyxy`, on 1 and 2 threads, through the `BoxLossOps` trait (the
//! path `cargo xtask bench` times). Compare with `benches/peers/torch_box.py`.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smoothloss_benches::box_pairs;
use smoothloss_core::{BoxFormat, BoxLoss, BoxLossKind, Reduction};
use smoothloss_core::{Input, Losses};
use smoothloss_cpu::CpuBackend;
use std::hint::black_box;

const PAIRS: usize = 1 << 20;

fn box_losses(c: &mut Criterion) {
    let (p, t) = box_pairs(PAIRS);
    let mut grad = vec![0.0f32; p.len()];
    let mut group = c.benchmark_group("box_loss_fwd_bwd_mean");
    group.throughput(Throughput::Elements(PAIRS as u64));
    group.sample_size(30);
    for kind in [BoxLossKind::Giou, BoxLossKind::Ciou] {
        let cfg = BoxLoss::new(kind, BoxFormat::Xyxy).with_reduction(Reduction::Mean);
        for threads in [1usize, 2] {
            let cpu = CpuBackend::with_threads(threads);
            let id = BenchmarkId::new(kind.as_str(), format!("{PAIRS}x4/t{threads}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    let out = cpu
                        .box_loss(&cfg, Input::new(&p).with_grad(&mut grad[..]), &t)
                        .unwrap();
                    black_box(out)
                })
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("box_loss_fwd_mean");
    group.throughput(Throughput::Elements(PAIRS as u64));
    group.sample_size(20);
    for kind in [BoxLossKind::Giou, BoxLossKind::Ciou] {
        let cfg = BoxLoss::new(kind, BoxFormat::Xyxy).with_reduction(Reduction::Mean);
        let cpu = CpuBackend::with_threads(1);
        let id = BenchmarkId::new(kind.as_str(), format!("{PAIRS}x4/t1"));
        group.bench_function(id, |b| {
            b.iter(|| black_box(cpu.box_loss(&cfg, &p, &t).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, box_losses);
criterion_main!(benches);
