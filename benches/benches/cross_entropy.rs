//! Fused cross-entropy forward + backward on the CPU backend (f32, label smoothing 0.1, mean)
//! on 1 and 2 threads, with a separate gradient buffer and in place (gradient over the logits;
//! each iteration runs on the previous one's output, the kernel's cost does not depend on it). `cargo xtask bench` gives the same figures
//! faster, next to the copy-bandwidth floor and PyTorch.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smoothloss_benches::ce_inputs;
use smoothloss_core::CrossEntropy;
use smoothloss_core::{Input, Losses};
use smoothloss_cpu::CpuBackend;
use std::hint::black_box;

const SHAPES: [(usize, usize); 4] = [(1024, 32000), (256, 128_256), (16384, 1000), (128, 10)];

fn cross_entropy(c: &mut Criterion) {
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let mut group = c.benchmark_group("cross_entropy_fwd_bwd_ls0.1");
    group.sample_size(10);
    for (n, k) in SHAPES {
        let (x, t) = ce_inputs(n, k);
        // A gradient buffer starting on a 64-byte line, as PyTorch's CPU allocator gives.
        let mut gbuf = vec![0.0f32; x.len() + 16];
        let lead = (64 - gbuf.as_ptr() as usize % 64) % 64 / 4;
        let g = &mut gbuf[lead..lead + x.len()];
        group.throughput(Throughput::Elements((n * k) as u64));
        for threads in [1usize, 2] {
            let cpu = CpuBackend::with_threads(threads);
            let id = BenchmarkId::new(format!("{n}x{k}"), format!("t{threads}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    let l = cpu
                        .cross_entropy(&cfg, Input::matrix(&x, n, k).with_grad(&mut g[..]), &t)
                        .unwrap();
                    black_box(l)
                })
            });
        }
    }
    group.finish();
}

fn cross_entropy_in_place(c: &mut Criterion) {
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let mut group = c.benchmark_group("cross_entropy_in_place_fwd_bwd_ls0.1");
    group.sample_size(10);
    for (n, k) in SHAPES {
        let (mut x, t) = ce_inputs(n, k);
        group.throughput(Throughput::Elements((n * k) as u64));
        for threads in [1usize, 2] {
            let cpu = CpuBackend::with_threads(threads);
            let id = BenchmarkId::new(format!("{n}x{k}"), format!("t{threads}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    let l = cpu
                        .cross_entropy(&cfg, Input::in_place(&mut x).shaped(n, k), &t)
                        .unwrap();
                    black_box(l)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, cross_entropy, cross_entropy_in_place);
criterion_main!(benches);
