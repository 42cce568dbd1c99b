//! CPU cross-entropy against the f64 reference (`smoothloss_core::reference::cross_entropy` on the
//! same f32 inputs widened to f64), with the tolerance stated in
//! `smoothloss_cpu::cross_entropy`'s module documentation:
//!
//! - per-row loss: `|got - want| <= 2e-5 |want| + 1e-5 R_i`, `R_i = sum_j |w_j q'_ij|`;
//! - gradient: `|got - want| <= 1e-5 |want| + 5e-6 |u_i s| R_i`.

use proptest::prelude::*;
use smoothloss_core::{CrossEntropy, Reduction};
use smoothloss_core::{Input, Loss, Losses};
use smoothloss_cpu::CpuBackend;
use smoothloss_spec::random::Rng;
mod ce_common;

use ce_common::*;

#[test]
fn random_cases_match_reference() {
    let be = CpuBackend::with_threads(2);
    let mut rng = Rng::new(1);
    let shapes = [
        (1, 1),
        (3, 1),
        (2, 7),
        (5, 8),
        (4, 9),
        (3, 17),
        (7, 100),
        (2, 1023),
        (2, 1024),
        (3, 1025),
        (2, 3000),
        (4, 2056),
        (3, 4100),
        (1, 40_000),
    ];
    for (k, &(rows, classes)) in shapes.iter().enumerate() {
        for v in 0..12 {
            let o = Opts {
                eps: [0.0, 0.1, 1.0, 0.37][v % 4],
                weights: v % 3 == 1,
                probs: v % 5 == 2,
                ignore_frac: if v % 2 == 0 { 0.3 } else { 0.0 },
                reduction: [Reduction::None, Reduction::Mean, Reduction::Sum][v % 3],
                per_row_up: v % 2 == 1,
                logit_scale: [1.0, 5.0, 30.0][(v + k) % 3],
            };
            let case = make_case(&mut rng, rows, classes, o);
            if let Err(e) = check_all(&case, &be) {
                panic!("shape {rows}x{classes} opts {o:?}: {e}");
            }
        }
    }
}

/// Adversarial inputs: huge logits, wide spreads (denormal exponentials), constant rows, rows of
/// `-inf` except the target, and a `-inf` target.
#[test]
fn adversarial_inputs_match_reference() {
    let be = CpuBackend::with_threads(2);
    let mut rng = Rng::new(7);
    for &classes in &[1usize, 2, 9, 33, 1030, 2500] {
        for &eps in &[0.0, 0.1] {
            for &weights in &[false, true] {
                // Huge logits.
                for &scale in &[1e30f64, 1e4, 200.0] {
                    let o = Opts {
                        eps,
                        weights,
                        probs: false,
                        ignore_frac: 0.0,
                        reduction: Reduction::None,
                        per_row_up: false,
                        logit_scale: scale,
                    };
                    let case = make_case(&mut rng, 3, classes, o);
                    check_all(&case, &be)
                        .unwrap_or_else(|e| panic!("scale {scale} C {classes}: {e}"));
                    let mut cp = case.clone();
                    cp.targets = make_case(&mut rng, 3, classes, Opts { probs: true, ..o }).targets;
                    check_all(&cp, &be).unwrap_or_else(|e| panic!("probs scale {scale}: {e}"));
                }
                // Constant rows and offset rows.
                let mut case = make_case(
                    &mut rng,
                    2,
                    classes,
                    Opts {
                        eps,
                        weights,
                        probs: false,
                        ignore_frac: 0.0,
                        reduction: Reduction::Mean,
                        per_row_up: false,
                        logit_scale: 1.0,
                    },
                );
                for (k, v) in case.logits.iter_mut().enumerate() {
                    *v = if k < classes {
                        3.0e5
                    } else {
                        -7.5 + (k % 3) as f32 * 1e-3
                    };
                }
                check_all(&case, &be).unwrap_or_else(|e| panic!("constant C {classes}: {e}"));
                // Rows of -inf except the target, and a row whose target is -inf.
                let mut case = make_case(
                    &mut rng,
                    3,
                    classes,
                    Opts {
                        eps,
                        weights,
                        probs: false,
                        ignore_frac: 0.0,
                        reduction: Reduction::None,
                        per_row_up: false,
                        logit_scale: 1.0,
                    },
                );
                let Tg::Classes(t) = &case.targets else {
                    unreachable!()
                };
                let t = t.clone();
                for j in 0..classes {
                    if j as i64 != t[0] {
                        case.logits[j] = f32::NEG_INFINITY;
                    }
                    if j % 2 == 0 {
                        case.logits[2 * classes + j] = f32::NEG_INFINITY;
                    }
                }
                if classes > 1 {
                    case.logits[classes + t[1] as usize] = f32::NEG_INFINITY;
                }
                check_all(&case, &be).unwrap_or_else(|e| panic!("-inf C {classes} eps {eps}: {e}"));
                // The gradient of rows with -inf entries stays finite.
                let mut g = vec![0.0; case.logits.len()];
                be.cross_entropy(
                    &case.cfg,
                    Input::matrix(&case.logits, 3, classes).with_grad(&mut g),
                    case.targets.as_f32(),
                )
                .map(Loss::into_values)
                .unwrap();
                assert!(g[..2 * classes].iter().all(|v| v.is_finite()));
            }
        }
    }
}

