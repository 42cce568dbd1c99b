//! The CPU fused linear cross-entropy (`LCE-*`) against the f64 reference on the same `f32`
//! inputs (`LCE-5`), for every option, bias or not, chunk sizes and upstream gradients;
//! chunk-size invariance (proptest); bit-identical results for 1, 2 and 3 threads (`TOL-3`);
//! non-finite inputs as the reference (`TOL-4`).

use proptest::prelude::*;
use smoothloss_core::ReferenceBackend;
use smoothloss_core::{
    CrossEntropy, Linear, LinearCrossEntropy, LossError, Losses, Reduction, Upstream,
};
use smoothloss_cpu::CpuBackend;
use smoothloss_spec::cases::Targets;
use smoothloss_spec::cases::linear_ce::{LinearCeCall, LinearCeOutput, run_linear_ce};
use smoothloss_spec::conformance::Outcome;
use smoothloss_spec::conformance::linear_ce::compare_linear;
use smoothloss_spec::random::Rng;
use smoothloss_spec::tolerance::Tolerance;
use smoothloss_spec::{covers, kit};

fn call(
    seed: u64,
    n: usize,
    h: usize,
    v: usize,
    cfg: CrossEntropy,
    bias: bool,
    probs: bool,
) -> LinearCeCall {
    let mut rng = Rng::new(seed);
    let targets = if probs {
        let mut q = rng.vec(n * v, 0.0, 1.0);
        for row in q.chunks_mut(v) {
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= s);
        }
        Targets::Probs(q)
    } else {
        let ig = cfg.ignore_index.unwrap_or(-100);
        Targets::Classes(
            (0..n)
                .map(|i| {
                    if i % 5 == 2 {
                        ig
                    } else {
                        ((i * 31 + 7) % v) as i64
                    }
                })
                .collect(),
        )
    };
    LinearCeCall {
        cfg: LinearCrossEntropy::new(cfg),
        hidden: rng.vec(n * h, -1.0, 1.0),
        weight: rng.vec(v * h, -3.0 / (h as f64).sqrt(), 3.0 / (h as f64).sqrt()),
        bias: bias.then(|| rng.vec(v, -1.0, 1.0)),
        hidden_dim: h,
        targets,
    }
}

fn configs(v: usize) -> Vec<CrossEntropy> {
    let w: Vec<f64> = (0..v).map(|j| 0.25 + (j % 7) as f64 * 0.3).collect();
    let mut out = Vec::new();
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        out.push(CrossEntropy::new().with_reduction(red));
        out.push(
            CrossEntropy::new()
                .with_label_smoothing(0.1)
                .with_class_weights(w.clone())
                .with_reduction(red),
        );
        out.push(
            CrossEntropy::new()
                .with_label_smoothing(0.3)
                .with_ignore_index(Some(1))
                .with_reduction(red),
        );
    }
    out
}

fn assert_matches_reference(
    c: &LinearCeCall,
    backend: &CpuBackend,
    up: Upstream<'_>,
) -> Result<(), String> {
    let want = run_linear_ce::<f64, _>(&ReferenceBackend, &c.rounded::<f32>(), up, true)
        .map_err(|e| e.to_string())?;
    let got = run_linear_ce::<f32, _>(backend, c, up, true).map_err(|e| e.to_string())?;
    let w = smoothloss_spec::conformance::AbsScale::of_weights(c.cfg.ce.class_weights.as_deref());
    match compare_linear(&got, &want, &Tolerance::LCE_F32, w) {
        Outcome::Passed => {}
        o => return Err(format!("{o:?}")),
    }
    // Forward only: the same loss values.
    let fwd = run_linear_ce::<f32, _>(backend, c, up, false).map_err(|e| e.to_string())?;
    if fwd.loss != got.loss {
        return Err(format!(
            "forward-only loss {:?} != {:?}",
            fwd.loss, got.loss
        ));
    }
    Ok(())
}

