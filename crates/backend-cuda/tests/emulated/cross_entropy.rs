//! Cross-entropy kernels on the CPU: every launch plan, half precision, the helper kernels.

use super::*;
use smoothloss_cuda::geometry::CE_WARP_ROWS;

// ---------------------------------------------------------------- cross-entropy

/// `ce_prepare` as `CudaBackend::ce_launch` launches it (ce_rows_grid's blocks): returns the
/// stats `[denominator, 1 / denominator]` and the target check `[row or -1, target]`.
fn emu_prepare(
    lib: &Library,
    targets: *const i64,
    rows: usize,
    classes: usize,
    weights: *const f32,
    ignore: i64,
    has_ignore: i32,
    row_w: *const f64,
    denom: f64,
) -> ([f64; 2], [i64; 2]) {
    let (blocks, chunk) = ce_rows_grid(rows);
    // Poisoned, as the real launch leaves them uninitialised: the kernel must write both.
    let mut stats = [f64::NAN; 2];
    let mut check = [i64::MIN; 2];
    let mut part_w = vec![0.0f64; blocks as usize];
    let mut part_bad = vec![0i64; blocks as usize];
    let mut counter = 0u32;
    let p = CePrepareParams {
        targets: addr(targets),
        rows: rows as i64,
        chunk: chunk as i64,
        classes: classes as i64,
        weights: addr(weights),
        ignore_index: ignore,
        stats: addr(stats.as_mut_ptr()),
        err: addr(check.as_mut_ptr()),
        part_w: addr(part_w.as_mut_ptr()),
        part_bad: addr(part_bad.as_mut_ptr()),
        counter: addr(&raw mut counter),
        row_w: addr(row_w),
        denom,
        has_ignore,
        _pad: 0,
    };
    // SAFETY: buffer sizes as in the real launch: targets `rows` (or null), weights `classes`
    // (or null), row weights `rows` (or null), stats and check 2 each, the partials one per block, one counter at 0.
    unsafe { emu_launch(lib, CE_PREPARE, blocks, CE_ROWS_THREADS, 0, &p) };
    assert_eq!(counter, 0, "the last block resets the counter");
    (stats, check)
}

/// `ce_reduce_rows` as `CudaBackend::ce_launch` launches it: sum of `values`, divided by
/// `denom[0]` when given.
fn emu_reduce_rows(lib: &Library, values: &[f64], denom: Option<&[f64]>) -> f64 {
    let (blocks, chunk) = ce_rows_grid(values.len());
    let mut out = f64::NAN; // uninitialised in the real launch
    let mut part = vec![0.0f64; blocks as usize];
    let mut counter = 0u32;
    let p = CeReduceRowsParams {
        values: addr(values.as_ptr()),
        n: values.len() as i64,
        chunk: chunk as i64,
        divisor: 1.0,
        denom: addr(denom.map_or(NULL_F64, |d| d.as_ptr())),
        out: addr(&raw mut out),
        part: addr(part.as_mut_ptr()),
        counter: addr(&raw mut counter),
    };
    // SAFETY: values has `len` doubles, denom at least one, out one, part one per block.
    unsafe { emu_launch(lib, CE_REDUCE_ROWS, blocks, CE_ROWS_THREADS, 0, &p) };
    assert_eq!(counter, 0, "the last block resets the counter");
    out
}
/// The H200's opt-in shared memory per block (bytes), for plans as on that device.
const SMEM_OPT_IN_H200: usize = 232_448;

/// How the emulated launch is planned: shared-memory target and limit of one block.
#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    pub(super) target: usize,
    pub(super) max: usize,
}

/// The plan a real launch would use on an H200 (clusters of up to 8 blocks).
pub(super) const H200: Budget = Budget {
    target: CE_SMEM_TARGET,
    max: SMEM_OPT_IN_H200,
};

