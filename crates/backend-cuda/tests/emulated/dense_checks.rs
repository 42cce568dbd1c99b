//! The device-side target checks of the dense-detector kernels (`distribution_focal_dev`,
//! `varifocal_dev`, `quality_focal_dev`): invalid targets placed at two indices are flagged by
//! the loss kernel (the smallest index wins, in any thread order), the check helper copies the
//! value, and the result is what the host front door's check reports for the same targets; the
//! invalid rows give NaN and nothing is read through an invalid target.

use super::*;
use smoothloss_core::{DistributionFocal, LossError, QualityFocal, Varifocal, VarifocalTargets};
use smoothloss_cuda::kernels::{DFL_TARGET_CHECK, QUAL_TARGET_CHECK};
use smoothloss_cuda::params::{DflParams, QflParams, TargetValueParams, VarifocalParams};

/// The flagged index and value of one pair of check words after the helper ran.
fn flagged(
    lib: &Library,
    helper: &str,
    words: &mut [u64],
    values: u64,
    labels: u64,
) -> Option<(usize, u64)> {
    let p = TargetValueParams {
        values,
        labels,
        check: addr(words.as_mut_ptr()),
    };
    // SAFETY: TargetValueParams's contract: the words were written by a loss kernel that
    // flags only indices below the checked buffer's length; one thread.
    unsafe { emu_launch(lib, helper, 1, 32, 0, &p) };
    (words[0] != 0).then(|| (!words[0] as usize, words[1]))
}

/// The error the host front door reports, as (name, value) / (row, label).
fn host_value(e: LossError) -> (String, f64) {
    match e {
        LossError::InvalidParameter { name, value, .. } => (name.to_string(), value),
        other => panic!("{other:?}"),
    }
}

fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn dfl_targets_are_checked_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::Distribution];
    let bins = 16usize;
    for (convention, cfg) in [
        (0, DistributionFocal::ultralytics()),
        (1, DistributionFocal::mmdetection()),
    ] {
        let per = if convention == 0 { 4 } else { 1 };
        let rows = 4 * 300usize;
        let items = rows / per;
        let z: Vec<f32> = (0..rows * bins)
            .map(|i| ((i * 37) % 23) as f32 * 0.3 - 3.0)
            .collect();
        let mut t: Vec<f32> = (0..rows).map(|i| (i % 14) as f32 + 0.25).collect();
        // Invalid: NaN at row 901 (both conventions), 15.0 = bins - 1 at row 333 and -1 at
        // row 333 + 1 (mmdetection only; clamped by ultralytics).
        t[901] = f32::NAN;
        t[333] = (bins - 1) as f32;
        t[334] = -1.0;
        let mut grad = vec![0f32; rows * bins];
        let mut losses = vec![0f64; items];
        let blocks = elem_grid(items);
        let mut partials = vec![0f64; blocks as usize];
        let mut words = [0u64; 2];
        let p = DflParams {
            logits: addr(z.as_ptr()),
            targets: addr(t.as_ptr()),
            items: items as i64,
            bins: bins as i64,
            up_scalar: 1.0,
            up: 0,
            scale: 1.0,
            losses: addr(losses.as_mut_ptr()),
            partials: addr(partials.as_mut_ptr()),
            grad: addr(grad.as_mut_ptr()),
            check: addr(words.as_mut_ptr()),
            convention,
            _pad: 0,
        };
        // SAFETY: DflParams's contract with host buffers of these sizes.
        unsafe {
            emu_launch(
                lib,
                Op::DistributionFocal.kernel_stem(),
                blocks,
                ELEM_THREADS,
                0,
                &p,
            )
        };
        let bad_row = if convention == 0 { 901 } else { 333 };
        let (row, bits) = flagged(lib, DFL_TARGET_CHECK, &mut words, addr(t.as_ptr()), 0)
            .expect("no target flagged");
        assert_eq!(row, bad_row, "convention {convention}");
        let (name, value) = host_value(cfg.check_targets(&t, bins).unwrap_err());
        assert_eq!(name, "targets");
        assert!(
            same_value(f64::from_bits(bits), value),
            "{} vs {value}",
            f64::from_bits(bits)
        );
        // The invalid rows' items are NaN, their gradient rows NaN; the others finite.
        for r in [901, 333, 334] {
            let invalid = t[r].is_nan() || (convention == 1 && !(0.0..15.0).contains(&t[r]));
            assert_eq!(losses[r / per].is_nan(), invalid, "row {r}");
            assert_eq!(
                grad[r * bins..(r + 1) * bins].iter().all(|g| g.is_nan()),
                invalid
            );
        }
        assert!(losses[0].is_finite() && losses[items - 1].is_finite());
        // Valid targets: nothing flagged.
        let t_ok: Vec<f32> = (0..rows).map(|i| (i % 14) as f32 + 0.25).collect();
        let mut words = [0u64; 2];
        let p = DflParams {
            targets: addr(t_ok.as_ptr()),
            check: addr(words.as_mut_ptr()),
            ..p
        };
        // SAFETY: as above.
        unsafe {
            emu_launch(
                lib,
                Op::DistributionFocal.kernel_stem(),
                blocks,
                ELEM_THREADS,
                0,
                &p,
            )
        };
        assert_eq!(words, [0, 0]);
    }
}

