//! Helpers shared by the cross-entropy test binaries: random cases, the `f64` reference,
//! the tolerance check of `smoothloss_cpu::cross_entropy`'s documentation, and the calls on
//! every SIMD level.

#![allow(dead_code)]

use smoothloss_core::{CeTargets, CrossEntropy, Reduction, Upstream};
use smoothloss_core::{Input, Loss, Losses, ReferenceBackend};
use smoothloss_cpu::CpuBackend;
use smoothloss_cpu::simd::SimdLevel;
use smoothloss_spec::kit::{self, Rng};

/// A standard normal draw (Box-Muller).
pub fn normal(rng: &mut Rng) -> f64 {
    let u = rng.unit().max(1e-300);
    let v = rng.unit();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

#[derive(Debug, Clone)]
pub enum Tg {
    Classes(Vec<i64>),
    Probs(Vec<f32>),
}

impl Tg {
    pub fn as_f32(&self) -> CeTargets<'_, f32> {
        match self {
            Tg::Classes(t) => CeTargets::Classes(t),
            Tg::Probs(p) => CeTargets::Probs(p),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Case {
    pub cfg: CrossEntropy,
    pub logits: Vec<f32>,
    pub rows: usize,
    pub classes: usize,
    pub targets: Tg,
    pub upstream: Option<Vec<f64>>,
    pub scalar_up: f64,
}

impl Case {
    pub fn upstream(&self) -> Upstream<'_> {
        match &self.upstream {
            Some(u) => Upstream::PerElement(u),
            None => Upstream::Scalar(self.scalar_up),
        }
    }
}

/// The reference on the widened inputs: (losses, gradient).
pub fn reference_of(case: &Case) -> (Vec<f64>, Vec<f64>) {
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
    let out = ReferenceBackend
        .cross_entropy(
            &case.cfg,
            Input::matrix(&z, case.rows, case.classes)
                .with_upstream(case.upstream())
                .with_grad(&mut g),
            t,
        )
        .map(Loss::into_values)
        .expect("reference accepts the case");
    (out, g)
}

/// Row target mass `R_i = sum_j |w_j q'_ij|` (0 for ignored rows) and the mean denominator.
pub fn row_mass(case: &Case) -> (Vec<f64>, f64) {
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

pub fn same_special(got: f64, want: f64) -> Option<bool> {
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
pub fn check(case: &Case, got_loss: &[f64], got_grad: Option<&[f32]>) -> Result<(), String> {
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

pub fn levels() -> Vec<SimdLevel> {
    SimdLevel::available()
}

/// The three calls of a case on one level: (loss and gradient with a separate buffer, loss
/// without gradient, loss in place and the logits buffer after it).
pub type Calls = (Vec<f64>, Vec<f32>, Vec<f64>, Vec<f64>, Vec<f32>);

pub fn three_calls(case: &Case, be: &CpuBackend, level: SimdLevel) -> Result<Calls, String> {
    let err = |e| format!("{level:?}: error {e}");
    let be = be.clone().with_simd_level(level);
    let mut g = vec![0.0f32; case.logits.len()];
    let out = be
        .cross_entropy(
            &case.cfg,
            Input::matrix(&case.logits, case.rows, case.classes)
                .with_upstream(case.upstream())
                .with_grad(&mut g),
            case.targets.as_f32(),
        )
        .map(Loss::into_values)
        .map_err(err)?;
    let no_grad = be
        .cross_entropy(
            &case.cfg,
            Input::matrix(&case.logits, case.rows, case.classes).with_upstream(case.upstream()),
            case.targets.as_f32(),
        )
        .map(Loss::into_values)
        .map_err(err)?;
    let mut x = case.logits.clone();
    let in_place = be
        .cross_entropy(
            &case.cfg,
            Input::in_place(&mut x)
                .shaped(case.rows, case.classes)
                .with_upstream(case.upstream()),
            case.targets.as_f32(),
        )
        .map(Loss::into_values)
        .map_err(err)?;
    Ok((out, g, no_grad, in_place, x))
}

/// Runs the case through both entry points on every level and checks each.
pub fn check_all(case: &Case, be: &CpuBackend) -> Result<(), String> {
    for level in levels() {
        let (out, g, no_grad, out2, x) = three_calls(case, be, level)?;
        check(case, &out, Some(&g)).map_err(|e| format!("{level:?} split: {e}"))?;
        kit::same_bits_f64(&out, &no_grad)
            .map_err(|e| format!("{level:?}: loss without gradient differs: {e}"))?;
        kit::same_bits_f64(&out, &out2)
            .and(kit::same_bits_f32(&g, &x))
            .map_err(|e| format!("{level:?}: in-place result differs from the split one: {e}"))?;
    }
    Ok(())
}

/// Panics unless two runs' losses and gradients are bit-identical (`TOL-3`, `kit::same_bits_*`).
#[track_caller]
pub fn assert_same_run(want: &(Vec<f64>, Vec<f32>), got: &(Vec<f64>, Vec<f32>), what: &str) {
    if let Err(e) = kit::same_bits_f64(&want.0, &got.0) {
        panic!("{what}: losses differ: {e}");
    }
    if let Err(e) = kit::same_bits_f32(&want.1, &got.1) {
        panic!("{what}: gradients differ: {e}");
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Opts {
    pub eps: f64,
    pub weights: bool,
    pub probs: bool,
    pub ignore_frac: f64,
    pub reduction: Reduction,
    pub per_row_up: bool,
    pub logit_scale: f64,
}

pub fn make_case(rng: &mut Rng, rows: usize, classes: usize, o: Opts) -> Case {
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

/// Builds a case (label smoothing 0.1, 20 % ignored rows, per-row upstream) and asserts that
/// the losses and gradient, separate-buffer and in-place, are bit-identical for 1, 2 and 3
/// threads; returns the case.
pub fn assert_bit_identical_across_threads(
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
    let mut first: Option<(Vec<f64>, Vec<f32>)> = None;
    for threads in [1, 2, 3] {
        let be = CpuBackend::with_threads(threads);
        let mut g = vec![0.0f32; case.logits.len()];
        let l = be
            .cross_entropy(
                &case.cfg,
                Input::matrix(&case.logits, rows, classes)
                    .with_upstream(case.upstream())
                    .with_grad(&mut g),
                case.targets.as_f32(),
            )
            .map(Loss::into_values)
            .unwrap();
        let mut x = case.logits.clone();
        let l2 = be
            .cross_entropy(
                &case.cfg,
                Input::in_place(&mut x)
                    .shaped(rows, classes)
                    .with_upstream(case.upstream()),
                case.targets.as_f32(),
            )
            .map(Loss::into_values)
            .unwrap();
        kit::assert_same_bits_f64(&l, &l2);
        kit::assert_same_bits_f32(&g, &x);
        let now = (l, g);
        match &first {
            None => first = Some(now),
            Some(f) => assert_same_run(f, &now, &format!("{rows}x{classes} threads {threads}")),
        }
    }
    case
}

/// The losses of `case` on the default backend, without gradient.
pub fn cpu_losses(case: &Case) -> Vec<f64> {
    CpuBackend::new()
        .cross_entropy(
            &case.cfg,
            Input::matrix(&case.logits, case.rows, case.classes).with_upstream(case.upstream()),
            case.targets.as_f32(),
        )
        .map(Loss::into_values)
        .unwrap()
}