/// The plan of a launch over these host buffers, as `CudaBackend::ce_plan` makes it.
fn plan_for(classes: usize, elem: usize, bufs: &[usize], budget: Budget) -> CePlan {
    let aligned16 = bufs.iter().all(|&p| p % 16 == 0);
    ce_plan(classes, elem, aligned16, 8, budget.target, budget.max)
}

/// The launch sequence of `CudaBackend::ce_launch` (f32 logits) on host buffers, planned on
/// an H200. Returns the loss values and the device-side target check `[row or -1, target]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn emu_ce(
    lib: &Library,
    cfg: &CrossEntropy,
    logits: &mut [f32],
    rows: usize,
    classes: usize,
    targets: CeTargets<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
    in_place: bool,
) -> (Vec<f64>, [i64; 2]) {
    emu_ce_with(
        lib, cfg, logits, rows, classes, targets, upstream, grad, in_place, H200,
    )
    .0
}

/// [`emu_ce`] under another shared-memory budget; also returns the plan used.
#[allow(clippy::too_many_arguments)]
pub(super) fn emu_ce_with(
    lib: &Library,
    cfg: &CrossEntropy,
    logits: &mut [f32],
    rows: usize,
    classes: usize,
    targets: CeTargets<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
    in_place: bool,
    budget: Budget,
) -> ((Vec<f64>, [i64; 2]), CePlan) {
    let (r, plan) = emu_ce_rows(
        lib, cfg, logits, rows, classes, targets, upstream, grad, in_place, budget, false,
    );
    ((r.values, r.check), plan)
}

/// What [`emu_ce_rows`] returns: the loss values, the target check and the per-row outputs
/// (`CE-14`, `CE-15`: log-sum-exp, hit, z-loss), as `CudaBackend::run_cross_entropy_rows`
/// copies them back.
pub(super) struct EmuRows {
    pub(super) values: Vec<f64>,
    pub(super) check: [i64; 2],
    pub(super) lse: Vec<f32>,
    pub(super) hit: Vec<u8>,
    pub(super) row_z: Vec<f64>,
}

