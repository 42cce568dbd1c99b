//! Confident rows (issue 14, item 1) through the CUDA kernels on the CPU: rows whose softmax
//! puts almost all mass on one class, `S = 1 + s'` with a tiny `s'`, the loss `ln(1 + s')`.
//! Each row's loss is held to the relative bound of `TOL-2` (CUDA row) against the `f64`
//! reference on the same `f32` inputs, on every launch shape (one block per row, clusters of
//! 2 to 8 blocks, the re-reading path), with a separate gradient and in place.

use super::cross_entropy::emu_ce;
use super::*;

/// `2^-24`, the unit roundoff of `f32`.
const U: f64 = 1.0 / 16_777_216.0;
/// `2^-52`: the reference's own `S` is an `f64` sum of `C` terms (see `row_bound`).
const REF_ULP: f64 = 1.0 / 4_503_599_627_370_496.0;

/// `TOL-2` for the CUDA kernels (hard target, no smoothing, no weights):
/// `u (K |want| + 3 T_i) + C 2^-52`, `T_i = sum_j p_j |z_j - m|`, `K = 48`.
fn row_bound(z: &[f32], want: f64) -> f64 {
    let m = z
        .iter()
        .fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
    let s: f64 = z.iter().map(|&v| (f64::from(v) - m).exp()).sum();
    let t: f64 = z
        .iter()
        .map(|&v| {
            let d = f64::from(v) - m;
            d.exp() / s * d.abs()
        })
        .sum();
    U * (48.0 * want.abs() + 3.0 * t) + REF_ULP * z.len() as f64
}

/// Runs `rows x classes` logits `z` with targets `t` through the emulated kernels (per-row
/// losses, separate gradient, then in place) and checks them; returns the worst relative
/// error of a row and of the `sum`.
fn run(lib: &Library, z: &[f32], rows: usize, classes: usize, t: &[i64], what: &str) -> (f64, f64) {
    let cfg = CrossEntropy::new().with_reduction(Reduction::None);
    let mut zz = z.to_vec();
    let mut g = vec![0f32; z.len()];
    let tg = CeTargets::Classes(t);
    let (got, _) = emu_ce(
        lib,
        &cfg,
        &mut zz,
        rows,
        classes,
        tg,
        Upstream::Scalar(1.0),
        Some(&mut g),
        false,
    );
    let mut gr = vec![0f32; z.len()];
    let want = ReferenceBackend
        .cross_entropy(&cfg, Input::matrix(z, rows, classes).with_grad(&mut gr), tg)
        .map(Loss::into_values)
        .unwrap();
    let mut rel = 0.0f64;
    let mut over = 0.0f64;
    for (i, (&a, &w)) in got.iter().zip(&want).enumerate() {
        let b = row_bound(&z[i * classes..(i + 1) * classes], w);
        over = over.max((a - w).abs() / b);
        rel = rel.max((a - w).abs() / w.abs());
    }
    eprintln!("{what}: worst row {over:.3} x the bound, relative {rel:e}");
    assert!(
        over <= 1.0,
        "{what}: a row's loss is {over:.3} x the bound (worst rel {rel:e})"
    );
    // The gradient tolerance of the other emulated tests, plus the reference's own absolute
    // error on p_y - 1 (its `S` is an `f64` sum of `C` terms).
    let scale = gr.iter().fold(0.0f64, |m, &w| m.max(f64::from(w).abs()));
    let gw: Vec<f64> = gr.iter().map(|&v| f64::from(v)).collect();
    let gg: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
    assert_close(
        &format!("{what} grad"),
        &gg,
        &gw,
        1e-4,
        1e-6 * scale + REF_ULP * classes as f64,
    );
    let (ip, _) = emu_ce(
        lib,
        &cfg,
        &mut zz,
        rows,
        classes,
        tg,
        Upstream::Scalar(1.0),
        None,
        true,
    );
    assert_eq!(ip, got, "{what}: in-place loss");
    assert_eq!(zz, g, "{what}: in-place gradient");
    let (sum, _) = emu_ce(
        lib,
        &CrossEntropy::new().with_reduction(Reduction::Sum),
        &mut z.to_vec(),
        rows,
        classes,
        tg,
        Upstream::Scalar(1.0),
        None,
        false,
    );
    let ws: f64 = want.iter().sum();
    (rel, (sum[0] - ws).abs() / ws)
}

/// Random normal logits with `boost` on a random target class.
fn boosted(rng: &mut Rng, rows: usize, classes: usize, boost: f64) -> (Vec<f32>, Vec<i64>) {
    let mut z: Vec<f32> = (0..rows * classes)
        .map(|_| {
            let u = rng.unit().max(1e-300);
            let v = rng.unit();
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    let t: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    for (i, &y) in t.iter().enumerate() {
        let v = &mut z[i * classes + y as usize];
        *v = (f64::from(*v) + boost) as f32;
    }
    (z, t)
}

/// Issue 14's two reproducers: 1000 rows `[9.981553, -0.18780406]` (target 0; reference `sum`
/// 3.8326220e-2) and random 4096x100 logits with +15 on the target.
#[test]
fn confident_rows_reproducers_on_the_cpu_emulation() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let z: Vec<f32> = (0..1000)
        .flat_map(|_| [9.981553f32, -0.187_804_06])
        .collect();
    let (rel, srel) = run(lib, &z, 1000, 2, &[0; 1000], "1000x2");
    eprintln!("1000x2: worst row relative error {rel:e}, sum {srel:e}");
    assert!(srel < 1e-6, "1000x2 sum relative error {srel:e}");
    let mut rng = Rng::new(14);
    let (z, t) = boosted(&mut rng, 4096, 100, 15.0);
    let (rel, srel) = run(lib, &z, 4096, 100, &t, "4096x100 +15");
    eprintln!("4096x100 +15: worst row relative error {rel:e}, sum {srel:e}");
    assert!(srel < 1e-6, "4096x100 sum relative error {srel:e}");
}

/// Long confident rows: one block per row (1000 classes), clusters (32000 classes: 4 blocks
/// on an H200), extreme gaps (`s'` below `f32` rounding of `1 + s'`).
#[test]
fn confident_long_rows_on_the_cpu_emulation() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(140);
    for &(rows, classes, boost) in &[
        (16usize, 1000usize, 15.0),
        (4, 1000, 30.0),
        (2, 32000, 20.0),
        (2, 32000, 35.0),
    ] {
        let (z, t) = boosted(&mut rng, rows, classes, boost);
        let what = format!("{rows}x{classes} +{boost}");
        let (rel, srel) = run(lib, &z, rows, classes, &t, &what);
        eprintln!("{what}: worst row relative error {rel:e}, sum {srel:e}");
    }
}
