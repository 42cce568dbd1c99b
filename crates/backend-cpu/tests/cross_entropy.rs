//! CPU cross-entropy against the f64 reference (`smoothloss_core::reference::cross_entropy` on the
//! same f32 inputs widened to f64), with the tolerance stated in
//! `smoothloss_cpu::cross_entropy`'s module documentation:
//!
//! - per-row loss: `|got - want| <= 2e-5 |want| + 1e-5 R_i`, `R_i = sum_j |w_j q'_ij|`;
//! - gradient: `|got - want| <= 1e-5 |want| + 5e-6 |u_i s| R_i`.

use proptest::prelude::*;
use smoothloss_core::backend::CrossEntropyOps;
use smoothloss_core::reference;
use smoothloss_core::{CeTargets, CrossEntropy, LossError, Reduction, Upstream};
use smoothloss_cpu::CpuBackend;
use smoothloss_cpu::simd::SimdLevel;
use smoothloss_spec::random::Rng;

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u = rng.unit().max(1e-300);
    let v = rng.unit();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

#[derive(Debug, Clone)]
enum Tg {
    Classes(Vec<i64>),
    Probs(Vec<f32>),
}

impl Tg {
    fn as_f32(&self) -> CeTargets<'_, f32> {
        match self {
            Tg::Classes(t) => CeTargets::Classes(t),
            Tg::Probs(p) => CeTargets::Probs(p),
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    cfg: CrossEntropy,
    logits: Vec<f32>,
    rows: usize,
    classes: usize,
    targets: Tg,
    upstream: Option<Vec<f64>>,
    scalar_up: f64,
}

impl Case {
    fn upstream(&self) -> Upstream<'_> {
        match &self.upstream {
            Some(u) => Upstream::PerElement(u),
            None => Upstream::Scalar(self.scalar_up),
        }
    }
}

/// The reference on the widened inputs: (losses, gradient).
fn reference_of(case: &Case) -> (Vec<f64>, Vec<f64>) {
    let z: Vec<f64> = case.logits.iter().map(|&v| f64::from(v)).collect();
    let mut g = vec![0.0; z.len()];
    let probs: Vec<f64>;
    let t = match &case.targets {
        Tg::Classes(t) => CeTargets::Classes(&t[..]),
        Tg::Probs(p) => {
            probs = p.iter().map(|&v| f64::from(v)).collect();
            CeTargets::Probs(&probs[..])
        }
    };
    let out = reference::cross_entropy(
        &case.cfg,
        &z,
        case.rows,
        case.classes,
        t,
        case.upstream(),
        Some(&mut g),
    )
    .expect("reference accepts the case");
    (out, g)
}

/// Row target mass `R_i = sum_j |w_j q'_ij|` (0 for ignored rows) and the mean denominator.
fn row_mass(case: &Case) -> (Vec<f64>, f64) {
    let c = case.classes;
    let eps = case.cfg.label_smoothing;
    let w = |j: usize| case.cfg.weight(j);
    let wsum: f64 = (0..c).map(w).sum();
    let mut denom = 0.0;
    let r = (0..case.rows)
        .map(|i| match &case.targets {
            Tg::Classes(t) => {
                if case.cfg.ignore_index == Some(t[i]) {
                    0.0
                } else {
                    let y = t[i] as usize;
                    denom += w(y);
                    (1.0 - eps) * w(y) + eps * wsum / c as f64
                }
            }
            Tg::Probs(q) => {
                denom += 1.0;
                (0..c)
                    .map(|j| {
                        (w(j) * ((1.0 - eps) * f64::from(q[i * c + j]) + eps / c as f64)).abs()
                    })
                    .sum()
            }
        })
        .collect();
    (r, denom)
}

fn same_special(got: f64, want: f64) -> Option<bool> {
    if want.is_nan() {
        return Some(got.is_nan());
    }
    if want.is_infinite() {
        return Some(got == want);
    }
    if !got.is_finite() {
        return Some(false);
    }
    None
}