/// One finite logit among `-inf`: loss 0 and gradient exactly 0 for eps = 0; with eps > 0 the
/// loss is +inf (the smoothed target puts mass on `-inf` logits) and the gradient is finite.
#[test]
fn minus_inf_rows_follow_the_spec() {
    let be = CpuBackend::new();
    let c = 37;
    let mut z = vec![f32::NEG_INFINITY; c];
    z[5] = 2.0;
    let mut g = vec![0.0; c];
    let cfg = CrossEntropy::new().with_reduction(Reduction::Sum);
    let l = be
        .cross_entropy(&cfg, Input::matrix(&z, 1, c).with_grad(&mut g), &[5])
        .map(Loss::into_values)
        .unwrap();
    assert_eq!(l[0], 0.0, "no smoothing term for eps = 0 (CE-3)");
    assert!(
        g.iter().all(|&v| v == 0.0),
        "p = onehot, gradient exactly 0: {g:?}"
    );
    let cfg = cfg.with_label_smoothing(0.1);
    let l = be
        .cross_entropy(&cfg, Input::matrix(&z, 1, c).with_grad(&mut g), &[5])
        .map(Loss::into_values)
        .unwrap();
    assert_eq!(l[0], f64::INFINITY);
    assert!(g.iter().all(|v| v.is_finite()));
    let sum: f64 = g.iter().map(|&v| f64::from(v)).sum();
    assert!(sum.abs() < 1e-6, "gradient row sum {sum}");
}

#[test]
fn nan_and_inf_rows() {
    let be = CpuBackend::with_threads(2);
    let mut rng = Rng::new(3);
    for &classes in &[1usize, 5, 8, 1500] {
        for &probs in &[false, true] {
            let mut case = make_case(
                &mut rng,
                6,
                classes,
                Opts {
                    eps: 0.1,
                    weights: false,
                    probs,
                    ignore_frac: 0.0,
                    reduction: Reduction::None,
                    per_row_up: false,
                    logit_scale: 1.0,
                },
            );
            let c = classes;
            case.logits[c + c / 2] = f32::NAN; // row 1: NaN
            case.logits[2 * c + c - 1] = f32::INFINITY; // row 2: +inf
            for v in &mut case.logits[3 * c..4 * c] {
                *v = f32::NEG_INFINITY; // row 3: all -inf
            }
            case.logits[4 * c] = f32::NAN; // row 4: NaN, but ignored below
            if let Tg::Classes(t) = &mut case.targets {
                t[4] = -100;
            }
            check_all(&case, &be).unwrap_or_else(|e| panic!("C {classes} probs {probs}: {e}"));
            let mut g = vec![0.0; case.logits.len()];
            let l = be
                .cross_entropy(
                    &case.cfg,
                    Input::matrix(&case.logits, 6, c).with_grad(&mut g),
                    case.targets.as_f32(),
                )
                .map(Loss::into_values)
                .unwrap();
            for r in 1..4 {
                assert!(l[r].is_nan(), "row {r}");
                assert!(g[r * c..(r + 1) * c].iter().all(|v| v.is_nan()), "row {r}");
            }
            assert!(l[0].is_finite() && l[5].is_finite());
            assert!(g[..c].iter().chain(&g[5 * c..]).all(|v| v.is_finite()));
            if !probs {
                assert_eq!(l[4], 0.0);
                assert!(
                    g[4 * c..5 * c]
                        .iter()
                        .all(|&v| v == 0.0 && v.is_sign_positive())
                );
            }
            // A NaN row makes sum and mean NaN.
            for red in [Reduction::Sum, Reduction::Mean] {
                let cfg = case.cfg.clone().with_reduction(red);
                let l = be
                    .cross_entropy(
                        &cfg,
                        Input::matrix(&case.logits, 6, c),
                        case.targets.as_f32(),
                    )
                    .map(Loss::into_values)
                    .unwrap();
                assert!(l[0].is_nan());
            }
        }
    }
}

