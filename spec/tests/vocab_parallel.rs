//! Vocab-parallel cross-entropy (`VP-*`): for 1 to 8 shards of uneven widths (0 included) and
//! every cross-entropy option, the same loss and gradient as the unsharded reference; the
//! in-process collective (rank order, NaN-propagating max, refused mismatches); a call one rank
//! refuses is refused on every rank, without deadlock.

use proptest::prelude::*;
use smoothloss_core::vocab_parallel::{
    self, Collective, InProcessComm, InProcessGroup, ReduceOp, SingleRank, VocabShard,
};
use smoothloss_core::{
    CeTargets, CrossEntropy, Input, LossError, Losses, Reduction, ReferenceBackend, Upstream,
};
use smoothloss_spec::covers;
use smoothloss_spec::random::Rng;
use smoothloss_spec::tolerance::Tolerance;

/// The unsharded reference: loss values and the `[N, V]` gradient.
fn unsharded(
    cfg: &CrossEntropy,
    z: &[f64],
    n: usize,
    v: usize,
    t: &Tgt,
    up: Upstream<'_>,
) -> (Vec<f64>, Vec<f64>) {
    let mut g = vec![0.0; z.len()];
    let input = Input::matrix(z, n, v).with_grad(&mut g).with_upstream(up);
    let loss = match t {
        Tgt::Classes(c) => ReferenceBackend.cross_entropy(cfg, input, &c[..]),
        Tgt::Probs(p) => ReferenceBackend.cross_entropy(cfg, input, CeTargets::Probs(&p[..])),
    };
    (loss.unwrap().into_values(), g)
}

#[derive(Debug, Clone)]
enum Tgt {
    Classes(Vec<i64>),
    Probs(Vec<f64>),
}

/// The sharded call on `widths.len()` in-process ranks, in `T`: every rank's loss values and
/// the gathered gradient `[N, V]`.
fn sharded<T: smoothloss_core::Element>(
    cfg: &CrossEntropy,
    z: &[f64],
    n: usize,
    v: usize,
    t: &Tgt,
    up: Upstream<'_>,
    widths: &[usize],
    in_place: bool,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let offsets: Vec<usize> = widths
        .iter()
        .scan(0, |o, &w| {
            let s = *o;
            *o += w;
            Some(s)
        })
        .collect();
    let slice = |src: &[f64], r: usize| -> Vec<T> {
        (0..n)
            .flat_map(|i| (0..widths[r]).map(move |j| (i, j)))
            .map(|(i, j)| T::from_f64(src[i * v + offsets[r] + j]))
            .collect()
    };
    let out = InProcessGroup::run(widths.len(), |comm| {
        let r = comm.rank;
        let mut local = slice(z, r);
        let mut grad = vec![T::from_f64(0.0); local.len()];
        let probs = match t {
            Tgt::Probs(p) => slice(p, r),
            Tgt::Classes(_) => Vec::new(),
        };
        let targets = match t {
            Tgt::Classes(c) => CeTargets::Classes(&c[..]),
            Tgt::Probs(_) => CeTargets::Probs(&probs[..]),
        };
        let loss = if in_place {
            let shard = VocabShard {
                io: smoothloss_core::Io::InPlace(&mut local[..]),
                rows: n,
                vocab: v,
                offset: offsets[r],
                upstream: up,
            };
            vocab_parallel::cross_entropy(comm, cfg, shard, targets).unwrap()
        } else {
            let shard = VocabShard::new(&local, n, v, offsets[r])
                .with_grad(&mut grad)
                .with_upstream(up);
            vocab_parallel::cross_entropy(comm, cfg, shard, targets).unwrap()
        };
        let g = if in_place { local } else { grad };
        (
            loss.into_values(),
            g.iter().map(|x| x.to_f64()).collect::<Vec<f64>>(),
        )
    });
    let mut full = vec![0.0; n * v];
    for (r, (_, g)) in out.iter().enumerate() {
        for i in 0..n {
            for j in 0..widths[r] {
                full[i * v + offsets[r] + j] = g[i * widths[r] + j];
            }
        }
    }
    (out.into_iter().map(|(l, _)| l).collect(), full)
}

