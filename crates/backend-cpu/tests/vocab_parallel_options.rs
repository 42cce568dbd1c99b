//! The vocab-parallel cross-entropy (`VP-5`) with every language-model option on 1 to 8
//! uneven shards of `f32` logits against the CPU backend's unsharded cross-entropy of the same
//! logits (the spec's `tests/vocab_parallel.rs` checks it against the f64 reference).

use smoothloss_core::vocab_parallel::{self, InProcessGroup, VocabShard};
use smoothloss_core::{CrossEntropy, Input, Losses, Reduction, Upstream};
use smoothloss_cpu::CpuBackend;
use smoothloss_spec::covers;
use smoothloss_spec::random::Rng;
use smoothloss_spec::tolerance::Tolerance;

fn configs(n: usize, v: usize) -> Vec<CrossEntropy> {
    let cw: Vec<f64> = (0..v).map(|j| 0.2 + (j % 5) as f64 * 0.45).collect();
    let rw: Vec<f64> = (0..n).map(|i| [0.0, 0.5, 1.0, 2.5][i % 4]).collect();
    let mut out = Vec::new();
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let ce = CrossEntropy::new().with_reduction(red);
        out.push(ce.clone().with_softcap(2.5));
        out.push(ce.clone().with_z_loss(0.05));
        out.push(ce.clone().with_row_weights(rw.clone()));
        out.push(
            ce.with_label_smoothing(0.1)
                .with_class_weights(cw.clone())
                .with_softcap(2.5)
                .with_z_loss(0.05)
                .with_row_weights(rw.clone()),
        );
    }
    out.push(
        CrossEntropy::new()
            .with_softcap(3.0)
            .with_z_loss(0.1)
            .with_row_weights(rw)
            .with_denominator(3.25),
    );
    out
}

#[test]
fn sharded_options_match_the_cpu_unsharded_cross_entropy() {
    covers!("VP-5");
    let (n, v) = (10, 31);
    let mut rng = Rng::new(77);
    let z: Vec<f32> = rng
        .vec(n * v, -6.0, 6.0)
        .iter()
        .map(|&x| x as f32)
        .collect();
    let t: Vec<i64> = (0..n)
        .map(|i| {
            if i % 4 == 1 {
                -100
            } else {
                ((i * 13 + 5) % v) as i64
            }
        })
        .collect();
    let per: Vec<f64> = (0..n).map(|i| 1.5 - i as f64 * 0.4).collect();
    let cpu = CpuBackend::new();
    for cfg in configs(n, v) {
        let up = if cfg.reduction == Reduction::None {
            Upstream::PerElement(&per)
        } else {
            Upstream::Scalar(0.75)
        };
        let mut want_g = vec![0.0f32; n * v];
        let want = cpu
            .cross_entropy(
                &cfg,
                Input::matrix(&z, n, v)
                    .with_grad(&mut want_g)
                    .with_upstream(up),
                &t,
            )
            .unwrap()
            .into_values();
        let want_g: Vec<f64> = want_g.iter().map(|&x| f64::from(x)).collect();
        for shards in 1..=8usize {
            // Uneven widths: rank r holds about (r + 1) parts of the vocabulary.
            let parts: usize = (1..=shards).sum();
            let mut widths: Vec<usize> = (1..=shards).map(|r| r * v / parts).collect();
            widths[shards - 1] += v - widths.iter().sum::<usize>();
            let offsets: Vec<usize> = widths
                .iter()
                .scan(0, |o, &w| {
                    let s = *o;
                    *o += w;
                    Some(s)
                })
                .collect();
            let out = InProcessGroup::run(shards, |comm| {
                let (r, w) = (comm.rank, widths[comm.rank]);
                let local: Vec<f32> = (0..n)
                    .flat_map(|i| z[i * v + offsets[r]..i * v + offsets[r] + w].to_vec())
                    .collect();
                let mut g = vec![0.0f32; local.len()];
                let shard = VocabShard::new(&local, n, v, offsets[r])
                    .with_grad(&mut g)
                    .with_upstream(up);
                let l = vocab_parallel::cross_entropy(comm, &cfg, shard, &t[..]).unwrap();
                (l.into_values(), g)
            });
            let mut got_g = vec![0.0; n * v];
            for (r, (_, g)) in out.iter().enumerate() {
                for i in 0..n {
                    for j in 0..widths[r] {
                        got_g[i * v + offsets[r] + j] = f64::from(g[i * widths[r] + j]);
                    }
                }
            }
            // Both f32 results are within TOL-2 of the f64 reference: twice that apart at most.
            let tol = Tolerance {
                abs: 2.0 * Tolerance::F32.abs,
                rel: 2.0 * Tolerance::F32.rel,
                scaled: 2.0 * Tolerance::F32.scaled,
                capped_logit: Tolerance::F32_CAPPED_LOGIT,
            };
            let (l, g) = (tol.check(&out[0].0, &want), tol.check(&got_g, &want_g));
            assert!(l.is_ok(), "loss {widths:?} {cfg:?}: {l:?}");
            assert!(g.is_ok(), "grad {widths:?} {cfg:?}: {g:?}");
        }
    }
}
