//! Numerical hygiene of issue 14 on the CUDA kernels through the CPU emulation: the focal
//! gradient at saturated and infinite logits, `box_iou` with infinite sizes, and the `f64`
//! parameters of the device path.

use super::elementwise::{emu_elementwise, emu_focal, emu_iou, emu_reg};
use super::*;
use smoothloss_spec::{Tolerance, covers, kit};

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// `bin_sigmoid_focal` with reduction `none` and upstream 1: losses and gradient.
fn focal_kernel(lib: &Library, cfg: &SigmoidFocal, x: &[f32], y: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let mut g = vec![0.0f32; x.len()];
    let l = emu_elementwise(lib, x.len(), Reduction::None, Upstream::ONE, &mut g, |a| {
        emu_focal(lib, x, y, cfg.alpha, cfg.gamma, a)
    });
    (l, widen(&g))
}

fn focal_reference(cfg: &SigmoidFocal, x: &[f32], y: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let mut g = vec![0.0f32; x.len()];
    let l = ReferenceBackend
        .sigmoid_focal(cfg, Input::new(x).with_grad(&mut g), y)
        .unwrap();
    (l.into_values(), widen(&g))
}

#[test]
fn focal_kernel_at_saturated_and_infinite_logits() {
    covers!("BIN-4", "TOL-4");
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::Binary];
    // Saturated logits with a small gamma (issue 14 item 2): finite, as the reference.
    let x: Vec<f32> = [-94.0f32, -100.0, -88.0, 94.0, 100.0, 88.0]
        .into_iter()
        .flat_map(|v| [v, v])
        .collect();
    let y: Vec<f32> = (0..x.len()).map(|i| (i % 2) as f32).collect();
    for (alpha, gamma) in [(0.25, 0.042), (1.0, 0.042), (-1.0, 0.01)] {
        let cfg = SigmoidFocal {
            alpha,
            gamma,
            reduction: Reduction::None,
        };
        let (l, g) = focal_kernel(lib, &cfg, &x, &y);
        let (wl, wg) = focal_reference(&cfg, &x, &y);
        assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
        kit::assert_close(&l, &wl, Tolerance::F32);
        kit::assert_close(&g, &wg, Tolerance::F32);
    }
    // Infinite logits (item 5): the limit, loss +inf and gradient alpha_t for x = +inf, y = 0.
    let inf = f32::INFINITY;
    let (x, y) = ([inf, -inf, inf, -inf], [0.0f32, 1.0, 1.0, 0.0]);
    for gamma in [0.0, 0.5, 1.0, 2.0, 2.5] {
        let cfg = SigmoidFocal {
            alpha: 0.25,
            gamma,
            reduction: Reduction::None,
        };
        let (l, g) = focal_kernel(lib, &cfg, &x, &y);
        assert_eq!(l, [f64::INFINITY, f64::INFINITY, 0.0, 0.0], "gamma {gamma}");
        assert_eq!(g, [0.75, -0.25, 0.0, 0.0], "gamma {gamma}");
    }
}

#[test]
fn box_iou_kernel_with_infinite_sizes_matches_the_reference() {
    covers!("BOX-13", "TOL-4");
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::BoxLoss];
    let inf = f32::INFINITY;
    let vals = [0.0f32, 1.0, -1.0, 3.0, inf, -inf, f32::NAN];
    let mut boxes = Vec::new();
    for &p in &vals[..4] {
        for &s in &vals {
            boxes.extend([p, 0.5, s, 2.0]);
            boxes.extend([s, 0.0, 1.0, 2.5]);
        }
    }
    boxes.extend([0.0, 0.0, 2.0, 2.0]);
    let n = boxes.len() / 4;
    for fmt in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh] {
        let mut want = vec![0.0f32; n * n];
        ReferenceBackend
            .box_iou(fmt, &boxes, &boxes, &mut want)
            .unwrap();
        let mut out = vec![0.0f32; n * n];
        emu_iou(lib, fmt, &boxes, &boxes, &mut out, 7);
        kit::assert_close(&widen(&out), &widen(&want), Tolerance::F32);
    }
    // The pairs: an infinite width or height against a finite box is IoU 0.
    let b2 = [0.0f32, 0.0, 2.0, 2.0];
    for (fmt, a) in [
        (BoxFormat::Xywh, [0.0f32, 0.0, inf, 1.0]),
        (BoxFormat::Cxcywh, [1.0, 1.0, 1.0, inf]),
    ] {
        let mut out = [f32::NAN];
        emu_iou(lib, fmt, &a, &b2, &mut out, 1);
        assert_eq!(out, [0.0], "{fmt:?}");
    }
}

#[test]
fn regression_kernel_computes_f64_parameters_as_the_reference() {
    covers!("REG-1", "REG-3", "TOL-4");
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::Regression];
    // The device path takes beta / delta in f64 (no f32 domain): as the reference on f64 data
    // holding the same f32 inputs.
    let x = [0.5f32, -1.0, 0.0, f32::INFINITY, 1e-30];
    let t = [0.0f32; 5];
    let (x64, t64) = (widen(&x), widen(&t));
    for (op, p) in [
        (Op::SmoothL1, 1e-40),
        (Op::SmoothL1, 1e300),
        (Op::Huber, 1e-46),
        (Op::Huber, 1e39),
    ] {
        let mut g = vec![0.0f32; 5];
        let l = emu_elementwise(lib, 5, Reduction::None, Upstream::ONE, &mut g, |a| {
            emu_reg(lib, op, p, &x, &t, a)
        });
        let mut wg = vec![0.0f64; 5];
        let inp = Input::new(&x64[..]).with_grad(&mut wg);
        let wl = if op == Op::SmoothL1 {
            let cfg = SmoothL1 {
                beta: p,
                reduction: Reduction::None,
            };
            ReferenceBackend.smooth_l1(&cfg, inp, &t64)
        } else {
            let cfg = Huber {
                delta: p,
                reduction: Reduction::None,
            };
            ReferenceBackend.huber(&cfg, inp, &t64)
        }
        .unwrap()
        .into_values();
        let wg32: Vec<f64> = wg.iter().map(|&v| f64::from(v as f32)).collect();
        kit::assert_close(&l, &wl, Tolerance::F32);
        kit::assert_close(&widen(&g), &wg32, Tolerance::F32);
    }
}