/// The launch sequence of `CudaBackend::ce_launch` with every option of `cfg` (`CE-10` ..
/// `CE-13`), and every per-row output when `want_rows` (the options' entry point then, as
/// `ce_launch` picks it; the default entry point for calls without options or outputs).
#[allow(clippy::too_many_arguments)]
pub(super) fn emu_ce_rows(
    lib: &Library,
    cfg: &CrossEntropy,
    logits: &mut [f32],
    rows: usize,
    classes: usize,
    targets: CeTargets<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
    in_place: bool,
    budget: Budget,
    want_rows: bool,
) -> (EmuRows, CePlan) {
    let opts = want_rows || cfg.has_llm_options();
    // Poisoned, as the real launch leaves them uninitialised: the kernel must write them all.
    let mut lse = vec![f32::NAN; rows];
    let mut hit = vec![7u8; rows];
    let mut row_z = vec![f64::NAN; rows];
    let rw_ptr = cfg.row_weights.as_ref().map_or(NULL_F64, |r| r.as_ptr());
    let w32: Option<Vec<f32>> = cfg
        .class_weights
        .as_ref()
        .map(|w| w.iter().map(|&v| v as f32).collect());
    let wsum: f64 = w32
        .as_ref()
        .map_or(classes as f64, |w| w.iter().map(|&v| f64::from(v)).sum());
    let w_ptr = w32.as_ref().map_or(std::ptr::null(), |w| w.as_ptr());
    let mut row_loss = vec![f64::NAN; rows]; // uninitialised in the real launch
    let ignore = cfg.ignore_index.unwrap_or(0);
    let has_ignore = i32::from(cfg.ignore_index.is_some());
    let (t_ptr, p_ptr) = match targets {
        CeTargets::Classes(t) => (t.as_ptr(), std::ptr::null()),
        CeTargets::Probs(p) => (std::ptr::null(), p.as_ptr()),
    };
    let (stats, check) = emu_prepare(
        lib,
        t_ptr,
        rows,
        classes,
        w_ptr,
        ignore,
        has_ignore,
        rw_ptr,
        cfg.denominator.unwrap_or(0.0),
    );
    let (up_scalar, up_ptr) = match upstream {
        Upstream::Scalar(s) => (s, NULL_F64),
        Upstream::PerElement(u) => (0.0, u.as_ptr()),
    };
    let g_ptr = grad.map_or(std::ptr::null_mut(), |g| g.as_mut_ptr());
    let g_ptr = if in_place {
        std::ptr::null_mut()
    } else {
        g_ptr
    };
    let plan = plan_for(
        classes,
        4,
        &[logits.as_ptr() as usize, g_ptr as usize, p_ptr as usize],
        budget,
    );
    // The options' entry points have no warp-per-row layout (as `ce_launch`).
    let plan = if opts { plan.block_per_row(4) } else { plan };
    let s_ptr = if cfg.reduction == Reduction::Mean {
        stats.as_ptr()
    } else {
        NULL_F64
    };
    let p = CeRowParams {
        z: addr(logits.as_mut_ptr()),
        g: addr(g_ptr),
        targets: addr(t_ptr),
        probs: addr(p_ptr),
        classes: classes as i64,
        slice: plan.slice as i64,
        weights: addr(w_ptr),
        wsum,
        ignore_index: ignore,
        eps: cfg.label_smoothing,
        stats: addr(s_ptr),
        up_scalar,
        up: addr(up_ptr),
        row_loss: addr(row_loss.as_mut_ptr()),
        in_place: i32::from(in_place),
        has_ignore,
        flags: plan.flags,
        last_rows: plan.last_rows(rows),
    };
    let opt = CeRowOptParams {
        z: p.z,
        g: p.g,
        targets: p.targets,
        probs: p.probs,
        classes: p.classes,
        slice: p.slice,
        weights: p.weights,
        wsum: p.wsum,
        ignore_index: p.ignore_index,
        eps: p.eps,
        stats: p.stats,
        up_scalar: p.up_scalar,
        up: p.up,
        row_loss: p.row_loss,
        row_w: addr(rw_ptr),
        softcap: cfg.softcap.unwrap_or(0.0),
        z_loss: cfg.z_loss,
        lse_out: if want_rows { addr(lse.as_mut_ptr()) } else { 0 },
        hit_out: if want_rows { addr(hit.as_mut_ptr()) } else { 0 },
        row_z: if want_rows {
            addr(row_z.as_mut_ptr())
        } else {
            0
        },
        in_place: p.in_place,
        has_ignore: p.has_ignore,
        flags: p.flags,
        _pad: 0,
    };
    let geometry = (
        plan.grid(rows).expect("grid"),
        plan.threads,
        plan.smem_bytes,
        plan.cluster,
    );
    // SAFETY: logits, grad and probs have rows*classes elements, row_loss, up, row weights and
    // the per-row outputs `rows`; the plan's geometry is the real launch's; each entry point
    // gets its own struct (the options' with `opt`, as `ce_launch`).
    unsafe {
        if opts {
            emu_launch_ce(lib, "f32opt", geometry, &opt)
        } else {
            let warp = plan.flags & CE_WARP_ROWS != 0;
            emu_launch_ce(lib, if warp { "f32w" } else { "f32" }, geometry, &p)
        }
    };
    let values = match cfg.reduction {
        Reduction::None => row_loss,
        Reduction::Sum => vec![emu_reduce_rows(lib, &row_loss, None)],
        Reduction::Mean => vec![emu_reduce_rows(lib, &row_loss, Some(&stats))],
    };
    let rows_out = EmuRows {
        values,
        check,
        lse,
        hit,
        row_z,
    };
    (rows_out, plan)
}