/// Checks got against the reference with the stated tolerance; returns a description of the
/// first failure.
fn check(case: &Case, got_loss: &[f64], got_grad: Option<&[f32]>) -> Result<(), String> {
    let (want_loss, want_grad) = reference_of(case);
    let (mass, denom) = row_mass(case);
    let c = case.classes;
    let scale = if case.cfg.reduction == Reduction::Mean {
        1.0 / denom
    } else {
        1.0
    };
    // Per-row loss bounds from the reference's per-row losses.
    let per_row = {
        let mut cfg = case.cfg.clone();
        cfg.reduction = Reduction::None;
        let c2 = Case {
            cfg,
            upstream: None,
            scalar_up: 1.0,
            ..case.clone()
        };
        reference_of(&c2).0
    };
    let bound: Vec<f64> = per_row
        .iter()
        .zip(&mass)
        .map(|(l, r)| 2e-5 * l.abs() + 1e-5 * r)
        .collect();
    if got_loss.len() != want_loss.len() {
        return Err(format!(
            "{} losses, want {}",
            got_loss.len(),
            want_loss.len()
        ));
    }
    match case.cfg.reduction {
        Reduction::None => {
            for (i, (&g, &w)) in got_loss.iter().zip(&want_loss).enumerate() {
                let ok = same_special(g, w).unwrap_or((g - w).abs() <= bound[i]);
                if !ok {
                    return Err(format!(
                        "loss row {i}: got {g:e} want {w:e} bound {:e}",
                        bound[i]
                    ));
                }
            }
        }
        r => {
            let (g, w) = (got_loss[0], want_loss[0]);
            let mut b: f64 = bound.iter().sum();
            if r == Reduction::Mean {
                b /= denom;
            }
            b += 1e-12 * w.abs();
            let ok = same_special(g, w).unwrap_or((g - w).abs() <= b);
            if !ok {
                return Err(format!("loss: got {g:e} want {w:e} bound {b:e}"));
            }
        }
    }
    if let Some(gg) = got_grad {
        for i in 0..case.rows {
            let u = match case.cfg.reduction {
                Reduction::None => case.upstream().at(i),
                _ => case.upstream().at(0),
            } * scale;
            let gb = 5e-6 * (u * mass[i]).abs();
            for j in 0..c {
                let (g, w) = (f64::from(gg[i * c + j]), want_grad[i * c + j]);
                // The f32 result of the reference value may itself round to +-inf or 0.
                let w32 = f64::from(w as f32);
                let ok = same_special(g, w32)
                    .unwrap_or((g - w).abs() <= 1e-5 * w.abs() + gb || g == w32);
                if !ok {
                    return Err(format!(
                        "grad [{i},{j}]: got {g:e} want {w:e} bound {:e}",
                        1e-5 * w.abs() + gb
                    ));
                }
            }
        }
    }
    Ok(())
}

fn levels() -> Vec<SimdLevel> {
    let mut v = vec![SimdLevel::Scalar];
    if SimdLevel::Avx2Fma.is_available() {
        v.push(SimdLevel::Avx2Fma);
    }
    v
}

/// The three calls of a case on one level: (loss and gradient with a separate buffer, loss
/// without gradient, loss in place and the logits buffer after it).
type Calls = (Vec<f64>, Vec<f32>, Vec<f64>, Vec<f64>, Vec<f32>);

fn three_calls(case: &Case, be: &CpuBackend, level: SimdLevel) -> Result<Calls, String> {
    let err = |e| format!("{level:?}: error {e}");
    let be = be.clone().with_simd_level(level);
    let mut g = vec![0.0f32; case.logits.len()];
    let out = be
        .cross_entropy(
            &case.cfg,
            &case.logits,
            case.rows,
            case.classes,
            case.targets.as_f32(),
            case.upstream(),
            Some(&mut g),
        )
        .map_err(err)?;
    let no_grad = be
        .cross_entropy(
            &case.cfg,
            &case.logits,
            case.rows,
            case.classes,
            case.targets.as_f32(),
            case.upstream(),
            None,
        )
        .map_err(err)?;
    let mut x = case.logits.clone();
    let in_place = be
        .cross_entropy_in_place(
            &case.cfg,
            &mut x,
            case.rows,
            case.classes,
            case.targets.as_f32(),
            case.upstream(),
        )
        .map_err(err)?;
    Ok((out, g, no_grad, in_place, x))
}

