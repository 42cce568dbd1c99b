//! The CPU box losses against the `f64` reference run on the same `f32` inputs widened to `f64`.
//!
//! Tolerance (stated here, used by every comparison below):
//!
//! * loss values: `|got - want| <= 2e-6 + 2e-5 * |want|`;
//! * gradient entries: `|got - want| <= 2e-6 * s + 2e-5 * |want| + 1e-5 * m`, where `s` is the
//!   magnitude of the upstream factor of that pair (`|u| / N` for `mean`) and `m` the largest
//!   `|want|` among the four entries of that pair (absorbs cancellation in a small entry whose
//!   scale is set by the others);
//! * NaN must match NaN; infinities must match exactly.
//!
//! `atan_f32`: `|got - atan(x)| <= 1.5e-7 + 1.2e-7 * |atan(x)|` over the whole `f32` range.

use proptest::prelude::*;
use smoothloss_core::{BoxFormat, BoxLoss, BoxLossKind, CiouConvention, Reduction, Upstream};
use smoothloss_core::{Input, Loss, Losses, ReferenceBackend};
use smoothloss_cpu::CpuBackend;
use smoothloss_cpu::SimdLevel;
use smoothloss_cpu::math::{atan_f32, atan_ratio_diff, atan_ratio_f32};
use smoothloss_spec::kit::{self, Rng, close};

const FORMATS: [BoxFormat; 3] = [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh];
const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

/// Random pairs in xyxy: overlapping, disjoint, nested, identical and degenerate, at varied
/// scales and offsets from the origin; returned in `format`, rounded to f32.
fn pairs(rng: &mut Rng, n: usize, format: BoxFormat) -> (Vec<f32>, Vec<f32>) {
    let mut p = Vec::with_capacity(4 * n);
    let mut t = Vec::with_capacity(4 * n);
    for i in 0..n {
        let scale = rng.range(0.5, 100.0);
        let (cx, cy) = (rng.range(-300.0, 300.0), rng.range(-300.0, 300.0));
        let bx = |rng: &mut Rng, cx: f64, cy: f64| {
            let w = rng.range(0.05, 1.0) * scale;
            let h = rng.range(0.05, 1.0) * scale;
            [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
        };
        let tb = bx(rng, cx, cy);
        let pb = match i % 7 {
            0..=2 => {
                let (dx, dy) = (rng.range(-0.4, 0.4) * scale, rng.range(-0.4, 0.4) * scale);
                bx(rng, cx + dx, cy + dy)
            }
            3 => bx(rng, cx + 2.5 * scale, cy - 1.5 * scale),
            4 => {
                let (w, h) = (tb[2] - tb[0], tb[3] - tb[1]);
                [
                    tb[0] + 0.1 * w,
                    tb[1] + 0.2 * h,
                    tb[2] - 0.3 * w,
                    tb[3] - 0.1 * h,
                ]
            }
            5 => tb,
            _ => {
                let x = rng.range(tb[0], tb[2]);
                [x, tb[1], x, tb[1] - rng.range(0.0, 1.0) * scale]
            }
        };
        // Round in xyxy first so that identical boxes stay identical after conversion.
        let r = |b: [f64; 4]| b.map(|v| f64::from(v as f32));
        p.extend(format.from_xyxy(r(pb)).map(|v| v as f32));
        t.extend(format.from_xyxy(r(tb)).map(|v| v as f32));
    }
    (p, t)
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Runs the CPU backend and the reference on the same inputs and checks losses and gradients.
fn check(cfg: &BoxLoss, pred: &[f32], target: &[f32], upstream: Upstream<'_>, with_grad: bool) {
    let cpu = CpuBackend::new();
    let n = pred.len() / 4;
    let mut g32 = vec![0.0f32; pred.len()];
    let got = cpu
        .box_loss(
            cfg,
            Input::new(pred)
                .with_upstream(upstream)
                .with_optional_grad(with_grad.then_some(&mut g32[..])),
            target,
        )
        .map(Loss::into_values)
        .unwrap();
    let mut g64 = vec![0.0f64; pred.len()];
    let want = ReferenceBackend
        .box_loss(
            cfg,
            Input::new(&widen(pred))
                .with_upstream(upstream)
                .with_optional_grad(with_grad.then_some(&mut g64[..])),
            &widen(target),
        )
        .map(Loss::into_values)
        .unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        assert!(
            close(g, w, 2e-6, 2e-5),
            "{cfg:?} loss {i}: got {g:e}, want {w:e}"
        );
    }
    if !with_grad {
        return;
    }
    let scale = if cfg.reduction == Reduction::Mean {
        1.0 / n as f64
    } else {
        1.0
    };
    for i in 0..n {
        let u = match upstream {
            Upstream::Scalar(s) => s,
            Upstream::PerElement(u) => u[i],
        };
        let s = (u * scale).abs();
        let m = g64[4 * i..4 * i + 4]
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |a, v| a.max(v.abs()));
        for k in 0..4 {
            let (g, w) = (f64::from(g32[4 * i + k]), g64[4 * i + k]);
            assert!(
                close(g, w, 2e-6 * s + 1e-5 * m, 2e-5),
                "{cfg:?} grad pair {i} coord {k}: got {g:e}, want {w:e}; pred {:?} target {:?}",
                &pred[4 * i..4 * i + 4],
                &target[4 * i..4 * i + 4]
            );
        }
    }
}

