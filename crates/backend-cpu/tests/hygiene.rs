//! Numerical hygiene of issue 14 on the CPU backend, at both SIMD levels, against the `f64`
//! reference on the same `f32` inputs (`TOL-2`) or the formula's limit (`TOL-4`): the focal
//! gradient at saturated logits, the focal limit at infinite logits, `box_iou` with infinite
//! sizes, the `f32` domain of parameters and upstream gradients, and non-finite per-element
//! upstream gradients.

use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, Huber, Input, Loss, LossError,
    Losses, Reduction, ReferenceBackend, SigmoidFocal, SmoothL1, Upstream,
};
use smoothloss_cpu::{CpuBackend, SimdLevel};
use smoothloss_spec::{Tolerance, covers, kit};

/// The backend on 1, 2 and 3 threads, each at the portable level and at the detected one.
fn backends() -> Vec<CpuBackend> {
    [1, 2, 3]
        .into_iter()
        .flat_map(|t| {
            [
                CpuBackend::with_threads(t).with_simd_level(SimdLevel::Scalar),
                CpuBackend::with_threads(t),
            ]
        })
        .collect()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Loss values and gradient of a focal call with reduction `none` on `b`.
fn focal<B: Losses<f32>>(b: &B, cfg: &SigmoidFocal, x: &[f32], y: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let mut g = vec![0.0f32; x.len()];
    let l = b
        .sigmoid_focal(cfg, Input::new(x).with_grad(&mut g), y)
        .expect("valid call");
    (l.into_values(), widen(&g))
}

#[test]
fn focal_gradient_is_finite_at_saturated_logits_with_small_gamma() {
    covers!("BIN-4", "TOL-2");
    // Issue 14 item 2: gamma 0.042, logit -94, target 0 gave grad inf (alpha 1: NaN).
    let x: Vec<f32> = [
        -94.0, -90.0, -100.0, -103.9, -88.0, 94.0, 90.0, 100.0, 103.9, 88.0,
    ]
    .into_iter()
    .flat_map(|v| [v, v])
    .collect();
    let y: Vec<f32> = (0..x.len()).map(|i| (i % 2) as f32).collect();
    for (alpha, gamma) in [
        (0.25, 0.042),
        (1.0, 0.042),
        (0.25, 0.1),
        (-1.0, 0.01),
        (0.5, 0.149),
    ] {
        let cfg = SigmoidFocal {
            alpha,
            gamma,
            reduction: Reduction::None,
        };
        let (wl, wg) = focal(&ReferenceBackend, &cfg, &x, &y);
        for b in backends() {
            let (l, g) = focal(&b, &cfg, &x, &y);
            assert!(
                g.iter().all(|v| v.is_finite()),
                "{:?} {cfg:?}: {g:?}",
                b.simd_level()
            );
            kit::assert_close(&l, &wl, Tolerance::F32);
            kit::assert_close(&g, &wg, Tolerance::F32);
        }
    }
    // The figure: 0 within one f32 subnormal step of the reference's 0.
    let cfg = SigmoidFocal {
        alpha: 0.25,
        gamma: 0.042,
        reduction: Reduction::None,
    };
    for b in backends() {
        let (_, g) = focal(&b, &cfg, &[-94.0], &[0.0]);
        assert!(g[0].abs() < 1e-40, "{g:?}");
    }
}

#[test]
fn focal_at_an_infinite_logit_is_the_limit() {
    covers!("BIN-4", "TOL-4");
    // x = +inf, y = 0: loss +inf, gradient alpha_t * 1 (the term ce * dmod tends to 0);
    // mirrored for x = -inf, y = 1; the confident correct ones give 0.
    let inf = f32::INFINITY;
    let x = [inf, -inf, inf, -inf];
    let y = [0.0, 1.0, 1.0, 0.0];
    for gamma in [0.0, 0.5, 1.0, 2.0, 2.5] {
        let cfg = SigmoidFocal {
            alpha: 0.25,
            gamma,
            reduction: Reduction::None,
        };
        let want_l = [f64::INFINITY, f64::INFINITY, 0.0, 0.0];
        let want_g = [0.75, -0.25, 0.0, 0.0];
        let (rl, rg) = focal(&ReferenceBackend, &cfg, &x, &y);
        assert_eq!(rl, want_l, "reference gamma {gamma}");
        assert_eq!(rg, want_g, "reference gamma {gamma}");
        for b in backends() {
            let (l, g) = focal(&b, &cfg, &x, &y);
            assert_eq!(l, want_l, "{:?} gamma {gamma}", b.simd_level());
            assert_eq!(g, want_g, "{:?} gamma {gamma}", b.simd_level());
        }
    }
}

#[test]
fn box_iou_with_an_infinite_size_is_zero_in_every_format() {
    covers!("BOX-13", "TOL-4");
    let inf = f32::INFINITY;
    // Issue 14 item 3: an infinite width or height is an infinite union: IoU 0, as in xyxy.
    let b2 = [0.0f32, 0.0, 2.0, 2.0];
    for (fmt, a) in [
        (BoxFormat::Xyxy, [0.0f32, 0.0, inf, 1.0]),
        (BoxFormat::Xywh, [0.0, 0.0, inf, 1.0]),
        (BoxFormat::Xywh, [0.0, 0.0, 1.0, inf]),
        (BoxFormat::Cxcywh, [1.0, 1.0, inf, 1.0]),
        (BoxFormat::Cxcywh, [1.0, 1.0, 1.0, inf]),
    ] {
        let mut want = [f32::NAN];
        ReferenceBackend
            .box_iou(fmt, &a, &b2, &mut want)
            .expect("valid");
        assert_eq!(want, [0.0], "reference {fmt:?} {a:?}");
        for b in backends() {
            let mut out = [f32::NAN];
            b.box_iou(fmt, &a, &b2, &mut out).expect("valid");
            assert_eq!(out, [0.0], "{:?} {fmt:?} {a:?}", b.simd_level());
        }
    }
    // Every box built from special values against every other, in every format: the CPU is
    // NaN exactly where the reference is, and equal elsewhere within TOL-2.
    let vals = [0.0f32, 1.0, -1.0, 3.0, inf, -inf, f32::NAN];
    let mut boxes = Vec::new();
    for &p in &vals[..4] {
        for &s in &vals {
            boxes.extend([p, 0.5, s, 2.0]);
            boxes.extend([s, 0.0, 1.0, 2.5]);
        }
    }
    for fmt in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh] {
        let n = boxes.len() / 4;
        let mut want = vec![0.0f32; n * n];
        ReferenceBackend
            .box_iou(fmt, &boxes, &boxes, &mut want)
            .expect("valid");
        for b in backends() {
            let mut out = vec![0.0f32; n * n];
            b.box_iou(fmt, &boxes, &boxes, &mut out).expect("valid");
            kit::assert_close(&widen(&out), &widen(&want), Tolerance::F32);
        }
    }
}