/// Runs the case through both entry points on every level and checks each.
fn check_all(case: &Case, be: &CpuBackend) -> Result<(), String> {
    for level in levels() {
        let (out, g, no_grad, out2, x) = three_calls(case, be, level)?;
        check(case, &out, Some(&g)).map_err(|e| format!("{level:?} split: {e}"))?;
        if bits(&no_grad) != bits(&out) {
            return Err(format!("{level:?}: loss without gradient differs"));
        }
        if bits(&out2) != bits(&out) || bits32(&x) != bits32(&g) {
            return Err(format!(
                "{level:?}: in-place result differs from the split one"
            ));
        }
    }
    Ok(())
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn bits32(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[derive(Debug, Clone, Copy)]
struct Opts {
    eps: f64,
    weights: bool,
    probs: bool,
    ignore_frac: f64,
    reduction: Reduction,
    per_row_up: bool,
    logit_scale: f64,
}

fn make_case(rng: &mut Rng, rows: usize, classes: usize, o: Opts) -> Case {
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| (normal(rng) * o.logit_scale) as f32)
        .collect();
    let mut cfg = CrossEntropy::new()
        .with_label_smoothing(o.eps)
        .with_reduction(o.reduction);
    if o.weights {
        cfg = cfg.with_class_weights((0..classes).map(|_| rng.unit() * 2.0).collect());
    }
    let targets = if o.probs {
        let mut q = vec![0.0f32; rows * classes];
        for r in 0..rows {
            let row: Vec<f64> = (0..classes).map(|_| rng.unit().powi(3)).collect();
            let s: f64 = row.iter().sum();
            for j in 0..classes {
                q[r * classes + j] = (row[j] / s) as f32;
            }
        }
        Tg::Probs(q)
    } else {
        Tg::Classes(
            (0..rows)
                .map(|_| {
                    if rng.unit() < o.ignore_frac {
                        -100
                    } else {
                        rng.below(classes) as i64
                    }
                })
                .collect(),
        )
    };
    let upstream = (o.per_row_up && o.reduction == Reduction::None)
        .then(|| (0..rows).map(|_| normal(rng)).collect());
    Case {
        cfg,
        logits,
        rows,
        classes,
        targets,
        upstream,
        scalar_up: 0.75,
    }
}

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
                    &case.logits,
                    3,
                    classes,
                    case.targets.as_f32(),
                    Upstream::ONE,
                    Some(&mut g),
                )
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
        .cross_entropy(
            &cfg,
            &z,
            1,
            c,
            CeTargets::Classes(&[5]),
            Upstream::ONE,
            Some(&mut g),
        )
        .unwrap();
    assert_eq!(l[0], 0.0, "no smoothing term for eps = 0 (CE-3)");
    assert!(
        g.iter().all(|&v| v == 0.0),
        "p = onehot, gradient exactly 0: {g:?}"
    );
    let cfg = cfg.with_label_smoothing(0.1);
    let l = be
        .cross_entropy(
            &cfg,
            &z,
            1,
            c,
            CeTargets::Classes(&[5]),
            Upstream::ONE,
            Some(&mut g),
        )
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
                    &case.logits,
                    6,
                    c,
                    case.targets.as_f32(),
                    Upstream::ONE,
                    Some(&mut g),
                )
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
                        &case.logits,
                        6,
                        c,
                        case.targets.as_f32(),
                        Upstream::ONE,
                        None,
                    )
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
            &case.logits,
            4,
            20,
            case.targets.as_f32(),
            Upstream::ONE,
            Some(&mut g),
        )
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

/// (config, rows, classes, class targets, probability targets?, upstream, gradient length).
type ErrCase = (
    CrossEntropy,
    usize,
    usize,
    Vec<i64>,
    bool,
    Upstream<'static>,
    Option<usize>,
);