#[test]
fn cross_entropy_kernels_match_the_reference_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(0xce);
    // Row in shared memory (37, 300 classes) and the re-reading path (10,241 classes).
    for &(rows, classes) in &[(5usize, 37usize), (3, 300), (2, 10_241)] {
        // (Each emulated launch runs up to 1024 fibers, switching at every barrier: keep the
        // case count small.)
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-6.0, 6.0))
            .collect();
        let mut targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        targets[1] = -100;
        let probs = random_probs(&mut rng, rows, classes);
        let weights: Vec<f64> = (0..classes).map(|_| rng.unit() * 2.0).collect();
        let up_rows: Vec<f64> = (0..rows).map(|_| rng.unit() - 0.5).collect();
        for r in REDUCTIONS {
            for cfg in [
                CrossEntropy::new().with_reduction(r),
                CrossEntropy::new()
                    .with_label_smoothing(0.2)
                    .with_class_weights(weights.clone())
                    .with_reduction(r),
            ] {
                let up = if r == Reduction::None {
                    Upstream::PerElement(&up_rows)
                } else {
                    Upstream::Scalar(1.5)
                };
                for tgt in [CeTargets::Classes(&targets), CeTargets::Probs(&probs)] {
                    let what = format!("CE {rows}x{classes} {r:?} eps {}", cfg.label_smoothing);
                    let mut z = logits.clone();
                    let mut g = vec![0f32; rows * classes];
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
                    if r != Reduction::None {
                        continue;
                    }
                    // In place: the same loss, the same gradient written over the logits.
                    let (got_ip, _) = emu_ce(lib, &cfg, &mut z, rows, classes, tgt, up, None, true);
                    assert_eq!(got_ip, got, "{what}: in-place loss");
                    assert_eq!(z, g, "{what}: in-place gradient");
                }
            }
        }
    }
}