/// The `InvalidParameter` name of an error, if it is one.
fn refused(r: Result<Loss, LossError>) -> Option<&'static str> {
    match r {
        Err(LossError::InvalidParameter { name, .. }) => Some(name),
        _ => None,
    }
}

#[test]
fn parameters_beyond_the_f32_domain_are_refused_on_f32_data() {
    covers!("TOL-4");
    // Issue 14 item 4: f32 data refuses what an f32 computation cannot hold, on every f32
    // backend (the reference on f32 data too); the reference on f64 data computes them.
    let x = [0.5f32, -1.0, 2.0, 0.0];
    let t = [0.0f32, 1.0, 1.0, 0.0];
    let x64 = widen(&x);
    let t64 = widen(&t);
    let b64 = [0.0f64, 0.0, 1.0, 1.0];
    let b32 = [0.0f32, 0.0, 1.0, 1.0];
    let mean = Reduction::Mean;
    macro_rules! case {
        ($name:expr, |$b:ident, $x:ident, $t:ident, $bx:ident| $call:expr) => {{
            for b in backends() {
                let ($b, $x, $t, $bx) = (&b, &x[..], &t[..], &b32[..]);
                assert_eq!(refused($call), Some($name), "cpu");
            }
            let ($b, $x, $t, $bx) = (&ReferenceBackend, &x[..], &t[..], &b32[..]);
            assert_eq!(refused($call), Some($name), "reference on f32");
            let ($b, $x, $t, $bx) = (&ReferenceBackend, &x64[..], &t64[..], &b64[..]);
            let v = $call.expect("f64 data accepts it");
            assert!(v.values().iter().all(|v| !v.is_nan()), "{v:?}");
        }};
    }
    for beta in [1e-40, 1e300] {
        let cfg = SmoothL1 {
            beta,
            reduction: mean,
        };
        case!("beta", |b, x, t, _bx| b.smooth_l1(&cfg, x, t));
    }
    for delta in [1e-46, 1e39] {
        let cfg = Huber {
            delta,
            reduction: mean,
        };
        case!("delta", |b, x, t, _bx| b.huber(&cfg, x, t));
    }
    for eps in [1e-40, 1e39] {
        let cfg = BoxLoss::new(BoxLossKind::Giou, BoxFormat::Xyxy).with_eps(eps);
        case!("eps", |b, _x, _t, bx| b.box_loss(&cfg, bx, bx));
    }
    let focal = SigmoidFocal {
        gamma: 1e300,
        ..SigmoidFocal::default()
    };
    case!("gamma", |b, x, t, _bx| b.sigmoid_focal(&focal, x, t));
    let bce = BceWithLogits {
        pos_weight: Some(vec![1e39]),
        reduction: mean,
    };
    case!("pos_weight", |b, x, t, _bx| b.bce_with_logits(&bce, x, t));
    let ce = CrossEntropy::new()
        .with_label_smoothing(0.1)
        .with_class_weights(vec![1e300, 1.0]);
    case!("class_weights", |b, x, _t, _bx| b.cross_entropy(
        &ce,
        Input::matrix(x, 2, 2),
        &[0, 1]
    ));
    let sl1 = SmoothL1::default();
    case!("upstream", |b, x, t, _bx| b.smooth_l1(
        &sl1,
        Input::new(x).with_upstream(Upstream::Scalar(1e39)),
        t
    ));
}

