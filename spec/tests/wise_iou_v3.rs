//! Wise-IoU v3 (`BOX-24`) on the f64 reference backend: the generator's sequences of calls
//! with the running mean carried (the author's formula in PyTorch float64,
//! `spec/cases/detection_boxes.json`, key `wise_iou_v3`), finite differences with the focusing
//! coefficient held fixed, the order of the update, the validation, and non-finite pairs.

use serde_json::Value;
use smoothloss_core::{
    BoxFormat, BoxLoss, BoxLossKind, Input, Loss, LossError, Losses, Reduction, ReferenceBackend,
    Upstream, WiseIouState,
};
use smoothloss_spec::{Tolerance, covers, kit};

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// The sequences of the case file, each as (config, initial state, steps).
#[allow(clippy::type_complexity)]
fn sequences() -> Vec<(String, BoxLoss, WiseIouState, Vec<Value>)> {
    let file: Value = serde_json::from_str(smoothloss_spec::DETECTION_BOXES_JSON).unwrap();
    let seqs = file["wise_iou_v3"]
        .as_array()
        .expect("wise_iou_v3 sequences");
    assert!(seqs.len() >= 4, "the generator writes 4 sequences");
    seqs.iter()
        .map(|s| {
            let format = BoxFormat::parse(s["format"].as_str().unwrap()).unwrap();
            let reduction = Reduction::parse(s["reduction"].as_str().unwrap()).unwrap();
            let cfg = BoxLoss::new(BoxLossKind::Wiou, format)
                .with_reduction(reduction)
                .with_eps(s["eps"].as_f64().unwrap());
            let state = WiseIouState {
                mean: s["mean"].as_f64().unwrap(),
                momentum: s["momentum"].as_f64().unwrap(),
                alpha: s["alpha"].as_f64().unwrap(),
                delta: s["delta"].as_f64().unwrap(),
            };
            let steps = s["steps"].as_array().unwrap().clone();
            (s["id"].as_str().unwrap().to_owned(), cfg, state, steps)
        })
        .collect()
}