#[test]
fn errors_equal_reference_errors() {
    let be = CpuBackend::new();
    let z = vec![0.5f32; 12];
    let z64 = vec![0.5f64; 12];
    let q = [0.25f32; 12];
    let q64 = [0.25f64; 12];
    let cases: Vec<ErrCase> = vec![
        (
            CrossEntropy::new().with_label_smoothing(1.5),
            3,
            4,
            vec![0, 1, 2],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new().with_label_smoothing(f64::NAN),
            3,
            4,
            vec![0, 1, 2],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new(),
            0,
            4,
            vec![],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new(),
            3,
            0,
            vec![0, 1, 2],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new(),
            2,
            4,
            vec![0, 1],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new(),
            3,
            4,
            vec![0, 4, 2],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new(),
            3,
            4,
            vec![0, -1, 2],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new(),
            3,
            4,
            vec![0, 1],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new(),
            3,
            4,
            vec![0, 1, 2],
            false,
            Upstream::ONE,
            Some(11),
        ),
        (
            CrossEntropy::new().with_class_weights(vec![1.0; 3]),
            3,
            4,
            vec![0, 1, 2],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new().with_class_weights(vec![1.0, -1.0, 1.0, 1.0]),
            3,
            4,
            vec![0, 1, 2],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new().with_class_weights(vec![1.0, f64::INFINITY, 1.0, 1.0]),
            3,
            4,
            vec![0, 1, 2],
            false,
            Upstream::ONE,
            None,
        ),
        (
            CrossEntropy::new(),
            3,
            4,
            vec![0, 1, 2],
            false,
            Upstream::Scalar(f64::NAN),
            None,
        ),
        (
            CrossEntropy::new(),
            3,
            4,
            vec![0, 1, 2],
            false,
            Upstream::PerElement(&[1.0, 2.0, 3.0]),
            None,
        ),
        (
            CrossEntropy::new().with_reduction(Reduction::None),
            3,
            4,
            vec![0, 1, 2],
            false,
            Upstream::PerElement(&[1.0, 2.0]),
            None,
        ),
        (CrossEntropy::new(), 2, 4, vec![], true, Upstream::ONE, None),
        (
            CrossEntropy::new().with_ignore_index(None),
            3,
            4,
            vec![0, -100, 2],
            false,
            Upstream::ONE,
            None,
        ),
    ];
    for (k, (cfg, rows, classes, t, probs, up, glen)) in cases.into_iter().enumerate() {
        let glen = glen.unwrap_or(z.len());
        let mut g = vec![0.0f32; glen];
        let mut g64 = vec![0.0f64; glen];
        let (got, want): (LossError, LossError) = if probs {
            (
                be.cross_entropy(
                    &cfg,
                    &z,
                    rows,
                    classes,
                    CeTargets::Probs(&q[..rows * 4 + 1]),
                    up,
                    Some(&mut g),
                )
                .unwrap_err(),
                reference::cross_entropy(
                    &cfg,
                    &z64,
                    rows,
                    classes,
                    CeTargets::Probs(&q64[..rows * 4 + 1]),
                    up,
                    Some(&mut g64),
                )
                .unwrap_err(),
            )
        } else {
            (
                be.cross_entropy(
                    &cfg,
                    &z,
                    rows,
                    classes,
                    CeTargets::Classes(&t),
                    up,
                    Some(&mut g),
                )
                .unwrap_err(),
                reference::cross_entropy(
                    &cfg,
                    &z64,
                    rows,
                    classes,
                    CeTargets::Classes(&t),
                    up,
                    Some(&mut g64),
                )
                .unwrap_err(),
            )
        };
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "case {k}");
        if glen == z.len() {
            let mut zz = z.clone();
            let got = if probs {
                be.cross_entropy_in_place(
                    &cfg,
                    &mut zz,
                    rows,
                    classes,
                    CeTargets::Probs(&q[..rows * 4 + 1]),
                    up,
                )
            } else {
                be.cross_entropy_in_place(&cfg, &mut zz, rows, classes, CeTargets::Classes(&t), up)
            };
            assert_eq!(
                format!("{:?}", got.unwrap_err()),
                format!("{want:?}"),
                "in place {k}"
            );
            assert_eq!(zz, z, "input untouched on error");
        }
    }
}

/// Builds a case (label smoothing 0.1, 20 % ignored rows, per-row upstream) and asserts that
/// the losses and gradient, separate-buffer and in-place, are bit-identical for 1, 2 and 3
/// threads; returns the case.
fn assert_bit_identical_across_threads(
    rng: &mut Rng,
    rows: usize,
    classes: usize,
    weights: bool,
    probs: bool,
    red: Reduction,
) -> Case {
    let case = make_case(
        rng,
        rows,
        classes,
        Opts {
            eps: 0.1,
            weights,
            probs,
            ignore_frac: 0.2,
            reduction: red,
            per_row_up: true,
            logit_scale: 3.0,
        },
    );
    let mut first: Option<(Vec<u64>, Vec<u32>)> = None;
    for threads in [1, 2, 3] {
        let be = CpuBackend::with_threads(threads);
        let mut g = vec![0.0f32; case.logits.len()];
        let l = be
            .cross_entropy(
                &case.cfg,
                &case.logits,
                rows,
                classes,
                case.targets.as_f32(),
                case.upstream(),
                Some(&mut g),
            )
            .unwrap();
        let mut x = case.logits.clone();
        let l2 = be
            .cross_entropy_in_place(
                &case.cfg,
                &mut x,
                rows,
                classes,
                case.targets.as_f32(),
                case.upstream(),
            )
            .unwrap();
        assert_eq!(bits(&l), bits(&l2));
        assert_eq!(bits32(&g), bits32(&x));
        let now = (bits(&l), bits32(&g));
        match &first {
            None => first = Some(now),
            Some(f) => assert!(*f == now, "{rows}x{classes} threads {threads} differ"),
        }
    }
    case
}

