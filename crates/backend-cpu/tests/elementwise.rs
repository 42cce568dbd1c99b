//! The CPU element-wise losses (smooth L1, Huber, BCE with logits, sigmoid focal) and their
//! polynomial `exp` / `log1p` / `ln` against `f64` (the reference run on the same `f32` inputs
//! widened to `f64`).
//!
//! Tolerance (stated here, used by every comparison below):
//!
//! * per-element loss values (`none`): `|got - want| <= 1e-6 + 2e-5 * |want|`;
//! * `sum` / `mean`: `|got - want| <= 1e-6 + 2e-5 * S`, with `S` the sum (mean) of the
//!   per-element `|loss|` (the error of an `f32` element scales with its own magnitude);
//! * gradient entries: `|got - want| <= 2e-6 * |u| + 2e-5 * |want|`, `u` the upstream factor of
//!   that element (`upstream / N` for `mean`);
//! * NaN must match NaN, an infinity the same infinity.
//!
//! Elementary functions: `exp_f32` relative error `<= 3e-7` (absolute `<= 2^-149` below the
//! normal range), `log1p_unit_f32` relative `<= 3e-7` on `[0, 1]`, `ln_f32` absolute
//! `<= 2e-7 * max(1, |ln x|)` on `(0, inf)`.

use proptest::prelude::*;
use smoothloss_core::{BceWithLogits, Huber, Reduction, SigmoidFocal, SmoothL1, Upstream};
use smoothloss_core::{Input, Loss, Losses, ReferenceBackend};
use smoothloss_cpu::CpuBackend;
use smoothloss_cpu::math::{exp_f32, ln_f32, log1p_unit_f32};
use smoothloss_spec::kit::{self, Rng, close};

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

/// `n` uniform values in `[lo, hi)`, rounded to `f32`.
fn vec32(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    (0..n).map(|_| rng.range(lo, hi) as f32).collect()
}

/// Binary targets: exact 0 and 1 and soft labels.
fn targets(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.next_u64() % 4 {
            0 => 0.0,
            1 => 1.0,
            _ => rng.unit() as f32,
        })
        .collect()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// A CPU loss call on `f32` data.