#[test]
fn reference_follows_the_generator_sequences_with_the_state_carried() {
    covers!("BOX-24");
    let mut checked = 0;
    for (id, cfg, mut state, steps) in sequences() {
        for (k, step) in steps.iter().enumerate() {
            let (p, t) = (floats(&step["pred"]), floats(&step["target"]));
            let mut g = vec![0.0; p.len()];
            let loss = ReferenceBackend
                .wise_iou_v3(&cfg, &mut state, Input::new(&p).with_grad(&mut g), &t)
                .map(Loss::into_values)
                .unwrap();
            let msg = |what: &str, e: String| format!("{id} step {k} {what}: {e}");
            kit::check_close(&loss, &floats(&step["loss"]), Tolerance::REFERENCE)
                .unwrap_or_else(|e| panic!("{}", msg("loss", e)));
            kit::check_close(&g, &floats(&step["grad"]), Tolerance::REFERENCE)
                .unwrap_or_else(|e| panic!("{}", msg("grad", e)));
            kit::check_close(
                &[state.mean],
                &[step["mean_after"].as_f64().unwrap()],
                Tolerance::REFERENCE,
            )
            .unwrap_or_else(|e| panic!("{}", msg("mean", e)));
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}

/// The gradient is `r_i dL_v1_i` with `r_i` detached: against central differences of
/// `sum_i r_i L_v1_i(p)` with every `r_i` (and the state) fixed at the call's values.
#[test]
fn gradient_is_the_v1_gradient_times_the_detached_focus() {
    covers!("BOX-24");
    let mut rng = kit::Rng::new(2424);
    for format in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh] {
        let n = 9;
        let mut p = Vec::new();
        let mut t = Vec::new();
        for _ in 0..n {
            let (cx, cy, w, h) = (rng.range(-5.0, 5.0), rng.range(-5.0, 5.0), 2.0, 3.0);
            let tb = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
            let (ox, oy) = (rng.range(-1.5, 1.5), rng.range(-1.5, 1.5));
            let (sw, sh) = (rng.range(0.6, 1.4), rng.range(0.6, 1.4));
            let pb = [
                cx + ox - sw * w / 2.0,
                cy + oy - sh * h / 2.0,
                cx + ox + sw * w / 2.0,
                cy + oy + sh * h / 2.0,
            ];
            p.extend(format.from_xyxy(pb));
            t.extend(format.from_xyxy(tb));
        }
        let cfg = BoxLoss::new(BoxLossKind::Wiou, format).with_reduction(Reduction::Sum);
        let state0 = WiseIouState::new()
            .with_momentum(0.2)
            .with_focusing(1.9, 3.0);
        let mut state = state0;
        let mut g = vec![0.0; p.len()];
        ReferenceBackend
            .wise_iou_v3(&cfg, &mut state, Input::new(&p).with_grad(&mut g), &t)
            .unwrap();
        // r_i at the base point, from the written formula.
        let iou_cfg = BoxLoss::new(BoxLossKind::Iou, format).with_reduction(Reduction::None);
        let liou = ReferenceBackend
            .box_loss(&iou_cfg, &p, &t)
            .unwrap()
            .into_values();
        let mean = (1.0 - 0.2) * state0.mean + 0.2 * liou.iter().sum::<f64>() / n as f64;
        assert!(
            (state.mean - mean).abs() <= 1e-15,
            "{} vs {mean}",
            state.mean
        );
        let r: Vec<f64> = liou
            .iter()
            .map(|l| {
                let beta = l / mean;
                beta / (3.0 * 1.9_f64.powf(beta - 3.0))
            })
            .collect();
        // BOX-17 written out, the enclosing size C_i fixed at the base point (detached too).
        let xyxy = |q: &[f64], i: usize| format.to_xyxy(std::array::from_fn(|k| q[4 * i + k]));
        let c: Vec<f64> = (0..n)
            .map(|i| {
                let (a, b) = (xyxy(&p, i), xyxy(&t, i));
                let cw = a[2].max(b[2]) - a[0].min(b[0]);
                let ch = a[3].max(b[3]) - a[1].min(b[1]);
                cw * cw + ch * ch
            })
            .collect();
        let objective = |q: &[f64]| -> f64 {
            let l = ReferenceBackend
                .box_loss(&iou_cfg, q, &t)
                .unwrap()
                .into_values();
            (0..n)
                .map(|i| {
                    let (a, b) = (xyxy(q, i), xyxy(&t, i));
                    let dx = 0.5 * (a[0] + a[2]) - 0.5 * (b[0] + b[2]);
                    let dy = 0.5 * (a[1] + a[3]) - 0.5 * (b[1] + b[3]);
                    r[i] * ((dx * dx + dy * dy) / c[i]).exp() * l[i]
                })
                .sum()
        };
        for k in 0..p.len() {
            let h = 1e-6 * p[k].abs().max(1.0);
            let (mut up, mut down) = (p.clone(), p.clone());
            up[k] += h;
            down[k] -= h;
            let fd = (objective(&up) - objective(&down)) / (2.0 * h);
            assert!(
                kit::close(g[k], fd, 1e-6, 1e-5),
                "{format:?} entry {k}: analytic {} vs fd {fd}",
                g[k]
            );
        }
    }
}

/// The mean is updated before use: with momentum near 1 the focus uses this batch's mean, so
/// a batch of equal IoU losses gets `beta = 1` and `r = 1 / (delta alpha^(1 - delta))`.
#[test]
fn running_mean_is_updated_before_it_is_used() {
    covers!("BOX-24");
    let p = [0.0, 0.0, 2.0, 2.0, 10.0, 10.0, 12.0, 12.0];
    let t = [1.0, 0.0, 3.0, 2.0, 11.0, 10.0, 13.0, 12.0];
    let cfg = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy).with_reduction(Reduction::None);
    let m = 1.0 - 1e-12;
    let mut state = WiseIouState::new().with_momentum(m).with_focusing(2.0, 3.0);
    state.mean = 1e3;
    let got = ReferenceBackend
        .wise_iou_v3(&cfg, &mut state, &p[..], &t)
        .unwrap()
        .into_values();
    let v1 = ReferenceBackend
        .box_loss(&cfg, &p[..], &t)
        .unwrap()
        .into_values();
    // IoU = 2 / (6 + eps) for both pairs, so beta ~= 1 and r ~= 1 / (3 * 2^-2) = 4/3.
    let liou = 1.0 - 2.0 / (6.0 + 1e-7);
    let mean = (1.0 - m) * 1e3 + m * liou;
    assert!(
        (state.mean - mean).abs() <= 1e-15,
        "{} vs {mean}",
        state.mean
    );
    let beta = liou / mean;
    let r = beta / (3.0 * 2.0_f64.powf(beta - 3.0));
    assert!((r - 4.0 / 3.0).abs() < 1e-8);
    for i in 0..2 {
        assert!(kit::close(got[i], r * v1[i], 1e-15, 1e-14), "{got:?}");
    }
}