/// Bit-identical results for 1, 2 and 3 threads, including long rows split across threads.
#[test]
fn bit_identical_across_thread_counts() {
    let mut rng = Rng::new(5);
    let shapes = [
        (4usize, 200_000usize),
        (2, 70_000),
        (300, 3000),
        (37, 1025),
        (1000, 10),
    ];
    for &(rows, classes) in &shapes {
        for &(weights, probs, red) in &[
            (false, false, Reduction::Mean),
            (true, false, Reduction::Sum),
            (true, true, Reduction::None),
        ] {
            let case =
                assert_bit_identical_across_threads(&mut rng, rows, classes, weights, probs, red);
            if rows * classes <= 400_000 {
                check(&case, &cpu_losses(&case), None).unwrap();
            }
        }
    }
}

fn cpu_losses(case: &Case) -> Vec<f64> {
    CpuBackend::new()
        .cross_entropy(
            &case.cfg,
            &case.logits,
            case.rows,
            case.classes,
            case.targets.as_f32(),
            case.upstream(),
            None,
        )
        .unwrap()
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
        &case.logits,
        16,
        777,
        case.targets.as_f32(),
        Upstream::ONE,
        Some(&mut g),
    )
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

#[test]
fn ndarray_wrappers() {
    use ndarray::{Array1, Array2};
    use smoothloss_cpu::ndarray_api;
    let be = CpuBackend::new();
    let mut rng = Rng::new(21);
    let case = make_case(
        &mut rng,
        5,
        13,
        Opts {
            eps: 0.1,
            weights: true,
            probs: false,
            ignore_frac: 0.2,
            reduction: Reduction::Mean,
            per_row_up: false,
            logit_scale: 2.0,
        },
    );
    let Tg::Classes(t) = &case.targets else {
        unreachable!()
    };
    let x = Array2::from_shape_vec((5, 13), case.logits.clone()).unwrap();
    let ta = Array1::from_vec(t.clone());
    let mut g = Array2::<f32>::zeros((5, 13));
    let got = ndarray_api::cross_entropy(
        &be,
        &case.cfg,
        x.view(),
        ta.view(),
        case.upstream(),
        Some(g.view_mut()),
    )
    .unwrap();
    let mut g2 = vec![0.0f32; 65];
    let want = be
        .cross_entropy(
            &case.cfg,
            &case.logits,
            5,
            13,
            case.targets.as_f32(),
            case.upstream(),
            Some(&mut g2),
        )
        .unwrap();
    assert_eq!(bits(&got), bits(&want));
    assert_eq!(bits32(g.as_slice().unwrap()), bits32(&g2));
    check(&case, &got, g.as_slice()).unwrap();
    let mut xi = x.clone();
    let got = ndarray_api::cross_entropy_in_place(
        &be,
        &case.cfg,
        xi.view_mut(),
        ta.view(),
        case.upstream(),
    )
    .unwrap();
    assert_eq!(bits(&got), bits(&want));
    assert_eq!(bits32(xi.as_slice().unwrap()), bits32(&g2));
    // Non-standard layouts are refused.
    let xt = Array2::from_shape_vec((13, 5), case.logits.clone()).unwrap();
    let err = ndarray_api::cross_entropy(&be, &case.cfg, xt.t(), ta.view(), case.upstream(), None)
        .unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "logits" });
    let mut gt = Array2::<f32>::zeros((13, 5));
    let err = ndarray_api::cross_entropy(
        &be,
        &case.cfg,
        x.view(),
        ta.view(),
        case.upstream(),
        Some(gt.view_mut().reversed_axes()),
    )
    .unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "grad" });
    let t2 = Array1::from_vec([t.clone(), t.clone()].concat());
    let err = ndarray_api::cross_entropy(
        &be,
        &case.cfg,
        x.view(),
        t2.slice(ndarray::s![..;2]),
        case.upstream(),
        None,
    )
    .unwrap_err();
    assert_eq!(err, LossError::NonContiguous { what: "targets" });
    let mut g3 = Array2::<f32>::zeros((13, 5));
    let err = ndarray_api::cross_entropy(
        &be,
        &case.cfg,
        x.view(),
        ta.view(),
        case.upstream(),
        Some(g3.view_mut()),
    )
    .unwrap_err();
    assert!(matches!(err, LossError::ShapeMismatch { what: "grad", .. }));
    // Probability targets through the wrapper.
    let q = Array2::from_elem((5, 13), 1.0f32 / 13.0);
    let got =
        ndarray_api::cross_entropy_probs(&be, &case.cfg, x.view(), q.view(), case.upstream(), None)
            .unwrap();
    let want = be
        .cross_entropy(
            &case.cfg,
            &case.logits,
            5,
            13,
            CeTargets::Probs(q.as_slice().unwrap()),
            case.upstream(),
            None,
        )
        .unwrap();
    assert_eq!(bits(&got), bits(&want));
}

