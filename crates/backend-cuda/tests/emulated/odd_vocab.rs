//! Rows that are not a whole number of 16-byte vectors (GPT-2's 50,257 classes; issue 16,
//! finding 8): the plan has no `CE_VEC16`, and the default row kernel moves the middle of each
//! slice in 16-byte vectors with scalar edges (`ce_span` in `cross_entropy_fast.cu`) when the
//! buffers share their alignment. Every row then starts at another offset modulo the vector
//! width, so the head, body and tail all occur; checked against the `f64` reference with a
//! separate gradient and in place, class and probability targets, with smoothing and weights.

use super::cross_entropy::emu_ce;
use super::*;
use smoothloss_cuda::geometry::{CE_SMEM_TARGET, CE_VEC16, ce_plan};

#[test]
fn odd_vocabulary_rows_on_the_cpu_emulation() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(50_257);
    // 50,257: clusters of 8 blocks (f32); 1,001 and 37: one block per row, several offsets.
    for &(rows, classes) in &[(2usize, 50_257usize), (9, 1001), (5, 37)] {
        let plan = ce_plan(classes, 4, true, 8, CE_SMEM_TARGET, 232_448);
        assert_eq!(plan.flags & CE_VEC16, 0, "{classes}: {plan:?}");
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-6.0, 6.0))
            .collect();
        // Targets at the row's first and last classes (scalar edges) and in the middle.
        let mut targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        targets[0] = 0;
        targets[1] = classes as i64 - 1;
        let probs = random_probs(&mut rng, rows, classes);
        let weights: Vec<f64> = (0..classes).map(|_| 0.5 + rng.unit()).collect();
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
            for tgt in [CeTargets::Classes(&targets), CeTargets::Probs(&probs)] {
                let what = format!("CE {rows}x{classes} eps {}", cfg.label_smoothing);
                let mut z = logits.clone();
                let mut g = vec![0f32; rows * classes];
                let up = Upstream::Scalar(1.0);
                let (got, check) = emu_ce(
                    lib,
                    &cfg,
                    &mut z,
                    rows,
                    classes,
                    tgt,
                    up,
                    Some(&mut g),
                    false,
                );
                assert_eq!(check[0], -1, "{what}: target check");
                let mut gr = vec![0f32; rows * classes];
                let want = ReferenceBackend
                    .cross_entropy(
                        &cfg,
                        Input::matrix(&logits, rows, classes)
                            .with_upstream(up)
                            .with_grad(&mut gr),
                        tgt,
                    )
                    .map(Loss::into_values)
                    .unwrap();
                assert_close(&format!("{what} loss"), &got, &want, 1e-5, 1e-6);
                assert_grad(&format!("{what} grad"), &g, &gr, 1e-4, 1e-6);
                assert_eq!(z, logits, "{what}: logits changed");
                let (got_ip, _) = emu_ce(lib, &cfg, &mut z, rows, classes, tgt, up, None, true);
                assert_eq!(got_ip, got, "{what}: in-place loss");
                assert_eq!(z, g, "{what}: in-place gradient");
            }
        }
    }
}
