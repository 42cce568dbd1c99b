//! The vocab-parallel fused linear cross-entropy (`VP-6`) on the CPU backend's GEMMs, `f32`
//! data: for 1 to 8 shards of uneven widths (an empty one included) and every option of the
//! cross-entropy, the same loss and gradients as the unsharded f64 reference composite on the
//! same inputs within `LCE-5`'s bound, the same bits on every rank, bit-identical for any
//! thread count; the per-row log-sum-exp and hits (`CE-14`) and the z-loss apart (`CE-15`);
//! refused calls refused on every rank without deadlock.

use smoothloss_core::reference::linear_cross_entropy::logits;
use smoothloss_core::vocab_parallel::{self, InProcessGroup, LinearShard};
use smoothloss_core::{
    CeRowOutputs, CeTargets, CrossEntropy, Input, Linear, LinearCrossEntropy, LossError, Losses,
    Reduction, ReferenceBackend, Upstream,
};
use smoothloss_cpu::CpuBackend;
use smoothloss_spec::cases::Targets;
use smoothloss_spec::cases::linear_ce::{
    LinearCeCall, LinearCeOutput, run_linear_ce, run_linear_ce_sharded,
};
use smoothloss_spec::conformance::linear_ce::compare_linear;
use smoothloss_spec::conformance::{AbsScale, Outcome};
use smoothloss_spec::covers;
use smoothloss_spec::random::Rng;
use smoothloss_spec::tolerance::Tolerance;

fn call(seed: u64, n: usize, h: usize, v: usize, cfg: CrossEntropy, bias: bool) -> LinearCeCall {
    LinearCeCall::random(seed, n, h, v, cfg, bias)
}

/// Every option alone and together, under every reduction that takes it.
fn configs(n: usize, v: usize) -> Vec<(&'static str, CrossEntropy)> {
    let cw: Vec<f64> = (0..v).map(|j| 0.25 + (j % 7) as f64 * 0.3).collect();
    let rw: Vec<f64> = (0..n).map(|i| [0.0, 0.5, 1.0, 2.5][i % 4]).collect();
    let mut out = Vec::new();
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let ce = CrossEntropy::new().with_reduction(red);
        out.push(("plain", ce.clone()));
        out.push(("smoothing", ce.clone().with_label_smoothing(0.1)));
        out.push(("class weights", ce.clone().with_class_weights(cw.clone())));
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
            .with_denominator(3.25)
            .with_ignore_index(Some(3)),
    ));
    out
}

/// Uneven widths of `v` over `shards` ranks: rank `r` about `r + 1` parts; with `empty`, rank 1
/// holds nothing (its part goes to the last rank).
fn widths(v: usize, shards: usize, empty: bool) -> Vec<usize> {
    let parts: usize = (1..=shards).sum();
    let mut w: Vec<usize> = (1..=shards).map(|r| r * v / parts).collect();
    if empty && shards > 2 {
        w[1] = 0;
    }
    w[shards - 1] += v - w.iter().sum::<usize>();
    w
}

fn reference(c: &LinearCeCall, up: Upstream<'_>) -> LinearCeOutput {
    run_linear_ce::<f64, _>(&ReferenceBackend, &c.rounded::<f32>(), up, true).unwrap()
}

/// Every rank returned the same loss bits and the same `d hidden` bits.
fn ranks_agree(out: &smoothloss_spec::cases::linear_ce::ShardedLinearCeOutput) -> bool {
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    out.losses.iter().all(|l| bits(l) == bits(&out.losses[0]))
        && out
            .hidden_grads
            .iter()
            .all(|g| bits(g) == bits(&out.hidden_grads[0]))
}