/// Large enough for the streaming-store path and the split of long rows.
#[test]
fn large_inputs_match_reference() {
    let mut rng = Rng::new(33);
    for &(rows, classes) in &[(2300usize, 1900usize), (3, 300_000)] {
        let case = make_case(
            &mut rng,
            rows,
            classes,
            Opts {
                eps: 0.1,
                weights: false,
                probs: false,
                ignore_frac: 0.1,
                reduction: Reduction::Mean,
                per_row_up: false,
                logit_scale: 2.0,
            },
        );
        for (threads, streaming) in [(1, false), (1, true), (2, false), (2, true)] {
            let be = CpuBackend::with_threads(threads).with_streaming_stores(streaming);
            let mut g = vec![0.0f32; case.logits.len()];
            let l = be
                .cross_entropy(
                    &case.cfg,
                    &case.logits,
                    rows,
                    classes,
                    case.targets.as_f32(),
                    case.upstream(),
                    Some(&mut g),
                )
                .unwrap();
            check(&case, &l, Some(&g))
                .unwrap_or_else(|e| panic!("{rows}x{classes} t{threads} nt{streaming}: {e}"));
        }
    }
}

/// Few long rows with streaming stores (`>= 2^22` logits) are split across threads with one
/// thread and not with several: class weights and probability targets included, the gradient
/// must not depend on which path wrote an element (rows of odd length, so vectors straddle
/// the 64-byte lines differently on each path).
#[test]
fn long_rows_with_weights_and_probs_are_bit_identical_across_thread_counts() {
    let mut rng = Rng::new(71);
    let (rows, classes) = (3usize, 1_400_003usize);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| (3.0 * normal(&mut rng)) as f32)
        .collect();
    let t: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let q: Vec<f32> = (0..rows * classes)
        .map(|_| (2.0 * rng.unit() / classes as f64) as f32)
        .collect();
    let w: Vec<f64> = (0..classes).map(|_| 0.5 + rng.unit()).collect();
    for weighted in [false, true] {
        for probs in [false, true] {
            let mut cfg = CrossEntropy::new().with_label_smoothing(0.1);
            if weighted {
                cfg = cfg.with_class_weights(w.clone());
            }
            let mut first: Option<(Vec<u64>, Vec<u32>)> = None;
            // Streaming stores on and off must give the same bits too.
            for (threads, streaming) in [(1, true), (2, true), (3, true), (1, false), (3, false)] {
                let be = CpuBackend::with_threads(threads).with_streaming_stores(streaming);
                let mut g = vec![0.0f32; logits.len()];
                let tg = if probs {
                    CeTargets::Probs(&q)
                } else {
                    CeTargets::Classes(&t)
                };
                let l = be
                    .cross_entropy(
                        &cfg,
                        &logits,
                        rows,
                        classes,
                        tg,
                        Upstream::ONE,
                        Some(&mut g),
                    )
                    .unwrap();
                let got = (bits(&l), bits32(&g));
                match &first {
                    None => first = Some(got),
                    Some(want) => assert!(
                        *want == got,
                        "weighted={weighted} probs={probs} threads={threads} nt={streaming}"
                    ),
                }
            }
        }
    }
}