#[test]
fn invalid_state_or_kind_is_refused_and_leaves_the_state() {
    covers!("BOX-24");
    let p = [0.0, 0.0, 2.0, 2.0];
    let t = [1.0, 0.0, 3.0, 2.0];
    let wiou = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy);
    let bad_states = [
        WiseIouState {
            mean: 0.0,
            ..WiseIouState::new()
        },
        WiseIouState {
            mean: f64::NAN,
            ..WiseIouState::new()
        },
        WiseIouState {
            mean: f64::INFINITY,
            ..WiseIouState::new()
        },
        WiseIouState::new().with_momentum(0.0),
        WiseIouState::new().with_momentum(1.0),
        WiseIouState::new().with_focusing(1.0, 3.0),
        WiseIouState::new().with_focusing(f64::NAN, 3.0),
        WiseIouState::new().with_focusing(1.9, 0.0),
        WiseIouState::new().with_focusing(1.9, f64::INFINITY),
    ];
    for s in bad_states {
        let mut state = s;
        let err = ReferenceBackend.wise_iou_v3(&wiou, &mut state, &p[..], &t);
        assert!(
            matches!(err, Err(LossError::InvalidParameter { .. })),
            "{s:?}: {err:?}"
        );
        assert_eq!(format!("{state:?}"), format!("{s:?}"));
    }
    let mut state = WiseIouState::new();
    let giou = BoxLoss::new(BoxLossKind::Giou, BoxFormat::Xyxy);
    let err = ReferenceBackend.wise_iou_v3(&giou, &mut state, &p[..], &t);
    assert!(matches!(
        err,
        Err(LossError::InvalidParameter { name: "kind", .. })
    ));
    // Shape errors and a per-element upstream with `mean` come back typed, state untouched.
    let err = ReferenceBackend.wise_iou_v3(&wiou, &mut state, &p[..3], &t);
    assert!(err.is_err());
    let up = [1.0];
    let err = ReferenceBackend.wise_iou_v3(
        &wiou,
        &mut state,
        Input::new(&p[..]).with_upstream(Upstream::PerElement(&up)),
        &t,
    );
    assert!(matches!(
        err,
        Err(LossError::InvalidParameter {
            name: "upstream",
            ..
        })
    ));
    let err = ReferenceBackend.wise_iou_v3(
        &wiou.with_reduction(Reduction::None),
        &mut state,
        Input::new(&p[..]).with_upstream(Upstream::PerElement(&[f64::NAN])),
        &t,
    );
    assert!(matches!(
        err,
        Err(LossError::InvalidParameter {
            name: "upstream",
            ..
        })
    ));
    assert_eq!(state, WiseIouState::new());
}

/// `TOL-4`: a pair with a non-finite coordinate has NaN loss and gradient, is left out of the
/// batch mean and does not change the other pairs; a batch of only such pairs keeps the mean.
#[test]
fn non_finite_pairs_are_left_out_of_the_mean() {
    covers!("BOX-24", "TOL-4");
    let p = [
        0.0,
        0.0,
        2.0,
        2.0,
        0.0,
        f64::NAN,
        1.0,
        1.0,
        5.0,
        5.0,
        7.0,
        8.0,
    ];
    let t = [1.0, 0.0, 3.0, 2.0, 0.0, 0.0, 1.0, 1.0, 5.5, 5.0, 7.0, 7.5];
    let (pf, tf) = ([&p[..4], &p[8..]].concat(), [&t[..4], &t[8..]].concat());
    let cfg = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy).with_reduction(Reduction::None);
    let s0 = WiseIouState::new().with_momentum(0.1);
    let (mut a, mut b) = (s0, s0);
    let mut ga = vec![0.0; 12];
    let mut gb = vec![0.0; 8];
    let la = ReferenceBackend
        .wise_iou_v3(&cfg, &mut a, Input::new(&p[..]).with_grad(&mut ga), &t)
        .unwrap()
        .into_values();
    let lb = ReferenceBackend
        .wise_iou_v3(&cfg, &mut b, Input::new(&pf).with_grad(&mut gb), &tf)
        .unwrap()
        .into_values();
    assert_eq!(a.mean.to_bits(), b.mean.to_bits());
    assert!(la[1].is_nan() && ga[4..8].iter().all(|g| g.is_nan()));
    assert_eq!([la[0], la[2]], [lb[0], lb[1]]);
    assert_eq!([&ga[..4], &ga[8..]].concat(), gb);
    let mut c = s0;
    let l = ReferenceBackend
        .wise_iou_v3(&cfg, &mut c, &p[4..8], &t[4..8])
        .unwrap()
        .into_values();
    assert!(l[0].is_nan());
    assert_eq!(c, s0);
}