fn cfg(kind: BoxLossKind, format: BoxFormat, reduction: Reduction) -> BoxLoss {
    BoxLoss::new(kind, format).with_reduction(reduction)
}

#[test]
fn every_kind_format_reduction_upstream_matches_reference() {
    let mut rng = Rng::new(7);
    for kind in BoxLossKind::TORCHVISION {
        for format in FORMATS {
            for (ri, reduction) in REDUCTIONS.into_iter().enumerate() {
                for &n in &[1usize, 7, 64, 65, 301] {
                    let (p, t) = pairs(&mut rng, n, format);
                    let up: Vec<f64> = (0..n).map(|_| rng.range(-2.0, 2.0)).collect();
                    for tw in [false, true] {
                        let mut c = cfg(kind, format, reduction);
                        if tw {
                            c = c.with_threshold_weight(0.3, 0.5);
                        }
                        check(&c, &p, &t, Upstream::ONE, true);
                        check(&c, &p, &t, Upstream::Scalar(-0.75), true);
                        check(&c, &p, &t, Upstream::ONE, false);
                        if reduction == Reduction::None {
                            check(&c, &p, &t, Upstream::PerElement(&up), true);
                        }
                        let _ = ri;
                    }
                }
            }
        }
    }
}

#[test]
fn large_eps_and_seed_loss() {
    let mut rng = Rng::new(11);
    for format in FORMATS {
        let (p, t) = pairs(&mut rng, 500, format);
        for kind in BoxLossKind::TORCHVISION {
            check(
                &cfg(kind, format, Reduction::Mean).with_eps(1e-2),
                &p,
                &t,
                Upstream::ONE,
                true,
            );
        }
    }
    let (p, t) = pairs(&mut rng, 333, BoxFormat::Cxcywh);
    check(
        &smoothloss_core::BoxLoss::iou_loss(0.4, 0.3),
        &p,
        &t,
        Upstream::ONE,
        true,
    );
}

/// Degenerate pairs, mostly from small dyadic numbers (exact in f32 and f64, so ties are ties in
/// both): zero and negative sizes, identical, nested (shared edges), touching and disjoint.
fn degenerate_xyxy() -> Vec<([f32; 4], [f32; 4])> {
    let t = [1.0, 2.0, 5.0, 4.0];
    vec![
        (t, t),                           // identical
        ([1.0, 2.0, 3.0, 4.0], t),        // nested, three shared edges
        ([2.0, 2.5, 4.0, 3.5], t),        // strictly nested
        ([0.0, 0.0, 8.0, 8.0], t),        // target nested in prediction
        ([5.0, 2.0, 7.0, 4.0], t),        // touching edge (zero-width intersection)
        ([6.0, 5.0, 7.0, 6.0], t),        // disjoint
        ([3.0, 3.0, 3.0, 3.0], t),        // zero-size point inside
        ([3.0, 2.0, 3.0, 4.0], t),        // zero width
        ([2.0, 3.0, 4.0, 3.0], t),        // zero height
        ([4.0, 3.0, 2.0, 1.0], t),        // negative width and height
        ([2.0, 4.0, 4.0, 2.5], t),        // negative height
        ([0.0, 0.0, 0.0, 0.0], [0.0; 4]), // both empty
        ([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]),
        ([1.0, 2.0, 5.0, 2.0], [1.0, 2.0, 5.0, 2.0]), // identical zero-height boxes
        ([0.0, 0.0, 0.0, 3.0], [0.0, 0.0, 2.0, 0.0]), // h = 0 and w = 0 for the atan
        ([-3.0, -1.0, -1.0, 1.0], [-3.0, -1.0, -1.0, 1.0]),
        // Tiny identical boxes far from the origin (the gradient is eps-driven).
        (
            [-100.653_34, -100.342_094, -100.622_23, -100.290_15],
            [-100.653_34, -100.342_094, -100.622_23, -100.290_15],
        ),
    ]
}

