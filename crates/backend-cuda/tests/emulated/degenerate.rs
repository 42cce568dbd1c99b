//! Issue 14, item 5 (cross-entropy parts), `TOL-4`, through the CUDA kernels on the CPU: an
//! infinite target probability, and a `mean` whose kept rows all have class weight 0.

use super::cross_entropy::emu_ce;
use super::*;

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

/// Every loss value and gradient entry has the reference's class (NaN, `+-inf`, finite), and
/// the finite ones are close; separate gradient and in place.
fn same_classes(
    lib: &Library,
    cfg: &CrossEntropy,
    z: &[f32],
    rows: usize,
    c: usize,
    t: CeTargets<'_, f32>,
    what: &str,
) {
    let mut g = vec![0f32; z.len()];
    let mut zz = z.to_vec();
    let (got, _) = emu_ce(
        lib,
        cfg,
        &mut zz,
        rows,
        c,
        t,
        Upstream::Scalar(1.0),
        Some(&mut g),
        false,
    );
    let mut gr = vec![0f32; z.len()];
    let want = ReferenceBackend
        .cross_entropy(cfg, Input::matrix(z, rows, c).with_grad(&mut gr), t)
        .map(Loss::into_values)
        .unwrap();
    for (k, (&a, &w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(class(a), class(w), "{what}: loss {k}: got {a:e} want {w:e}");
        if class(w) == 3 {
            assert!(
                (a - w).abs() <= 1e-5 * w.abs() + 1e-6,
                "{what}: loss {a:e} {w:e}"
            );
        }
    }
    for (k, (&a, &w)) in g.iter().zip(&gr).enumerate() {
        let (a, w) = (f64::from(a), f64::from(w));
        assert_eq!(class(a), class(w), "{what}: grad {k}: got {a:e} want {w:e}");
        if class(w) == 3 {
            assert!(
                (a - w).abs() <= 1e-4 * w.abs() + 1e-6,
                "{what}: grad {k}: {a:e} {w:e}"
            );
        }
    }
    let (ip, _) = emu_ce(
        lib,
        cfg,
        &mut zz,
        rows,
        c,
        t,
        Upstream::Scalar(1.0),
        None,
        true,
    );
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&ip), bits(&got), "{what}: in-place loss");
    let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits32(&zz), bits32(&g), "{what}: in-place gradient");
}

/// Probability targets `[0, inf]` (loss `+inf` in the reference, NaN before when the infinite
/// probability sat on the maximum), short and long rows.
#[test]
fn infinite_target_probability_on_the_cpu_emulation() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    for z in [[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0]] {
        for eps in [0.0, 0.1] {
            let cfg = CrossEntropy::new()
                .with_reduction(Reduction::None)
                .with_label_smoothing(eps);
            let q = [0.0f32, f32::INFINITY];
            same_classes(
                lib,
                &cfg,
                &z,
                1,
                2,
                CeTargets::Probs(&q),
                &format!("{z:?} eps {eps}"),
            );
        }
    }
    let mut rng = Rng::new(5);
    for &c in &[300usize, 5000] {
        let rows = 3;
        let z: Vec<f32> = (0..rows * c).map(|_| rng.range_f32(-3.0, 3.0)).collect();
        let mut q = vec![0.0f32; rows * c];
        for i in 0..rows {
            let zr = &z[i * c..(i + 1) * c];
            let am = (0..c).fold(0, |b, j| if zr[j] > zr[b] { j } else { b });
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
        for eps in [0.0, 0.1] {
            let cfg = CrossEntropy::new()
                .with_reduction(Reduction::None)
                .with_label_smoothing(eps);
            same_classes(
                lib,
                &cfg,
                &z,
                rows,
                c,
                CeTargets::Probs(&q),
                &format!("C {c} eps {eps}"),
            );
        }
    }
}

/// A weighted `mean` whose kept rows all have weight 0: the gradient `inf * g_j` is `+-inf` or
/// NaN as the reference's `f64` `g_j` (NaN before for classes whose `f32` `p_j` underflows).
#[test]
fn zero_weight_mean_on_the_cpu_emulation() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(3);
    for it in 0..8 {
        let c = [7usize, 142, 300, 3000][it % 4];
        let rows = 2;
        let z: Vec<f32> = (0..rows * c)
            .map(|_| {
                if rng.unit() < 0.05 {
                    f32::NEG_INFINITY
                } else {
                    rng.range_f32(-60.0, 60.0)
                }
            })
            .collect();
        let mut w: Vec<f64> = (0..c)
            .map(|_| if rng.unit() < 0.3 { 0.0 } else { rng.unit() })
            .collect();
        let t: Vec<i64> = (0..rows).map(|_| rng.below(c) as i64).collect();
        for &y in &t {
            w[y as usize] = 0.0;
        }
        for eps in [0.0, 0.1] {
            let cfg = CrossEntropy::new()
                .with_reduction(Reduction::Mean)
                .with_label_smoothing(eps)
                .with_class_weights(w.clone());
            same_classes(
                lib,
                &cfg,
                &z,
                rows,
                c,
                CeTargets::Classes(&t),
                &format!("it {it} C {c} eps {eps}"),
            );
        }
    }
}