#[test]
fn sharded_linear_ce_matches_the_unsharded_reference_for_every_option() {
    covers!("VP-6");
    let cpu = CpuBackend::new();
    let mut seed = 300;
    for (n, h, v, chunk) in [(13, 7, 29, Some(4)), (6, 11, 40, None)] {
        for (name, cfg) in configs(n, v) {
            seed += 1;
            let bias = seed % 2 == 0;
            let mut c = call(seed, n, h, v, cfg.clone(), bias);
            if let Some(k) = chunk {
                c.cfg = c.cfg.with_chunk_rows(k);
            }
            let per: Vec<f64> = (0..n).map(|i| 0.5 - (i % 3) as f64 * 0.75).collect();
            let up = if cfg.reduction == Reduction::None {
                Upstream::PerElement(&per)
            } else {
                Upstream::Scalar(-1.5)
            };
            let want = reference(&c, up);
            let wmax = AbsScale::of_weights(c.cfg.ce.class_weights.as_deref());
            for shards in 1..=8usize {
                for empty in [false, true] {
                    let ws = widths(v, shards, empty);
                    let got = run_linear_ce_sharded::<f32, _>(&cpu, &c, up, &ws).unwrap();
                    assert!(ranks_agree(&got), "{name} {ws:?}: ranks disagree");
                    let o = compare_linear(&got.whole, &want, &Tolerance::LCE_F32, wmax);
                    assert_eq!(
                        o,
                        Outcome::Passed,
                        "{n}x{h}x{v} chunk {chunk:?} {name} {:?} bias {bias} {ws:?}",
                        cfg.reduction
                    );
                }
            }
        }
    }
}

#[test]
fn sharded_linear_ce_with_probability_targets_matches_the_reference() {
    covers!("VP-6");
    let (n, h, v) = (9, 6, 23);
    let mut rng = Rng::new(5);
    let cw: Vec<f64> = (0..v).map(|j| 0.5 + (j % 3) as f64 * 0.5).collect();
    for cfg in [
        CrossEntropy::new(),
        CrossEntropy::new()
            .with_label_smoothing(0.1)
            .with_class_weights(cw)
            .with_softcap(3.0)
            .with_z_loss(0.02),
    ] {
        let mut c = call(9, n, h, v, cfg, true);
        let raw = rng.vec(n * v, 0.0, 1.0);
        let probs: Vec<f64> = raw
            .chunks(v)
            .flat_map(|r| {
                let s: f64 = r.iter().sum();
                r.iter().map(move |x| x / s).collect::<Vec<_>>()
            })
            .collect();
        c.targets = Targets::Probs(probs);
        c.cfg = c.cfg.with_chunk_rows(4);
        let want = reference(&c, Upstream::ONE);
        let wmax = AbsScale::of_weights(c.cfg.ce.class_weights.as_deref());
        for shards in [1, 3, 8] {
            let ws = widths(v, shards, true);
            let got = run_linear_ce_sharded::<f32, _>(&CpuBackend::new(), &c, Upstream::ONE, &ws)
                .unwrap();
            assert!(ranks_agree(&got));
            let o = compare_linear(&got.whole, &want, &Tolerance::LCE_F32, wmax);
            assert_eq!(o, Outcome::Passed, "{ws:?} {:?}", c.cfg.ce);
        }
    }
}