/// Many short rows (the batched short-row path, `C <= 128`, and just above it): class weights,
/// `ignore_index`, probability targets, per-row upstream, reductions, NaN / `+inf` / `-inf`
/// rows, against the `f64` reference on every level (split, no-gradient and in-place).
#[test]
fn many_short_rows_match_reference() {
    let be = CpuBackend::with_threads(2);
    let mut rng = Rng::new(11);
    let shapes = [
        (5000usize, 7usize),
        (2000, 1),
        (3000, 33),
        (1500, 128),
        (700, 129),
    ];
    for (k, &(rows, classes)) in shapes.iter().enumerate() {
        for v in 0..8 {
            let o = Opts {
                eps: [0.1, 0.0, 1.0, 0.37][v % 4],
                weights: v % 3 != 2,
                probs: v % 4 == 3,
                ignore_frac: if v % 2 == 0 { 0.2 } else { 0.0 },
                reduction: [Reduction::None, Reduction::Mean, Reduction::Sum][v % 3],
                per_row_up: v % 2 == 1,
                logit_scale: [1.0, 5.0, 30.0][(v + k) % 3],
            };
            let mut case = make_case(&mut rng, rows, classes, o);
            if v >= 4 {
                // A NaN row, a `+inf` row and a row with `-inf` logits (not the target).
                let c = classes;
                case.logits[3 * c + c / 2] = f32::NAN;
                case.logits[5 * c] = f32::INFINITY;
                if let Tg::Classes(t) = &case.targets {
                    let y = t[7].max(0) as usize;
                    for j in 0..c {
                        if j != y && j % 2 == 0 {
                            case.logits[7 * c + j] = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            if let Err(e) = check_all(&case, &be) {
                panic!("shape {rows}x{classes} opts {o:?}: {e}");
            }
        }
    }
}

/// Short rows (1 to 17 classes, the batched short-row path with its masked row tails): the
/// AVX2 build gives the same bits as the scalar build for losses and gradients, separate-buffer,
/// in place and without gradient, including NaN, `+inf`, `-inf` and ignored rows, `-0.0`
/// logits, weights, label smoothing 0 and not, and per-row upstream with a non-finite entry.
#[test]
fn short_rows_avx2_build_is_bit_identical_to_the_scalar_build() {
    if !SimdLevel::Avx2Fma.is_available() {
        eprintln!("SKIPPED: no AVX2 + FMA on this CPU");
        return;
    }
    let be = CpuBackend::with_threads(1);
    let mut rng = Rng::new(0x1a9e5);
    for classes in 1..=17usize {
        for v in 0..6 {
            let rows = [203usize, 8, 1, 97, 1030, 17][v];
            let o = Opts {
                eps: [0.1, 0.0, 0.3][v % 3],
                weights: v % 2 == 1,
                probs: false,
                ignore_frac: 0.15,
                reduction: [Reduction::None, Reduction::Mean][v % 2],
                per_row_up: true,
                logit_scale: [1.0, 8.0, 40.0][v % 3],
            };
            let mut case = make_case(&mut rng, rows, classes, o);
            let c = classes;
            if rows > 12 {
                case.logits[3 * c + c / 2] = f32::NAN;
                case.logits[5 * c] = f32::INFINITY;
                for j in 0..c {
                    case.logits[9 * c + j] = f32::NEG_INFINITY; // a row of -inf
                    if j % 2 == 1 {
                        case.logits[11 * c + j] = f32::NEG_INFINITY;
                    }
                }
                case.logits[2 * c] = -0.0;
                if let Some(u) = case.upstream.as_mut() {
                    u[6] = f64::INFINITY; // the slow gradient path
                }
            }
            let run = |level: SimdLevel| {
                let (loss, g, no_grad, in_place, x) = three_calls(&case, &be, level).unwrap();
                (
                    bits(&loss),
                    bits32(&g),
                    bits(&no_grad),
                    bits(&in_place),
                    bits32(&x),
                )
            };
            let (scalar, avx2) = (run(SimdLevel::Scalar), run(SimdLevel::Avx2Fma));
            assert!(
                scalar == avx2,
                "{rows}x{classes} {o:?}: the AVX2 build differs from the scalar build"
            );
        }
    }
}

/// Many short rows spread over several tasks are bit-identical for 1, 2 and 3 threads.
#[test]
fn many_short_rows_are_bit_identical_across_thread_counts() {
    let mut rng = Rng::new(13);
    for &(rows, classes) in &[(160_000usize, 7usize), (9000, 120)] {
        for &(weights, probs, red) in &[
            (false, false, Reduction::Mean),
            (true, false, Reduction::None),
            (true, true, Reduction::None),
        ] {
            assert_bit_identical_across_threads(&mut rng, rows, classes, weights, probs, red);
        }
    }
}

/// The automatic streaming-store choice: only for large gradients whose rows start on 64-byte
/// lines, and the bits are the same as with ordinary stores (forced off) in every case.
#[test]
fn automatic_streaming_stores_only_for_aligned_rows_and_bit_identical() {
    let mut rng = Rng::new(5);
    let (rows, classes) = (256usize, 16_384usize); // 2^22 logits, rows of whole lines
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| (2.0 * normal(&mut rng)) as f32)
        .collect();
    let t: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let mut buf = vec![0.0f32; rows * classes + 32];
    let lead = (64 - buf.as_ptr() as usize % 64) % 64 / 4;
    let auto = CpuBackend::with_threads(1);
    let off = CpuBackend::with_threads(1).with_streaming_stores(false);
    let on = CpuBackend::with_threads(1).with_streaming_stores(true);
    let mut run = |be: &CpuBackend, start: usize, c: usize, n: usize| {
        let g = &mut buf[start..start + n * c];
        let streams = be.streams_gradient(g, n, c);
        let l = be
            .cross_entropy(
                &cfg,
                &logits[..n * c],
                n,
                c,
                CeTargets::Classes(&t[..n]),
                Upstream::ONE,
                Some(g),
            )
            .unwrap();
        (streams, bits(&l), bits32(g))
    };
    // Aligned rows: automatic streaming, same bits as ordinary stores.
    let (s_auto, l_auto, g_auto) = run(&auto, lead, classes, rows);
    let (s_off, l_off, g_off) = run(&off, lead, classes, rows);
    assert!(s_auto && !s_off);
    assert!(l_auto == l_off && g_auto == g_off);
    // A gradient 4 bytes past a line: rows straddle lines, no automatic streaming; forced
    // streaming still gives the same bits.
    let (s_mis, l_mis, g_mis) = run(&auto, lead + 1, classes, rows);
    let (s_on, l_on, g_on) = run(&on, lead + 1, classes, rows);
    assert!(!s_mis && s_on);
    assert!(l_mis == l_auto && g_mis == g_auto && l_on == l_auto && g_on == g_auto);
    // Rows not a multiple of 16 floats, or below 2^22 logits: no automatic streaming.
    assert!(!auto.streams_gradient(&buf[lead..], rows, classes - 8));
    assert!(!auto.streams_gradient(&buf[lead..lead + 16 * classes], 16, classes));
}

/// Few long aligned rows (split across threads) with the automatic streaming stores: the same
/// bits for 1, 2 and 3 threads and with streaming forced off.
#[test]
fn automatic_streaming_stores_on_long_rows_split_across_threads() {
    let mut rng = Rng::new(9);
    let (rows, classes) = (4usize, 1usize << 20);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| (3.0 * normal(&mut rng)) as f32)
        .collect();
    let t: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let cfg = CrossEntropy::new()
        .with_label_smoothing(0.1)
        .with_class_weights((0..classes).map(|_| 0.5 + rng.unit()).collect());
    let mut buf = vec![0.0f32; rows * classes + 16];
    let lead = (64 - buf.as_ptr() as usize % 64) % 64 / 4;
    let mut first: Option<(Vec<u64>, Vec<u32>)> = None;
    for (threads, forced_off) in [(1, false), (2, false), (3, false), (3, true)] {
        let mut be = CpuBackend::with_threads(threads);
        if forced_off {
            be = be.with_streaming_stores(false);
        }
        let g = &mut buf[lead..lead + rows * classes];
        assert_eq!(be.streams_gradient(g, rows, classes), !forced_off);
        let l = be
            .cross_entropy(
                &cfg,
                &logits,
                rows,
                classes,
                CeTargets::Classes(&t),
                Upstream::ONE,
                Some(&mut g[..]),
            )
            .unwrap();
        let got = (bits(&l), bits32(g));
        match &first {
            None => first = Some(got),
            Some(want) => assert!(*want == got, "threads={threads} forced_off={forced_off}"),
        }
        g.fill(f32::NAN);
    }
}