#[test]
fn cpu_matches_the_reference_for_every_option() {
    covers!("LCE-1", "LCE-2", "LCE-3", "LCE-5");
    let backend = CpuBackend::new();
    let mut seed = 0;
    for (n, h, v, chunk) in [
        (9, 5, 7, None),
        (23, 17, 300, Some(4)),
        (12, 40, 1100, Some(5)),
    ] {
        for cfg in configs(v) {
            for (bias, probs) in [(true, false), (false, false), (true, true)] {
                seed += 1;
                let mut c = call(seed, n, h, v, cfg.clone(), bias, probs);
                if let Some(k) = chunk {
                    c.cfg = c.cfg.with_chunk_rows(k);
                }
                let per: Vec<f64> = (0..n).map(|i| 0.5 - (i % 3) as f64 * 0.75).collect();
                let mut ups = vec![Upstream::ONE, Upstream::Scalar(-2.5)];
                if cfg.reduction == Reduction::None {
                    ups.push(Upstream::PerElement(&per));
                }
                for up in ups {
                    assert_matches_reference(&c, &backend, up).unwrap_or_else(|e| {
                        panic!("{n}x{h}x{v} {cfg:?} bias {bias} probs {probs} {up:?}: {e}")
                    });
                }
            }
        }
    }
}

#[test]
fn chunks_do_not_change_the_mean() {
    covers!("LCE-2", "LCE-4");
    // The first rows ignored: a per-chunk mean would weigh the chunks' kept rows differently.
    let cfg =
        CrossEntropy::new().with_class_weights((0..50).map(|j| 0.5 + (j % 3) as f64).collect());
    let mut c = call(3, 17, 6, 50, cfg, true, false);
    c.targets = Targets::Classes(
        (0..17)
            .map(|i| if i < 6 { -100 } else { i as i64 * 3 % 50 })
            .collect(),
    );
    let backend = CpuBackend::new();
    for k in [1, 2, 5, 6, 16, 17, 100] {
        let mut ck = c.clone();
        ck.cfg = ck.cfg.with_chunk_rows(k);
        assert_matches_reference(&ck, &backend, Upstream::ONE)
            .unwrap_or_else(|e| panic!("chunk {k}: {e}"));
    }
}

fn outputs(backend: &CpuBackend, c: &LinearCeCall) -> LinearCeOutput {
    run_linear_ce::<f32, _>(backend, c, Upstream::ONE, true).unwrap()
}

#[test]
fn bit_identical_for_any_thread_count() {
    covers!("TOL-3", "LCE-4");
    // Several vocabulary and hidden blocks per GEMM, several chunks, rows split over tasks.
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let c = call(11, 40, 300, 2500, cfg, true, false);
    let c = LinearCeCall {
        cfg: c.cfg.clone().with_chunk_rows(16),
        ..c
    };
    let base = outputs(&CpuBackend::with_threads(1), &c);
    for t in [2, 3] {
        let o = outputs(&CpuBackend::with_threads(t), &c);
        kit::assert_same_bits_f64(&o.loss, &base.loss);
        for (a, b) in o
            .grads
            .as_ref()
            .unwrap()
            .iter()
            .zip(base.grads.as_ref().unwrap())
        {
            kit::assert_same_bits_f64(a, b);
        }
    }
}

#[test]
fn non_finite_inputs_follow_the_reference() {
    covers!("TOL-4");
    let cfg = CrossEntropy::new().with_reduction(Reduction::None);
    let mut c = call(8, 6, 4, 9, cfg, true, false);
    c.targets = Targets::Classes(vec![0, -100, 3, 4, 5, 6]);
    c.hidden[2 * 4 + 1] = f64::NAN; // row 2: NaN loss, NaN dH row, NaN dW and db
    let run = |c: &LinearCeCall| {
        let want =
            run_linear_ce::<f64, _>(&ReferenceBackend, &c.rounded::<f32>(), Upstream::ONE, true)
                .unwrap();
        let got = run_linear_ce::<f32, _>(&CpuBackend::new(), c, Upstream::ONE, true).unwrap();
        (got, want)
    };
    let (got, want) = run(&c);
    assert!(got.loss[2].is_nan() && want.loss[2].is_nan());
    assert!(
        got.loss
            .iter()
            .enumerate()
            .all(|(i, l)| (i == 2) == l.is_nan())
    );
    let classes = |v: &[f64]| {
        v.iter()
            .map(|x| (x.is_nan(), x.is_infinite()))
            .collect::<Vec<_>>()
    };
    for (g, w) in got
        .grads
        .as_ref()
        .unwrap()
        .iter()
        .zip(want.grads.as_ref().unwrap())
    {
        assert_eq!(classes(g), classes(w));
    }
    // An ignored row holding inf: loss 0, but 0 * inf = NaN in dW's column (as autograd).
    c.hidden[2 * 4 + 1] = 0.5;
    c.hidden[4 + 3] = f64::INFINITY;
    let (got, want) = run(&c);
    assert_eq!(got.loss[1], 0.0);
    let [dh, dw, db] = got.grads.unwrap();
    let [wh, ww, wb] = want.grads.unwrap();
    assert_eq!(classes(&dh), classes(&wh));
    assert_eq!(classes(&dw), classes(&ww));
    assert_eq!(classes(&db), classes(&wb));
    assert!(
        dw.chunks(4)
            .all(|r| r[3].is_nan() && r[..3].iter().all(|x| x.is_finite()))
    );
}

