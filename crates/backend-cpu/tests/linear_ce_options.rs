//! The CPU fused linear cross-entropy with the language-model options of the cross-entropy
//! (`CE-10` .. `CE-13`: softcap, z-loss, row weights, a given denominator) against the f64
//! reference composite on the same `f32` inputs (`LCE-5`), with chunk sizes that split the
//! rows unevenly; the exact mean over micro-batches (`CE-13`) for the linear cross-entropy; and
//! a mutation check: the comparison fails when the backend drops an option.

use smoothloss_core::ReferenceBackend;
use smoothloss_core::{CeTargets, CrossEntropy, LinearCrossEntropy, Reduction, Upstream};
use smoothloss_cpu::CpuBackend;
use smoothloss_spec::cases::Targets;
use smoothloss_spec::cases::linear_ce::{LinearCeCall, LinearCeOutput, run_linear_ce};
use smoothloss_spec::conformance::linear_ce::compare_linear;
use smoothloss_spec::conformance::{AbsScale, Outcome};
use smoothloss_spec::covers;
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

fn compare(c: &LinearCeCall, want: &LinearCeOutput, up: Upstream<'_>) -> Outcome {
    let got = run_linear_ce::<f32, _>(&CpuBackend::new(), c, up, true).unwrap();
    let w = AbsScale::of_weights(c.cfg.ce.class_weights.as_deref());
    compare_linear(&got, want, &Tolerance::LCE_F32, w)
}

fn reference(c: &LinearCeCall, up: Upstream<'_>) -> LinearCeOutput {
    run_linear_ce::<f64, _>(&ReferenceBackend, &c.rounded::<f32>(), up, true).unwrap()
}

#[test]
fn every_option_matches_the_reference_in_uneven_chunks() {
    covers!(
        "LCE-2", "LCE-4", "LCE-5", "CE-10", "CE-11", "CE-12", "CE-13"
    );
    let mut seed = 100;
    for (n, h, v, chunk) in [
        (23, 9, 37, Some(4)),
        (12, 17, 300, Some(5)),
        (9, 5, 7, None),
    ] {
        for (name, cfg) in configs(n, v) {
            for bias in [true, false] {
                seed += 1;
                let mut c = call(seed, n, h, v, cfg.clone(), bias);
                if let Some(k) = chunk {
                    c.cfg = c.cfg.with_chunk_rows(k);
                }
                let per: Vec<f64> = (0..n).map(|i| 0.5 - (i % 3) as f64 * 0.75).collect();
                let mut ups = vec![Upstream::ONE, Upstream::Scalar(-2.5)];
                if cfg.reduction == Reduction::None {
                    ups.push(Upstream::PerElement(&per));
                }
                for up in ups {
                    let o = compare(&c, &reference(&c, up), up);
                    assert_eq!(
                        o,
                        Outcome::Passed,
                        "{n}x{h}x{v} chunk {chunk:?} {name} {:?} bias {bias} {up:?}",
                        cfg.reduction
                    );
                }
            }
        }
    }
}