#[test]
fn varifocal_and_qfl_targets_are_checked_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::Quality];
    let n = 2000usize;
    let x: Vec<f32> = (0..n).map(|i| ((i * 13) % 17) as f32 * 0.4 - 3.0).collect();
    let mut s: Vec<f32> = (0..n).map(|i| ((i * 7) % 11) as f32 / 10.0).collect();
    let mut lab: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    s[1500] = 1.5;
    s[700] = f32::NAN;
    lab[40] = -0.5;
    lab[1999] = 2.0;
    let blocks = elem_grid(n);
    let (mut losses, mut partials, mut grad) =
        (vec![0f64; n], vec![0f64; blocks as usize], vec![0f32; n]);
    let mut words = [0u64; 4];
    let p = VarifocalParams {
        logits: addr(x.as_ptr()),
        scores: addr(s.as_ptr()),
        labels: addr(lab.as_ptr()),
        n: n as i64,
        alpha: 0.75,
        gamma: 2.0,
        up_scalar: 1.0,
        up: 0,
        scale: 1.0,
        losses: addr(losses.as_mut_ptr()),
        partials: addr(partials.as_mut_ptr()),
        grad: addr(grad.as_mut_ptr()),
        check: addr(words.as_mut_ptr()),
        weight: 0,
        _pad: 0,
    };
    // SAFETY: VarifocalParams's contract with host buffers of n elements.
    unsafe {
        emu_launch(
            lib,
            Op::Varifocal.kernel_stem(),
            blocks,
            ELEM_THREADS,
            0,
            &p,
        )
    };
    let (ws, wl) = words.split_at_mut(2);
    let scores = flagged(lib, QUAL_TARGET_CHECK, ws, addr(s.as_ptr()), 0).expect("scores");
    let labels = flagged(lib, QUAL_TARGET_CHECK, wl, addr(lab.as_ptr()), 0).expect("labels");
    assert_eq!((scores.0, labels.0), (700, 40));
    let cfg = Varifocal::ultralytics();
    let (name, value) = host_value(
        cfg.check_targets(&VarifocalTargets {
            scores: &s,
            labels: Some(&lab),
        })
        .unwrap_err(),
    );
    assert_eq!(name, "scores");
    assert!(same_value(f64::from_bits(scores.1), value));
    s[700] = 0.5;
    s[1500] = 0.5;
    let (name, value) = host_value(
        cfg.check_targets(&VarifocalTargets {
            scores: &s,
            labels: Some(&lab),
        })
        .unwrap_err(),
    );
    assert_eq!(name, "labels");
    assert_eq!(f64::from_bits(labels.1), value);

    // Quality focal: labels outside [0, classes], then scores outside [0, 1].
    let (rows, classes) = (600usize, 5usize);
    let z: Vec<f32> = (0..rows * classes)
        .map(|i| ((i * 11) % 19) as f32 * 0.3 - 2.5)
        .collect();
    let mut labels: Vec<i64> = (0..rows).map(|i| (i % (classes + 1)) as i64).collect();
    let mut sc: Vec<f32> = (0..rows).map(|i| ((i * 3) % 10) as f32 / 9.0).collect();
    labels[450] = -1;
    labels[77] = (classes + 1) as i64;
    sc[12] = -0.25;
    let blocks = elem_grid(rows);
    let (mut losses, mut partials, mut grad) = (
        vec![0f64; rows],
        vec![0f64; blocks as usize],
        vec![0f32; rows * classes],
    );
    let mut words = [0u64; 4];
    let p = QflParams {
        logits: addr(z.as_ptr()),
        labels: addr(labels.as_ptr()),
        scores: addr(sc.as_ptr()),
        rows: rows as i64,
        classes: classes as i64,
        beta: 2.0,
        up_scalar: 1.0,
        up: 0,
        scale: 1.0,
        losses: addr(losses.as_mut_ptr()),
        partials: addr(partials.as_mut_ptr()),
        grad: addr(grad.as_mut_ptr()),
        check: addr(words.as_mut_ptr()),
    };
    // SAFETY: QflParams's contract with host buffers of these sizes.
    unsafe {
        emu_launch(
            lib,
            Op::QualityFocal.kernel_stem(),
            blocks,
            ELEM_THREADS,
            0,
            &p,
        )
    };
    let (wl, ws) = words.split_at_mut(2);
    let lab = flagged(lib, QUAL_TARGET_CHECK, wl, 0, addr(labels.as_ptr())).expect("labels");
    let sco = flagged(lib, QUAL_TARGET_CHECK, ws, addr(sc.as_ptr()), 0).expect("scores");
    assert_eq!((lab.0, lab.1 as i64), (77, (classes + 1) as i64));
    assert_eq!(sco.0, 12);
    let cfg = QualityFocal::new();
    match cfg.check_targets(&labels, &sc, classes).unwrap_err() {
        LossError::TargetOutOfRange {
            row,
            target,
            classes: c,
        } => {
            assert_eq!((row, target, c), (lab.0, lab.1 as i64, classes))
        }
        other => panic!("{other:?}"),
    }
    labels[77] = 0;
    labels[450] = 0;
    let (name, value) = host_value(cfg.check_targets(&labels, &sc, classes).unwrap_err());
    assert_eq!(name, "scores");
    assert_eq!(f64::from_bits(sco.1), value);
}
