//! Wise-IoU v3 (`BOX-24`) through the CPU emulation of `box_loss.cu`: the front door runs it on
//! the CUDA backend's host-slice box-loss launches (the plain IoU loss, then Wise-IoU v1 with
//! the detached focus as a per-pair upstream), so the `EmuBackend` (the same launches) is
//! checked against the f64 reference over a sequence of calls with the state carried.
//! Tolerance: the CPU box-loss rule (`backend-cpu/tests/box_loss.rs`): losses `2e-6 + 2e-5
//! |want|`, gradients `2e-6 s + 2e-5 |want| + 1e-5 m`, the running mean `2e-6` relative.

use super::suite::EmuBackend;
use super::*;
use smoothloss_core::{Input, Loss, Losses, ReferenceBackend, WiseIouState};

#[test]
fn emulated_wise_iou_v3_matches_the_reference_over_a_sequence() {
    let mut rng = Rng::new(2404);
    for format in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh] {
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            let cfg = BoxLoss::new(BoxLossKind::Wiou, format).with_reduction(reduction);
            let (mut s32, mut s64) = (WiseIouState::new().with_momentum(0.1), WiseIouState::new());
            s64.momentum = 0.1;
            for step in 0..3 {
                let n = 257 + 31 * step;
                let mut p = Vec::with_capacity(4 * n);
                let mut t = Vec::with_capacity(4 * n);
                for i in 0..n {
                    let (cx, cy, w, h) = (
                        rng.range(-50.0, 50.0),
                        rng.range(-50.0, 50.0),
                        rng.range(1.0, 9.0),
                        rng.range(1.0, 9.0),
                    );
                    let tb = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
                    let (dx, dy) = (rng.range(-3.0, 3.0), rng.range(-3.0, 3.0));
                    let pb = if i % 9 == 0 {
                        tb
                    } else {
                        [tb[0] + dx, tb[1] + dy, tb[2] + dx * 0.5, tb[3] + dy]
                    };
                    let r = |b: [f64; 4]| b.map(|v| f64::from(v as f32));
                    p.extend(format.from_xyxy(r(pb)).map(|v| v as f32));
                    t.extend(format.from_xyxy(r(tb)).map(|v| v as f32));
                }
                if step == 1 {
                    p[4 * 5 + 1] = f32::NAN;
                }
                let mut g32 = vec![0.0f32; p.len()];
                let got = EmuBackend
                    .wise_iou_v3(&cfg, &mut s32, Input::new(&p).with_grad(&mut g32), &t)
                    .map(Loss::into_values)
                    .unwrap();
                let (pw, tw): (Vec<f64>, Vec<f64>) = (
                    p.iter().map(|&v| f64::from(v)).collect(),
                    t.iter().map(|&v| f64::from(v)).collect(),
                );
                let mut g64 = vec![0.0f64; p.len()];
                let want = ReferenceBackend
                    .wise_iou_v3(&cfg, &mut s64, Input::new(&pw).with_grad(&mut g64), &tw)
                    .map(Loss::into_values)
                    .unwrap();
                let what = format!("{cfg:?} step {step}");
                for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        kit::close(a, b, 2e-6, 2e-5) || (a.is_nan() && b.is_nan()),
                        "{what} loss {i}: {a:e} vs {b:e}"
                    );
                }
                let s = if reduction == Reduction::Mean {
                    1.0 / n as f64
                } else {
                    4.0
                };
                for (i, (&a, &b)) in g32.iter().zip(&g64).enumerate() {
                    let m = g64[4 * (i / 4)..4 * (i / 4) + 4]
                        .iter()
                        .fold(0.0_f64, |m, v| m.max(v.abs()));
                    let a = f64::from(a);
                    assert!(
                        (a - b).abs() <= 2e-6 * s + 2e-5 * b.abs() + 1e-5 * m
                            || (a.is_nan() && b.is_nan()),
                        "{what} grad {i}: {a:e} vs {b:e}"
                    );
                }
                assert!(kit::close(s32.mean, s64.mean, 0.0, 2e-6), "{s32:?} {s64:?}");
            }
        }
    }
}