#[test]
fn a_dropped_option_fails_the_comparison() {
    // Mutation check: a backend that ignored an option would be caught by the test above.
    let (n, h, v) = (23, 9, 37);
    let rw: Vec<f64> = (0..n).map(|i| [0.0, 0.5, 1.0, 2.5][i % 4]).collect();
    let base = CrossEntropy::new();
    for (name, with, without) in [
        ("softcap", base.clone().with_softcap(2.5), base.clone()),
        ("z-loss", base.clone().with_z_loss(0.05), base.clone()),
        (
            "row weights",
            base.clone().with_row_weights(rw),
            base.clone(),
        ),
        (
            "denominator",
            base.clone().with_denominator(7.5),
            base.clone(),
        ),
    ] {
        let c = call(7, n, h, v, with, true).with_chunk(4);
        let mut dropped = c.clone();
        dropped.cfg.ce = without;
        assert_eq!(
            compare(&c, &reference(&c, Upstream::ONE), Upstream::ONE),
            Outcome::Passed
        );
        assert_ne!(
            compare(&c, &reference(&dropped, Upstream::ONE), Upstream::ONE),
            Outcome::Passed,
            "dropping {name} went unnoticed"
        );
    }
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

/// The call restricted to rows `r` (row weights sliced), with the given denominator `d`.
fn micro(c: &LinearCeCall, r: std::ops::Range<usize>, d: f64) -> LinearCeCall {
    let h = c.hidden_dim;
    let mut ce = c.cfg.ce.clone().with_denominator(d);
    ce.row_weights = ce.row_weights.map(|w| w[r.clone()].to_vec());
    let Targets::Classes(t) = &c.targets else {
        unreachable!("class targets")
    };
    LinearCeCall {
        cfg: LinearCrossEntropy::new(ce).with_chunk_rows(3),
        hidden: c.hidden[r.start * h..r.end * h].to_vec(),
        weight: c.weight.clone(),
        bias: c.bias.clone(),
        hidden_dim: h,
        targets: Targets::Classes(t[r].to_vec()),
    }
}

#[test]
fn micro_batches_with_the_summed_denominator_give_the_whole_batch() {
    covers!("CE-13", "LCE-2");
    let (n, h, v) = (19, 6, 23);
    let rw: Vec<f64> = (0..n).map(|i| 0.25 + (i % 4) as f64 * 0.5).collect();
    let cw: Vec<f64> = (0..v).map(|j| 0.5 + (j % 3) as f64).collect();
    let ce = CrossEntropy::new()
        .with_label_smoothing(0.1)
        .with_class_weights(cw)
        .with_softcap(2.5)
        .with_z_loss(0.05)
        .with_row_weights(rw);
    let whole = call(21, n, h, v, ce, true).with_chunk(4);
    let Targets::Classes(t) = &whole.targets else {
        unreachable!()
    };
    let cuts = [0, 5, 6, 13, n];
    // Each micro-batch's own share of the denominator, summed first.
    let d: f64 = cuts
        .windows(2)
        .map(|w| {
            let mut part = whole.cfg.ce.clone();
            part.row_weights = part.row_weights.map(|r| r[w[0]..w[1]].to_vec());
            part.mean_denominator(&CeTargets::<f64>::Classes(&t[w[0]..w[1]]), w[1] - w[0])
        })
        .sum();
    for exact in [true, false] {
        // The f64 reference exactly, the CPU within f32 rounding.
        let run = |c: &LinearCeCall| {
            if exact {
                run_linear_ce::<f64, _>(&ReferenceBackend, c, Upstream::ONE, true).unwrap()
            } else {
                run_linear_ce::<f32, _>(&CpuBackend::new(), c, Upstream::ONE, true).unwrap()
            }
        };
        let all = run(&whole);
        let mut sum = LinearCeOutput {
            loss: vec![0.0],
            grads: Some([Vec::new(), vec![0.0; v * h], vec![0.0; v]]),
        };
        for w in cuts.windows(2) {
            let o = run(&micro(&whole, w[0]..w[1], d));
            let [dh, dw, db] = o.grads.unwrap();
            let g = sum.grads.as_mut().unwrap();
            sum.loss[0] += o.loss[0];
            g[0].extend(dh);
            g[1].iter_mut().zip(dw).for_each(|(a, b)| *a += b);
            g[2].iter_mut().zip(db).for_each(|(a, b)| *a += b);
        }
        let tol = if exact {
            Tolerance {
                abs: 1e-12,
                rel: 1e-12,
                scaled: 0.0,
                capped_logit: 0.0,
            }
        } else {
            Tolerance::LCE_F32
        };
        assert_eq!(
            compare_linear(&sum, &all, &tol, 3.0),
            Outcome::Passed,
            "exact {exact}"
        );
    }
}

#[test]
fn every_option_is_bit_identical_for_any_thread_count() {
    covers!("TOL-3");
    let (n, h, v) = (37, 40, 1300);
    let (_, cfg) = configs(n, v).swap_remove(3); // "all" under mean
    let c = call(31, n, h, v, cfg, true).with_chunk(7);
    let run = |t: usize| {
        run_linear_ce::<f32, _>(&CpuBackend::with_threads(t), &c, Upstream::ONE, true).unwrap()
    };
    let bits = |o: &LinearCeOutput| -> Vec<u64> {
        let g = o.grads.as_ref().unwrap();
        o.loss
            .iter()
            .chain(&g[0])
            .chain(&g[1])
            .chain(&g[2])
            .map(|x| x.to_bits())
            .collect()
    };
    let base = bits(&run(1));
    for t in [2, 3] {
        assert_eq!(bits(&run(t)), base, "{t} threads");
    }
}

#[test]
fn per_row_lse_hits_and_z_loss_apart_match_the_reference_rows() {
    covers!("CE-14", "CE-15", "LCE-4");
    use smoothloss_core::reference::linear_cross_entropy::logits;
    use smoothloss_core::{CeRowOutputs, Input, Linear, Losses};
    let (n, h, v) = (17, 8, 45);
    let rw: Vec<f64> = (0..n).map(|i| 0.5 + (i % 3) as f64).collect();
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let ce = CrossEntropy::new()
            .with_reduction(red)
            .with_label_smoothing(0.1)
            .with_softcap(2.5)
            .with_z_loss(0.05)
            .with_row_weights(rw.clone());
        let mut c = call(91, n, h, v, ce, true).rounded::<f32>();
        // Every third row's target made the argmax of its logits: hits and misses both.
        let z = logits(&c.hidden, &c.weight, c.bias.as_deref(), h);
        let Targets::Classes(t) = &mut c.targets else {
            unreachable!()
        };
        for (i, ti) in t.iter_mut().enumerate() {
            if i % 3 == 0 && *ti != -100 {
                let row = &z[i * v..(i + 1) * v];
                *ti = (0..v).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as i64;
            }
        }
        let t = t.clone();
        let (mut want_lse, mut want_hit) = (vec![0.0; n], vec![false; n]);
        let want = ReferenceBackend
            .cross_entropy_rows(
                &c.cfg.ce,
                Input::matrix(&z, n, v),
                &t[..],
                CeRowOutputs::new()
                    .with_lse(&mut want_lse)
                    .with_hits(&mut want_hit),
            )
            .unwrap();
        assert!(want_hit.iter().any(|&x| x) && want_hit.iter().any(|&x| !x));
        let f = |x: &[f64]| x.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let (hid, w, b) = (f(&c.hidden), f(&c.weight), f(c.bias.as_ref().unwrap()));
        for chunk in [1, 4, 17] {
            let lce = c.cfg.clone().with_chunk_rows(chunk);
            let (mut lse, mut hit) = (vec![0.0f32; n], vec![false; n]);
            let (mut dh, mut dw, mut db) = (vec![0.0f32; n * h], vec![0.0f32; v * h], vec![0.0; v]);
            let got = CpuBackend::new()
                .linear_cross_entropy_rows(
                    &lce,
                    Linear::new(&hid, &w, h)
                        .with_bias(&b)
                        .with_grads(&mut dh, &mut dw)
                        .with_bias_grad(&mut db),
                    &t[..],
                    CeRowOutputs::new().with_lse(&mut lse).with_hits(&mut hit),
                )
                .unwrap();
            assert_eq!(hit, want_hit, "chunk {chunk} {red:?}");
            let lse: Vec<f64> = lse.iter().map(|&x| f64::from(x)).collect();
            let tol = Tolerance::LCE_F32;
            assert!(tol.check(&lse, &want_lse).is_ok(), "lse chunk {chunk}");
            let zl = tol.check(
                &got.z_loss.into_values(),
                &want.z_loss.clone().into_values(),
            );
            assert!(zl.is_ok(), "z-loss chunk {chunk} {red:?}: {zl:?}");
            let l = tol.check(&got.loss.into_values(), &want.loss.clone().into_values());
            assert!(l.is_ok(), "loss chunk {chunk} {red:?}: {l:?}");
            // The same call without per-row outputs: the same loss and gradients.
            let (mut dh2, mut dw2, mut db2) =
                (vec![0.0f32; n * h], vec![0.0f32; v * h], vec![0.0; v]);
            let plain = CpuBackend::new()
                .linear_cross_entropy(
                    &lce,
                    Linear::new(&hid, &w, h)
                        .with_bias(&b)
                        .with_grads(&mut dh2, &mut dw2)
                        .with_bias_grad(&mut db2),
                    &t[..],
                )
                .unwrap();
            let l = tol.check(&plain.into_values(), &want.loss.clone().into_values());
            assert!(l.is_ok(), "plain loss chunk {chunk} {red:?}: {l:?}");
            assert_eq!((dh, dw, db), (dh2, dw2, db2));
        }
        // The reference's default body (as the CUDA backend runs it) gives the same rows.
        let (mut lse, mut hit) = (vec![0.0f64; n], vec![false; n]);
        let out = ReferenceBackend
            .linear_cross_entropy_rows(
                &c.cfg,
                Linear::new(&c.hidden, &c.weight, h).with_bias(c.bias.as_ref().unwrap()),
                &t[..],
                CeRowOutputs::new().with_lse(&mut lse).with_hits(&mut hit),
            )
            .unwrap();
        assert_eq!((lse, hit), (want_lse.clone(), want_hit.clone()));
        assert_eq!(out, want);
    }
}

#[test]
fn per_row_outputs_of_the_wrong_length_are_refused() {
    use smoothloss_core::{CeRowOutputs, Linear, LossError, Losses};
    let (h, w) = ([0.5f32; 6], [0.25f32; 9]);
    let mut lse = [0.0f32; 3];
    let r = CpuBackend::new().linear_cross_entropy_rows(
        &LinearCrossEntropy::new(CrossEntropy::new()),
        Linear::new(&h, &w, 3),
        &[0i64, 1][..],
        CeRowOutputs::new().with_lse(&mut lse),
    );
    assert!(matches!(r, Err(LossError::ShapeMismatch { .. })), "{r:?}");
}
