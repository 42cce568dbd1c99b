//! The vectorised ProbIoU (`src/oriented_box/lanes.rs`, every call without CIoU) against the
//! `f64` reference's dual numbers on the inputs rounded to `f32`, for the pairs where `f32`
//! arithmetic would cancel: elongated boxes (aspect ratios up to 1:2000), rotated by any angle,
//! far and near; zero sizes (`OBB-3`'s degenerate case); angles beyond the lanes' range (`1e5`,
//! handed to the scalar path) and non-finite numbers mixed into the same chunks; `floor` 0 and
//! 0.3; odd lengths (partial chunks). The portable build gives the same bits as the AVX2 one.

use smoothloss_core::{Input, Losses, ProbIou, Reduction, ReferenceBackend};
use smoothloss_cpu::{CpuBackend, SimdLevel};
use smoothloss_spec::covers;
use smoothloss_spec::random::Rng;

/// `n` pairs, row-major `[n, 5]` each, rounded to `f32`.
fn hard_pairs(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for i in 0..n {
        let long = rng.range(1.0, 2000.0);
        let short = rng.range(0.5, 3.0);
        let (w, h) = if i % 2 == 0 {
            (long, short)
        } else {
            (short, long)
        };
        let r = rng.range(-7.0, 7.0);
        let tb = [rng.range(-500.0, 500.0), rng.range(-500.0, 500.0), w, h, r];
        let j = [0.01, 0.3, 3.0, 50.0][i % 4];
        let mut pb = [
            tb[0] + j * rng.range(-4.0, 4.0),
            tb[1] + j * rng.range(-4.0, 4.0),
            (tb[2] * (1.0 + 0.05 * j * rng.range(-1.0, 1.0))).abs() + 0.1,
            (tb[3] * (1.0 + 0.05 * j * rng.range(-1.0, 1.0))).abs() + 0.1,
            tb[4] + j.min(1.0) * rng.range(-0.5, 0.5),
        ];
        match i % 37 {
            5 => pb[2] = 0.0,
            11 => pb[3] = 0.0,
            17 => pb[4] = 3e5,
            23 => pb[4] = -1e7,
            29 => pb[1] = f64::NAN,
            31 => pb[0] = f64::INFINITY,
            _ => {}
        }
        p.extend(pb.map(|v| v as f32));
        t.extend(tb.map(|v| v as f32));
    }
    (p, t)
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[test]
fn lanes_match_the_reference_on_elongated_rotated_and_degenerate_pairs() {
    covers!("OBB-5", "OBB-3");
    let mut rng = Rng::new(41);
    for (n, floor) in [(4001, 0.0), (1003, 0.3), (7, 0.0)] {
        let (p, t) = hard_pairs(&mut rng, n);
        let cfg = ProbIou::new()
            .with_floor(floor)
            .with_reduction(Reduction::None);
        let mut g = vec![0.0f32; p.len()];
        let got = CpuBackend::with_threads(1)
            .probiou_loss(&cfg, Input::new(&p).with_grad(&mut g), &t)
            .unwrap();
        let mut gs = vec![0.0f32; p.len()];
        let plain = CpuBackend::with_threads(2)
            .with_simd_level(SimdLevel::Scalar)
            .probiou_loss(&cfg, Input::new(&p).with_grad(&mut gs), &t)
            .unwrap();
        let (pr, tr) = (widen(&p), widen(&t));
        let mut gw = vec![0.0f64; pr.len()];
        let want = ReferenceBackend
            .probiou_loss(&cfg, Input::new(&pr).with_grad(&mut gw), &tr)
            .unwrap();
        let (gv, wv) = (got.values(), want.values());
        for (i, (a, b)) in gv.iter().zip(wv).enumerate() {
            assert_eq!(
                a.to_bits(),
                plain.values()[i].to_bits(),
                "pair {i}: AVX2 vs portable"
            );
            if b.is_nan() {
                assert!(a.is_nan(), "pair {i}: {a} vs NaN");
                continue;
            }
            assert!(
                a.is_finite() && (a - b).abs() <= 1e-6 * b.abs() + 1e-7,
                "floor {floor} pair {i}: {a} vs {b}"
            );
        }
        for (k, (a, b)) in g.iter().zip(&gw).enumerate() {
            assert_eq!(a.to_bits(), gs[k].to_bits(), "grad[{k}]: AVX2 vs portable");
            let a = f64::from(*a);
            if b.is_nan() {
                assert!(a.is_nan(), "grad[{k}]: {a} vs NaN");
                continue;
            }
            assert!(
                a.is_finite() && (a - b).abs() <= 1e-5 * b.abs() + 1e-7,
                "floor {floor} grad[{k}]: {a} vs {b}"
            );
        }
    }
}

#[test]
fn pairwise_lanes_match_the_reference() {
    covers!("OBB-6");
    let mut rng = Rng::new(42);
    let (a, b) = hard_pairs(&mut rng, 61);
    let (n, m) = (61, 61);
    let mut got = vec![0.0f32; n * m];
    CpuBackend::new()
        .batch_probiou(1e-7, &a, &b, &mut got)
        .unwrap();
    let mut plain = vec![0.0f32; n * m];
    CpuBackend::new()
        .with_simd_level(SimdLevel::Scalar)
        .batch_probiou(1e-7, &a, &b, &mut plain)
        .unwrap();
    let mut want = vec![0.0f64; n * m];
    ReferenceBackend
        .batch_probiou(1e-7, &widen(&a), &widen(&b), &mut want)
        .unwrap();
    for (k, (x, y)) in got.iter().zip(&want).enumerate() {
        assert_eq!(x.to_bits(), plain[k].to_bits(), "[{k}]: AVX2 vs portable");
        let x = f64::from(*x);
        assert!(
            x.is_nan() == y.is_nan() && (y.is_nan() || (x - y).abs() <= 1e-6 * y.abs() + 1e-7),
            "[{k}]: {x} vs {y}"
        );
    }
}

/// The fuzz campaign's finding (`probiou-pairwise-singular`, seed 14): a zero-width box against
/// an all-zero box has `det = Sa Sb - Sc^2` equal to 0 in exact arithmetic; as written it
/// rounds to a tiny number of either sign, and the reference's `ln` of `det / eps + eps` is NaN
/// where it is negative. The lanes' `sin`/`cos` round differently, so they returned a finite
/// `-5e-10`; such nearly singular pairs now take the scalar path (libm, as the reference). Each
/// pair sits in a full chunk of benign pairs so that the lanes, not the tail, see it.
#[test]
fn nearly_singular_pairs_follow_the_reference() {
    covers!("OBB-6", "OBB-3");
    let odd: [[f32; 5]; 4] = [
        [2.279_201_3, -3.781_572_8, 0.0, 41.302_1, -3.613_307_2],
        [-125.530_365, 3.673_16, -0.0, 17.275_465, 0.173_048_66],
        [1.0, 2.0, 0.0, 0.0, 0.7],
        [0.0, 0.0, 3.0, 1e-30, 1.1],
    ];
    let zero = [0.0f32; 5];
    let benign = [0.3f32, -0.2, 2.0, 3.0, 0.4];
    for a in odd {
        let mut b: Vec<f32> = Vec::new();
        for j in 0..16 {
            b.extend(if j == 3 || j == 12 { zero } else { benign });
        }
        let mut got = vec![0.0f32; 16];
        let mut plain = vec![0.0f32; 16];
        CpuBackend::new()
            .batch_probiou(1e-9, &a, &b, &mut got)
            .unwrap();
        CpuBackend::new()
            .with_simd_level(SimdLevel::Scalar)
            .batch_probiou(1e-9, &a, &b, &mut plain)
            .unwrap();
        let mut want = vec![0.0f64; 16];
        ReferenceBackend
            .batch_probiou(1e-9, &widen(&a), &widen(&b), &mut want)
            .unwrap();
        for (k, (x, y)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                x.to_bits(),
                plain[k].to_bits(),
                "{a:?} [{k}]: AVX2 vs portable"
            );
            let x = f64::from(*x);
            assert!(
                x.is_nan() == y.is_nan() && (y.is_nan() || (x - y).abs() <= 1e-6 * y.abs() + 1e-7),
                "{a:?} [{k}]: {x} vs {y}"
            );
        }
        // The loss of the same pairs (the chunked `1 - ProbIoU` path), gradient included.
        let p: Vec<f32> = (0..16).flat_map(|_| a).collect();
        let cfg = ProbIou::new()
            .with_eps(1e-9)
            .with_reduction(Reduction::None);
        let mut g = vec![0.0f32; p.len()];
        let got = CpuBackend::new()
            .probiou_loss(&cfg, Input::new(&p).with_grad(&mut g), &b)
            .unwrap();
        let mut gw = vec![0.0f64; p.len()];
        let want = ReferenceBackend
            .probiou_loss(&cfg, Input::new(&widen(&p)).with_grad(&mut gw), &widen(&b))
            .unwrap();
        for (i, (x, y)) in got.values().iter().zip(want.values()).enumerate() {
            assert!(
                x.is_nan() == y.is_nan() && (y.is_nan() || (x - y).abs() <= 1e-6 * y.abs() + 1e-7),
                "{a:?} loss {i}: {x} vs {y}"
            );
        }
        for (k, (x, y)) in g.iter().zip(&gw).enumerate() {
            let x = f64::from(*x);
            assert!(
                x.is_nan() == y.is_nan() && (y.is_nan() || (x - y).abs() <= 1e-5 * y.abs() + 1e-6),
                "{a:?} grad {k}: {x} vs {y}"
            );
        }
    }
}