#[test]
fn degenerate_boxes_match_reference() {
    let pairs = degenerate_xyxy();
    for format in FORMATS {
        let mut p = Vec::new();
        let mut t = Vec::new();
        for (a, b) in &pairs {
            let c = |x: [f32; 4]| format.from_xyxy(x.map(f64::from)).map(|v| v as f32);
            p.extend(c(*a));
            t.extend(c(*b));
        }
        for kind in BoxLossKind::TORCHVISION {
            for reduction in REDUCTIONS {
                let c = cfg(kind, format, reduction);
                check(&c, &p, &t, Upstream::ONE, true);
                let cpu = CpuBackend::new();
                let mut g = vec![0.0f32; p.len()];
                let out = cpu
                    .box_loss(&c, Input::new(&p).with_grad(&mut g), &t)
                    .map(Loss::into_values)
                    .unwrap();
                assert!(out.iter().all(|v| v.is_finite()), "{c:?}: {out:?}");
                assert!(g.iter().all(|v| v.is_finite()), "{c:?}: {g:?}");
            }
        }
    }
}

#[test]
fn non_finite_coordinates_give_nan_like_reference() {
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    for format in FORMATS {
        let mut p = Vec::new();
        let mut t = Vec::new();
        for (si, &s) in specials.iter().enumerate() {
            for k in 0..8 {
                let mut a = [1.0f32, 2.0, 5.0, 4.0];
                let mut b = [2.0f32, 1.0, 4.0, 6.0];
                if k < 4 {
                    a[k] = s;
                } else {
                    b[k - 4] = s;
                }
                p.extend(a);
                t.extend(b);
                // A finite pair in between must stay finite.
                p.extend([0.5f32 + si as f32, 0.5, 3.0, 2.0]);
                t.extend([1.0f32, 1.0, 3.5, 2.5]);
            }
        }
        for kind in BoxLossKind::TORCHVISION {
            let c = cfg(kind, format, Reduction::None);
            check(&c, &p, &t, Upstream::ONE, true);
            let cpu = CpuBackend::new();
            let mut g = vec![0.0f32; p.len()];
            let out = cpu
                .box_loss(&c, Input::new(&p).with_grad(&mut g), &t)
                .map(Loss::into_values)
                .unwrap();
            for (i, v) in out.iter().enumerate() {
                assert_eq!(v.is_nan(), i % 2 == 0, "{c:?} pair {i}");
                assert!(
                    g[4 * i..4 * i + 4]
                        .iter()
                        .all(|x| x.is_nan() == (i % 2 == 0))
                );
            }
            // Mean over a batch with a NaN pair is NaN, as the reference.
            check(
                &cfg(kind, format, Reduction::Mean),
                &p,
                &t,
                Upstream::ONE,
                true,
            );
        }
    }
}

#[test]
fn results_are_bit_identical_for_1_2_3_threads() {
    let mut rng = Rng::new(99);
    let n = 50_001;
    for format in FORMATS {
        let (p, t) = pairs(&mut rng, n, format);
        for kind in BoxLossKind::TORCHVISION {
            for reduction in REDUCTIONS {
                let c = cfg(kind, format, reduction);
                let mut runs = Vec::new();
                for threads in [1, 2, 3] {
                    let cpu = CpuBackend::with_threads(threads);
                    let mut g = vec![0.0f32; p.len()];
                    let out = cpu
                        .box_loss(&c, Input::new(&p).with_grad(&mut g), &t)
                        .map(Loss::into_values)
                        .unwrap();
                    runs.push((out, g));
                }
                for (threads, (out, g)) in [2, 3].into_iter().zip(&runs[1..]) {
                    kit::same_bits_f64(&runs[0].0, out)
                        .and(kit::same_bits_f32(&runs[0].1, g))
                        .unwrap_or_else(|e| panic!("{c:?} {threads} threads: {e}"));
                }
            }
        }
    }
}