type CpuFn<C> = fn(&CpuBackend, &C, &[f32], &[f32], Upstream<'_>, Option<&mut [f32]>) -> Vec<f64>;
/// A reference loss call on `f64` data.
type RefFn<C> = fn(&C, &[f64], &[f64], Upstream<'_>, Option<&mut [f64]>) -> Vec<f64>;

/// Runs every reduction and upstream kind for one configuration family.
#[allow(clippy::too_many_arguments)]
fn check_all<C: Clone>(
    what: &str,
    cfg: &C,
    set_reduction: fn(&C, Reduction) -> C,
    cpu: CpuFn<C>,
    refr: RefFn<C>,
    x: &[f32],
    y: &[f32],
    rng: &mut Rng,
) {
    let up: Vec<f64> = (0..x.len()).map(|_| rng.range(-2.0, 2.0)).collect();
    for reduction in REDUCTIONS {
        let c = set_reduction(cfg, reduction);
        let cn = set_reduction(cfg, Reduction::None);
        let run = |u: Upstream<'_>| {
            let backend = CpuBackend::new();
            let n = x.len();
            let mut g32 = vec![0.0f32; n];
            let got = cpu(&backend, &c, x, y, u, Some(&mut g32));
            let got_fwd = cpu(&backend, &c, x, y, u, None);
            let (x64, y64) = (widen(x), widen(y));
            let mut g64 = vec![0.0f64; n];
            let want = refr(&c, &x64, &y64, u, Some(&mut g64));
            let per = refr(&cn, &x64, &y64, Upstream::ONE, None);
            compare(
                what, reduction, &got, &got_fwd, &want, &per, &g32, &g64, x, y, u,
            );
        };
        run(Upstream::ONE);
        run(Upstream::Scalar(-0.625));
        if reduction == Reduction::None {
            run(Upstream::PerElement(&up));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn compare(
    what: &str,
    reduction: Reduction,
    got: &[f64],
    got_fwd: &[f64],
    want: &[f64],
    per: &[f64],
    g32: &[f32],
    g64: &[f64],
    x: &[f32],
    y: &[f32],
    upstream: Upstream<'_>,
) {
    let n = x.len();
    let abs_sum: f64 = per.iter().filter(|v| v.is_finite()).map(|v| v.abs()).sum();
    let scale_sum = match reduction {
        Reduction::Mean => abs_sum / n as f64,
        _ => abs_sum,
    };
    assert_eq!(got.len(), want.len());
    if let Err(e) = kit::same_bits_f64(got, got_fwd) {
        panic!("{what}: forward-only differs from fused: {e}");
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (abs, rel) = if reduction == Reduction::None {
            (1e-6, 2e-5)
        } else {
            (1e-6 + 2e-5 * scale_sum, 0.0)
        };
        assert!(
            close(g, w, abs, rel),
            "{what} {reduction:?} loss {i}: got {g:e}, want {w:e}"
        );
    }
    let scale = if reduction == Reduction::Mean {
        1.0 / n as f64
    } else {
        1.0
    };
    for i in 0..n {
        let u = match upstream {
            Upstream::Scalar(s) => s,
            Upstream::PerElement(u) => u[i],
        } * scale;
        let (g, w) = (f64::from(g32[i]), g64[i]);
        assert!(
            close(g, w, 2e-6 * u.abs(), 2e-5),
            "{what} {reduction:?} grad {i} (x {}, y {}): got {g:e}, want {w:e}",
            x[i],
            y[i]
        );
    }
}

fn sl1(
    b: &CpuBackend,
    c: &SmoothL1,
    x: &[f32],
    y: &[f32],
    u: Upstream<'_>,
    g: Option<&mut [f32]>,
) -> Vec<f64> {
    b.smooth_l1(c, Input::new(x).with_upstream(u).with_optional_grad(g), y)
        .map(Loss::into_values)
        .unwrap()
}
fn sl1_ref(c: &SmoothL1, x: &[f64], y: &[f64], u: Upstream<'_>, g: Option<&mut [f64]>) -> Vec<f64> {
    ReferenceBackend
        .smooth_l1(c, Input::new(x).with_upstream(u).with_optional_grad(g), y)
        .map(Loss::into_values)
        .unwrap()
}
fn hub(
    b: &CpuBackend,
    c: &Huber,
    x: &[f32],
    y: &[f32],
    u: Upstream<'_>,
    g: Option<&mut [f32]>,
) -> Vec<f64> {
    b.huber(c, Input::new(x).with_upstream(u).with_optional_grad(g), y)
        .map(Loss::into_values)
        .unwrap()
}
fn hub_ref(c: &Huber, x: &[f64], y: &[f64], u: Upstream<'_>, g: Option<&mut [f64]>) -> Vec<f64> {
    ReferenceBackend
        .huber(c, Input::new(x).with_upstream(u).with_optional_grad(g), y)
        .map(Loss::into_values)
        .unwrap()
}
fn bce(
    b: &CpuBackend,
    c: &BceWithLogits,
    x: &[f32],
    y: &[f32],
    u: Upstream<'_>,
    g: Option<&mut [f32]>,
) -> Vec<f64> {
    b.bce_with_logits(c, Input::new(x).with_upstream(u).with_optional_grad(g), y)
        .map(Loss::into_values)
        .unwrap()
}
fn bce_ref(
    c: &BceWithLogits,
    x: &[f64],
    y: &[f64],
    u: Upstream<'_>,
    g: Option<&mut [f64]>,
) -> Vec<f64> {
    ReferenceBackend
        .bce_with_logits(c, Input::new(x).with_upstream(u).with_optional_grad(g), y)
        .map(Loss::into_values)
        .unwrap()
}
fn foc(
    b: &CpuBackend,
    c: &SigmoidFocal,
    x: &[f32],
    y: &[f32],
    u: Upstream<'_>,
    g: Option<&mut [f32]>,
) -> Vec<f64> {
    b.sigmoid_focal(c, Input::new(x).with_upstream(u).with_optional_grad(g), y)
        .map(Loss::into_values)
        .unwrap()
}
fn foc_ref(
    c: &SigmoidFocal,
    x: &[f64],
    y: &[f64],
    u: Upstream<'_>,
    g: Option<&mut [f64]>,
) -> Vec<f64> {
    ReferenceBackend
        .sigmoid_focal(c, Input::new(x).with_upstream(u).with_optional_grad(g), y)
        .map(Loss::into_values)
        .unwrap()
}

fn run_regression(rng: &mut Rng, n: usize) {
    let x = vec32(rng, n, -5.0, 5.0);
    let mut y = vec32(rng, n, -5.0, 5.0);
    if n > 3 {
        y[1] = x[1]; // d = 0 exactly
        y[2] = x[2] - 1.0; // near |d| = beta
    }
    for beta in [0.0, 0.5, 1.0, 3.0] {
        let c = SmoothL1 {
            beta,
            reduction: Reduction::Mean,
        };
        let set = |c: &SmoothL1, r| SmoothL1 { reduction: r, ..*c };
        check_all("smooth_l1", &c, set, sl1, sl1_ref, &x, &y, rng);
    }
    for delta in [0.3, 1.0, 2.0] {
        let c = Huber {
            delta,
            reduction: Reduction::Mean,
        };
        let set = |c: &Huber, r| Huber { reduction: r, ..*c };
        check_all("huber", &c, set, hub, hub_ref, &x, &y, rng);
    }
}

fn run_binary(rng: &mut Rng, n: usize, spread: f64) {
    let x = vec32(rng, n, -spread, spread);
    let y = targets(rng, n);
    let set = |c: &BceWithLogits, r| BceWithLogits {
        reduction: r,
        ..c.clone()
    };
    let plain = BceWithLogits::default();
    check_all("bce", &plain, set, bce, bce_ref, &x, &y, rng);
    for p in [1usize, 3, 7] {
        if n.is_multiple_of(p) {
            let w: Vec<f64> = (0..p).map(|_| rng.range(0.0, 4.0)).collect();
            let c = BceWithLogits {
                pos_weight: Some(w),
                reduction: Reduction::Mean,
            };
            check_all("bce pos_weight", &c, set, bce, bce_ref, &x, &y, rng);
        }
    }
    let fset = |c: &SigmoidFocal, r| SigmoidFocal { reduction: r, ..*c };
    for (alpha, gamma) in [
        (0.25, 2.0),
        (-1.0, 2.0),
        (0.5, 0.0),
        (0.75, 1.0),
        (0.25, 1.5),
        (0.1, 0.5),
    ] {
        let c = SigmoidFocal {
            alpha,
            gamma,
            reduction: Reduction::None,
        };
        check_all("focal", &c, fset, foc, foc_ref, &x, &y, rng);
    }
}

#[test]
fn regression_losses_match_reference() {
    let mut rng = Rng::new(1);
    for n in [1usize, 5, 63, 64, 65, 1000, 40_003] {
        run_regression(&mut rng, n);
    }
}

#[test]
fn binary_losses_match_reference() {
    let mut rng = Rng::new(2);
    for n in [1usize, 7, 63, 64, 129, 2100, 33_333] {
        for spread in [1.0, 10.0, 60.0, 120.0] {
            run_binary(&mut rng, n, spread);
        }
    }
}

#[test]
fn infinite_and_nan_logits_like_reference() {
    let xs = [
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        0.0,
        100.0,
        -100.0,
    ];
    let mut x = Vec::new();
    let mut y = Vec::new();
    for &a in &xs {
        for t in [0.0f32, 1.0, 0.5] {
            x.push(a);
            y.push(t);
        }
    }
    let mut rng = Rng::new(3);
    let set = |c: &BceWithLogits, r| BceWithLogits {
        reduction: r,
        ..c.clone()
    };
    let c = BceWithLogits {
        pos_weight: Some(vec![2.0, 0.0, 1.5]),
        reduction: Reduction::None,
    };
    check_all("bce non-finite", &c, set, bce, bce_ref, &x, &y, &mut rng);
    check_all(
        "bce non-finite",
        &BceWithLogits::default(),
        set,
        bce,
        bce_ref,
        &x,
        &y,
        &mut rng,
    );
    let fset = |c: &SigmoidFocal, r| SigmoidFocal { reduction: r, ..*c };
    for gamma in [0.0, 1.0, 2.0, 1.5] {
        let c = SigmoidFocal {
            alpha: 0.25,
            gamma,
            reduction: Reduction::None,
        };
        check_all("focal non-finite", &c, fset, foc, foc_ref, &x, &y, &mut rng);
    }
    let p = [1.0f32, f32::NAN, f32::INFINITY, -2.0];
    let t = [0.0f32, 1.0, 1.0, f32::NEG_INFINITY];
    let c = SmoothL1::default();
    let sset = |c: &SmoothL1, r| SmoothL1 { reduction: r, ..*c };
    check_all(
        "smooth_l1 non-finite",
        &c,
        sset,
        sl1,
        sl1_ref,
        &p,
        &t,
        &mut rng,
    );
    let hset = |c: &Huber, r| Huber { reduction: r, ..*c };
    check_all(
        "huber non-finite",
        &Huber::default(),
        hset,
        hub,
        hub_ref,
        &p,
        &t,
        &mut rng,
    );
}

#[test]
fn results_are_bit_identical_for_1_2_3_threads() {
    let mut rng = Rng::new(9);
    let n = 100_002;
    let x = vec32(&mut rng, n, -20.0, 20.0);
    let y = targets(&mut rng, n);
    let t = vec32(&mut rng, n, -20.0, 20.0);
    for reduction in REDUCTIONS {
        let mut runs = Vec::new();
        for threads in [1, 2, 3] {
            let b = CpuBackend::with_threads(threads);
            let mut out = Vec::new();
            let mut grads = Vec::new();
            let mut g = vec![0.0f32; n];
            let c = SmoothL1 {
                beta: 1.0,
                reduction,
            };
            out.extend(
                b.smooth_l1(&c, Input::new(&x).with_grad(&mut g), &t)
                    .map(Loss::into_values)
                    .unwrap(),
            );
            grads.extend_from_slice(&g);
            let c = Huber {
                delta: 1.0,
                reduction,
            };
            out.extend(
                b.huber(&c, Input::new(&x).with_grad(&mut g), &t)
                    .map(Loss::into_values)
                    .unwrap(),
            );
            grads.extend_from_slice(&g);
            let c = BceWithLogits {
                pos_weight: Some(vec![0.5, 2.0, 1.0]),
                reduction,
            };
            out.extend(
                b.bce_with_logits(&c, Input::new(&x).with_grad(&mut g), &y)
                    .map(Loss::into_values)
                    .unwrap(),
            );
            grads.extend_from_slice(&g);
            let c = SigmoidFocal {
                alpha: 0.25,
                gamma: 1.5,
                reduction,
            };
            out.extend(
                b.sigmoid_focal(&c, Input::new(&x).with_grad(&mut g), &y)
                    .map(Loss::into_values)
                    .unwrap(),
            );
            grads.extend_from_slice(&g);
            runs.push((out, grads));
        }
        for (threads, (out, grads)) in [2, 3].into_iter().zip(&runs[1..]) {
            kit::same_bits_f64(&runs[0].0, out)
                .and(kit::same_bits_f32(&runs[0].1, grads))
                .unwrap_or_else(|e| panic!("{reduction:?} {threads} threads: {e}"));
        }
    }
}

#[test]
fn exp_error_bound() {
    let mut x = -110.0f32;
    while x < 90.0 {
        let got = f64::from(exp_f32(x));
        let want = f64::from(x).exp();
        if want > f64::from(f32::MAX) {
            assert_eq!(got, f64::INFINITY, "exp({x})");
        } else if want >= f64::from(f32::MIN_POSITIVE) {
            assert!(
                (got - want).abs() <= 3e-7 * want,
                "exp({x}) = {got:e}, want {want:e}"
            );
        } else {
            assert!(
                (got - want).abs() <= 2f64.powi(-149),
                "exp({x}) = {got:e}, want {want:e}"
            );
        }
        x += 0.000_731;
    }
    assert_eq!(exp_f32(0.0), 1.0);
    assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
    assert!(exp_f32(f32::NAN).is_nan());
}

#[test]
fn log1p_and_ln_error_bounds() {
    let mut rng = Rng::new(12);
    let mut es: Vec<f32> = (0..200_000).map(|_| rng.unit() as f32).collect();
    es.extend((0..150).map(|k| 2f32.powi(-k)));
    es.extend([0.0, 1.0, f32::MIN_POSITIVE, 1e-45]);
    for e in es {
        let got = f64::from(log1p_unit_f32(e));
        let want = f64::from(e).ln_1p();
        assert!(
            (got - want).abs() <= 3e-7 * want,
            "log1p({e:e}) = {got:e}, want {want:e}"
        );
    }
    let mut xs: Vec<f32> = (0..200_000)
        .map(|_| f32::from_bits((rng.next_u64() as u32) & 0x7fff_ffff))
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    xs.extend([
        1.0,
        2.0,
        0.5,
        1e-45,
        f32::MIN_POSITIVE,
        f32::MAX,
        1.0 + f32::EPSILON,
    ]);
    xs.extend((0..1000).map(|k| 0.5 + k as f32 * 1.5e-3));
    for x in xs {
        let got = f64::from(ln_f32(x));
        let want = f64::from(x).ln();
        assert!(
            (got - want).abs() <= 2e-7 * want.abs().max(1.0),
            "ln({x:e}) = {got:e}, want {want:e}"
        );
    }
    assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
    assert_eq!(ln_f32(f32::INFINITY), f32::INFINITY);
    assert!(ln_f32(-1.0).is_nan());
    assert!(ln_f32(f32::NAN).is_nan());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_lengths_match_reference(n in 1usize..700, seed in any::<u64>(), spread in 0.1f64..80.0) {
        let mut rng = Rng::new(seed);
        run_regression(&mut rng, n);
        run_binary(&mut rng, n, spread);
    }
}