#[test]
fn sharded_linear_ce_is_bit_identical_for_any_thread_count() {
    covers!("VP-6");
    let (n, h, v) = (37, 24, 2100);
    let ce = CrossEntropy::new()
        .with_label_smoothing(0.1)
        .with_softcap(2.5)
        .with_z_loss(0.05);
    let c = call(41, n, h, v, ce, true).rounded::<f32>();
    let c = LinearCeCall {
        cfg: c.cfg.clone().with_chunk_rows(16),
        ..c
    };
    let ws = widths(v, 3, false);
    let one = run_linear_ce_sharded::<f32, _>(&CpuBackend::with_threads(1), &c, Upstream::ONE, &ws)
        .unwrap();
    for t in [2, 3] {
        let many =
            run_linear_ce_sharded::<f32, _>(&CpuBackend::with_threads(t), &c, Upstream::ONE, &ws)
                .unwrap();
        let bits = |o: &LinearCeOutput| {
            let g = o.grads.as_ref().unwrap();
            (
                o.loss.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                g.iter()
                    .flat_map(|v| v.iter().map(|x| x.to_bits()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(bits(&one.whole), bits(&many.whole), "{t} threads");
    }
}

#[test]
fn sharded_per_row_lse_hits_and_z_loss_match_the_unsharded_reference() {
    covers!("VP-6", "CE-14", "CE-15");
    let (n, h, v) = (11, 8, 31);
    let rw: Vec<f64> = (0..n).map(|i| 0.5 + (i % 3) as f64).collect();
    for red in [Reduction::Mean, Reduction::None] {
        let ce = CrossEntropy::new()
            .with_reduction(red)
            .with_softcap(2.5)
            .with_z_loss(0.05)
            .with_row_weights(rw.clone());
        let mut c = call(61, n, h, v, ce, true).rounded::<f32>();
        // Every fourth row's target made the argmax of its (f64) logits: hits and misses both.
        let z = logits(&c.hidden, &c.weight, c.bias.as_deref(), h);
        let Targets::Classes(t) = &mut c.targets else {
            unreachable!()
        };
        for (i, ti) in t.iter_mut().enumerate() {
            if i % 4 == 0 {
                let row = &z[i * v..(i + 1) * v];
                *ti = (0..v).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as i64;
            }
        }
        let t = t.clone();
        c.cfg = c.cfg.with_chunk_rows(3);
        let (mut lse, mut hits) = (vec![0.0; n], vec![false; n]);
        let want = ReferenceBackend
            .cross_entropy_rows(
                &c.cfg.ce,
                Input::matrix(&z, n, v),
                &t[..],
                CeRowOutputs::new().with_lse(&mut lse).with_hits(&mut hits),
            )
            .unwrap();
        assert!(hits.iter().any(|&x| x) && hits.iter().any(|&x| !x));
        for shards in [1, 2, 5, 8] {
            let ws = widths(v, shards, true);
            let got = run_linear_ce_sharded::<f32, _>(&CpuBackend::new(), &c, Upstream::ONE, &ws)
                .unwrap();
            for r in 0..shards {
                assert_eq!(got.hits[r], hits, "{ws:?} rank {r}");
                let l = Tolerance::LCE_F32.check(&got.lse[r], &lse);
                assert!(l.is_ok(), "lse {ws:?} rank {r}: {l:?}");
                let zl =
                    Tolerance::LCE_F32.check(&got.z_losses[r], &want.z_loss.clone().into_values());
                assert!(zl.is_ok(), "z-loss {ws:?} rank {r}: {zl:?}");
            }
            let l = Tolerance::LCE_F32.check(&got.losses[0], &want.loss.clone().into_values());
            assert!(l.is_ok(), "loss {ws:?}: {l:?}");
        }
    }
}

#[test]
fn a_dropped_option_or_a_wrong_shard_fails_the_comparison() {
    // Mutation checks: the comparison above would catch a rank that ignored an option, or a
    // shard that used another rank's rows.
    let (n, h, v) = (10, 6, 25);
    let ce = CrossEntropy::new().with_softcap(2.5).with_z_loss(0.05);
    let c = call(71, n, h, v, ce, true).rounded::<f32>();
    let ws = widths(v, 3, false);
    let got = run_linear_ce_sharded::<f32, _>(&CpuBackend::new(), &c, Upstream::ONE, &ws).unwrap();
    let mut dropped = c.clone();
    dropped.cfg.ce = CrossEntropy::new();
    assert_eq!(
        compare_linear(
            &got.whole,
            &reference(&c, Upstream::ONE),
            &Tolerance::LCE_F32,
            1.0
        ),
        Outcome::Passed
    );
    assert_ne!(
        compare_linear(
            &got.whole,
            &reference(&dropped, Upstream::ONE),
            &Tolerance::LCE_F32,
            1.0
        ),
        Outcome::Passed
    );
    // The rows of rank 0 and 1 swapped in the classifier: the loss no longer matches.
    let mut swapped = c.clone();
    swapped.weight.swap(0, h * ws[0]);
    assert_ne!(
        compare_linear(
            &got.whole,
            &reference(&swapped, Upstream::ONE),
            &Tolerance::LCE_F32,
            1.0
        ),
        Outcome::Passed
    );
}

#[test]
fn a_call_one_rank_refuses_is_refused_on_every_rank() {
    covers!("VP-6");
    let (n, h) = (4, 3);
    let hidden = vec![0.5f32; n * h];
    let w = vec![0.25f32; 5 * h];
    let t = [0i64, 1, 4, 2];
    let lce = LinearCrossEntropy::new(CrossEntropy::new()).with_chunk_rows(2);
    // Rank 1's weight is not a multiple of H; rank 0 must not wait forever.
    let out = InProcessGroup::run(2, |comm| {
        let rows: &[f32] = if comm.rank == 0 {
            &w[..2 * h]
        } else {
            &w[2 * h..]
        };
        let rows = if comm.rank == 1 {
            &rows[..rows.len() - 1]
        } else {
            rows
        };
        let shard = LinearShard::new(Linear::new(&hidden, rows, h), 5, 2 * comm.rank);
        vocab_parallel::linear_cross_entropy(&CpuBackend::new(), comm, &lce, shard, &t[..])
    });
    assert!(
        matches!(out[0], Err(LossError::Collective(_))),
        "{:?}",
        out[0]
    );
    assert!(
        matches!(out[1], Err(LossError::ShapeMismatch { what: "weight", .. })),
        "{:?}",
        out[1]
    );
    // Ranks that disagree on the rows (hence on the chunks) are refused, not deadlocked.
    let out = InProcessGroup::run(2, |comm| {
        let rows: &[f32] = if comm.rank == 0 {
            &w[..2 * h]
        } else {
            &w[2 * h..]
        };
        let hid = if comm.rank == 0 {
            &hidden[..]
        } else {
            &hidden[..h * 3]
        };
        let shard = LinearShard::new(Linear::new(hid, rows, h), 5, 2 * comm.rank);
        vocab_parallel::linear_cross_entropy(
            &CpuBackend::new(),
            comm,
            &lce,
            shard,
            &t[..n - comm.rank],
        )
    });
    assert!(
        out.iter()
            .all(|o| matches!(o, Err(LossError::Collective(_)))),
        "{out:?}"
    );
    // Shards that do not tile the vocabulary.
    let out = InProcessGroup::run(2, |comm| {
        // Rank 0 holds classes 0..2, rank 1 3..5: class 2 is nobody's.
        let rows: &[f32] = if comm.rank == 0 {
            &w[..2 * h]
        } else {
            &w[3 * h..]
        };
        let shard = LinearShard::new(Linear::new(&hidden, rows, h), 5, 3 * comm.rank);
        vocab_parallel::linear_cross_entropy(&CpuBackend::new(), comm, &lce, shard, &t[..])
    });
    assert!(
        out.iter()
            .all(|o| matches!(o, Err(LossError::InvalidParameter { name: "offset", .. }))),
        "{out:?}"
    );
    // A target outside the vocabulary, a chunk of 0 rows: refused before any statistic.
    let bad = [0i64, 1, 5, 2];
    for (lce, t) in [
        (lce.clone(), &bad),
        (
            LinearCrossEntropy::new(CrossEntropy::new()).with_chunk_rows(0),
            &t,
        ),
    ] {
        let out = InProcessGroup::run(2, |comm| {
            let rows: &[f32] = if comm.rank == 0 {
                &w[..2 * h]
            } else {
                &w[2 * h..]
            };
            let shard = LinearShard::new(Linear::new(&hidden, rows, h), 5, 2 * comm.rank);
            vocab_parallel::linear_cross_entropy(&CpuBackend::new(), comm, &lce, shard, &t[..])
        });
        assert!(out.iter().all(|o| o.is_err()), "{out:?}");
    }
    // Probability targets of the whole vocabulary on a shard: a shape error.
    let probs = vec![0.2f32; n * 5];
    let out = InProcessGroup::run(2, |comm| {
        let rows: &[f32] = if comm.rank == 0 {
            &w[..2 * h]
        } else {
            &w[2 * h..]
        };
        let shard = LinearShard::new(Linear::new(&hidden, rows, h), 5, 2 * comm.rank);
        vocab_parallel::linear_cross_entropy(
            &CpuBackend::new(),
            comm,
            &lce,
            shard,
            CeTargets::Probs(&probs[..]),
        )
    });
    assert!(out.iter().all(|o| o.is_err()), "{out:?}");
}

#[test]
fn non_finite_inputs_follow_the_unsharded_reference_on_every_shard() {
    covers!("VP-6", "TOL-4");
    let (n, h, v) = (10, 5, 23);
    for ce in [
        CrossEntropy::new(),
        CrossEntropy::new().with_softcap(2.5).with_z_loss(0.05),
        CrossEntropy::new()
            .with_reduction(Reduction::None)
            .with_label_smoothing(0.1),
    ] {
        let mut c = call(81, n, h, v, ce, true).with_chunk(3);
        // Row 0: an infinite hidden state; row 2 (ignored): an infinite hidden state; class 6's
        // weight row: a NaN (on whichever shard holds it); a -inf bias.
        c.hidden[1] = f64::INFINITY;
        c.hidden[2 * h + 3] = f64::NEG_INFINITY;
        c.weight[6 * h + 2] = f64::NAN;
        c.bias.as_mut().unwrap()[17] = f64::NEG_INFINITY;
        let want = reference(&c, Upstream::ONE);
        assert!(want.loss.iter().any(|x| !x.is_finite()));
        for shards in [1, 2, 4, 7] {
            let ws = widths(v, shards, true);
            let got = run_linear_ce_sharded::<f32, _>(&CpuBackend::new(), &c, Upstream::ONE, &ws)
                .unwrap();
            assert!(ranks_agree_nan(&got), "{ws:?}");
            let o = compare_linear(&got.whole, &want, &Tolerance::LCE_F32, 1.0);
            assert_eq!(o, Outcome::Passed, "{ws:?} {:?}", c.cfg.ce);
        }
    }
}

/// [`ranks_agree`], NaN payloads aside.
fn ranks_agree_nan(out: &smoothloss_spec::cases::linear_ce::ShardedLinearCeOutput) -> bool {
    let key = |v: &[f64]| {
        v.iter()
            .map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() })
            .collect::<Vec<_>>()
    };
    out.losses.iter().all(|l| key(l) == key(&out.losses[0]))
        && out
            .hidden_grads
            .iter()
            .all(|g| key(g) == key(&out.hidden_grads[0]))
}

trait WithChunk {
    fn with_chunk(self, k: usize) -> Self;
}

impl WithChunk for LinearCeCall {
    fn with_chunk(mut self, k: usize) -> Self {
        self.cfg = self.cfg.with_chunk_rows(k);
        self
    }
}

#[test]
fn the_pytorch_linear_ce_cases_pass_sharded() {
    covers!("VP-6", "LCE-5");
    // spec/cases/linear_ce.json: PyTorch's float64 composite and autograd. Every case on 1, 3
    // and 5 uneven shards: f64 data on the reference's products within TOL-1's rule, f32 data
    // on the CPU's within LCE-5's PyTorch bound.
    let file = smoothloss_spec::linear_ce_cases();
    let mut ran = 0;
    for case in &file.cases {
        let Ok((c, want)) = case.decode_linear_ce() else {
            continue;
        };
        let wmax = AbsScale::of_weights(c.cfg.ce.class_weights.as_deref());
        for shards in [1, 3, 5] {
            let ws = widths(c.vocab(), shards.min(c.vocab()), false);
            let got64 =
                run_linear_ce_sharded::<f64, _>(&ReferenceBackend, &c, Upstream::ONE, &ws).unwrap();
            let f64_tol = Tolerance {
                abs: 1e-12,
                rel: 1e-10,
                scaled: 1e-12,
                capped_logit: 0.0,
            };
            assert_eq!(
                compare_linear(&got64.whole, &want, &f64_tol, wmax),
                Outcome::Passed,
                "{} f64 {ws:?}",
                case.id
            );
            let got32 = run_linear_ce_sharded::<f32, _>(&CpuBackend::new(), &c, Upstream::ONE, &ws)
                .unwrap();
            assert_eq!(
                compare_linear(&got32.whole, &want, &Tolerance::LCE_F32_TORCH_CASES, wmax),
                Outcome::Passed,
                "{} f32 {ws:?}",
                case.id
            );
        }
        ran += 1;
    }
    assert!(ran >= 40, "only {ran} linear CE cases decoded");
}