/// The detection kinds and modifier sets (`BOX-14` .. `BOX-23`, the kernels with options): every kind,
/// format, reduction, upstream and option variant against the reference.
#[test]
fn every_detection_kind_and_modifier_matches_reference() {
    let mut rng = Rng::new(1313);
    for kind in BoxLossKind::ALL {
        for (fi, format) in FORMATS.into_iter().enumerate() {
            for (ri, reduction) in REDUCTIONS.into_iter().enumerate() {
                for v in [ri + 3 * fi, ri + 3 * fi + 1] {
                    let (p, t) = pairs(&mut rng, 203, format);
                    let mut c = cfg(kind, format, reduction)
                        .with_options(smoothloss_spec::random::box_options(kind, v));
                    if v % 2 == 1 {
                        c = c.with_threshold_weight(0.3, 0.5);
                    }
                    let up: Vec<f64> = (0..203).map(|i| 0.25 + (i % 4) as f64).collect();
                    let upstream = if reduction == Reduction::None {
                        Upstream::PerElement(&up)
                    } else {
                        Upstream::Scalar(-1.5)
                    };
                    check(&c, &p, &t, upstream, true);
                    check(&c, &p, &t, upstream, false);
                }
            }
        }
    }
}

/// The detection kinds and modifier sets are bit-identical for 1, 2 and 3 threads (several
/// blocks of pairs).
#[test]
fn detection_kinds_are_bit_identical_for_1_2_3_threads() {
    let mut rng = Rng::new(77);
    let n = 20_001;
    let (p, t) = pairs(&mut rng, n, BoxFormat::Cxcywh);
    for kind in BoxLossKind::ALL {
        for v in 0..6 {
            for reduction in [Reduction::Mean, Reduction::None] {
                let c = cfg(kind, BoxFormat::Cxcywh, reduction)
                    .with_options(smoothloss_spec::random::box_options(kind, v));
                let mut runs = Vec::new();
                for threads in [1, 2, 3] {
                    let cpu = CpuBackend::with_threads(threads);
                    let mut g = vec![0.0f32; p.len()];
                    let out = cpu
                        .box_loss(&c, Input::new(&p).with_grad(&mut g), &t)
                        .map(Loss::into_values)
                        .unwrap();
                    runs.push((out, g));
                }
                for (threads, (out, g)) in [2, 3].into_iter().zip(&runs[1..]) {
                    kit::same_bits_f64(&runs[0].0, out)
                        .and(kit::same_bits_f32(&runs[0].1, g))
                        .unwrap_or_else(|e| panic!("{c:?} {threads} threads: {e}"));
                }
            }
        }
    }
}

#[test]
fn box_iou_matches_reference() {
    let mut rng = Rng::new(5);
    let cpu = CpuBackend::new();
    for format in FORMATS {
        for &(n, m) in &[(1usize, 1usize), (9, 20), (33, 7), (300, 301)] {
            let (a, _) = pairs(&mut rng, n, format);
            let (b, _) = pairs(&mut rng, m, format);
            let mut out = vec![0.0f32; n * m];
            cpu.box_iou(format, &a, &b, &mut out).unwrap();
            let mut want = vec![0.0f64; n * m];
            ReferenceBackend
                .box_iou(format, &widen(&a), &widen(&b), &mut want)
                .unwrap();
            for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
                assert!(
                    close(f64::from(g), w, 2e-6, 2e-5),
                    "{format:?} {i}: {g} {w}"
                );
            }
        }
        // Degenerate and non-finite boxes.
        let mut a: Vec<f32> = degenerate_xyxy().iter().flat_map(|(x, _)| *x).collect();
        a.extend([f32::NAN, 0.0, 1.0, 1.0, 0.0, f32::INFINITY, 1.0, 2.0]);
        let a: Vec<f32> = a
            .chunks(4)
            .flat_map(|b| {
                format
                    .from_xyxy([b[0], b[1], b[2], b[3]].map(f64::from))
                    .map(|v| v as f32)
            })
            .collect();
        let b = [1.0f32, 2.0, 5.0, 4.0, 0.0, 0.0, 8.0, 8.0];
        let (n, m) = (a.len() / 4, 2);
        let mut out = vec![0.0f32; n * m];
        cpu.box_iou(format, &a, &b, &mut out).unwrap();
        let mut want = vec![0.0f64; n * m];
        ReferenceBackend
            .box_iou(format, &widen(&a), &widen(&b), &mut want)
            .unwrap();
        for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
            assert!(
                close(f64::from(g), w, 2e-6, 2e-5),
                "{format:?} {i}: {g} {w}"
            );
        }
    }
}