/// Every launch shape of the cross-entropy kernel against the reference: rows split over
/// clusters of 2, 4 and 8 blocks (small shared-memory targets force them), one block per row,
/// the re-reading path (no slice fits), 16-byte vectors and scalar accesses (a buffer off a
/// 16-byte boundary, or a row that is not a whole number of vectors), in place too.
#[test]
fn cross_entropy_clusters_and_access_paths_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(0xc1);
    let rows = 3usize;
    let mut planned = Vec::new();
    // (Each launch runs rows x cluster x threads fibers: each launch shape runs two of
    // the four (config, target kind) pairs, rotating, so every pair meets several shapes.)
    let mut turn = 0usize;
    // 9 classes over 8 blocks: slices of 2, so ranks 5..7 hold no class at all.
    for classes in [9usize, 37, 1000, 1001] {
        let vec_rows = classes % 4 == 0;
        // (cluster wanted, budget): the target fits exactly the slice of that cluster size.
        let exact = |k: usize| {
            let unit = if vec_rows { 4 } else { 1 };
            1024 + classes.div_ceil(k).div_ceil(unit) * unit * 4
        };
        let mut cases: Vec<(u32, Budget)> = [1usize, 2, 4, 8]
            .iter()
            .map(|&k| {
                let t = exact(k);
                (k as u32, Budget { target: t, max: t })
            })
            .collect();
        // Nothing fits: one block per row re-reads the row from global memory.
        cases.push((
            0,
            Budget {
                target: 1030,
                max: 1030,
            },
        ));
        let mut store: Vec<f32> = (0..rows * classes + 1)
            .map(|_| rng.range_f32(-5.0, 5.0))
            .collect();
        let targets: Vec<i64> = vec![rng.below(classes) as i64, -100, (classes - 1) as i64];
        let probs = random_probs(&mut rng, rows, classes);
        let weights: Vec<f64> = (0..classes).map(|_| 0.25 + rng.unit()).collect();
        let up_rows: Vec<f64> = (0..rows).map(|_| rng.unit() - 0.5).collect();
        for (want_k, budget) in cases {
            let offsets: &[usize] = if vec_rows { &[0, 1] } else { &[0] };
            for &offset in offsets {
                // offset 1: the logits start 4 bytes past the allocation (off 16 bytes).
                let n = rows * classes;
                let logits: Vec<f32> = store[offset..offset + n].to_vec();
                let cfgs = [
                    (
                        CrossEntropy::new().with_label_smoothing(0.1),
                        Upstream::Scalar(1.0),
                    ),
                    (
                        CrossEntropy::new()
                            .with_class_weights(weights.clone())
                            .with_label_smoothing(0.3)
                            .with_reduction(Reduction::None),
                        Upstream::PerElement(&up_rows),
                    ),
                ];
                let tgts = [CeTargets::Classes(&targets), CeTargets::Probs(&probs)];
                for _ in 0..2 {
                    let (cfg, up) = cfgs[turn % 2].clone();
                    let tgt = tgts[(turn / 2) % 2];
                    turn += 1;
                    {
                        let what = format!(
                            "CE {rows}x{classes} want K {want_k} offset {offset} {:?} probs {}",
                            cfg.reduction,
                            matches!(tgt, CeTargets::Probs(_))
                        );
                        store[offset..offset + n].copy_from_slice(&logits);
                        let mut g = vec![0f32; n];
                        let z = &mut store[offset..offset + n];
                        let ((got, _), plan) = emu_ce_with(
                            lib,
                            &cfg,
                            z,
                            rows,
                            classes,
                            tgt,
                            up,
                            Some(&mut g),
                            false,
                            budget,
                        );
                        let aligned = (z.as_ptr() as usize).is_multiple_of(16)
                            && (g.as_ptr() as usize).is_multiple_of(16)
                            && match tgt {
                                CeTargets::Probs(p) => (p.as_ptr() as usize).is_multiple_of(16),
                                CeTargets::Classes(_) => true,
                            };
                        assert_eq!(plan.flags & 2 != 0, aligned && vec_rows, "{what}: {plan:?}");
                        if want_k == 0 {
                            assert_eq!((plan.cluster, plan.flags & 1), (1, 0), "{what}: {plan:?}");
                        } else {
                            assert_eq!(
                                (plan.cluster, plan.flags & 1),
                                (want_k, 1),
                                "{what}: {plan:?}"
                            );
                        }
                        planned.push((plan.cluster, plan.flags));
                        let mut gr = vec![0f32; n];
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
                        assert_eq!(
                            &store[offset..offset + n],
                            &logits[..],
                            "{what}: logits changed"
                        );
                        // In place: the same loss, the gradient written over the logits.
                        let z = &mut store[offset..offset + n];
                        let ((got_ip, _), plan_ip) =
                            emu_ce_with(lib, &cfg, z, rows, classes, tgt, up, None, true, budget);
                        assert_eq!(plan_ip, plan, "{what}: in-place plan");
                        assert_eq!(got_ip, got, "{what}: in-place loss");
                        assert_eq!(
                            &store[offset..offset + n],
                            &g[..],
                            "{what}: in-place gradient"
                        );
                    }
                }
            }
        }
    }
    // Every path was taken: clusters 1..8 with and without vectors, and the re-read path.
    for k in [1, 2, 4, 8] {
        for flags in [1, 3] {
            assert!(
                planned.contains(&(k, flags)),
                "no launch with cluster {k} flags {flags}"
            );
        }
    }
    assert!(planned.contains(&(1, 0)) && planned.contains(&(1, 2)));
}