#[test]
fn degenerate_mean_runs_through_the_reference() {
    // Every kept row of class weight 0: D = 0, loss 0/0 = NaN, gradient inf * g as the reference.
    let mut w = vec![1.0; 5];
    w[2] = 0.0;
    let cfg = CrossEntropy::new().with_class_weights(w);
    let mut c = call(4, 3, 2, 5, cfg, false, false);
    c.targets = Targets::Classes(vec![2, -100, 2]);
    let want = run_linear_ce::<f64, _>(&ReferenceBackend, &c.rounded::<f32>(), Upstream::ONE, true)
        .unwrap();
    let got = run_linear_ce::<f32, _>(&CpuBackend::new(), &c, Upstream::ONE, true).unwrap();
    assert!(got.loss[0].is_nan() && want.loss[0].is_nan());
    for (g, w) in got.grads.unwrap().iter().zip(want.grads.as_ref().unwrap()) {
        let f32ed: Vec<f64> = w.iter().map(|&x| f64::from(x as f32)).collect();
        kit::assert_same_bits_f64(g, &f32ed);
    }
}

#[test]
fn errors_are_the_front_doors() {
    let (h, w) = (vec![0.5f32; 6], vec![1.0f32; 8]);
    let lce = LinearCrossEntropy::new(CrossEntropy::new());
    let (mut dh, mut dw) = (vec![7.0f32; 6], vec![7.0f32; 7]);
    let r = CpuBackend::new().linear_cross_entropy(
        &lce,
        Linear::new(&h, &w, 2).with_grads(&mut dh, &mut dw),
        &[0, 1, 2],
    );
    assert!(matches!(
        r,
        Err(LossError::ShapeMismatch {
            what: "weight_grad",
            expected: 8,
            got: 7
        })
    ));
    let r = CpuBackend::new().linear_cross_entropy(&lce, Linear::new(&h, &w, 2), &[0, 9, 2]);
    assert!(matches!(r, Err(LossError::TargetOutOfRange { row: 1, .. })));
    let big = LinearCrossEntropy::new(CrossEntropy::new().with_class_weights(vec![1e39; 4]));
    let r = CpuBackend::new().linear_cross_entropy(&big, Linear::new(&h, &w, 2), &[0, 1, 2]);
    assert!(matches!(
        r,
        Err(LossError::InvalidParameter {
            name: "class_weights",
            ..
        })
    ));
    assert!(dh.iter().chain(&dw).all(|&x| x == 7.0));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn chunk_size_invariance(n in 1usize..20, h in 1usize..9, v in 1usize..40, a in 1usize..25, b in 1usize..25,
                             eps in 0.0f64..0.5, red in 0usize..3, seed in 0u64..1000) {
        covers!("LCE-4");
        let red = [Reduction::Mean, Reduction::Sum, Reduction::None][red];
        let c = call(seed, n, h, v, CrossEntropy::new().with_label_smoothing(eps).with_reduction(red), seed % 2 == 0, false);
        let (mut ca, mut cb) = (c.clone(), c);
        ca.cfg = ca.cfg.with_chunk_rows(a);
        cb.cfg = cb.cfg.with_chunk_rows(b);
        let backend = CpuBackend::new();
        let (oa, ob) = (outputs(&backend, &ca), outputs(&backend, &cb));
        // The chunking changes only the f32 order of dW's sum over chunks.
        prop_assert_eq!(compare_linear(&oa, &ob, &Tolerance::LCE_F32, 1.0), Outcome::Passed);
        prop_assert_eq!(&oa.loss, &ob.loss);
        let (ga, gb) = (oa.grads.unwrap(), ob.grads.unwrap());
        prop_assert_eq!(&ga[0], &gb[0]);
    }
}