#[test]
fn portable_build_is_bit_identical_to_the_avx2_build() {
    let mut rng = Rng::new(21);
    let run = |cpu: &CpuBackend, p: &[f32], t: &[f32], c: &BoxLoss| {
        let mut g = vec![0.0f32; p.len()];
        let out = cpu
            .box_loss(c, Input::new(p).with_grad(&mut g), t)
            .map(Loss::into_values)
            .unwrap();
        let mut iou = vec![0.0f32; (p.len() / 4) * 5];
        cpu.box_iou(c.format, p, &t[..20], &mut iou).unwrap();
        let x: Vec<f32> = p.iter().map(|v| v * 0.05).collect();
        let y: Vec<f32> = t.iter().map(|v| (v * 0.01).fract().abs()).collect();
        let mut ge = vec![0.0f32; x.len()];
        let mut e = cpu
            .bce_with_logits(&Default::default(), Input::new(&x).with_grad(&mut ge), &y)
            .map(Loss::into_values)
            .unwrap();
        let focal = smoothloss_core::SigmoidFocal {
            gamma: 1.5,
            ..Default::default()
        };
        e.extend(
            cpu.sigmoid_focal(&focal, Input::new(&x).with_grad(&mut ge), &y)
                .map(Loss::into_values)
                .unwrap(),
        );
        e.extend(
            cpu.smooth_l1(&Default::default(), Input::new(&x).with_grad(&mut ge), &y)
                .map(Loss::into_values)
                .unwrap(),
        );
        (out, g, iou, e, ge)
    };
    for format in FORMATS {
        let (p, t) = pairs(&mut rng, 333, format);
        for kind in BoxLossKind::TORCHVISION {
            let c = cfg(kind, format, Reduction::None);
            let portable = CpuBackend::with_threads(1).with_simd_level(SimdLevel::Scalar);
            assert_eq!(
                CpuBackend::with_threads(1).simd_level(),
                SimdLevel::detect()
            );
            let portable = run(&portable, &p, &t, &c);
            // Every vector build this machine has (AVX2, and AVX-512 where present).
            for level in SimdLevel::available() {
                let native = CpuBackend::with_threads(1).with_simd_level(level);
                let native = run(&native, &p, &t, &c);
                kit::same_bits_f64(&portable.0, &native.0)
                    .and(kit::same_bits_f32(&portable.1, &native.1))
                    .and(kit::same_bits_f32(&portable.2, &native.2))
                    .and(kit::same_bits_f64(&portable.3, &native.3))
                    .and(kit::same_bits_f32(&portable.4, &native.4))
                    .unwrap_or_else(|e| panic!("{c:?} on {}: {e}", level.name()));
            }
        }
    }
}

fn atan_ok(x: f32, got: f32) -> bool {
    let want = f64::from(x).atan();
    close(f64::from(got), want, 1.5e-7, 1.2e-7)
}