#[test]
fn cross_entropy_edge_rows_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let (rows, classes) = (5usize, 4usize);
    let inf = f32::INFINITY;
    #[rustfmt::skip]
    let logits = vec![
        0.0, f32::NAN, 1.0, 2.0,   // NaN: NaN loss and gradient
        -inf, 0.0, 1.0, -inf,      // -inf logits: probability 0
        inf, 0.0, 0.0, 0.0,        // +inf: NaN
        1.0, 2.0, 3.0, 4.0,        // ignored
        1.0, 1.0, 1.0, 1.0,
    ];
    let targets = [2i64, 2, 1, -100, 3];
    for cfg in [
        CrossEntropy::new().with_reduction(Reduction::None),
        CrossEntropy::new()
            .with_label_smoothing(0.1)
            .with_reduction(Reduction::None),
    ] {
        let mut z = logits.clone();
        let mut g = vec![0f32; rows * classes];
        let (got, _) = emu_ce(
            lib,
            &cfg,
            &mut z,
            rows,
            classes,
            CeTargets::Classes(&targets),
            Upstream::ONE,
            Some(&mut g),
            false,
        );
        let mut gr = vec![0f32; rows * classes];
        let want = ReferenceBackend
            .cross_entropy(
                &cfg,
                Input::matrix(&logits, rows, classes).with_grad(&mut gr),
                &targets,
            )
            .map(Loss::into_values)
            .unwrap();
        assert_close("edge loss", &got, &want, 1e-6, 1e-6);
        assert_grad("edge grad", &g, &gr, 1e-5, 1e-6);
    }
    // All rows ignored under mean: NaN loss, zero gradient.
    let cfg = CrossEntropy::new();
    let mut z = vec![0.5f32; 2 * classes];
    let mut g = vec![1f32; 2 * classes];
    let (got, _) = emu_ce(
        lib,
        &cfg,
        &mut z,
        2,
        classes,
        CeTargets::Classes(&[-100, -100]),
        Upstream::ONE,
        Some(&mut g),
        false,
    );
    assert!(got[0].is_nan(), "{got:?}");
    assert!(g.iter().all(|&x| x == 0.0), "{g:?}");
}

#[test]
fn out_of_range_targets_are_flagged_by_ce_prepare_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let (rows, classes) = (2000usize, 3usize);
    let mut targets: Vec<i64> = (0..rows).map(|i| (i % 3) as i64).collect();
    targets[1500] = 3;
    targets[1777] = -5;
    targets[20] = -100;
    let mut z = vec![0.0f32; rows * classes];
    let (_, check) = emu_ce(
        lib,
        &CrossEntropy::new(),
        &mut z,
        rows,
        classes,
        CeTargets::Classes(&targets),
        Upstream::ONE,
        None,
        false,
    );
    assert_eq!(check, [1500, 3]);
}

/// Mean and sum over enough rows that `ce_prepare` and `ce_reduce_rows` run several blocks
/// (the last one partial) and combine them in the last block.
#[test]
fn many_rows_mean_and_sum_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(0x2600);
    let (rows, classes) = (1100usize, 3usize);
    assert_eq!(ce_rows_grid(rows), (3, 367));
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| rng.range_f32(-3.0, 3.0))
        .collect();
    let targets: Vec<i64> = (0..rows)
        .map(|i| {
            if i % 7 == 0 {
                -100
            } else {
                rng.below(classes) as i64
            }
        })
        .collect();
    for r in [Reduction::Mean, Reduction::Sum] {
        let cfg = CrossEntropy::new()
            .with_class_weights(vec![0.5, 1.0, 2.0])
            .with_label_smoothing(0.1)
            .with_reduction(r);
        let mut z = logits.clone();
        let mut g = vec![0f32; rows * classes];
        let tgt = CeTargets::Classes(&targets);
        let (got, check) = emu_ce(
            lib,
            &cfg,
            &mut z,
            rows,
            classes,
            tgt,
            Upstream::ONE,
            Some(&mut g),
            false,
        );
        assert_eq!(check, [-1, 0]);
        let mut gr = vec![0f32; rows * classes];
        let want = ReferenceBackend
            .cross_entropy(
                &cfg,
                Input::matrix(&logits, rows, classes).with_grad(&mut gr),
                tgt,
            )
            .map(Loss::into_values)
            .unwrap();
        // f32 softmax against the f64 reference; a lost block of rows would be off by ~1/3.
        assert_close(&format!("{r:?} loss"), &got, &want, 1e-6, 0.0);
        assert_grad(&format!("{r:?} grad"), &g, &gr, 1e-4, 1e-6);
    }
}