/// Smooth L1 with reduction `none` on `b`: loss values and gradient.
fn sl1<B: Losses<f32>>(b: &B, beta: f64, x: &[f32], t: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let cfg = SmoothL1 {
        beta,
        reduction: Reduction::None,
    };
    let mut g = vec![0.0f32; x.len()];
    let l = b
        .smooth_l1(&cfg, Input::new(x).with_grad(&mut g), t)
        .unwrap();
    (l.into_values(), widen(&g))
}

/// Huber with reduction `none` on `b`: loss values and gradient.
fn huber<B: Losses<f32>>(b: &B, delta: f64, x: &[f32], t: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let cfg = Huber {
        delta,
        reduction: Reduction::None,
    };
    let mut g = vec![0.0f32; x.len()];
    let l = b.huber(&cfg, Input::new(x).with_grad(&mut g), t).unwrap();
    (l.into_values(), widen(&g))
}

#[test]
fn parameters_at_the_edges_of_the_f32_domain_match_the_reference() {
    covers!("TOL-2", "REG-1", "REG-2", "REG-4");
    // The largest and smallest accepted values compute what the reference computes.
    let x = [0.5f32, -1e20, 2e30, 0.0, 1e-30, f32::INFINITY];
    let t = [0.0f32, 1.0, 1.0, 0.0, 0.0, 0.0];
    for b in backends() {
        for beta in [f64::from(f32::MIN_POSITIVE), 1e30, f64::from(f32::MAX), 0.0] {
            let (l, g) = sl1(&b, beta, &x, &t);
            let (wl, wg) = sl1(&ReferenceBackend, beta, &x, &t);
            kit::assert_close(&l, &wl, Tolerance::F32);
            kit::assert_close(&g, &wg, Tolerance::F32);
        }
        for delta in [f64::from(f32::MIN_POSITIVE), 1e10, f64::from(f32::MAX)] {
            // Without 2e30: delta (|d| - delta / 2) = 2e40 for delta = 1e10 is beyond f32.
            let (xh, th) = (
                [x[0], x[1], x[3], x[4], x[5]],
                [t[0], t[1], t[3], t[4], t[5]],
            );
            let (l, g) = huber(&b, delta, &xh, &th);
            let (wl, wg) = huber(&ReferenceBackend, delta, &xh, &th);
            assert!(l.iter().chain(&g).all(|v| !v.is_nan()), "{l:?} {g:?}");
            // With delta = f32::MAX the quadratic branch's 0.5 d^2 = 5e39 of d = -1e20 is
            // beyond f32: outside TOL-2's domain, so only its gradient is compared.
            if delta < 1e20 {
                kit::assert_close(&l, &wl, Tolerance::F32);
            }
            kit::assert_close(&g, &wg, Tolerance::F32);
        }
        // An upstream of f32::MAX times a zero gradient entry is 0, not NaN.
        let cfg = SmoothL1 {
            beta: 1.0,
            reduction: Reduction::None,
        };
        let u = f64::from(f32::MAX);
        let mut g = vec![1.0f32; 2];
        b.smooth_l1(
            &cfg,
            Input::new(&[0.0f32, 0.5])
                .with_grad(&mut g)
                .with_upstream(Upstream::Scalar(u)),
            &[0.0, 0.0],
        )
        .unwrap();
        assert_eq!(g, [0.0, (0.5 * u) as f32]);
    }
}