#[test]
fn atan_error_bound_over_the_whole_range() {
    // Every exponent, several mantissas, both signs; plus random bit patterns.
    let mut worst = 0.0f64;
    let mut check = |x: f32| {
        let got = atan_f32(x);
        assert!(
            atan_ok(x, got),
            "atan({x:e}) = {got:e}, want {:e}",
            f64::from(x).atan()
        );
        if x.is_finite() {
            worst = worst.max((f64::from(got) - f64::from(x).atan()).abs());
        }
    };
    for e in 0u32..255 {
        for m in [0u32, 1, 0x1234, 0x40_0000, 0x55_5555, 0x7f_ffff] {
            let b = (e << 23) | m;
            check(f32::from_bits(b));
            check(-f32::from_bits(b));
        }
    }
    for i in 0..200_000u32 {
        check(i as f32 * 1e-4 - 10.0);
    }
    let mut rng = Rng::new(3);
    for _ in 0..200_000 {
        let x = f32::from_bits(rng.next_u64() as u32);
        if x.is_finite() {
            check(x);
        }
    }
    for x in [
        0.0f32,
        -0.0,
        f32::MIN_POSITIVE,
        1e-45,
        2.414_213_6,
        0.414_213_57,
        1.0,
        f32::MAX,
    ] {
        check(x);
        check(-x);
    }
    assert!(worst > 0.0 && worst < 2e-7);
    let half_pi = std::f64::consts::FRAC_PI_2;
    assert!((f64::from(atan_f32(f32::INFINITY)) - half_pi).abs() < 1e-7);
    assert!((f64::from(atan_f32(f32::NEG_INFINITY)) + half_pi).abs() < 1e-7);
    assert!(atan_f32(f32::NAN).is_nan());
    // The ratio form and its h = 0 extension (BOX-11).
    assert_eq!(atan_ratio_f32(0.0, 0.0), 0.0);
    assert!((f64::from(atan_ratio_f32(2.0, 0.0)) - half_pi).abs() < 1e-7);
    assert!((f64::from(atan_ratio_f32(-2.0, -0.0)) + half_pi).abs() < 1e-7);
    let mut rng = Rng::new(4);
    for _ in 0..100_000 {
        let w = rng.range(-1e3, 1e3) as f32;
        let h = (rng.range(-1e3, 1e3) * rng.unit().powi(8)) as f32;
        let want = (f64::from(w) / f64::from(h)).atan();
        let got = f64::from(atan_ratio_f32(w, h));
        assert!(close(got, want, 1.5e-7, 1.2e-7), "{w} {h}: {got} {want}");
    }
}

/// The reference's `atan(w / h)` extended to `h = 0` (`BOX-11`).
fn atan_ratio_f64(w: f64, h: f64) -> f64 {
    if h != 0.0 {
        (w / h).atan()
    } else if w == 0.0 {
        0.0
    } else {
        w.signum() * std::f64::consts::FRAC_PI_2
    }
}

