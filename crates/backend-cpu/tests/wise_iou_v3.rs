//! Wise-IoU v3 (`BOX-24`) on the CPU backend: against the f64 reference on the same f32
//! inputs, against the generator's PyTorch float64 sequences (inputs rounded to f32, the state
//! carried through every call), bit-identical for 1, 2 and 3 threads and for the portable and
//! the detected SIMD level.
//!
//! Tolerance (the CPU box-loss rule of `tests/box_loss.rs`): losses `|got - want| <= 2e-6 +
//! 2e-5 |want|`; gradient entries `|got - want| <= 2e-6 s + 2e-5 |want| + 1e-5 m` with `s` the
//! pair's upstream factor and `m` the pair's largest `|want|`; the running mean `2e-6` relative
//! (it is an `f64` mean of per-pair `f32` IoU losses). NaN must match NaN.

use serde_json::Value;
use smoothloss_core::{
    BoxFormat, BoxLoss, BoxLossKind, Input, Loss, Losses, Reduction, ReferenceBackend, Upstream,
    WiseIouState,
};
use smoothloss_cpu::{CpuBackend, SimdLevel};
use smoothloss_spec::kit::{self, Rng, close};

const FORMATS: [BoxFormat; 3] = [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh];

/// Overlapping, disjoint, identical and degenerate pairs, rounded to f32, in `format`.
fn pairs(rng: &mut Rng, n: usize, format: BoxFormat) -> (Vec<f32>, Vec<f32>) {
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for i in 0..n {
        let s = rng.range(0.5, 50.0);
        let (cx, cy) = (rng.range(-200.0, 200.0), rng.range(-200.0, 200.0));
        let (w, h) = (rng.range(0.1, 1.0) * s, rng.range(0.1, 1.0) * s);
        let tb = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
        let pb = match i % 5 {
            0 | 1 => {
                let (dx, dy) = (rng.range(-0.4, 0.4) * s, rng.range(-0.4, 0.4) * s);
                let k = rng.range(0.6, 1.4);
                [
                    cx + dx - k * w / 2.0,
                    cy + dy - h / 2.0,
                    cx + dx + k * w / 2.0,
                    cy + dy + h / 2.0,
                ]
            }
            2 => [tb[0] + 2.0 * s, tb[1], tb[2] + 2.0 * s, tb[3] + s],
            3 => tb,
            _ => [tb[0], tb[1], tb[0], tb[1] - 0.5 * s],
        };
        let r = |b: [f64; 4]| b.map(|v| f64::from(v as f32));
        p.extend(format.from_xyxy(r(pb)).map(|v| v as f32));
        t.extend(format.from_xyxy(r(tb)).map(|v| v as f32));
    }
    (p, t)
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn check_against(got: &[f64], g32: &[f32], want: &[f64], g64: &[f64], scale: f64, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!(
            close(a, b, 2e-6, 2e-5) || (a.is_nan() && b.is_nan()),
            "{what} loss {i}: {a:e} vs {b:e}"
        );
    }
    for (i, (&a, &b)) in g32.iter().zip(g64).enumerate() {
        let m = g64[4 * (i / 4)..4 * (i / 4) + 4]
            .iter()
            .fold(0.0_f64, |m, v| m.max(v.abs()));
        let a = f64::from(a);
        let ok =
            (a - b).abs() <= 2e-6 * scale + 2e-5 * b.abs() + 1e-5 * m || (a.is_nan() && b.is_nan());
        assert!(ok, "{what} grad {i}: {a:e} vs {b:e}");
    }
}

/// One call on each backend from the same state; returns both new states.
fn run_both(
    cfg: &BoxLoss,
    state: WiseIouState,
    p: &[f32],
    t: &[f32],
    upstream: Upstream<'_>,
) -> (WiseIouState, WiseIouState) {
    let (mut s32, mut s64) = (state, state);
    let mut g32 = vec![0.0f32; p.len()];
    let got = CpuBackend::new()
        .wise_iou_v3(
            cfg,
            &mut s32,
            Input::new(p).with_grad(&mut g32).with_upstream(upstream),
            t,
        )
        .map(Loss::into_values)
        .unwrap();
    let mut g64 = vec![0.0f64; p.len()];
    let want = ReferenceBackend
        .wise_iou_v3(
            cfg,
            &mut s64,
            Input::new(&widen(p))
                .with_grad(&mut g64)
                .with_upstream(upstream),
            &widen(t),
        )
        .map(Loss::into_values)
        .unwrap();
    let n = (p.len() / 4) as f64;
    let scale = if cfg.reduction == Reduction::Mean {
        1.5 / n
    } else {
        4.0
    };
    check_against(&got, &g32, &want, &g64, scale, &format!("{cfg:?}"));
    assert!(close(s32.mean, s64.mean, 0.0, 2e-6), "{s32:?} vs {s64:?}");
    (s32, s64)
}

