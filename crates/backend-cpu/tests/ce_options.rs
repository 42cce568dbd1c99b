//! The CPU backend's cross-entropy with the LLM options (`CE-10` .. `CE-15`) against the `f64`
//! reference on the same `f32` inputs (`TOL-2`), on shapes of language-model training: long
//! rows (32,000 classes), many short rows, confident rows; per-row outputs (log-sum-exp,
//! hits) and the z-loss apart; micro-batch split and per-row upstream identities bit for bit;
//! bit-identical results for any thread count (`TOL-3`). The shared conformance suite
//! (`tests/conformance.rs`) also runs the PyTorch cases `spec/cases/llm_ce.json` and random
//! calls with these options.

use smoothloss_core::{
    CeOutput, CeRowOutputs, CeTargets, CrossEntropy, Input, Losses, Reduction, ReferenceBackend,
    Upstream,
};
use smoothloss_cpu::{CpuBackend, SimdLevel};
use smoothloss_spec::random::Rng;
use smoothloss_spec::{Tolerance, covers, kit};

/// One call's results: the loss values, the z-loss, the gradient, lse and hits.
struct Out {
    out: CeOutput,
    grad: Vec<f32>,
    lse: Vec<f32>,
    hit: Vec<bool>,
}

fn run<B: Losses<f32>>(
    b: &B,
    cfg: &CrossEntropy,
    z: &[f32],
    n: usize,
    c: usize,
    y: &[i64],
    up: Upstream<'_>,
) -> Out {
    let mut grad = vec![0.0f32; z.len()];
    let (mut lse, mut hit) = (vec![0.0f32; n], vec![false; n]);
    let out = b
        .cross_entropy_rows(
            cfg,
            Input::matrix(z, n, c)
                .with_grad(&mut grad)
                .with_upstream(up),
            y,
            CeRowOutputs::new().with_lse(&mut lse).with_hits(&mut hit),
        )
        .unwrap();
    Out {
        out,
        grad,
        lse,
        hit,
    }
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn backends() -> Vec<CpuBackend> {
    vec![
        CpuBackend::new(),
        CpuBackend::new().with_simd_level(SimdLevel::Scalar),
    ]
}

/// The CPU's results against the reference's on the same inputs, `TOL-2`'s figures
/// (`Tolerance::F32`), every output; the hits equal.
fn assert_matches_reference(
    cfg: &CrossEntropy,
    z: &[f32],
    n: usize,
    c: usize,
    y: &[i64],
    up: Upstream<'_>,
) {
    let want = run(&ReferenceBackend, cfg, z, n, c, y, up);
    for b in backends() {
        let got = run(&b, cfg, z, n, c, y, up);
        let tol = Tolerance::F32;
        // Row weights up to 2 multiply each row: the absolute term scales with them (TOL-2).
        let w = cfg
            .row_weights
            .as_ref()
            .map_or(1.0, |r| r.iter().fold(1.0_f64, |m, &v| m.max(v)));
        tol.check_scaled(got.out.loss.values(), want.out.loss.values(), |_| w)
            .unwrap_or_else(|e| panic!("{:?} loss: {e}", b.simd_level()));
        tol.check_scaled(got.out.z_loss.values(), want.out.z_loss.values(), |_| w)
            .unwrap_or_else(|e| panic!("{:?} z-loss: {e}", b.simd_level()));
        tol.check_scaled(&widen(&got.grad), &widen(&want.grad), |_| w)
            .unwrap_or_else(|e| panic!("{:?} grad: {e}", b.simd_level()));
        tol.check(&widen(&got.lse), &widen(&want.lse))
            .unwrap_or_else(|e| panic!("{:?} lse: {e}", b.simd_level()));
        assert_eq!(got.hit, want.hit, "{:?} hits", b.simd_level());
    }
}

#[test]
fn long_rows_with_every_option_match_the_reference() {
    covers!("CE-10", "CE-11", "CE-12", "CE-13", "CE-14", "CE-15");
    let mut rng = Rng::new(1201);
    let (n, c) = (6, 32_000);
    let z: Vec<f32> = rng
        .vec(n * c, -40.0, 40.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let y: Vec<i64> = vec![5, -100, 31_999, 0, 17_000, 2048];
    let cfg = CrossEntropy::new()
        .with_label_smoothing(0.1)
        .with_softcap(30.0)
        .with_z_loss(1e-4)
        .with_row_weights(vec![1.0, 2.0, 0.5, 0.0, 1.5, 1.0])
        .with_denominator(9.0);
    assert_matches_reference(&cfg, &z, n, c, &y, Upstream::Scalar(0.75));
    let none = cfg.clone().with_reduction(Reduction::None);
    let none = CrossEntropy {
        denominator: None,
        ..none
    };
    let u = [0.5, -1.0, 2.0, 1.0, -0.25, 3.0];
    assert_matches_reference(&none, &z, n, c, &y, Upstream::PerElement(&u));
}

#[test]
fn short_rows_with_every_option_match_the_reference() {
    covers!("CE-10", "CE-11", "CE-12", "CE-14");
    let mut rng = Rng::new(77);
    for &(n, c) in &[(513, 10), (40, 129), (7, 1)] {
        let z: Vec<f32> = rng
            .vec(n * c, -8.0, 8.0)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let y: Vec<i64> = (0..n)
            .map(|i| {
                if i % 9 == 4 {
                    -100
                } else {
                    rng.below(c) as i64
                }
            })
            .collect();
        for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let cfg = CrossEntropy::new()
                .with_class_weights(rng.vec(c, 0.2, 2.0))
                .with_softcap(3.0)
                .with_z_loss(0.02)
                .with_row_weights(rng.vec(n, 0.0, 2.0))
                .with_reduction(red);
            assert_matches_reference(&cfg, &z, n, c, &y, Upstream::Scalar(1.0));
        }
    }
}

/// TOL-2's confident rows keep their relative accuracy with the options on (the combination
/// `S = n0 + s'` is the same): 1000 rows `[9.981553, -0.18780406]`, row weights and a given
/// denominator; PyTorch's `f32` loses 1.5e-3 relative here.
#[test]
fn confident_rows_keep_their_relative_accuracy_with_options() {
    covers!("CE-12", "CE-13", "CE-14");
    let n = 1000;
    let z: Vec<f32> = (0..n)
        .flat_map(|_| [9.981_553_f32, -0.187_804_06])
        .collect();
    let y = vec![0_i64; n];
    let cfg = CrossEntropy::new()
        .with_row_weights(vec![0.5; n])
        .with_denominator(250.0);
    let want = run(&ReferenceBackend, &cfg, &z, n, 2, &y, Upstream::ONE);
    for b in backends() {
        let got = run(&b, &cfg, &z, n, 2, &y, Upstream::ONE);
        let rel = kit::rel_error(got.out.loss.value(), want.out.loss.value());
        assert!(rel < 1e-6, "{:?}: relative error {rel}", b.simd_level());
        let g = kit::rel_error(f64::from(got.grad[0]), f64::from(want.grad[0]));
        assert!(
            g < 1e-6,
            "{:?}: target gradient relative error {g}",
            b.simd_level()
        );
    }
}

/// CE-13 on the CPU: micro-batches with the summed denominator give the whole batch's
/// gradient bit for bit (a count is exact) and its value to rounding.
#[test]
fn micro_batches_give_the_whole_batch_bit_for_bit() {
    covers!("CE-13");
    let mut rng = Rng::new(5);
    let (n, c) = (300, 1000);
    let z: Vec<f32> = rng
        .vec(n * c, -10.0, 10.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let y: Vec<i64> = (0..n)
        .map(|i| {
            if i % 4 == 1 {
                -100
            } else {
                rng.below(c) as i64
            }
        })
        .collect();
    let base = CrossEntropy::new()
        .with_label_smoothing(0.1)
        .with_softcap(20.0)
        .with_z_loss(1e-3);
    let b = CpuBackend::with_threads(2);
    let whole = run(&b, &base, &z, n, c, &y, Upstream::ONE);
    let cuts = [0, 17, 150, 151, n];
    let d: f64 = cuts
        .windows(2)
        .map(|w| base.mean_denominator(&CeTargets::<f32>::Classes(&y[w[0]..w[1]]), w[1] - w[0]))
        .sum();
    assert_eq!(d, base.mean_denominator(&CeTargets::<f32>::Classes(&y), n));
    let mut v = 0.0;
    let mut g = Vec::new();
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        let part = run(
            &b,
            &base.clone().with_denominator(d),
            &z[lo * c..hi * c],
            hi - lo,
            c,
            &y[lo..hi],
            Upstream::ONE,
        );
        v += part.out.loss.value();
        g.extend(part.grad);
    }
    assert!(kit::rel_error(v, whole.out.loss.value()) < 1e-14);
    kit::assert_same_bits_f32(&g, &whole.grad);
    // The plain per-micro-batch mean (the 2024 gradient-accumulation bug) is not the whole.
    let naive: f64 = cuts
        .windows(2)
        .map(|w| {
            run(
                &b,
                &base,
                &z[w[0] * c..w[1] * c],
                w[1] - w[0],
                c,
                &y[w[0]..w[1]],
                Upstream::ONE,
            )
            .out
            .loss
            .value()
        })
        .sum::<f64>()
        / 4.0;
    assert!(kit::rel_error(naive, whole.out.loss.value()) > 1e-4);
}

/// CE-7 with every option on the CPU: under `none` with a per-row upstream, each row's
/// gradient and value are those of the row alone with its upstream as a scalar, bit for bit.
#[test]
fn per_row_upstream_under_none_is_exact_with_every_option() {
    covers!("CE-7", "CE-10", "CE-11", "CE-12");
    let mut rng = Rng::new(9);
    for &c in &[10usize, 3000] {
        let n = 12;
        let z: Vec<f32> = rng
            .vec(n * c, -12.0, 12.0)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let y: Vec<i64> = (0..n)
            .map(|i| if i == 3 { -100 } else { rng.below(c) as i64 })
            .collect();
        let r = rng.vec(n, 0.0, 2.0);
        let u: Vec<f64> = (0..n).map(|i| [0.5, -2.0, 0.0, 1.25][i % 4]).collect();
        let cfg = |r: Vec<f64>, red| {
            CrossEntropy::new()
                .with_label_smoothing(0.05)
                .with_softcap(8.0)
                .with_z_loss(0.01)
                .with_row_weights(r)
                .with_reduction(red)
        };
        for b in backends() {
            let all = run(
                &b,
                &cfg(r.clone(), Reduction::None),
                &z,
                n,
                c,
                &y,
                Upstream::PerElement(&u),
            );
            for i in 0..n {
                let one = run(
                    &b,
                    &cfg(vec![r[i]], Reduction::Sum),
                    &z[i * c..(i + 1) * c],
                    1,
                    c,
                    &y[i..i + 1],
                    Upstream::Scalar(u[i]),
                );
                assert_eq!(
                    all.out.loss.values()[i].to_bits(),
                    one.out.loss.value().to_bits(),
                    "row {i}"
                );
                kit::assert_same_bits_f32(&all.grad[i * c..(i + 1) * c], &one.grad);
                assert_eq!(all.lse[i].to_bits(), one.lse[0].to_bits());
            }
        }
    }
}

/// TOL-3 with per-row outputs: loss, z-loss, gradient, lse and hits are the same bits for 1,
/// 2 and 3 threads, in place or not.
#[test]
fn per_row_outputs_are_bit_identical_for_any_thread_count_and_in_place() {
    covers!("CE-14", "CE-15");
    let mut rng = Rng::new(3);
    let (n, c) = (2200, 1000);
    let z: Vec<f32> = rng
        .vec(n * c, -15.0, 15.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let y: Vec<i64> = (0..n)
        .map(|i| {
            if i % 11 == 0 {
                -100
            } else {
                rng.below(c) as i64
            }
        })
        .collect();
    let cfg = CrossEntropy::new()
        .with_softcap(10.0)
        .with_z_loss(1e-4)
        .with_row_weights(rng.vec(n, 0.5, 1.5));
    let outs: Vec<Out> = (1..=3)
        .map(|t| {
            run(
                &CpuBackend::with_threads(t),
                &cfg,
                &z,
                n,
                c,
                &y,
                Upstream::ONE,
            )
        })
        .collect();
    for o in &outs[1..] {
        kit::assert_same_bits_f64(o.out.loss.values(), outs[0].out.loss.values());
        kit::assert_same_bits_f64(o.out.z_loss.values(), outs[0].out.z_loss.values());
        kit::assert_same_bits_f32(&o.grad, &outs[0].grad);
        kit::assert_same_bits_f32(&o.lse, &outs[0].lse);
        assert_eq!(o.hit, outs[0].hit);
    }
    assert!(outs[0].hit.iter().any(|&h| h) && outs[0].hit.iter().any(|&h| !h));
    let mut zi = z.clone();
    let l = CpuBackend::with_threads(2)
        .cross_entropy(&cfg, Input::in_place(&mut zi).shaped(n, c), &y)
        .unwrap();
    assert_eq!(l.value().to_bits(), outs[0].out.loss.value().to_bits());
    kit::assert_same_bits_f32(&zi, &outs[0].grad);
}
