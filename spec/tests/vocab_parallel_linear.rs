//! The vocab-parallel fused linear cross-entropy (`VP-6`) on `f64` data through the
//! reference's products: for random shapes, 1 to 8 shards of random (possibly empty) widths,
//! random chunk sizes and options, the loss and the three gradients equal the unsharded
//! reference composite within `TOL-1`-like `1e-12` (shard-count and chunk-size invariance),
//! and a finite-difference check of `d hidden` and `d weight` through the sharded call itself.

use proptest::prelude::*;
use smoothloss_core::{CrossEntropy, LinearCrossEntropy, Reduction, ReferenceBackend, Upstream};
use smoothloss_spec::cases::Targets;
use smoothloss_spec::cases::linear_ce::{LinearCeCall, run_linear_ce, run_linear_ce_sharded};
use smoothloss_spec::conformance::Outcome;
use smoothloss_spec::conformance::linear_ce::compare_linear;
use smoothloss_spec::covers;
use smoothloss_spec::random::Rng;
use smoothloss_spec::tolerance::Tolerance;

/// `f64` data: the sums over the vocabulary change order, nothing else.
const F64_TOL: Tolerance = Tolerance {
    abs: 1e-12,
    rel: 1e-12,
    scaled: 1e-12,
    capped_logit: 0.0,
};

/// `k` widths adding up to `v`, cut at random (0 widths possible).
fn uneven(v: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..k - 1)
        .map(|_| (rng.vec(1, 0.0, (v + 1) as f64)[0] as usize).min(v))
        .collect();
    cuts.sort();
    let mut w = Vec::new();
    let mut prev = 0;
    for c in cuts.into_iter().chain([v]) {
        w.push(c - prev);
        prev = c;
    }
    w
}

#[allow(clippy::too_many_arguments)]
fn problem(
    rng: &mut Rng,
    n: usize,
    h: usize,
    v: usize,
    cfg: CrossEntropy,
    chunk: usize,
    bias: bool,
    probs: bool,
) -> LinearCeCall {
    let targets = if probs {
        let raw = rng.vec(n * v, 0.0, 1.0);
        Targets::Probs(
            raw.chunks(v)
                .flat_map(|r| {
                    let s: f64 = r.iter().sum();
                    r.iter().map(move |x| x / s).collect::<Vec<_>>()
                })
                .collect(),
        )
    } else {
        Targets::Classes(
            (0..n)
                .map(|i| {
                    if i % 4 == 3 {
                        -100
                    } else {
                        ((i * 7 + 1) % v) as i64
                    }
                })
                .collect(),
        )
    };
    LinearCeCall {
        cfg: LinearCrossEntropy::new(cfg).with_chunk_rows(chunk),
        hidden: rng.vec(n * h, -1.0, 1.0),
        weight: rng.vec(v * h, -2.0, 2.0),
        bias: bias.then(|| rng.vec(v, -1.0, 1.0)),
        hidden_dim: h,
        targets,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn shard_count_and_chunk_invariance(n in 1usize..9, h in 1usize..6, v in 1usize..25,
                                        shards in 1usize..9, chunk in 1usize..10, red in 0usize..3,
                                        opts in 0u8..32, bias: bool, probs: bool,
                                        seed in 0u64..10_000) {
        covers!("VP-6");
        let mut rng = Rng::new(seed);
        let mut ce = CrossEntropy::new()
            .with_reduction([Reduction::Mean, Reduction::Sum, Reduction::None][red]);
        if opts & 1 != 0 { ce = ce.with_label_smoothing(0.15); }
        if opts & 2 != 0 { ce = ce.with_softcap(2.0); }
        if opts & 4 != 0 { ce = ce.with_z_loss(0.05); }
        if opts & 8 != 0 { ce = ce.with_row_weights(rng.vec(n, 0.0, 2.0)); }
        if opts & 16 != 0 { ce = ce.with_class_weights(rng.vec(v, 0.1, 2.0)); }
        let c = problem(&mut rng, n, h, v, ce, chunk, bias, probs);
        let widths = uneven(v, shards, &mut rng);
        let per = rng.vec(n, -2.0, 2.0);
        let up = if red == 2 { Upstream::PerElement(&per) } else { Upstream::Scalar(0.75) };
        let want = run_linear_ce::<f64, _>(&ReferenceBackend, &c, up, true).unwrap();
        let got = run_linear_ce_sharded::<f64, _>(&ReferenceBackend, &c, up, &widths).unwrap();
        let wmax = c.cfg.ce.class_weights.as_deref().map_or(1.0, |w| w.iter().fold(0.0, |m: f64, x| m.max(*x)));
        prop_assert_eq!(compare_linear(&got.whole, &want, &F64_TOL, wmax), Outcome::Passed,
                        "{:?} {:?}", widths, c.cfg);
    }
}

#[test]
fn sharded_gradients_match_finite_differences() {
    covers!("VP-6");
    // The sharded call's own loss, differentiated numerically, against its gradients.
    let (n, h, v) = (5, 3, 11);
    let mut rng = Rng::new(3);
    let ce = CrossEntropy::new()
        .with_label_smoothing(0.1)
        .with_softcap(2.5)
        .with_z_loss(0.05)
        .with_row_weights(vec![1.0, 0.5, 2.0, 0.0, 1.5]);
    let c = problem(&mut rng, n, h, v, ce, 2, true, false);
    let widths = [4, 0, 5, 2];
    let loss = |c: &LinearCeCall| {
        run_linear_ce_sharded::<f64, _>(&ReferenceBackend, c, Upstream::ONE, &widths).unwrap()
    };
    let got = loss(&c);
    let grads = got.whole.grads.as_ref().unwrap();
    let step = 1e-6;
    let fd = |which: usize, k: usize| {
        let (mut p, mut m) = (c.clone(), c.clone());
        match which {
            0 => {
                p.hidden[k] += step;
                m.hidden[k] -= step;
            }
            1 => {
                p.weight[k] += step;
                m.weight[k] -= step;
            }
            _ => {
                p.bias.as_mut().unwrap()[k] += step;
                m.bias.as_mut().unwrap()[k] -= step;
            }
        }
        (loss(&p).whole.loss[0] - loss(&m).whole.loss[0]) / (2.0 * step)
    };
    for (which, g) in grads.iter().enumerate() {
        for (k, &a) in g.iter().enumerate() {
            let b = fd(which, k);
            assert!(
                (a - b).abs() <= 1e-7 * (1.0 + b.abs()),
                "grad {which}[{k}]: {a} vs finite difference {b}"
            );
        }
    }
}
