//! The warp-per-row layout of the default row kernel (issue 16, item 5: short rows, as
//! 65536 x 1000): one warp per row, several rows per block, no `__syncthreads`. Checked against
//! the `f64` reference with a row count that leaves the last block part empty (its other warps
//! must exit without touching memory: guard rows after the buffers stay as they were), the
//! one-block-per-row layout of the same rows (a budget under two rows' regions) against the
//! same reference, in place, ignored and non-finite rows, class and probability targets.

use super::cross_entropy::{Budget, H200, emu_ce_with};
use super::*;
use smoothloss_cuda::geometry::{CE_HEADER_BYTES, CE_WARP_ROWS};

/// The plans of the short benchmark rows take the warp layout: 8 rows per block.
#[test]
fn short_rows_plan_one_warp_per_row() {
    for (classes, elem) in [(1000usize, 4usize), (1000, 2), (37, 4), (2048, 2)] {
        let p = ce_plan(classes, elem, true, 8, CE_SMEM_TARGET, 232_448);
        assert_ne!(p.flags & CE_WARP_ROWS, 0, "{classes} x {elem} B: {p:?}");
        assert_eq!(
            (p.cluster, p.rows_per_block, p.threads),
            (1, 8, 256),
            "{p:?}"
        );
        let region = CE_HEADER_BYTES + (p.slice * elem).div_ceil(16) * 16;
        assert_eq!(p.smem_bytes as usize, 8 * region, "{p:?}");
        assert_eq!(p.grid(17), Some(3));
        assert_eq!(p.last_rows(17), 1);
        assert_eq!(p.last_rows(16), 8);
        // Fewer threads: fewer rows per block, the same region per row.
        let q = p.with_max_threads(64);
        assert_eq!(
            (q.rows_per_block, q.threads, q.smem_bytes as usize),
            (2, 64, 2 * region)
        );
        // The options' layout: one block per row, as ce_plan made it before.
        let b = p.block_per_row(elem);
        assert_eq!(
            (b.flags & CE_WARP_ROWS, b.rows_per_block, b.grid(17)),
            (0, 1, Some(17))
        );
        assert_eq!(b.smem_bytes as usize, CE_HEADER_BYTES + p.slice * elem);
    }
    // Longer rows keep one block (or a cluster) per row.
    let p = ce_plan(4096, 4, true, 8, CE_SMEM_TARGET, 232_448);
    assert_eq!((p.flags & CE_WARP_ROWS, p.rows_per_block), (0, 1), "{p:?}");
}

/// Equal bit for bit (NaN payloads included; the logits hold a NaN).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn warp_per_row_layout_matches_the_reference_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(0x3a7);
    // 11 rows: one full block of 8 and one with 3 (1000 classes, 16-byte vectors); 9 rows of
    // 37 classes (scalar plan, vector middle with scalar edges where aligned).
    for &(rows, classes) in &[(11usize, 1000usize), (9, 37)] {
        let guard = 8 * classes; // rows past the last one, never to be touched
        let mut logits: Vec<f32> = (0..rows * classes + guard)
            .map(|_| rng.range_f32(-6.0, 6.0))
            .collect();
        logits[2 * classes + 5] = f32::NAN; // a non-finite row: NaN loss and gradient
        let mut targets: Vec<i64> = (0..rows + 8).map(|_| rng.below(classes) as i64).collect();
        targets[1] = -100; // ignored
        let probs = random_probs(&mut rng, rows + 8, classes);
        let weights: Vec<f64> = (0..classes).map(|_| 0.5 + rng.unit()).collect();
        let region = CE_HEADER_BYTES + (classes * 4).div_ceil(16) * 16;
        // H200: the warp layout; a target under two regions: one block per row.
        let one_block = Budget {
            target: region + region / 2,
            max: 232_448,
        };
        for cfg in [
            CrossEntropy::new().with_reduction(Reduction::None),
            CrossEntropy::new()
                .with_label_smoothing(0.1)
                .with_reduction(Reduction::None),
            CrossEntropy::new()
                .with_label_smoothing(0.2)
                .with_class_weights(weights.clone())
                .with_reduction(Reduction::None),
        ] {
            for tgt in [
                CeTargets::Classes(&targets[..rows]),
                CeTargets::Probs(&probs[..rows * classes]),
            ] {
                let mut gr = vec![0f32; rows * classes];
                let want = ReferenceBackend
                    .cross_entropy(
                        &cfg,
                        Input::matrix(&logits[..rows * classes], rows, classes).with_grad(&mut gr),
                        tgt,
                    )
                    .map(Loss::into_values)
                    .unwrap();
                for (budget, warp) in [(H200, true), (one_block, false)] {
                    let what = format!(
                        "CE {rows}x{classes} eps {} {} layout",
                        cfg.label_smoothing,
                        if warp { "warp" } else { "block" }
                    );
                    let mut z = logits.clone();
                    let mut g = vec![7.0f32; rows * classes + guard];
                    let ((got, check), plan) = emu_ce_with(
                        lib,
                        &cfg,
                        &mut z,
                        rows,
                        classes,
                        tgt,
                        Upstream::Scalar(1.0),
                        Some(&mut g),
                        false,
                        budget,
                    );
                    assert_eq!(plan.flags & CE_WARP_ROWS != 0, warp, "{what}: {plan:?}");
                    assert_eq!(check[0], -1, "{what}: target check");
                    assert!(got[2].is_nan(), "{what}: NaN row's loss {}", got[2]);
                    let (gw, gt) = g.split_at(rows * classes);
                    assert!(
                        gw[2 * classes..3 * classes].iter().all(|v| v.is_nan()),
                        "{what}: NaN row's gradient"
                    );
                    let keep = |v: &[f64]| {
                        v.iter()
                            .enumerate()
                            .filter(|&(i, _)| i != 2)
                            .map(|(_, &x)| x)
                            .collect::<Vec<f64>>()
                    };
                    assert_close(
                        &format!("{what} loss"),
                        &keep(&got),
                        &keep(&want),
                        1e-5,
                        1e-6,
                    );
                    let (mut a, mut b) = (gw.to_vec(), gr.clone());
                    a.drain(2 * classes..3 * classes);
                    b.drain(2 * classes..3 * classes);
                    assert_grad(&format!("{what} grad"), &a, &b, 1e-4, 1e-6);
                    assert!(
                        gt.iter().all(|&v| v == 7.0),
                        "{what}: a guard row was written"
                    );
                    assert!(same_bits(&z, &logits), "{what}: logits changed");
                    // In place: the same loss and gradient, the guard rows untouched.
                    let ((got_ip, _), _) = emu_ce_with(
                        lib,
                        &cfg,
                        &mut z,
                        rows,
                        classes,
                        tgt,
                        Upstream::Scalar(1.0),
                        None,
                        true,
                        budget,
                    );
                    assert_eq!(got_ip.len(), got.len());
                    for (i, (x, y)) in got_ip.iter().zip(&got).enumerate() {
                        assert!(
                            x == y || (x.is_nan() && y.is_nan()),
                            "{what}: in-place loss {i}"
                        );
                    }
                    assert!(
                        same_bits(&z[..rows * classes], gw),
                        "{what}: in-place gradient"
                    );
                    assert!(
                        same_bits(&z[rows * classes..], &logits[rows * classes..]),
                        "{what}: a guard row was written in place"
                    );
                }
            }
        }
    }
}