/// Mean with every row ignored: NaN loss, gradient exactly 0; zero target weights: the
/// reference's `inf * g`.
#[test]
fn degenerate_mean_denominators() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(11);
    let o = Opts {
        eps: 0.1,
        weights: false,
        probs: false,
        ignore_frac: 1.0,
        reduction: Reduction::Mean,
        per_row_up: false,
        logit_scale: 1.0,
    };
    let case = make_case(&mut rng, 4, 20, o);
    check_all(&case, &be).unwrap();
    let mut g = vec![1.0; 80];
    let l = be
        .cross_entropy(
            &case.cfg,
            Input::matrix(&case.logits, 4, 20).with_grad(&mut g),
            case.targets.as_f32(),
        )
        .map(Loss::into_values)
        .unwrap();
    assert!(l[0].is_nan());
    assert!(g.iter().all(|&v| v == 0.0));
    // Zero target weights under mean.
    let mut case = make_case(
        &mut rng,
        3,
        20,
        Opts {
            ignore_frac: 0.0,
            ..o
        },
    );
    let Tg::Classes(t) = &case.targets else {
        unreachable!()
    };
    let mut w = vec![1.0; 20];
    for &y in t {
        w[y as usize] = 0.0;
    }
    case.cfg = case.cfg.clone().with_class_weights(w);
    check_all(&case, &be).unwrap();
}

/// Gradient invariants: each kept row sums to 0 for normalised targets; ignored rows are 0.
#[test]
fn gradient_rows_sum_to_zero() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(9);
    let case = make_case(
        &mut rng,
        16,
        777,
        Opts {
            eps: 0.2,
            weights: false,
            probs: false,
            ignore_frac: 0.25,
            reduction: Reduction::Sum,
            per_row_up: false,
            logit_scale: 2.0,
        },
    );
    let mut g = vec![0.0; case.logits.len()];
    be.cross_entropy(
        &case.cfg,
        Input::matrix(&case.logits, 16, 777).with_grad(&mut g),
        case.targets.as_f32(),
    )
    .map(Loss::into_values)
    .unwrap();
    for r in 0..16 {
        let s: f64 = g[r * 777..(r + 1) * 777]
            .iter()
            .map(|&v| f64::from(v))
            .sum();
        assert!(s.abs() < 1e-5, "row {r} sums to {s}");
    }
}

fn opts_strategy() -> impl Strategy<Value = (usize, usize, Opts, u64)> {
    (
        1usize..6,
        prop_oneof![1usize..20, 20usize..2100],
        (
            0usize..4,
            any::<bool>(),
            any::<bool>(),
            0usize..3,
            0usize..3,
            any::<bool>(),
            0usize..4,
        ),
        any::<u64>(),
    )
        .prop_map(
            |(rows, classes, (e, weights, probs, ig, red, up, sc), seed)| {
                (
                    rows,
                    classes,
                    Opts {
                        eps: [0.0, 0.1, 0.5, 1.0][e],
                        weights,
                        probs,
                        ignore_frac: [0.0, 0.3, 1.0][ig],
                        reduction: [Reduction::None, Reduction::Mean, Reduction::Sum][red],
                        per_row_up: up,
                        logit_scale: [0.1, 1.0, 20.0, 1e6][sc],
                    },
                    seed,
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_against_reference((rows, classes, o, seed) in opts_strategy()) {
        let mut rng = Rng::new(seed);
        let case = make_case(&mut rng, rows, classes, o);
        let be = CpuBackend::with_threads(2);
        prop_assert!(check_all(&case, &be).is_ok(), "{:?}", check_all(&case, &be));
    }
}