#[test]
fn atan_ratio_difference_matches_two_atans() {
    let mut rng = Rng::new(8);
    let specials = [0.0f32, -0.0, 1.0, -1.0, 3.0, -2.5, 1e-3, 7e2];
    let mut vals: Vec<[f32; 4]> = Vec::new();
    for &a in &specials {
        for &b in &specials {
            vals.push([a, b, 2.0, 1.0]);
            vals.push([2.0, 1.0, a, b]);
            vals.push([a, b, b, a]);
            vals.push([a, 0.0, b, 0.0]);
        }
    }
    for _ in 0..200_000 {
        let mut r = || {
            let v = rng.range(-100.0, 100.0) * rng.unit().powi(4);
            if rng.unit() < 0.05 { 0.0 } else { v as f32 }
        };
        vals.push([r(), r(), r(), r()]);
    }
    for [w, h, wg, hg] in vals {
        let want = atan_ratio_f64(f64::from(wg), f64::from(hg))
            - atan_ratio_f64(f64::from(w), f64::from(h));
        let got = f64::from(atan_ratio_diff(w, h, wg, hg));
        assert!(
            close(got, want, 4e-7, 2e-7),
            "({w}, {h}) vs ({wg}, {hg}): got {got}, want {want}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_shapes_match_reference(
        n in 1usize..400,
        seed in any::<u64>(),
        kind in 0usize..5,
        format in 0usize..3,
        reduction in 0usize..3,
        up in -3.0f64..3.0,
        tw in any::<bool>(),
    ) {
        let mut rng = Rng::new(seed);
        let format = FORMATS[format];
        let (p, t) = pairs(&mut rng, n, format);
        let mut c = cfg(BoxLossKind::TORCHVISION[kind], format, REDUCTIONS[reduction]);
        if tw {
            c = c.with_threshold_weight(0.5, 0.4);
        }
        check(&c, &p, &t, Upstream::Scalar(up), true);
        check(&c, &p, &t, Upstream::Scalar(up), false);
    }
}

/// Detection configurations on the hand-derived `f32` kernels (every kind has one): the
/// detection kinds and every modifier (Inner, Focaler, alpha, focal), alone and composed.
fn fast_detection_cfgs(format: BoxFormat, reduction: Reduction) -> Vec<BoxLoss> {
    let k = |kind| cfg(kind, format, reduction).with_image_size(64.0, 48.0);
    vec![
        k(BoxLossKind::ExtendedIou),
        k(BoxLossKind::ExtendedIou)
            .with_smooth_point(0.5)
            .with_focal(0.5),
        k(BoxLossKind::Ciou).with_inner(0.8),
        k(BoxLossKind::Giou).with_inner(1.3).with_focaler(0.1, 0.9),
        k(BoxLossKind::Siou).with_inner(0.8).with_focaler(0.0, 0.95),
        k(BoxLossKind::Wiou).with_inner(0.7),
        k(BoxLossKind::Iou).with_alpha_power(3.0),
        k(BoxLossKind::Giou).with_alpha_power(2.0),
        k(BoxLossKind::Diou).with_alpha_power(0.5),
        k(BoxLossKind::Ciou).with_alpha_power(3.0),
        // Integer powers run multiplied out (1 and 8 are the ends of that path), others
        // through exp and ln.
        k(BoxLossKind::Iou).with_alpha_power(1.0),
        k(BoxLossKind::Diou).with_alpha_power(5.0),
        k(BoxLossKind::Giou).with_alpha_power(8.0),
        k(BoxLossKind::Ciou).with_alpha_power(9.0),
        k(BoxLossKind::Ciou).with_alpha_power(2.5),
        // alpha-IoU alone runs its lean kernel (the threshold weight included); with another
        // modifier, the kernel that has every option.
        k(BoxLossKind::Iou)
            .with_alpha_power(2.5)
            .with_threshold_weight(0.3, 0.4),
        k(BoxLossKind::Giou)
            .with_alpha_power(2.5)
            .with_focaler(0.1, 0.9),
        k(BoxLossKind::Diou).with_alpha_power(3.0).with_focal(0.5),
        k(BoxLossKind::Ciou)
            .with_ciou_convention(CiouConvention::Mmdetection)
            .with_alpha_power(3.0),
        k(BoxLossKind::Ciou)
            .with_alpha_power(2.0)
            .with_inner(0.8)
            .with_focaler(0.0, 0.9)
            .with_focal(0.5),
        k(BoxLossKind::Wiou),
        k(BoxLossKind::Mpdiou),
        k(BoxLossKind::Giou).with_focaler(0.1, 0.9),
        k(BoxLossKind::Ciou).with_focaler(0.0, 0.8).with_focal(0.5),
        k(BoxLossKind::Wiou).with_focal(1.5),
        k(BoxLossKind::Mpdiou).with_focaler(0.2, 0.7),
        k(BoxLossKind::Eiou).with_focal(0.5),
        k(BoxLossKind::Iou)
            .with_focal(0.0)
            .with_threshold_weight(0.3, 0.4),
    ]
}

/// Degenerate and non-finite pairs on the hand-derived detection kernels match the reference
/// (NaN for NaN), and the portable build is bit-identical to the AVX2 build.
#[test]
fn fast_detection_kinds_degenerate_non_finite_and_portable() {
    let mut rng = Rng::new(4242);
    for format in FORMATS {
        let mut p = Vec::new();
        let mut t = Vec::new();
        for (a, b) in degenerate_xyxy() {
            let c = |x: [f32; 4]| format.from_xyxy(x.map(f64::from)).map(|v| v as f32);
            p.extend(c(a));
            t.extend(c(b));
        }
        for s in [f32::NAN, f32::INFINITY] {
            p.extend([1.0, 2.0, s, 4.0]);
            t.extend([2.0f32, 1.0, 4.0, 6.0]);
        }
        let (rp, rt) = pairs(&mut rng, 301, format);
        p.extend(rp);
        t.extend(rt);
        for reduction in REDUCTIONS {
            for c in fast_detection_cfgs(format, reduction) {
                check(&c, &p, &t, Upstream::ONE, true);
                let run = |cpu: &CpuBackend| {
                    let mut g = vec![0.0f32; p.len()];
                    let out = cpu
                        .box_loss(&c, Input::new(&p).with_grad(&mut g), &t)
                        .map(Loss::into_values)
                        .unwrap();
                    (out, g)
                };
                let a = run(&CpuBackend::with_threads(1).with_simd_level(SimdLevel::Scalar));
                for level in SimdLevel::available() {
                    let b = run(&CpuBackend::with_threads(1).with_simd_level(level));
                    kit::same_bits_f64(&a.0, &b.0)
                        .and(kit::same_bits_f32(&a.1, &b.1))
                        .unwrap_or_else(|e| panic!("{c:?} on {}: {e}", level.name()));
                }
            }
        }
    }
}