#[test]
fn cpu_matches_the_reference_over_a_sequence_of_calls() {
    let mut rng = Rng::new(2401);
    for format in FORMATS {
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            let cfg = BoxLoss::new(BoxLossKind::Wiou, format).with_reduction(reduction);
            let mut state = WiseIouState::new().with_momentum(0.05);
            for step in 0..3 {
                let n = 300 + 37 * step;
                let (p, t) = pairs(&mut rng, n, format);
                let up: Vec<f64> = (0..n).map(|i| 0.5 + (i % 5) as f64 * 0.75).collect();
                let upstream = match reduction {
                    Reduction::None => Upstream::PerElement(&up),
                    _ => Upstream::Scalar(1.5),
                };
                state = run_both(&cfg, state, &p, &t, upstream).0;
            }
        }
        // With the modifiers and the threshold weight, which v3 scales as any v1 loss.
        let cfg = BoxLoss::new(BoxLossKind::Wiou, format)
            .with_inner(0.8)
            .with_focaler(0.0, 0.9)
            .with_threshold_weight(0.3, 0.5);
        let (p, t) = pairs(&mut rng, 200, format);
        run_both(&cfg, WiseIouState::new(), &p, &t, Upstream::ONE);
    }
}

#[test]
fn cpu_follows_the_generator_sequences() {
    let file: Value = serde_json::from_str(smoothloss_spec::DETECTION_BOXES_JSON).unwrap();
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let mut steps_run = 0;
    for s in file["wise_iou_v3"].as_array().unwrap() {
        let cfg = BoxLoss::new(
            BoxLossKind::Wiou,
            BoxFormat::parse(s["format"].as_str().unwrap()).unwrap(),
        )
        .with_reduction(Reduction::parse(s["reduction"].as_str().unwrap()).unwrap())
        .with_eps(s["eps"].as_f64().unwrap());
        let mut state = WiseIouState {
            mean: s["mean"].as_f64().unwrap(),
            momentum: s["momentum"].as_f64().unwrap(),
            alpha: s["alpha"].as_f64().unwrap(),
            delta: s["delta"].as_f64().unwrap(),
        };
        for step in s["steps"].as_array().unwrap() {
            let p: Vec<f32> = floats(&step["pred"]).iter().map(|&v| v as f32).collect();
            let t: Vec<f32> = floats(&step["target"]).iter().map(|&v| v as f32).collect();
            let mut g = vec![0.0f32; p.len()];
            let got = CpuBackend::new()
                .wise_iou_v3(&cfg, &mut state, Input::new(&p).with_grad(&mut g), &t)
                .map(Loss::into_values)
                .unwrap();
            // The inputs were rounded to f32: TOL-2's looser rule for PyTorch cases.
            let tol = smoothloss_spec::Tolerance::F32_TORCH_CASES;
            kit::check_close(&got, &floats(&step["loss"]), tol).unwrap();
            kit::check_close(&widen(&g), &floats(&step["grad"]), tol).unwrap();
            let want = step["mean_after"].as_f64().unwrap();
            assert!(
                close(state.mean, want, 0.0, 1e-6),
                "{} vs {want}",
                state.mean
            );
            steps_run += 1;
        }
    }
    assert_eq!(steps_run, 16);
}

#[test]
fn results_and_state_are_bit_identical_for_1_2_3_threads_and_simd_levels() {
    let mut rng = Rng::new(2402);
    for format in FORMATS {
        let (p, t) = pairs(&mut rng, 40_003, format);
        for reduction in [Reduction::None, Reduction::Mean] {
            let cfg = BoxLoss::new(BoxLossKind::Wiou, format).with_reduction(reduction);
            let backends = [
                CpuBackend::with_threads(1),
                CpuBackend::with_threads(2),
                CpuBackend::with_threads(3),
                CpuBackend::with_threads(2).with_simd_level(SimdLevel::Scalar),
                CpuBackend::with_threads(2).with_simd_level(SimdLevel::Avx2Fma),
            ];
            let runs: Vec<_> = backends
                .iter()
                .map(|b| {
                    let mut state = WiseIouState::new().with_momentum(0.1);
                    let mut g = vec![0.0f32; p.len()];
                    let l = b
                        .wise_iou_v3(&cfg, &mut state, Input::new(&p).with_grad(&mut g), &t)
                        .map(Loss::into_values)
                        .unwrap();
                    (l, g, state.mean)
                })
                .collect();
            for (k, r) in runs.iter().enumerate().skip(1) {
                kit::same_bits_f64(&runs[0].0, &r.0)
                    .and(kit::same_bits_f32(&runs[0].1, &r.1))
                    .and(kit::same_bits_f64(&[runs[0].2], &[r.2]))
                    .unwrap_or_else(|e| panic!("{cfg:?} backend {k}: {e}"));
            }
        }
    }
}

/// `TOL-4` on the CPU: a NaN pair gives NaN loss and gradient and leaves the mean as the
/// reference does.
#[test]
fn non_finite_pairs_match_the_reference() {
    let mut rng = Rng::new(2403);
    let (mut p, t) = pairs(&mut rng, 50, BoxFormat::Xyxy);
    p[4 * 7 + 2] = f32::NAN;
    p[4 * 11] = f32::INFINITY;
    let cfg = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy).with_reduction(Reduction::None);
    run_both(
        &cfg,
        WiseIouState::new().with_momentum(0.2),
        &p,
        &t,
        Upstream::ONE,
    );
}