fn configs(v: usize) -> Vec<CrossEntropy> {
    let w: Vec<f64> = (0..v).map(|j| 0.2 + (j % 5) as f64 * 0.45).collect();
    let mut out = Vec::new();
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        out.push(CrossEntropy::new().with_reduction(red));
        out.push(
            CrossEntropy::new()
                .with_label_smoothing(0.15)
                .with_reduction(red),
        );
        out.push(
            CrossEntropy::new()
                .with_label_smoothing(0.1)
                .with_class_weights(w.clone())
                .with_reduction(red),
        );
    }
    out
}

fn problem(rng: &mut Rng, n: usize, v: usize, probs: bool) -> (Vec<f64>, Tgt) {
    let z = rng.vec(n * v, -6.0, 6.0);
    let t = if probs {
        let mut q = rng.vec(n * v, 0.0, 1.0);
        for row in q.chunks_mut(v) {
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= s);
        }
        Tgt::Probs(q)
    } else {
        Tgt::Classes(
            (0..n)
                .map(|i| {
                    if i % 4 == 1 {
                        -100
                    } else {
                        ((i * 13 + 5) % v) as i64
                    }
                })
                .collect(),
        )
    };
    (z, t)
}

/// Uneven widths adding up to `v` over `k` ranks (some 0 when `k > v`).
fn uneven(v: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
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

fn assert_matches_unsharded<T: smoothloss_core::Element>(
    tol: Tolerance,
    widths: &[usize],
    cfg: &CrossEntropy,
    z: &[f64],
    n: usize,
    v: usize,
    t: &Tgt,
    up: Upstream<'_>,
    in_place: bool,
) {
    let r = |x: &[f64]| -> Vec<f64> { x.iter().map(|&a| T::from_f64(a).to_f64()).collect() };
    let t_r = match t {
        Tgt::Probs(p) => Tgt::Probs(r(p)),
        c => c.clone(),
    };
    let (want_l, want_g) = unsharded(cfg, &r(z), n, v, &t_r, up);
    let (losses, g) = sharded::<T>(cfg, z, n, v, t, up, widths, in_place);
    for l in &losses[1..] {
        assert_eq!(
            l.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            losses[0].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "ranks disagree"
        );
    }
    tol.check(&losses[0], &want_l)
        .unwrap_or_else(|m| panic!("loss {widths:?} {cfg:?}: {m}"));
    tol.check(&g, &want_g)
        .unwrap_or_else(|m| panic!("grad {widths:?} {cfg:?}: {m}"));
}

const F64_TOL: Tolerance = Tolerance {
    abs: 1e-13,
    rel: 1e-12,
    scaled: 1e-13,
    capped_logit: 0.0,
};

#[test]
fn one_to_eight_uneven_shards_match_the_unsharded_loss() {
    covers!("VP-2", "VP-3", "VP-4");
    let mut rng = Rng::new(99);
    let (n, v) = (9, 23);
    for probs in [false, true] {
        let (z, t) = problem(&mut rng, n, v, probs);
        for (k, cfg) in configs(v).into_iter().enumerate() {
            let per: Vec<f64> = (0..n).map(|i| 1.5 - i as f64 * 0.4).collect();
            let up = if cfg.reduction == Reduction::None {
                Upstream::PerElement(&per)
            } else {
                Upstream::Scalar(0.75)
            };
            for shards in 1..=8 {
                let widths = uneven(v, shards, 7 * shards as u64 + k as u64);
                assert_eq!((widths.len(), widths.iter().sum::<usize>()), (shards, v));
                assert_matches_unsharded::<f64>(F64_TOL, &widths, &cfg, &z, n, v, &t, up, false);
                assert_matches_unsharded::<f32>(
                    Tolerance::F32,
                    &widths,
                    &cfg,
                    &z,
                    n,
                    v,
                    &t,
                    up,
                    shards % 2 == 0,
                );
            }
        }
    }
    // More ranks than classes: empty shards.
    let (z, t) = problem(&mut rng, 3, 4, false);
    assert_matches_unsharded::<f64>(
        F64_TOL,
        &[0, 2, 0, 1, 1, 0],
        &CrossEntropy::smooth_loss(0.2),
        &z,
        3,
        4,
        &t,
        Upstream::ONE,
        false,
    );
}

#[test]
fn non_finite_rows_are_nan_on_every_shard_as_unsharded() {
    covers!("VP-2");
    let mut rng = Rng::new(3);
    let (mut z, t) = problem(&mut rng, 4, 10, false);
    z[10 + 7] = f64::NAN; // row 1 is ignored (-100): 0
    z[2 * 10 + 3] = f64::NAN; // row 2: NaN
    z[3 * 10 + 9] = f64::INFINITY; // row 3: NaN (+inf)
    z[6] = f64::NEG_INFINITY; // row 0 (target 5): p = 0 there, finite
    let cfg = CrossEntropy::new().with_reduction(Reduction::None);
    let (want_l, want_g) = unsharded(&cfg, &z, 4, 10, &t, Upstream::ONE);
    let (l, g) = sharded::<f64>(&cfg, &z, 4, 10, &t, Upstream::ONE, &[3, 0, 5, 2], false);
    let class = |v: &[f64]| {
        v.iter()
            .map(|x| (x.is_nan(), x.is_infinite()))
            .collect::<Vec<_>>()
    };
    assert_eq!(class(&l[0]), class(&want_l));
    assert_eq!(class(&g), class(&want_g));
    assert!(l[0][2].is_nan() && l[0][3].is_nan() && l[0][0].is_finite() && l[0][1] == 0.0);
    // CE-10 on the shards: with a softcap, +inf and -inf are +-cap with derivative 0 (rows 0
    // and 3 finite), NaN stays NaN (row 2), as unsharded; z-loss and row weights alike.
    let cfg = cfg
        .with_softcap(2.0)
        .with_z_loss(0.1)
        .with_row_weights(vec![1.0, 2.0, 0.5, 1.5]);
    let (want_l, want_g) = unsharded(&cfg, &z, 4, 10, &t, Upstream::ONE);
    let (l, g) = sharded::<f64>(&cfg, &z, 4, 10, &t, Upstream::ONE, &[3, 0, 5, 2], false);
    assert_eq!(class(&l[0]), class(&want_l));
    assert_eq!(class(&g), class(&want_g));
    assert!(l[0][2].is_nan() && l[0][3].is_finite() && l[0][0].is_finite());
    let fin = |v: &[f64]| {
        v.iter()
            .map(|x| if x.is_nan() { 0.0 } else { *x })
            .collect::<Vec<_>>()
    };
    assert!(F64_TOL.check(&fin(&l[0]), &fin(&want_l)).is_ok());
    assert!(F64_TOL.check(&fin(&g), &fin(&want_g)).is_ok());
}

#[test]
fn in_process_all_reduce_is_in_rank_order_and_propagates_nan() {
    covers!("VP-1");
    let out = InProcessGroup::run(3, |c| {
        let mut s = vec![[1e16, 1.0, -1e16][c.rank], c.rank as f64];
        c.all_reduce_f64(ReduceOp::Sum, &mut s).unwrap();
        let mut m = vec![[1.0, f64::NAN, 3.0][c.rank], -(c.rank as f64)];
        c.all_reduce_f64(ReduceOp::Max, &mut m).unwrap();
        let mut f = vec![[1e8f32, 1.0, -1e8][c.rank]];
        c.all_reduce_f32(ReduceOp::Sum, &mut f).unwrap();
        (s, m, f)
    });
    for (s, m, f) in &out {
        // ((1e16 + 1) + -1e16) in rank order is 0, not 1.
        assert_eq!(s, &vec![0.0, 3.0]);
        assert!(m[0].is_nan());
        assert_eq!(m[1], 0.0);
        assert_eq!(f, &vec![0.0f32]);
    }
    let err = InProcessGroup::run(2, |c| {
        let mut b = vec![0.0; 1 + c.rank];
        c.all_reduce_f64(ReduceOp::Sum, &mut b)
    });
    assert!(
        err.iter()
            .all(|e| matches!(e, Err(LossError::Collective(_))))
    );
    let mut b = [2.0];
    SingleRank.all_reduce_f64(ReduceOp::Max, &mut b).unwrap();
    assert_eq!(
        (b[0], SingleRank.rank(), SingleRank.world_size()),
        (2.0, 0, 1)
    );
}

#[test]
fn a_call_one_rank_refuses_is_refused_everywhere() {
    covers!("VP-1");
    let z = [0.5f64; 2 * 6];
    let t = [0i64, 5];
    let cfg = CrossEntropy::new();
    let run =
        |f: &(dyn Fn(&InProcessComm) -> Result<f64, LossError> + Sync)| InProcessGroup::run(2, f);
    // Rank 1's gradient buffer is too short.
    let out = run(&|c| {
        let mut g = vec![0.0; if c.rank == 0 { 6 } else { 5 }];
        vocab_parallel::cross_entropy(
            c,
            &cfg,
            VocabShard::new(&z[..6], 2, 6, 3 * c.rank).with_grad(&mut g),
            &t,
        )
        .map(|l| l.value())
    });
    assert!(matches!(out[0], Err(LossError::Collective(_))));
    assert!(matches!(
        out[1],
        Err(LossError::ShapeMismatch { what: "grad", .. })
    ));
    // Overlapping shards: both refuse.
    let out = run(&|c| {
        vocab_parallel::cross_entropy(c, &cfg, VocabShard::new(&z[..6], 2, 6, c.rank), &t)
            .map(|l| l.value())
    });
    assert!(
        out.iter()
            .all(|e| matches!(e, Err(LossError::InvalidParameter { name: "offset", .. }))),
        "{out:?}"
    );
    // Widths that do not cover the vocabulary.
    let out = run(&|c| {
        vocab_parallel::cross_entropy(c, &cfg, VocabShard::new(&z[..4], 2, 6, 2 * c.rank), &t)
            .map(|l| l.value())
    });
    assert!(
        out.iter()
            .all(|e| matches!(e, Err(LossError::InvalidParameter { name: "vocab", .. }))),
        "{out:?}"
    );
    // A target out of range, a bad smoothing, class weights of the shard's length: typed, everywhere.
    let out = run(&|c| {
        vocab_parallel::cross_entropy(c, &cfg, VocabShard::new(&z[..6], 2, 6, 3 * c.rank), &[0, 6])
            .map(|l| l.value())
    });
    assert!(
        out.iter()
            .all(|e| matches!(e, Err(LossError::TargetOutOfRange { row: 1, .. })))
    );
    let w3 = CrossEntropy::new().with_class_weights(vec![1.0; 3]);
    let out = run(&|c| {
        vocab_parallel::cross_entropy(c, &w3, VocabShard::new(&z[..6], 2, 6, 3 * c.rank), &t)
            .map(|l| l.value())
    });
    assert!(out.iter().all(|e| matches!(
        e,
        Err(LossError::ShapeMismatch {
            what: "class_weights",
            ..
        })
    )));
    // Offset past the vocabulary, on one rank.
    let out = run(&|c| {
        vocab_parallel::cross_entropy(c, &cfg, VocabShard::new(&z[..6], 2, 6, 4 * c.rank), &t)
            .map(|l| l.value())
    });
    assert!(
        matches!(
            out[1],
            Err(LossError::InvalidParameter { name: "offset", .. })
        ) && out[0].is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn shard_count_invariance(n in 1usize..8, v in 1usize..30, shards in 1usize..9, eps in 0.0f64..0.6,
                              red in 0usize..3, probs: bool, seed in 0u64..10_000) {
        covers!("VP-4");
        let red = [Reduction::Mean, Reduction::Sum, Reduction::None][red];
        let mut rng = Rng::new(seed);
        let (z, t) = problem(&mut rng, n, v, probs);
        let cfg = CrossEntropy::new().with_label_smoothing(eps).with_reduction(red);
        let widths = uneven(v, shards, seed);
        prop_assert_eq!((widths.len(), widths.iter().sum::<usize>()), (shards, v));
        assert_matches_unsharded::<f64>(F64_TOL, &widths, &cfg, &z, n, v, &t, Upstream::Scalar(1.25), false);
    }
}

/// The language-model options (`CE-10` .. `CE-13`) alone and together, every reduction that
/// takes them (`VP-5`).
fn llm_configs(n: usize, v: usize) -> Vec<(&'static str, CrossEntropy)> {
    let cw: Vec<f64> = (0..v).map(|j| 0.2 + (j % 5) as f64 * 0.45).collect();
    let rw: Vec<f64> = (0..n).map(|i| [0.0, 0.5, 1.0, 2.5][i % 4]).collect();
    let mut out = Vec::new();
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let ce = CrossEntropy::new().with_reduction(red);
        out.push(("softcap", ce.clone().with_softcap(2.5)));
        out.push(("z-loss", ce.clone().with_z_loss(0.05)));
        out.push(("row weights", ce.clone().with_row_weights(rw.clone())));
        out.push((
            "all",
            ce.with_label_smoothing(0.1)
                .with_class_weights(cw.clone())
                .with_softcap(2.5)
                .with_z_loss(0.05)
                .with_row_weights(rw.clone()),
        ));
    }
    out.push(("denominator", CrossEntropy::new().with_denominator(7.5)));
    out.push((
        "denominator+all",
        CrossEntropy::new()
            .with_label_smoothing(0.2)
            .with_class_weights(cw)
            .with_softcap(2.5)
            .with_z_loss(0.05)
            .with_row_weights(rw)
            .with_denominator(3.25),
    ));
    out
}

#[test]
fn every_llm_option_on_one_to_eight_uneven_shards_matches_the_unsharded_loss() {
    covers!("VP-5", "CE-10", "CE-11", "CE-12", "CE-13");
    let mut rng = Rng::new(1212);
    let (n, v) = (11, 29);
    for probs in [false, true] {
        let (z, t) = problem(&mut rng, n, v, probs);
        for (k, (_, cfg)) in llm_configs(n, v).into_iter().enumerate() {
            let per: Vec<f64> = (0..n).map(|i| 1.5 - i as f64 * 0.4).collect();
            let up = if cfg.reduction == Reduction::None {
                Upstream::PerElement(&per)
            } else {
                Upstream::Scalar(0.75)
            };
            for shards in 1..=8 {
                let widths = uneven(v, shards, 11 * shards as u64 + k as u64);
                assert_eq!((widths.len(), widths.iter().sum::<usize>()), (shards, v));
                assert_matches_unsharded::<f64>(F64_TOL, &widths, &cfg, &z, n, v, &t, up, false);
                assert_matches_unsharded::<f32>(
                    Tolerance::F32,
                    &widths,
                    &cfg,
                    &z,
                    n,
                    v,
                    &t,
                    up,
                    shards % 2 == 1,
                );
            }
        }
    }
}

#[test]
fn a_dropped_option_changes_the_unsharded_loss() {
    // Mutation check: the test above would catch a vocab-parallel path that ignored an option,
    // since each option changes the unsharded loss or gradient beyond the tolerance.
    let mut rng = Rng::new(5);
    let (n, v) = (11, 29);
    let (z, t) = problem(&mut rng, n, v, false);
    let rw: Vec<f64> = (0..n).map(|i| [0.0, 0.5, 1.0, 2.5][i % 4]).collect();
    let base = CrossEntropy::new();
    for (name, with) in [
        ("softcap", base.clone().with_softcap(2.5)),
        ("z-loss", base.clone().with_z_loss(0.05)),
        ("row weights", base.clone().with_row_weights(rw)),
        ("denominator", base.clone().with_denominator(7.5)),
    ] {
        let (lw, gw) = unsharded(&with, &z, n, v, &t, Upstream::ONE);
        let (ls, gs) = sharded::<f64>(&with, &z, n, v, &t, Upstream::ONE, &[10, 0, 19], false);
        assert!(F64_TOL.check(&ls[0], &lw).is_ok() && F64_TOL.check(&gs, &gw).is_ok());
        let (ld, gd) = unsharded(&base, &z, n, v, &t, Upstream::ONE);
        assert!(
            Tolerance::F32.check(&ls[0], &ld).is_err() || Tolerance::F32.check(&gs, &gd).is_err(),
            "dropping {name} went unnoticed"
        );
    }
}

#[test]
fn per_row_lse_hits_and_z_loss_apart_match_the_unsharded_rows() {
    covers!("VP-5", "CE-14", "CE-15");
    let mut rng = Rng::new(4242);
    let (n, v) = (11, 29);
    let (mut z, t) = problem(&mut rng, n, v, false);
    // Row 3's target is its maximum (a hit); row 6 holds a NaN (never a hit, NaN lse).
    let Tgt::Classes(y) = &t else { unreachable!() };
    z[3 * v + y[3] as usize] = 50.0;
    z[6 * v + 2] = f64::NAN;
    for (_, cfg) in llm_configs(n, v) {
        let (mut lse, mut hit) = (vec![0.0; n], vec![false; n]);
        let rows = smoothloss_core::CeRowOutputs::new()
            .with_lse(&mut lse)
            .with_hits(&mut hit);
        let want = ReferenceBackend
            .cross_entropy_rows(&cfg, Input::matrix(&z, n, v), &y[..], rows)
            .unwrap();
        assert!(hit[3] && !hit[6] && lse[6].is_nan());
        for shards in [1, 3, 8] {
            let widths = uneven(v, shards, shards as u64);
            let offsets: Vec<usize> = widths
                .iter()
                .scan(0, |o, &w| {
                    let s = *o;
                    *o += w;
                    Some(s)
                })
                .collect();
            let got = InProcessGroup::run(shards, |comm| {
                let r = comm.rank;
                let local: Vec<f64> = (0..n)
                    .flat_map(|i| z[i * v + offsets[r]..i * v + offsets[r] + widths[r]].to_vec())
                    .collect();
                let (mut l, mut h) = (vec![7.0; n], vec![true; n]);
                let rows = smoothloss_core::CeRowOutputs::new()
                    .with_lse(&mut l)
                    .with_hits(&mut h);
                let shard = VocabShard::new(&local, n, v, offsets[r]);
                let o =
                    vocab_parallel::cross_entropy_rows(comm, &cfg, shard, &y[..], rows).unwrap();
                (o, l, h)
            });
            for (o, l, h) in &got {
                assert_eq!(h, &hit, "{widths:?} {cfg:?}");
                let nan_ok =
                    |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x.is_nan() == y.is_nan());
                let finite = |a: &[f64]| {
                    a.iter()
                        .map(|x| if x.is_nan() { 0.0 } else { *x })
                        .collect::<Vec<_>>()
                };
                assert!(nan_ok(l, &lse) && F64_TOL.check(&finite(l), &finite(&lse)).is_ok());
                let (a, b) = (
                    o.z_loss.clone().into_values(),
                    want.z_loss.clone().into_values(),
                );
                assert!(nan_ok(&a, &b) && F64_TOL.check(&finite(&a), &finite(&b)).is_ok());
            }
        }
    }
    // Hits need class targets; the lse one entry per row: refused on every rank.
    let errs = InProcessGroup::run(2, |comm| {
        let local = vec![0.0f64; n * if comm.rank == 0 { 10 } else { v - 10 }];
        let mut l = vec![0.0; n + 1];
        let rows = smoothloss_core::CeRowOutputs::new().with_lse(&mut l);
        let shard = VocabShard::new(&local, n, v, if comm.rank == 0 { 0 } else { 10 });
        vocab_parallel::cross_entropy_rows(comm, &CrossEntropy::new(), shard, &y[..], rows)
    });
    assert!(matches!(
        errs[0],
        Err(LossError::ShapeMismatch { what: "lse", .. })
    ));
    assert!(matches!(
        errs[1],
        Err(LossError::ShapeMismatch { what: "lse", .. })
    ));
}
