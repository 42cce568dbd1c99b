//! The cross-entropy kernel's options entry points (`CE-10` .. `CE-15`: softcap, z-loss, row
//! weights, a given denominator, per-row log-sum-exp, hits and z-losses) on the CPU through
//! the emulation, against the `f64` reference on the same `f32` inputs: one block per row,
//! rows split over clusters of 2, 4 and 8 blocks, the re-reading path; in place too.

use super::cross_entropy::{Budget, H200, emu_ce_rows};
use super::*;
use smoothloss_core::CeRowOutputs;
use smoothloss_spec::Tolerance;

#[test]
fn options_entry_points_match_the_reference_on_the_cpu() {
    smoothloss_spec::covers!("CE-10", "CE-11", "CE-12", "CE-13", "CE-14", "CE-15");
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(0x11a);
    let rows = 4usize;
    // (classes, budget): one block per row on the H200 plan; clusters of 8 and 2 blocks
    // (budgets that fit a slice of C / 8 or C / 2 classes); nothing fits (re-reading).
    for (classes, budget, want_k, path) in [
        (37usize, H200, 1, "one block"),
        (
            1000,
            Budget {
                target: 1024 + 128 * 4,
                max: 1024 + 128 * 4,
            },
            8,
            "cluster of 8",
        ),
        (
            301,
            Budget {
                target: 1024 + 151 * 4,
                max: 1024 + 151 * 4,
            },
            2,
            "cluster of 2",
        ),
        (
            300,
            Budget {
                target: 1030,
                max: 1030,
            },
            1,
            "re-reading",
        ),
    ] {
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-40.0, 40.0))
            .collect();
        let targets: Vec<i64> = vec![rng.below(classes) as i64, -100, (classes - 1) as i64, 0];
        let up_rows: Vec<f64> = (0..rows).map(|_| rng.unit() - 0.5).collect();
        let base = CrossEntropy::new()
            .with_label_smoothing(0.1)
            .with_class_weights((0..classes).map(|_| 0.25 + rng.unit()).collect())
            .with_softcap(15.0)
            .with_z_loss(1e-3)
            .with_row_weights(vec![1.5, 1.0, 0.0, 0.75]);
        let cases = [
            (base.clone().with_denominator(3.5), Upstream::Scalar(0.5)),
            (
                base.clone().with_reduction(Reduction::Sum),
                Upstream::Scalar(1.0),
            ),
            (
                base.clone().with_reduction(Reduction::None),
                Upstream::PerElement(&up_rows),
            ),
        ];
        for (cfg, up) in cases {
            let what = format!("{path} {}x{classes} {}", rows, cfg.reduction.as_str());
            let mut z = logits.clone();
            let mut g = vec![0f32; rows * classes];
            let tgt = CeTargets::Classes(&targets[..]);
            let (got, plan) = emu_ce_rows(
                lib,
                &cfg,
                &mut z,
                rows,
                classes,
                tgt,
                up,
                Some(&mut g),
                false,
                budget,
                true,
            );
            assert_eq!(plan.cluster, want_k, "{what}: {plan:?}");
            assert_eq!(
                plan.flags & 1 == 0,
                path == "re-reading",
                "{what}: {plan:?}"
            );
            assert_eq!(got.check[0], -1, "{what}: target check");
            let mut gr = vec![0f32; rows * classes];
            let (mut lse, mut hit) = (vec![0f32; rows], vec![false; rows]);
            let want = ReferenceBackend
                .cross_entropy_rows(
                    &cfg,
                    Input::matrix(&logits, rows, classes)
                        .with_upstream(up)
                        .with_grad(&mut gr),
                    tgt,
                    CeRowOutputs::new().with_lse(&mut lse).with_hits(&mut hit),
                )
                .unwrap();
            let tol = Tolerance::F32;
            let w = |_| 2.0; // the largest class weight times the largest row weight
            tol.check_scaled(&got.values, want.loss.values(), w)
                .unwrap_or_else(|e| panic!("{what} loss: {e}"));
            let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
            tol.check_scaled(&widen(&g), &widen(&gr), w)
                .unwrap_or_else(|e| panic!("{what} grad: {e}"));
            tol.check(&widen(&got.lse), &widen(&lse))
                .unwrap_or_else(|e| panic!("{what} lse: {e}"));
            let got_hit: Vec<bool> = got.hit.iter().map(|&h| h == 1).collect();
            assert!(got.hit.iter().all(|&h| h <= 1), "{what}: hits 0 or 1");
            assert_eq!(got_hit, hit, "{what}: hits");
            // CE-15: the z-losses the kernel wrote, reduced as the host does.
            let rz: f64 = got.row_z.iter().sum();
            let zr = match cfg.reduction {
                Reduction::Mean => rz / 3.5,
                _ => rz,
            };
            tol.check(&[zr], &[want.z_loss.value()])
                .unwrap_or_else(|e| panic!("{what} z-loss: {e}"));
            assert_eq!(
                (got.lse[1], got.hit[1], got.row_z[1]),
                (0.0, 0, 0.0),
                "{what}: ignored row"
            );
            // In place: the same loss, the gradient written over the logits.
            let mut zi = logits.clone();
            let (ip, _) = emu_ce_rows(
                lib, &cfg, &mut zi, rows, classes, tgt, up, None, true, budget, true,
            );
            assert_eq!(ip.values, got.values, "{what}: in-place loss");
            assert_eq!(zi, g, "{what}: in-place gradient");
        }
    }
}