#[test]
fn half_precision_cross_entropy_on_the_cpu() {
    use smoothloss_cuda::half::{bf16, f16};
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(16);
    // 500 classes: scalar accesses (not a whole number of 16-byte vectors); 512: vectors of 8,
    // in one block per row and split over a cluster of 4 (2 KiB of shared memory per block).
    let tiny = Budget {
        target: 1024 + 256,
        max: SMEM_OPT_IN_H200,
    };
    for (classes, budget, want_cluster, want_vec) in [
        (500usize, H200, 1u32, false),
        (512, H200, 1, true),
        (512, tiny, 4, true),
    ] {
        let rows = 3usize;
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-4.0, 4.0))
            .collect();
        let targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        let cfg = CrossEntropy::new().with_label_smoothing(0.1);
        let (stats, _) = emu_prepare(
            lib,
            targets.as_ptr(),
            rows,
            classes,
            std::ptr::null(),
            -100,
            1,
            NULL_F64,
            0.0,
        );
        let reference = |rounded: &[f32]| {
            let mut gr = vec![0f32; rows * classes];
            let v = ReferenceBackend
                .cross_entropy(
                    &cfg,
                    Input::matrix(rounded, rows, classes).with_grad(&mut gr),
                    &targets,
                )
                .map(Loss::into_values)
                .unwrap();
            (v[0], gr)
        };
        macro_rules! run {
            ($ty:ty, $dtype:literal) => {{
                let mut z: Vec<$ty> = logits.iter().map(|&x| <$ty>::from_f32(x)).collect();
                let mut g: Vec<$ty> = vec![<$ty>::ZERO; rows * classes];
                let mut row_loss = vec![f64::NAN; rows]; // uninitialised in the real launch
                let plan = plan_for(
                    classes,
                    2,
                    &[z.as_ptr() as usize, g.as_ptr() as usize],
                    budget,
                );
                let p = CeRowParams {
                    z: addr(z.as_mut_ptr()),
                    g: addr(g.as_mut_ptr()),
                    targets: addr(targets.as_ptr()),
                    probs: 0,
                    classes: classes as i64,
                    slice: plan.slice as i64,
                    weights: 0,
                    wsum: classes as f64,
                    ignore_index: -100,
                    eps: 0.1,
                    stats: addr(stats.as_ptr()),
                    up_scalar: 1.0,
                    up: 0,
                    row_loss: addr(row_loss.as_mut_ptr()),
                    in_place: 0,
                    has_ignore: 1,
                    flags: plan.flags,
                    last_rows: plan.last_rows(rows),
                };
                let geometry = (
                    plan.grid(rows).expect("grid"),
                    plan.threads,
                    plan.smem_bytes,
                    plan.cluster,
                );
                let dt = if plan.flags & CE_WARP_ROWS != 0 {
                    format!("{}w", $dtype)
                } else {
                    $dtype.to_string()
                };
                // SAFETY: as in emu_ce, with 2-byte elements.
                unsafe { emu_launch_ce(lib, &dt, geometry, &p) };
                assert_eq!(
                    (plan.cluster, plan.flags & 2 != 0),
                    (want_cluster, want_vec),
                    "{plan:?}"
                );
                let loss = emu_reduce_rows(lib, &row_loss, Some(&stats));
                let rounded: Vec<f32> = z.iter().map(|x| x.to_f32()).collect();
                let (want, gr) = reference(&rounded);
                assert_close(stringify!($ty), &[loss], &[want], 1e-5, 1e-6);
                let g32: Vec<f32> = g.iter().map(|x| x.to_f32()).collect();
                assert_grad(stringify!($ty), &g32, &gr, 1e-2, 1e-3);
            }};
        }
        run!(bf16, "bf16");
        run!(f16, "f16");
    }
}
