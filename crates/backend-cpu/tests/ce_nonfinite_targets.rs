//! Issue 14, item 5 (cross-entropy parts), `TOL-4`: an infinite target probability, and a
//! `mean` whose kept rows all have class weight 0. Both follow the `f64` reference.

use smoothloss_core::{CeTargets, CrossEntropy, Reduction};
use smoothloss_core::{Input, Loss, Losses, ReferenceBackend};
use smoothloss_cpu::CpuBackend;
use smoothloss_spec::kit;
use smoothloss_spec::random::Rng;
mod ce_common;

use ce_common::levels;

/// NaN, `+inf`, `-inf` or finite.
fn class(v: f64) -> u8 {
    if v.is_nan() {
        0
    } else if v == f64::INFINITY {
        1
    } else if v == f64::NEG_INFINITY {
        2
    } else {
        3
    }
}

/// Runs the call on every level (separate gradient and in place, 1, 2 and 3 threads) and checks
/// that every loss value and gradient entry has the reference's class (NaN, `+-inf`, finite),
/// and that finite ones are close. `exact`: the gradient must be the reference's rounded to
/// `f32` (the calls that run through the reference).
fn same_as_reference(
    cfg: &CrossEntropy,
    z: &[f32],
    rows: usize,
    c: usize,
    t: CeTargets<'_, f32>,
    exact: bool,
    what: &str,
) {
    let z64: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
    let q64: Vec<f64>;
    let t64 = match t {
        CeTargets::Classes(t) => CeTargets::Classes(t),
        CeTargets::Probs(q) => {
            q64 = q.iter().map(|&v| f64::from(v)).collect();
            CeTargets::Probs(&q64[..])
        }
    };
    let mut g64 = vec![0f64; z.len()];
    let want = ReferenceBackend
        .cross_entropy(cfg, Input::matrix(&z64, rows, c).with_grad(&mut g64), t64)
        .map(Loss::into_values)
        .unwrap();
    for level in levels() {
        for threads in [1, 2, 3] {
            let be = CpuBackend::with_threads(threads).with_simd_level(level);
            let mut g = vec![0f32; z.len()];
            let got = be
                .cross_entropy(cfg, Input::matrix(z, rows, c).with_grad(&mut g), t)
                .map(Loss::into_values)
                .unwrap();
            let mut x = z.to_vec();
            let got2 = be
                .cross_entropy(cfg, Input::in_place(&mut x).shaped(rows, c), t)
                .map(Loss::into_values)
                .unwrap();
            let at = format!("{what} {level:?} {threads}t");
            kit::same_bits_f64(&got, &got2)
                .and(kit::same_bits_f32(&g, &x))
                .unwrap_or_else(|e| panic!("{at}: in place: {e}"));
            for (k, (&a, &w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(class(a), class(w), "{at}: loss {k}: got {a:e} want {w:e}");
                if class(w) == 3 {
                    assert!(
                        (a - w).abs() <= 1e-5 * w.abs() + 1e-6,
                        "{at}: loss {a:e} {w:e}"
                    );
                }
            }
            for (k, (&a, &w)) in g.iter().zip(&g64).enumerate() {
                let a = f64::from(a);
                let w32 = f64::from(w as f32);
                assert_eq!(class(a), class(w32), "{at}: grad {k}: got {a:e} want {w:e}");
                if exact {
                    assert!(a.to_bits() == w32.to_bits() || a.is_nan(), "{at}: grad {k}");
                } else if class(w32) == 3 {
                    assert!(
                        (a - w).abs() <= 1e-5 * w.abs() + 1e-6,
                        "{at}: grad {k}: {a:e} {w:e}"
                    );
                }
            }
        }
    }
}

/// Issue 14 item 5: probability targets `[0, inf]`: the reference's loss is `+inf` (every
/// `log p_j < 0`), the CPU gave NaN (`inf * (z_j - m)` with `z_j = m`). Short rows, a
/// single-chunk long row and a chunked long row, the infinite target on the maximum or not.
#[test]
fn infinite_target_probability_gives_the_reference_inf() {
    for z in [[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0]] {
        for eps in [0.0, 0.1] {
            let cfg = CrossEntropy::new()
                .with_reduction(Reduction::None)
                .with_label_smoothing(eps);
            let q = [0.0f32, f32::INFINITY];
            same_as_reference(
                &cfg,
                &z,
                1,
                2,
                CeTargets::Probs(&q),
                false,
                &format!("{z:?} eps {eps}"),
            );
        }
    }
    let mut rng = Rng::new(5);
    for &c in &[100usize, 300, 5000] {
        let rows = 3;
        let z: Vec<f32> = (0..rows * c).map(|_| rng.range(-3.0, 3.0) as f32).collect();
        let mut q = vec![0.0f32; rows * c];
        for i in 0..rows {
            let zr = &z[i * c..(i + 1) * c];
            let am = (0..c).fold(0, |b, j| if zr[j] > zr[b] { j } else { b });
            // Row 0: infinite on the maximum; row 1: elsewhere; row 2: both.
            let at: &[usize] = match i {
                0 => &[am],
                1 => &[(am + 1) % c],
                _ => &[am, (am + 7) % c],
            };
            for &j in at {
                q[i * c + j] = f32::INFINITY;
            }
            q[i * c + (am + 3) % c] = 0.25;
        }
        for (eps, weights) in [(0.0, false), (0.1, true)] {
            let mut cfg = CrossEntropy::new()
                .with_reduction(Reduction::None)
                .with_label_smoothing(eps);
            if weights {
                cfg = cfg.with_class_weights((0..c).map(|_| 0.5 + rng.unit()).collect());
            }
            same_as_reference(
                &cfg,
                &z,
                rows,
                c,
                CeTargets::Probs(&q),
                false,
                &format!("C {c} eps {eps}"),
            );
            let sum = cfg.clone().with_reduction(Reduction::Sum);
            same_as_reference(
                &sum,
                &z,
                rows,
                c,
                CeTargets::Probs(&q),
                false,
                &format!("C {c} sum"),
            );
        }
    }
}

/// Issue 14 item 5: a weighted `mean` whose kept rows all have class weight 0 (denominator 0,
/// so the gradient is `inf * g_j`): before, the CPU gave NaN where the reference has `+-inf`
/// (a class far below the maximum: `p_j` is 0 in `f32`, not in `f64`). Such calls run through
/// the reference: the same values, bit for bit after rounding to `f32`.
#[test]
fn zero_weight_mean_follows_the_reference() {
    // The reproducer: scale 60, the target's weight 0, other zero weights.
    let mut rng = Rng::new(3);
    for it in 0..60 {
        let c = [2usize, 7, 100, 142, 300, 3000][it % 6];
        let rows = 1 + rng.below(4);
        let scale = [1.0, 10.0, 60.0][rng.below(3)];
        let z: Vec<f32> = (0..rows * c)
            .map(|_| {
                if rng.unit() < 0.05 {
                    f32::NEG_INFINITY
                } else {
                    (rng.range(-1.0, 1.0) * scale) as f32
                }
            })
            .collect();
        let mut w: Vec<f64> = (0..c)
            .map(|_| if rng.unit() < 0.3 { 0.0 } else { rng.unit() })
            .collect();
        let mut t: Vec<i64> = (0..rows).map(|_| rng.below(c) as i64).collect();
        for &y in &t {
            w[y as usize] = 0.0;
        }
        if rows > 1 && it % 2 == 0 {
            t[0] = -100; // an ignored row too: gradient exactly 0
        }
        for eps in [0.0, 0.1] {
            let cfg = CrossEntropy::new()
                .with_reduction(Reduction::Mean)
                .with_label_smoothing(eps)
                .with_ignore_index(Some(-100))
                .with_class_weights(w.clone());
            same_as_reference(
                &cfg,
                &z,
                rows,
                c,
                CeTargets::Classes(&t),
                true,
                &format!("it {it} eps {eps}"),
            );
        }
    }
}