/// The `InvalidParameter` names of a CE, a GIoU and a BCE call with per-element upstream
/// `up` (one item each), and whether the gradient buffer was left alone.
fn per_element_calls<B: Losses<f32>>(b: &B, up: &[f64]) -> ([Option<&'static str>; 3], bool) {
    let z = [0.0f32, -120.0, 1.0];
    let ce = CrossEntropy::new().with_reduction(Reduction::None);
    let giou = BoxLoss::new(BoxLossKind::Giou, BoxFormat::Xyxy).with_reduction(Reduction::None);
    let bce = BceWithLogits {
        pos_weight: None,
        reduction: Reduction::None,
    };
    let boxes = [0.0f32, 0.0, 1.0, 1.0];
    let mut g = [7.0f32; 4];
    let r = [
        refused(
            b.cross_entropy(
                &ce,
                Input::matrix(&z, 1, 3)
                    .with_grad(&mut g[..3])
                    .with_upstream(Upstream::PerElement(up)),
                &[0],
            ),
        ),
        refused(
            b.box_loss(
                &giou,
                Input::new(&boxes)
                    .with_grad(&mut g)
                    .with_upstream(Upstream::PerElement(up)),
                &boxes,
            ),
        ),
        refused(
            b.bce_with_logits(
                &bce,
                Input::new(&z[..1])
                    .with_grad(&mut g[..1])
                    .with_upstream(Upstream::PerElement(up)),
                &[0.0],
            ),
        ),
    ];
    (r, g == [7.0; 4])
}

#[test]
fn non_finite_per_element_upstream_is_refused_like_a_scalar() {
    covers!("TOL-4");
    // Issue 14 item 5: CE logits [0, -120, 1] with PerElement([inf]) gave [-inf, NaN, inf]
    // on the CPU and [-inf, inf, inf] on the reference; now both refuse, as for a scalar.
    let z = [0.0f32, -120.0, 1.0];
    let ce = CrossEntropy::new().with_reduction(Reduction::None);
    for u in [f64::INFINITY, f64::NAN, f64::NEG_INFINITY] {
        for b in backends() {
            let (r, untouched) = per_element_calls(&b, &[u]);
            assert_eq!(r, [Some("upstream"); 3]);
            assert!(untouched, "nothing written");
        }
        let (r, _) = per_element_calls(&ReferenceBackend, &[u]);
        assert_eq!(r, [Some("upstream"); 3]);
        // A non-finite scalar was already refused; the message names the same parameter.
        let e = ReferenceBackend
            .cross_entropy(
                &ce,
                Input::matrix(&z, 1, 3).with_upstream(Upstream::Scalar(u)),
                &[0],
            )
            .unwrap_err();
        assert!(matches!(
            e,
            LossError::InvalidParameter {
                name: "upstream",
                ..
            }
        ));
    }
}
