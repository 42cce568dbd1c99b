//! proptest properties of the f64 reference: gradients against central finite differences,
//! invariances and identities between formulas. Each property names the formula IDs it checks.

use proptest::prelude::*;
use smoothloss_core::reference::box_pair_loss;
use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CeTargets, CrossEntropy, Huber, Reduction,
    SigmoidFocal, SmoothL1,
};
use smoothloss_core::{Input, Loss, Losses, ReferenceBackend};
use smoothloss_spec::strategies::*;
use smoothloss_spec::{covers, kit};

/// Central finite differences of `f` at `x`, one coordinate at a time.
fn finite_diff(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xs = x.to_vec();
    (0..x.len())
        .map(|k| {
            let h = 1e-6 * x[k].abs().max(1.0);
            xs[k] = x[k] + h;
            let up = f(&xs);
            xs[k] = x[k] - h;
            let down = f(&xs);
            xs[k] = x[k];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// `|got_k - want_k| <= tol * max(1, max_j |want_j|)` for every `k`. These properties compare
/// the reference with itself (an identity between formulas) or with a finite-difference
/// estimate, so their bounds are stated per test (the truncation error of central differences
/// with step `1e-6`, or a few ulps), not taken from `TOL-*`, which compares an implementation
/// with expected values.
fn assert_close(got: &[f64], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0_f64, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            kit::close(g, w, tol * scale, 0.0),
            "element {i}: got {g}, want {w}"
        );
    }
    Ok(())
}

fn ce_total(cfg: &CrossEntropy, z: &[f64], n: usize, c: usize, t: CeTargets<'_, f64>) -> f64 {
    ReferenceBackend
        .cross_entropy(cfg, Input::matrix(z, n, c), t)
        .map(Loss::into_values)
        .unwrap()
        .iter()
        .sum()
}

fn ce_grad(cfg: &CrossEntropy, z: &[f64], n: usize, c: usize, t: CeTargets<'_, f64>) -> Vec<f64> {
    let mut g = vec![0.0; z.len()];
    ReferenceBackend
        .cross_entropy(cfg, Input::matrix(z, n, c).with_grad(&mut g), t)
        .map(Loss::into_values)
        .unwrap();
    g
}

fn ce_cfg(ls: f64, weights: Option<Vec<f64>>, reduction: Reduction) -> CrossEntropy {
    CrossEntropy {
        label_smoothing: ls,
        ignore_index: Some(-100),
        class_weights: weights,
        reduction,
        ..CrossEntropy::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// CE-8 (with CE-3, CE-4, CE-5, CE-7): the analytic gradient for hard targets matches finite
    /// differences.
    #[test]
    fn ce_hard_gradient_matches_finite_differences(
        (n, c, z) in logits(5, 7, 8.0),
        ls in 0.0f64..=1.0,
        seed in 0u64..1000,
        reduction in reduction(),
        weighted in any::<bool>(),
    ) {
        covers!("CE-8");
        let mut rng = kit::Rng::new(seed);
        let t: Vec<i64> = (0..n)
            .map(|i| if i == 1 { -100 } else { rng.below(c) as i64 })
            .collect();
        let w = weighted.then(|| rng.vec(c, 0.2, 2.0));
        let cfg = ce_cfg(ls, w, reduction);
        let g = ce_grad(&cfg, &z, n, c, CeTargets::Classes(&t));
        let fd = finite_diff(&z, |zz| ce_total(&cfg, zz, n, c, CeTargets::Classes(&t)));
        assert_close(&g, &fd, 1e-6)?;
    }

    /// CE-9 (with CE-6): the gradient for probability targets matches finite differences.
    #[test]
    fn ce_prob_gradient_matches_finite_differences(
        (n, c, z) in logits(4, 6, 8.0),
        ls in 0.0f64..=1.0,
        seed in 0u64..1000,
        reduction in reduction(),
    ) {
        covers!("CE-9");
        let mut rng = kit::Rng::new(seed);
        let q: Vec<f64> = rng.vec(n * c, 0.0, 1.0);
        let w = Some(rng.vec(c, 0.2, 2.0));
        let cfg = ce_cfg(ls, w, reduction);
        let g = ce_grad(&cfg, &z, n, c, CeTargets::Probs(&q));
        let fd = finite_diff(&z, |zz| ce_total(&cfg, zz, n, c, CeTargets::Probs(&q)));
        assert_close(&g, &fd, 1e-6)?;
    }

    /// CE-1: adding a constant to a row changes neither the loss nor the gradient.
    #[test]
    fn ce_shift_invariance(
        (n, c, z) in logits(4, 9, 20.0),
        shift in -1000.0f64..1000.0,
        ls in 0.0f64..=1.0,
    ) {
        covers!("CE-1");
        let t: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
        let cfg = ce_cfg(ls, None, Reduction::None);
        let zs: Vec<f64> = z.iter().map(|v| v + shift).collect();
        let a = ReferenceBackend.cross_entropy(&cfg, Input::matrix(&z, n, c), &t).map(Loss::into_values).unwrap();
        let b = ReferenceBackend.cross_entropy(&cfg, Input::matrix(&zs, n, c), &t).map(Loss::into_values).unwrap();
        assert_close(&b, &a, 1e-9)?;
        let ga = ce_grad(&cfg, &z, n, c, CeTargets::Classes(&t));
        let gb = ce_grad(&cfg, &zs, n, c, CeTargets::Classes(&t));
        assert_close(&gb, &ga, 1e-9)?;
    }

    /// CE-2 / CE-3: smoothing 0 is plain cross-entropy, -log softmax(z)_y, computed here
    /// independently as logsumexp(z) - z_y.
    #[test]
    fn ce_smoothing_zero_is_plain_nll((n, c, z) in logits(4, 9, 30.0)) {
        covers!("CE-2");
        let t: Vec<i64> = (0..n).map(|i| ((i * 7) % c) as i64).collect();
        let got = ReferenceBackend.cross_entropy(&ce_cfg(0.0, None, Reduction::None), Input::matrix(&z, n, c), &t).map(Loss::into_values).unwrap();
        for i in 0..n {
            let row = &z[i * c..(i + 1) * c];
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            let want = lse - row[t[i] as usize];
            prop_assert!((got[i] - want).abs() <= 1e-12 * want.abs().max(1.0));
        }
    }

    /// CE-3 / CE-6: smoothing hard targets equals probability targets holding the smoothed
    /// one-hot distribution; smoothing probability targets equals the smoothed distribution.
    #[test]
    fn ce_smoothing_equals_smoothed_distribution(
        (n, c, z) in logits(4, 8, 10.0),
        ls in 0.0f64..=1.0,
        reduction in reduction(),
    ) {
        covers!("CE-3", "CE-6");
        let t: Vec<i64> = (0..n).map(|i| ((i * 3) % c) as i64).collect();
        let mut q = vec![ls / c as f64; n * c];
        for i in 0..n {
            q[i * c + t[i] as usize] += 1.0 - ls;
        }
        let hard = ce_cfg(ls, None, reduction);
        let soft = ce_cfg(0.0, None, reduction);
        let a = ReferenceBackend.cross_entropy(&hard, Input::matrix(&z, n, c), &t).map(Loss::into_values).unwrap();
        let b = ReferenceBackend.cross_entropy(&soft, Input::matrix(&z, n, c), CeTargets::Probs(&q)).map(Loss::into_values).unwrap();
        assert_close(&a, &b, 1e-12)?;
        // Probability targets: smoothing p equals no smoothing of (1 - ls) p + ls / C.
        let mut rng = kit::Rng::new(n as u64 * 31 + c as u64);
        let p = rng.vec(n * c, 0.0, 1.0);
        let ps: Vec<f64> = p.iter().map(|v| (1.0 - ls) * v + ls / c as f64).collect();
        let a = ReferenceBackend.cross_entropy(&hard, Input::matrix(&z, n, c), CeTargets::Probs(&p)).map(Loss::into_values).unwrap();
        let b = ReferenceBackend.cross_entropy(&soft, Input::matrix(&z, n, c), CeTargets::Probs(&ps)).map(Loss::into_values).unwrap();
        assert_close(&a, &b, 1e-12)?;
    }

    /// CE-4 / CE-7: unit class weights change nothing; scaling all weights leaves the weighted
    /// mean unchanged; the weighted mean is the sum divided by the sum of target weights.
    #[test]
    fn ce_weight_identities((n, c, z) in logits(5, 6, 5.0), k in 0.1f64..10.0, ls in 0.0f64..=1.0) {
        covers!("CE-4", "CE-7");
        let t: Vec<i64> = (0..n).map(|i| ((i * 5) % c) as i64).collect();
        let ct = CeTargets::Classes(&t);
        let plain = ce_total(&ce_cfg(ls, None, Reduction::Mean), &z, n, c, ct);
        let ones = ce_total(&ce_cfg(ls, Some(vec![1.0; c]), Reduction::Mean), &z, n, c, ct);
        prop_assert!((plain - ones).abs() <= 1e-12 * plain.abs().max(1.0));
        let w: Vec<f64> = (0..c).map(|j| 0.5 + j as f64).collect();
        let wk: Vec<f64> = w.iter().map(|v| v * k).collect();
        let a = ce_total(&ce_cfg(ls, Some(w.clone()), Reduction::Mean), &z, n, c, ct);
        let b = ce_total(&ce_cfg(ls, Some(wk), Reduction::Mean), &z, n, c, ct);
        prop_assert!((a - b).abs() <= 1e-10 * a.abs().max(1.0));
        let s = ce_total(&ce_cfg(ls, Some(w.clone()), Reduction::Sum), &z, n, c, ct);
        let denom: f64 = t.iter().map(|&y| w[y as usize]).sum();
        prop_assert!((s / denom - a).abs() <= 1e-12 * a.abs().max(1.0));
    }

    /// CE-5: ignored rows contribute nothing: the loss equals the loss of the kept rows alone,
    /// and their gradient is exactly zero.
    #[test]
    fn ce_ignored_rows_are_dropped((n, c, z) in logits(6, 5, 5.0), ls in 0.0f64..=1.0) {
        covers!("CE-5");
        prop_assume!(n >= 2);
        let t: Vec<i64> = (0..n).map(|i| if i % 2 == 1 { -100 } else { (i % c) as i64 }).collect();
        let cfg = ce_cfg(ls, Some((0..c).map(|j| 1.0 + j as f64).collect()), Reduction::Mean);
        let full = ce_total(&cfg, &z, n, c, CeTargets::Classes(&t));
        let kept: Vec<usize> = (0..n).filter(|i| i % 2 == 0).collect();
        let zk: Vec<f64> = kept.iter().flat_map(|&i| z[i * c..(i + 1) * c].to_vec()).collect();
        let tk: Vec<i64> = kept.iter().map(|&i| t[i]).collect();
        let sub = ce_total(&cfg, &zk, kept.len(), c, CeTargets::Classes(&tk));
        prop_assert!((full - sub).abs() <= 1e-12 * sub.abs().max(1.0));
        let g = ce_grad(&cfg, &z, n, c, CeTargets::Classes(&t));
        for i in (1..n).step_by(2) {
            prop_assert!(g[i * c..(i + 1) * c].iter().all(|&v| v == 0.0));
        }
    }

    /// BOX-8 (with BOX-1 .. BOX-7, BOX-9, BOX-10): the gradient matches finite differences, in
    /// every format, for overlapping boxes away from the kinks of min/max.
    #[test]
    fn box_gradient_matches_finite_differences(
        kind in torchvision_kind(),
        format in box_format(),
        reduction in reduction(),
        a in xyxy_box(1.0),
        jitter in prop::array::uniform4(-0.4f64..0.4),
        weighted in any::<bool>(),
    ) {
        covers!("BOX-8");
        let w = a[2] - a[0];
        let h = a[3] - a[1];
        // Target: a jittered copy, so the pair overlaps; skip near-ties (kinks of min/max).
        let t = [a[0] + jitter[0] * w, a[1] + jitter[1] * h, a[2] + jitter[2] * w, a[3] + jitter[3] * h];
        prop_assume!(t[2] - t[0] > 0.5 && t[3] - t[1] > 0.5);
        prop_assume!((0..4).all(|k| (a[k] - t[k]).abs() > 1e-3));
        prop_assume!(a[0].max(t[0]) < a[2].min(t[2]) - 1e-3 && a[1].max(t[1]) < a[3].min(t[3]) - 1e-3);
        let p = format.from_xyxy(a);
        let q = format.from_xyxy(t);
        let mut cfg = BoxLoss::new(kind, format).with_reduction(reduction);
        if weighted {
            cfg = cfg.with_threshold_weight(0.4, 0.99);
        }
        let mut g = vec![0.0; 4];
        ReferenceBackend.box_loss(&cfg, Input::new(&p).with_grad(&mut g), &q).map(Loss::into_values).unwrap();
        let fd = if kind == BoxLossKind::Ciou {
            // CIoU's alpha is a constant in the gradient (BOX-6): differentiate with alpha frozen
            // at its value for the unperturbed pair.
            let (_, _, iou0) = box_pair_loss(BoxLossKind::Iou, format, p, q, cfg.eps);
            let v = |pp: &[f64]| {
                let bx = format.to_xyxy([pp[0], pp[1], pp[2], pp[3]]);
                let d = (t[2] - t[0]).atan2(t[3] - t[1]) - (bx[2] - bx[0]).atan2(bx[3] - bx[1]);
                4.0 / std::f64::consts::PI.powi(2) * d * d
            };
            let v0 = v(&p);
            let alpha = v0 / (1.0 - iou0 + v0 + cfg.eps);
            let wgt = if weighted && iou0 < 0.99 { 0.6 } else { 1.0 };
            finite_diff(&p, |pp| {
                let (diou, _, _) = box_pair_loss(BoxLossKind::Diou, format, [pp[0], pp[1], pp[2], pp[3]], q, cfg.eps);
                wgt * (diou + alpha * v(pp))
            })
        } else {
            finite_diff(&p, |pp| {
                ReferenceBackend.box_loss(&cfg, pp, &q).map(Loss::into_values).unwrap().iter().sum()
            })
        };
        assert_close(&g, &fd, 1e-5)?;
    }

    /// BOX-3 / BOX-4 / BOX-13: IoU in [0, 1], GIoU in [-1, 1], symmetric in the two boxes; the
    /// pairwise IoU agrees with the IoU loss.
    #[test]
    fn box_ranges_and_symmetry(a in xyxy_box(0.01), b in xyxy_box(0.01), format in box_format()) {
        covers!("BOX-3", "BOX-4", "BOX-13");
        let pa = format.from_xyxy(a);
        let pb = format.from_xyxy(b);
        for kind in BoxLossKind::TORCHVISION {
            let (lab, _, iou) = box_pair_loss(kind, format, pa, pb, 1e-7);
            let (lba, _, _) = box_pair_loss(kind, format, pb, pa, 1e-7);
            prop_assert!((lab - lba).abs() <= 1e-9 * lab.abs().max(1.0), "{kind:?} not symmetric");
            prop_assert!((0.0..=1.0).contains(&iou));
            if kind == BoxLossKind::Giou {
                prop_assert!((-1e-12..=2.0 + 1e-12).contains(&lab), "GIoU loss {lab}");
            }
            prop_assert!(lab >= -1e-12);
        }
        let mut out = [0.0];
        ReferenceBackend.box_iou(format, &pa, &pb, &mut out).unwrap();
        let (_, _, iou) = box_pair_loss(BoxLossKind::Iou, format, pa, pb, 1e-7);
        prop_assert!((out[0] - iou).abs() <= 1e-6 && (0.0..=1.0).contains(&out[0]));
    }

    /// BOX-3 .. BOX-7: scale and translation invariance (up to eps), identical boxes give zero
    /// loss (up to eps / area).
    #[test]
    fn box_invariances(a in xyxy_box(1.0), b in xyxy_box(1.0), s in 0.5f64..20.0, dx in -100.0f64..100.0) {
        covers!("BOX-3", "BOX-4", "BOX-5", "BOX-6", "BOX-7");
        for kind in BoxLossKind::TORCHVISION {
            let (l, _, _) = box_pair_loss(kind, BoxFormat::Xyxy, a, b, 1e-7);
            let sa = a.map(|v| v * s);
            let sb = b.map(|v| v * s);
            let (ls, _, _) = box_pair_loss(kind, BoxFormat::Xyxy, sa, sb, 1e-7);
            prop_assert!((l - ls).abs() <= 1e-5 * l.abs().max(1.0), "{kind:?} scale");
            let ta = [a[0] + dx, a[1] - dx, a[2] + dx, a[3] - dx];
            let tb = [b[0] + dx, b[1] - dx, b[2] + dx, b[3] - dx];
            let (lt, _, _) = box_pair_loss(kind, BoxFormat::Xyxy, ta, tb, 1e-7);
            prop_assert!((l - lt).abs() <= 1e-9 * l.abs().max(1.0), "{kind:?} translation");
            let (l0, g0, _) = box_pair_loss(kind, BoxFormat::Xyxy, a, a, 1e-7);
            prop_assert!(l0.abs() <= 1e-6, "{kind:?} identical boxes: {l0}");
            prop_assert!(g0.iter().all(|v| v.is_finite()));
        }
    }

    /// BOX-1: format conversions round-trip, and a loss does not depend on the layout its boxes
    /// are written in.
    #[test]
    fn box_formats_round_trip(a in xyxy_box(0.1), b in xyxy_box(0.1), kind in torchvision_kind()) {
        covers!("BOX-1");
        let (l_xyxy, _, _) = box_pair_loss(kind, BoxFormat::Xyxy, a, b, 1e-7);
        for f in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh] {
            let back = f.to_xyxy(f.from_xyxy(a));
            for k in 0..4 {
                prop_assert!((back[k] - a[k]).abs() <= 1e-12 * a[k].abs().max(1.0));
            }
            let (l, _, _) = box_pair_loss(kind, f, f.from_xyxy(a), f.from_xyxy(b), 1e-7);
            prop_assert!((l - l_xyxy).abs() <= 1e-9 * l.abs().max(1.0));
        }
    }

    /// BOX-11: degenerate boxes (zero or negative width or height) give finite values and
    /// gradients for every kind and format.
    #[test]
    fn box_degenerate_is_finite(
        a in prop::array::uniform4(-5.0f64..5.0),
        b in prop::array::uniform4(-5.0f64..5.0),
        zero_w in any::<bool>(),
        kind in torchvision_kind(),
        format in box_format(),
    ) {
        covers!("BOX-11");
        let mut p = a;
        if zero_w {
            p[2] = p[0]; // zero width in xyxy, a point-like box otherwise
        }
        let (l, g, iou) = box_pair_loss(kind, format, p, b, 1e-7);
        prop_assert!(l.is_finite() && iou.is_finite(), "{l} {iou}");
        prop_assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    }

    /// REG-2 / REG-4 (with REG-5): gradients match finite differences away from |d| = beta.
    #[test]
    fn regression_gradients_match_finite_differences(
        pred in prop::collection::vec(-4.0f64..4.0, 1..20),
        u in prop::collection::vec(0.0f64..1.0, 20),
        beta in 0.05f64..2.0,
        reduction in reduction(),
    ) {
        covers!("REG-2", "REG-4");
        // d = pred - target alternates between the quadratic zone and the linear zone, on both
        // sides, and never sits within 5% of a kink (|d| = beta or d = 0).
        let target: Vec<f64> = pred
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mag = if i % 2 == 0 { beta * (0.05 + 0.9 * u[i]) } else { beta * (1.05 + 2.0 * u[i]) };
                let d = if i % 4 < 2 { mag } else { -mag };
                p - d
            })
            .collect();
        let s = SmoothL1 { beta, reduction };
        let mut g = vec![0.0; pred.len()];
        ReferenceBackend.smooth_l1(&s, Input::new(&pred).with_grad(&mut g), &target).map(Loss::into_values).unwrap();
        let fd = finite_diff(&pred, |p| ReferenceBackend.smooth_l1(&s, p, &target).map(Loss::into_values).unwrap().iter().sum());
        assert_close(&g, &fd, 1e-6)?;
        let h = Huber { delta: beta, reduction };
        ReferenceBackend.huber(&h, Input::new(&pred).with_grad(&mut g), &target).map(Loss::into_values).unwrap();
        let fd = finite_diff(&pred, |p| ReferenceBackend.huber(&h, p, &target).map(Loss::into_values).unwrap().iter().sum());
        assert_close(&g, &fd, 1e-6)?;
    }

    /// REG-1 / REG-3: Huber(delta) = delta * smooth L1(beta = delta) (PyTorch's documented
    /// identity), and beta = 0 is the L1 loss.
    #[test]
    fn regression_identities(pred in prop::collection::vec(-4.0f64..4.0, 1..20), delta in 0.01f64..3.0) {
        covers!("REG-1", "REG-3");
        let target: Vec<f64> = pred.iter().map(|p| p * 0.5 - 0.3).collect();
        let none = Reduction::None;
        let h = ReferenceBackend.huber(&Huber { delta, reduction: none }, &pred, &target).map(Loss::into_values).unwrap();
        let s = ReferenceBackend.smooth_l1(&SmoothL1 { beta: delta, reduction: none }, &pred, &target).map(Loss::into_values).unwrap();
        for (a, b) in h.iter().zip(&s) {
            prop_assert!((a - delta * b).abs() <= 1e-12 * a.abs().max(1.0));
        }
        let l1 = ReferenceBackend.smooth_l1(&SmoothL1 { beta: 0.0, reduction: none }, &pred, &target).map(Loss::into_values).unwrap();
        for ((a, p), t) in l1.iter().zip(&pred).zip(&target) {
            prop_assert_eq!(*a, (p - t).abs());
        }
    }

    /// BIN-2 / BIN-4 (with BIN-5): gradients match finite differences.
    #[test]
    fn binary_gradients_match_finite_differences(
        x in prop::collection::vec(-15.0f64..15.0, 1..16),
        pw in 0.1f64..4.0,
        alpha in prop_oneof![Just(-1.0), 0.0f64..1.0],
        gamma in prop_oneof![Just(0.0), Just(1.0), Just(2.0), 0.0f64..3.0],
        reduction in reduction(),
    ) {
        covers!("BIN-2", "BIN-4");
        let y: Vec<f64> = (0..x.len()).map(|i| [0.0, 1.0, 0.3][i % 3]).collect();
        let b = BceWithLogits { pos_weight: Some(vec![pw]), reduction };
        let mut g = vec![0.0; x.len()];
        ReferenceBackend.bce_with_logits(&b, Input::new(&x).with_grad(&mut g), &y).map(Loss::into_values).unwrap();
        let fd = finite_diff(&x, |xx| ReferenceBackend.bce_with_logits(&b, xx, &y).map(Loss::into_values).unwrap().iter().sum());
        assert_close(&g, &fd, 1e-6)?;
        let f = SigmoidFocal { alpha, gamma, reduction };
        ReferenceBackend.sigmoid_focal(&f, Input::new(&x).with_grad(&mut g), &y).map(Loss::into_values).unwrap();
        let fd = finite_diff(&x, |xx| ReferenceBackend.sigmoid_focal(&f, xx, &y).map(Loss::into_values).unwrap().iter().sum());
        assert_close(&g, &fd, 1e-6)?;
    }

    /// BIN-1 / BIN-3: focal loss with gamma 0 and no alpha is BCE; BCE(x, y) = BCE(-x, 1 - y);
    /// BCE is finite for huge logits.
    #[test]
    fn binary_identities(x in prop::collection::vec(-1e6f64..1e6, 1..16), y in 0.0f64..=1.0) {
        covers!("BIN-1", "BIN-3");
        let ys = vec![y; x.len()];
        let none = Reduction::None;
        let bce = ReferenceBackend.bce_with_logits(&BceWithLogits { pos_weight: None, reduction: none }, &x, &ys).map(Loss::into_values).unwrap();
        let focal = ReferenceBackend.sigmoid_focal(&SigmoidFocal { alpha: -1.0, gamma: 0.0, reduction: none }, &x, &ys).map(Loss::into_values).unwrap();
        let xn: Vec<f64> = x.iter().map(|v| -v).collect();
        let yn = vec![1.0 - y; x.len()];
        let flipped = ReferenceBackend.bce_with_logits(&BceWithLogits { pos_weight: None, reduction: none }, &xn, &yn).map(Loss::into_values).unwrap();
        for i in 0..x.len() {
            prop_assert!(bce[i].is_finite());
            prop_assert_eq!(bce[i], focal[i]);
            prop_assert!((bce[i] - flipped[i]).abs() <= 1e-9 * bce[i].abs().max(1.0));
        }
    }
}

/// BOX-2: the intersection is 0 unless both overlaps are strictly positive: boxes that only
/// touch along an edge, or overlap in x only, have zero intersection and the IoU loss's gradient
/// comes from the union alone (0 here, since the intersection is 0).
#[test]
fn box_intersection_requires_strict_overlap() {
    covers!("BOX-2");
    let a = [0.0, 0.0, 1.0, 1.0];
    for b in [
        [1.0, 0.0, 2.0, 1.0],
        [0.5, 1.0, 1.5, 2.0],
        [0.5, 3.0, 1.5, 4.0],
    ] {
        let (l, g, iou) = box_pair_loss(BoxLossKind::Iou, BoxFormat::Xyxy, a, b, 1e-7);
        assert_eq!(iou, 0.0, "{b:?}");
        assert_eq!(l, 1.0);
        assert_eq!(g, [0.0; 4]);
    }
    // Overlapping: intersection 0.25, union 1.75.
    let (_, _, iou) = box_pair_loss(
        BoxLossKind::Iou,
        BoxFormat::Xyxy,
        a,
        [0.5, 0.5, 1.5, 1.5],
        0.0f64.max(1e-300),
    );
    assert!((iou - 0.25 / 1.75).abs() < 1e-12);
}
