//! Box losses on the CPU backend: GIoU and CIoU loss forward + backward (reduction mean) over
//! 1,048,576 `f32` pairs in `xyxy`, on 1 and 2 threads, through the `BoxLossOps` trait (the
//! path `cargo xtask bench` times). Compare with `benches/peers/torch_box.py`.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smoothloss_core::backend::BoxLossOps;
use smoothloss_core::{BoxFormat, BoxLoss, BoxLossKind, Reduction, Upstream};
use smoothloss_cpu::CpuBackend;
use std::hint::black_box;

const PAIRS: usize = 1 << 20;

/// Deterministic random xyxy pairs: boxes of size 10..110 in a 1000 x 1000 image, the target
/// a jittered copy of the prediction (mostly overlapping, some disjoint).
fn pairs(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut unit = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut p = Vec::with_capacity(4 * n);
    let mut t = Vec::with_capacity(4 * n);
    for _ in 0..n {
        let (x, y) = (unit() * 1000.0, unit() * 1000.0);
        let (w, h) = (10.0 + unit() * 100.0, 10.0 + unit() * 100.0);
        p.extend([x, y, x + w, y + h]);
        let (dx, dy) = ((unit() - 0.5) * 60.0, (unit() - 0.5) * 60.0);
        let (dw, dh) = ((unit() - 0.5) * 20.0, (unit() - 0.5) * 20.0);
        t.extend([x + dx, y + dy, x + dx + w + dw, y + dy + h + dh]);
    }
    (p, t)
}

fn box_losses(c: &mut Criterion) {
    let (p, t) = pairs(PAIRS);
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
                        .box_loss(&cfg, &p, &t, Upstream::ONE, Some(&mut grad[..]))
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
            b.iter(|| black_box(cpu.box_loss(&cfg, &p, &t, Upstream::ONE, None).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, box_losses);
criterion_main!(benches);
