//! Every loss on a GPU against the f64 reference (ignored without one), and the launch plans.

use super::*;

#[test]
#[ignore = "needs a CUDA device"]
fn all_kernels_load() {
    backend!().load_all().unwrap();
}

#[test]
#[ignore = "needs a CUDA device"]
fn cross_entropy_matches_the_reference() {
    let b = backend!();
    let mut rng = Rng::new(0x5eed);
    // Short rows, rows that fit shared memory, and rows that do not (online pass).
    for &(rows, classes) in &[
        (7usize, 1usize),
        (33, 5),
        (64, 1000),
        (9, 10_240),
        (5, 32_000),
        (2, 128_256),
    ] {
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-8.0, 8.0))
            .collect();
        let mut targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        targets[rows / 2] = -100; // one ignored row
        let probs = random_probs(&mut rng, rows, classes);
        let up_rows: Vec<f64> = (0..rows).map(|_| rng.unit() - 0.5).collect();
        for cfg in ce_configs(classes, &mut rng) {
            let ups: Vec<Upstream<'_>> = if cfg.reduction == Reduction::None {
                vec![Upstream::Scalar(0.7), Upstream::PerElement(&up_rows)]
            } else {
                vec![Upstream::ONE]
            };
            for up in ups {
                for tgt in [CeTargets::Classes(&targets), CeTargets::Probs(&probs)] {
                    let what = format!("CE {rows}x{classes} {cfg:?} {up:?}");
                    check_ce(&b, &what, &cfg, &logits, rows, classes, tgt, up);
                }
            }
        }
    }
}

/// Every launch plan on the device against the reference: shared-memory budgets that force
/// clusters of 1, 2, 4 and 8 blocks per row and the re-reading path, rows that are and are not
/// a whole number of 16-byte vectors, in place too.
#[test]
#[ignore = "needs a CUDA device"]
fn cross_entropy_every_launch_plan() {
    let b = backend!();
    let mut rng = Rng::new(0x91a);
    let rows = 6usize;
    for classes in [37usize, 1000, 1001, 4096] {
        let vec_rows = classes % 4 == 0;
        let unit = if vec_rows { 4 } else { 1 };
        let exact = |k: usize| 1024 + classes.div_ceil(k).div_ceil(unit) * unit * 4;
        let mut cases: Vec<(u32, usize, usize)> = [1usize, 2, 4, 8]
            .iter()
            .map(|&k| (k as u32, exact(k), exact(k)))
            .collect();
        cases.push((0, 1030, 1030));
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-8.0, 8.0))
            .collect();
        let mut targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        targets[1] = -100;
        let probs = random_probs(&mut rng, rows, classes);
        for (want_k, target, max) in cases {
            let bk = b.with_ce_shared_memory(target, max);
            let plan = bk.ce_plan(classes, 4, true);
            if want_k == 0 {
                assert_eq!(
                    (plan.cluster, plan.flags & 1),
                    (1, 0),
                    "{classes}: {plan:?}"
                );
            } else {
                assert_eq!(
                    (plan.cluster, plan.flags & 1),
                    (want_k, 1),
                    "{classes}: {plan:?}"
                );
            }
            assert_eq!(plan.flags & 2 != 0, vec_rows, "{classes}: {plan:?}");
            for cfg in ce_configs(classes, &mut rng) {
                for tgt in [CeTargets::Classes(&targets), CeTargets::Probs(&probs)] {
                    let what = format!("CE {rows}x{classes} {plan:?} {cfg:?}");
                    check_ce(&bk, &what, &cfg, &logits, rows, classes, tgt, Upstream::ONE);
                }
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn cross_entropy_half_precision_logits() {
    use smoothloss_cuda::half::{bf16, f16};
    let b = backend!();
    let mut rng = Rng::new(77);
    let (rows, classes) = (16usize, 3000usize);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| rng.range_f32(-6.0, 6.0))
        .collect();
    let targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let st = b.stream().clone();
    let t_dev = st.clone_htod(&targets).unwrap();

    // Reference on the logits as rounded to bf16 / f16.
    let check = |rounded: Vec<f32>, got: f64, grad: Vec<f32>| {
        let mut gr = vec![0f32; rows * classes];
        let want = ReferenceBackend
            .cross_entropy(
                &cfg,
                Input::matrix(&rounded, rows, classes).with_grad(&mut gr),
                &targets,
            )
            .map(Loss::into_values)
            .unwrap();
        assert_close("half loss", &[got], &want, 1e-3, 1e-4);
        assert_grad("half grad", &grad, &gr, 1e-2, 1e-3);
    };

    let zb: Vec<bf16> = logits.iter().map(|&x| bf16::from_f32(x)).collect();
    let zb_dev = st.clone_htod(&zb).unwrap();
    let mut gb = st.alloc_zeros::<bf16>(rows * classes).unwrap();
    let out = b
        .cross_entropy_dev(
            &cfg,
            Io::Separate {
                input: &zb_dev,
                grad: &mut gb,
            },
            [rows, classes],
            DeviceCeTargets::Classes(&t_dev),
            DeviceUpstream::Scalar(1.0),
        )
        .unwrap();
    let v = out.to_host().unwrap();
    let g: Vec<f32> = st
        .clone_dtoh(&gb)
        .unwrap()
        .iter()
        .map(|x| x.to_f32())
        .collect();
    check(zb.iter().map(|x| x.to_f32()).collect(), v[0], g);

    let zh: Vec<f16> = logits.iter().map(|&x| f16::from_f32(x)).collect();
    let mut zh_dev = st.clone_htod(&zh).unwrap();
    let out = b
        .cross_entropy_dev(
            &cfg,
            Io::InPlace(&mut zh_dev),
            [rows, classes],
            DeviceCeTargets::Classes(&t_dev),
            DeviceUpstream::Scalar(1.0),
        )
        .unwrap();
    let v = out.to_host().unwrap();
    let g: Vec<f32> = st
        .clone_dtoh(&zh_dev)
        .unwrap()
        .iter()
        .map(|x| x.to_f32())
        .collect();
    check(zh.iter().map(|x| x.to_f32()).collect(), v[0], g);
}

#[test]
#[ignore = "needs a CUDA device"]
fn reductions_are_deterministic() {
    let b = backend!();
    let mut rng = Rng::new(99);
    let (rows, classes) = (300usize, 777usize);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| rng.range_f32(-5.0, 5.0))
        .collect();
    let targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let run = || {
        let mut g = vec![0f32; rows * classes];
        let v = b
            .cross_entropy(
                &cfg,
                Input::matrix(&logits, rows, classes).with_grad(&mut g),
                &targets,
            )
            .map(Loss::into_values)
            .unwrap();
        (
            v[0].to_bits(),
            g.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        )
    };
    let first = run();
    for _ in 0..3 {
        assert_eq!(run(), first);
    }
    let n = 1_000_003usize;
    let p: Vec<f32> = (0..n).map(|_| rng.range_f32(-3.0, 3.0)).collect();
    let t: Vec<f32> = (0..n).map(|_| rng.range_f32(-3.0, 3.0)).collect();
    let sl = |bk: &CudaBackend| {
        bk.smooth_l1(&SmoothL1::default(), &p, &t)
            .map(Loss::into_values)
            .unwrap()[0]
            .to_bits()
    };
    let a = sl(&b);
    assert_eq!(sl(&b), a);
}

#[test]
#[ignore = "needs a CUDA device"]
fn box_losses_match_the_reference() {
    let b = backend!();
    let mut rng = Rng::new(1234);
    let n = 2000usize;
    let mut pred = Vec::with_capacity(4 * n);
    let mut target = Vec::with_capacity(4 * n);
    for i in 0..n {
        let (x, y) = (rng.range_f32(0.0, 50.0), rng.range_f32(0.0, 50.0));
        let (w, h) = (rng.range_f32(0.5, 20.0), rng.range_f32(0.5, 20.0));
        target.extend_from_slice(&[x, y, x + w, y + h]);
        if i % 10 == 0 {
            // Exact ties: identical boxes, and a shared edge.
            pred.extend_from_slice(&[x, y, x + w, y + h]);
        } else if i % 10 == 1 {
            pred.extend_from_slice(&[x, rng.range_f32(0.0, 50.0), x + w, y + h + 3.0]);
        } else {
            let (px, py) = (x + rng.range_f32(-5.0, 5.0), y + rng.range_f32(-5.0, 5.0));
            pred.extend_from_slice(&[
                px,
                py,
                px + rng.range_f32(0.5, 20.0),
                py + rng.range_f32(0.5, 20.0),
            ]);
        }
    }
    let up: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
    for kind in BoxLossKind::ALL {
        for (fi, format) in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh]
            .into_iter()
            .enumerate()
        {
            for (ri, r) in REDUCTIONS.into_iter().enumerate() {
                for tw in [None, Some((0.3, 0.5))] {
                    let mut cfg = BoxLoss::new(kind, format)
                        .with_options(smoothloss_spec::random::box_options(kind, ri + 3 * fi))
                        .with_reduction(r);
                    if let Some((a, t)) = tw {
                        cfg = cfg.with_threshold_weight(a, t);
                    }
                    let u = if r == Reduction::None {
                        Upstream::PerElement(&up)
                    } else {
                        Upstream::Scalar(1.5)
                    };
                    let mut g = vec![0f32; 4 * n];
                    let mut gr = vec![0f32; 4 * n];
                    let got = b
                        .box_loss(
                            &cfg,
                            Input::new(&pred).with_upstream(u).with_grad(&mut g),
                            &target,
                        )
                        .map(Loss::into_values)
                        .unwrap();
                    let want = ReferenceBackend
                        .box_loss(
                            &cfg,
                            Input::new(&pred).with_upstream(u).with_grad(&mut gr),
                            &target,
                        )
                        .map(Loss::into_values)
                        .unwrap();
                    let what = format!("{cfg:?}");
                    assert_close(&format!("{what} loss"), &got, &want, 1e-9, 1e-12);
                    assert_grad(&format!("{what} grad"), &g, &gr, 1e-6, 1e-9);
                }
            }
        }
    }
    // Non-finite coordinates give NaN.
    let mut bad = pred[..8].to_vec();
    bad[2] = f32::NAN;
    let cfg = BoxLoss::default().with_reduction(Reduction::None);
    let got = b
        .box_loss(&cfg, &bad, &target[..8])
        .map(Loss::into_values)
        .unwrap();
    assert!(got[0].is_nan() && got[1].is_finite(), "{got:?}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn box_iou_matches_the_reference() {
    let b = backend!();
    let mut rng = Rng::new(4321);
    let (n, m) = (37usize, 53usize);
    let mk = |rng: &mut Rng, k: usize| -> Vec<f32> {
        (0..k)
            .flat_map(|_| {
                let (x, y) = (rng.range_f32(0.0, 30.0), rng.range_f32(0.0, 30.0));
                [x, y, rng.range_f32(0.0, 10.0), rng.range_f32(0.0, 10.0)]
            })
            .collect()
    };
    let b1 = mk(&mut rng, n);
    let b2 = mk(&mut rng, m);
    for format in [BoxFormat::Xywh, BoxFormat::Cxcywh] {
        let mut got = vec![0f32; n * m];
        let mut want = vec![0f32; n * m];
        b.box_iou(format, &b1, &b2, &mut got).unwrap();
        ReferenceBackend
            .box_iou(format, &b1, &b2, &mut want)
            .unwrap();
        assert_close("box_iou", &widen(&got), &widen(&want), 0.0, 0.0);
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn elementwise_losses_match_the_reference() {
    let b = backend!();
    let mut rng = Rng::new(2024);
    let n = 100_001usize;
    let x: Vec<f32> = (0..n).map(|_| rng.range_f32(-6.0, 6.0)).collect();
    let t: Vec<f32> = (0..n).map(|_| rng.range_f32(-6.0, 6.0)).collect();
    let y: Vec<f32> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                rng.range_f32(0.0, 1.0)
            } else {
                (i % 2) as f32
            }
        })
        .collect();
    let up: Vec<f64> = (0..n).map(|_| rng.unit() - 0.5).collect();
    let pw: Vec<f64> = (0..7).map(|_| rng.unit() * 3.0).collect();
    let n7 = n - n % 7;
    for r in REDUCTIONS {
        let u = if r == Reduction::None {
            Upstream::PerElement(&up)
        } else {
            Upstream::Scalar(0.5)
        };
        for beta in [0.0, 1.0, 2.5] {
            let cfg = SmoothL1 { beta, reduction: r };
            let (mut g, mut gr) = (vec![0f32; n], vec![0f32; n]);
            let got = b
                .smooth_l1(&cfg, Input::new(&x).with_upstream(u).with_grad(&mut g), &t)
                .map(Loss::into_values)
                .unwrap();
            let want = ReferenceBackend
                .smooth_l1(&cfg, Input::new(&x).with_upstream(u).with_grad(&mut gr), &t)
                .map(Loss::into_values)
                .unwrap();
            assert_close("smooth_l1", &got, &want, 1e-10, 1e-12);
            assert_close("smooth_l1 grad", &widen(&g), &widen(&gr), 0.0, 0.0);
        }
        let cfg = Huber {
            delta: 1.5,
            reduction: r,
        };
        let (mut g, mut gr) = (vec![0f32; n], vec![0f32; n]);
        let got = b
            .huber(&cfg, Input::new(&x).with_upstream(u).with_grad(&mut g), &t)
            .map(Loss::into_values)
            .unwrap();
        let want = ReferenceBackend
            .huber(&cfg, Input::new(&x).with_upstream(u).with_grad(&mut gr), &t)
            .map(Loss::into_values)
            .unwrap();
        assert_close("huber", &got, &want, 1e-10, 1e-12);
        assert_close("huber grad", &widen(&g), &widen(&gr), 0.0, 0.0);

        for pos_weight in [None, Some(pw.clone())] {
            let cfg = BceWithLogits {
                pos_weight,
                reduction: r,
            };
            let u7 = if r == Reduction::None {
                Upstream::PerElement(&up[..n7])
            } else {
                u
            };
            let (mut g, mut gr) = (vec![0f32; n7], vec![0f32; n7]);
            let got = b
                .bce_with_logits(
                    &cfg,
                    Input::new(&x[..n7]).with_upstream(u7).with_grad(&mut g),
                    &y[..n7],
                )
                .map(Loss::into_values)
                .unwrap();
            let want = ReferenceBackend
                .bce_with_logits(
                    &cfg,
                    Input::new(&x[..n7]).with_upstream(u7).with_grad(&mut gr),
                    &y[..n7],
                )
                .map(Loss::into_values)
                .unwrap();
            assert_close("bce", &got, &want, 1e-10, 1e-12);
            assert_close("bce grad", &widen(&g), &widen(&gr), 1e-6, 1e-9);
        }
        for (alpha, gamma) in [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.5)] {
            let cfg = SigmoidFocal {
                alpha,
                gamma,
                reduction: r,
            };
            let (mut g, mut gr) = (vec![0f32; n], vec![0f32; n]);
            let got = b
                .sigmoid_focal(&cfg, Input::new(&x).with_upstream(u).with_grad(&mut g), &y)
                .map(Loss::into_values)
                .unwrap();
            let want = ReferenceBackend
                .sigmoid_focal(&cfg, Input::new(&x).with_upstream(u).with_grad(&mut gr), &y)
                .map(Loss::into_values)
                .unwrap();
            assert_close("focal", &got, &want, 1e-10, 1e-12);
            assert_close("focal grad", &widen(&g), &widen(&gr), 1e-6, 1e-9);
        }
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn launches_on_a_callers_stream() {
    let b = backend!();
    let st: Arc<_> = b.context().new_stream().unwrap();
    let b2 = b.with_stream(st.clone()).unwrap();
    let p = st.clone_htod(&[0.0f32, 1.0, 2.0, 3.0]).unwrap();
    let t = st.clone_htod(&[0.5f32, 1.0, 0.0, 10.0]).unwrap();
    let out = b2
        .smooth_l1_dev(
            &SmoothL1::default(),
            Io::Read(&p),
            &t,
            DeviceUpstream::Scalar(1.0),
        )
        .unwrap();
    let want = ReferenceBackend
        .smooth_l1(
            &SmoothL1::default(),
            &[0.0f32, 1.0, 2.0, 3.0],
            &[0.5f32, 1.0, 0.0, 10.0],
        )
        .map(Loss::into_values)
        .unwrap();
    assert_close("stream", &out.to_host().unwrap(), &want, 1e-12, 0.0);
}

/// `geometry::ce_plan`'s contract, over many row lengths, element sizes and budgets: the
/// blocks of a row cover it; the smallest fitting cluster is chosen; shared memory stays
/// within the budget (target, else the maximum with the largest cluster, else the re-read
/// path); vectors only for aligned rows of whole vectors; threads a power of two in 32..=512
/// (32 per row in the warp-per-row layout, whose rows' regions fit the target).
#[test]
fn ce_plan_contract() {
    use smoothloss_cuda::geometry::{
        CE_HEADER_BYTES, CE_MAX_THREADS, CE_SMEM_ROW, CE_VEC16, CE_WARP_MAX_UNITS, CE_WARP_ROWS,
        CE_WARP_ROWS_MAX, ce_plan,
    };
    let mut rng = Rng::new(0x91a2);
    let mut classes_list: Vec<usize> = vec![1, 2, 3, 4, 7, 8, 9, 16, 1000, 1001, 32_000, 128_256];
    classes_list.extend((0..300).map(|_| 1 + rng.below(600_000)));
    for &classes in &classes_list {
        for elem in [2usize, 4] {
            for aligned in [false, true] {
                for max_cluster in [1u32, 8] {
                    for (target, max) in [(48 * 1024, 232_448), (1100, 1100), (4096, 65_536)] {
                        let p = ce_plan(classes, elem, aligned, max_cluster, target, max);
                        let what = format!(
                            "{classes} x {elem} B aligned {aligned} max_cluster {max_cluster} \
                             budget {target}/{max}: {p:?}"
                        );
                        let vw = 16 / elem;
                        let vec = aligned && classes % vw == 0;
                        assert_eq!(p.flags & CE_VEC16 != 0, vec, "{what}");
                        // A power of two per row's block; the warp-per-row layout has 32
                        // threads per row, any number of rows (checked below).
                        let warp_rows = p.flags & CE_WARP_ROWS != 0;
                        assert!(warp_rows || p.threads.is_power_of_two(), "{what}");
                        assert!((32..=CE_MAX_THREADS).contains(&p.threads), "{what}");
                        assert!([1, 2, 4, 8].contains(&p.cluster), "{what}");
                        assert!(p.cluster <= max_cluster, "{what}");
                        let k = p.cluster as usize;
                        if p.flags & CE_SMEM_ROW != 0 {
                            // Covered (trailing ranks may hold nothing: the kernels allow
                            // it), slices of whole vectors, within the budget.
                            assert!(p.slice * k >= classes, "{what}");
                            if vec {
                                assert_eq!(p.slice % vw, 0, "{what}");
                            }
                            let bytes = if warp_rows {
                                // Warp per row: one-block rows of at most CE_WARP_MAX_UNITS
                                // units, 2..=8 rows per block, each warp its own 16-byte
                                // aligned region of header + slice, all within the target.
                                let rpb = p.rows_per_block as usize;
                                assert_eq!(k, 1, "{what}");
                                assert!((2..=CE_WARP_ROWS_MAX as usize).contains(&rpb), "{what}");
                                assert_eq!(p.threads as usize, 32 * rpb, "{what}");
                                let unit = if vec { vw } else { 1 };
                                assert!(p.slice.div_ceil(unit) <= CE_WARP_MAX_UNITS, "{what}");
                                let region = CE_HEADER_BYTES + (p.slice * elem).div_ceil(16) * 16;
                                assert!(rpb * region <= target, "{what}");
                                rpb * region
                            } else {
                                assert_eq!(p.rows_per_block, 1, "{what}");
                                CE_HEADER_BYTES + p.slice * elem
                            };
                            assert_eq!(p.smem_bytes as usize, bytes, "{what}");
                            assert!(bytes <= max.max(target), "{what}");
                            if bytes > target {
                                // Only when no allowed cluster fits the target.
                                assert_eq!(p.cluster, max_cluster, "{what}");
                            }
                            // No smaller cluster would have fitted the target.
                            for smaller in [1usize, 2, 4].into_iter().filter(|&s| s < k) {
                                let unit = if vec { vw } else { 1 };
                                let sl = classes.div_ceil(smaller).div_ceil(unit) * unit;
                                assert!(CE_HEADER_BYTES + sl * elem > target, "{what}");
                            }
                        } else {
                            // The re-read path: one block per row, and even the largest
                            // cluster's slice would not fit the maximum.
                            assert_eq!((p.cluster, p.slice), (1, classes), "{what}");
                            let unit = if vec { vw } else { 1 };
                            let mc = max_cluster as usize;
                            let sl = classes.div_ceil(mc).div_ceil(unit) * unit;
                            assert!(CE_HEADER_BYTES + sl * elem > max, "{what}");
                            assert_eq!(p.smem_bytes as usize, CE_HEADER_BYTES, "{what}");
                        }
                    }
                }
            }
        }
    }
}

/// Degenerate arguments give a plan, not a panic: element sizes 0, 3, 32, no classes, zero
/// budgets, a zero cluster limit.
#[test]
fn ce_plan_degenerate_arguments_do_not_panic() {
    use smoothloss_cuda::geometry::{CE_SMEM_ROW, CE_VEC16, ce_plan, ce_rows_grid};
    for elem in [0usize, 1, 3, 32] {
        for classes in [0usize, 1, 16, 1000] {
            for (target, max) in [(0usize, 0usize), (1 << 20, 1 << 20)] {
                for max_cluster in [0u32, 1, 8, 100] {
                    let p = ce_plan(classes, elem, true, max_cluster, target, max);
                    assert!(p.threads >= 32 && p.cluster >= 1, "{p:?}");
                    if elem != 1 {
                        // Only 1-, 2-, 4-, 8- and 16-byte elements get vectors.
                        assert_eq!(p.flags & CE_VEC16, 0, "{elem} {p:?}");
                    }
                    if target == 0 && max == 0 {
                        assert_eq!(p.flags & CE_SMEM_ROW, 0, "{p:?}");
                    }
                }
            }
        }
    }
    assert_eq!(ce_rows_grid(0), (1, 1));
}

/// One block per row (no clusters) keeps a 32,000-class f32 row on chip with the
/// shared-memory opt-in (129,024 bytes), against the reference.
#[test]
#[ignore = "needs a CUDA device"]
fn cross_entropy_one_block_per_row_with_opt_in() {
    let b = backend!().with_ce_max_cluster(1);
    let (rows, classes) = (3usize, 32_000usize);
    let plan = b.ce_plan(classes, 4, true);
    assert_eq!(
        (plan.cluster, plan.flags, plan.smem_bytes),
        (1, 3, 1024 + 128_000)
    );
    let mut rng = Rng::new(0x0b1);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| rng.range_f32(-8.0, 8.0))
        .collect();
    let targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let tgt = CeTargets::Classes(&targets);
    check_ce(
        &b,
        "one block",
        &cfg,
        &logits,
        rows,
        classes,
        tgt,
        Upstream::ONE,
    );
    // The same with 64 threads per block (250 loop turns per thread) and with clusters.
    for bk in [
        b.with_ce_max_threads(64),
        backend!().with_ce_max_threads(64),
    ] {
        assert_eq!(bk.ce_plan(classes, 4, true).threads, 64);
        check_ce(
            &bk,
            "64 threads",
            &cfg,
            &logits,
            rows,
            classes,
            tgt,
            Upstream::ONE,
        );
    }
}

/// `n` xyxy pairs for the Wise-IoU v3 tests: targets in a 50 x 50 field, predictions shifted
/// by up to 5 and 20 % shorter.
fn wiou_pairs(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut pred = Vec::with_capacity(4 * n);
    let mut target = Vec::with_capacity(4 * n);
    for _ in 0..n {
        let (x, y) = (rng.range_f32(0.0, 50.0), rng.range_f32(0.0, 50.0));
        let (w, h) = (rng.range_f32(0.5, 20.0), rng.range_f32(0.5, 20.0));
        target.extend_from_slice(&[x, y, x + w, y + h]);
        let (px, py) = (x + rng.range_f32(-5.0, 5.0), y + rng.range_f32(-5.0, 5.0));
        pred.extend_from_slice(&[px, py, px + w, py + h * 0.8]);
    }
    (pred, target)
}

/// Wise-IoU v3 (`BOX-24`) on the GPU: its two box-loss launches per call against the f64
/// reference over a sequence of calls with the state carried (the CPU box-loss tolerance).
#[test]
#[ignore = "needs a CUDA device"]
fn wise_iou_v3_matches_the_reference_over_a_sequence() {
    use smoothloss_core::WiseIouState;
    let b = backend!();
    let mut rng = Rng::new(2405);
    let cfg = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy);
    let (mut sg, mut sr) = (WiseIouState::new(), WiseIouState::new());
    for _ in 0..3 {
        let n = 3000usize;
        let (pred, target) = wiou_pairs(&mut rng, n);
        let mut g = vec![0.0f32; 4 * n];
        let got = b
            .wise_iou_v3(&cfg, &mut sg, Input::new(&pred).with_grad(&mut g), &target)
            .unwrap()
            .value();
        let pw: Vec<f64> = pred.iter().map(|&v| f64::from(v)).collect();
        let tw: Vec<f64> = target.iter().map(|&v| f64::from(v)).collect();
        let mut gr = vec![0.0f64; 4 * n];
        let want = ReferenceBackend
            .wise_iou_v3(&cfg, &mut sr, Input::new(&pw).with_grad(&mut gr), &tw)
            .unwrap()
            .value();
        assert!(
            (got - want).abs() <= 2e-6 + 2e-5 * want.abs(),
            "{got} vs {want}"
        );
        for (i, (a, w)) in g.iter().zip(&gr).enumerate() {
            let m = gr[4 * (i / 4)..4 * (i / 4) + 4]
                .iter()
                .fold(0.0_f64, |m, v| m.max(v.abs()));
            let a = f64::from(*a);
            let tol = 2e-6 / n as f64 + 2e-5 * w.abs() + 1e-5 * m;
            assert!((a - w).abs() <= tol, "grad {i}: {a} vs {w}");
        }
        assert!((sg.mean - sr.mean).abs() <= 2e-6 * sr.mean, "{sg:?} {sr:?}");
    }
}

/// Wise-IoU v3 on device buffers (`wise_iou_v3_dev`, what the candle adapter calls): the same
/// values, gradients and running mean as the host-slice path over a sequence of calls, with a
/// scalar upstream (mean) and a per-pair one (none); an invalid state is refused before any
/// work and leaves the state as it was.
#[test]
#[ignore = "needs a CUDA device"]
fn wise_iou_v3_on_device_buffers_matches_the_host_path() {
    use smoothloss_core::WiseIouState;
    let b = backend!();
    let st = b.stream().clone();
    let mut rng = Rng::new(2406);
    let n = 700usize;
    for reduction in [Reduction::Mean, Reduction::None] {
        let cfg = BoxLoss::new(BoxLossKind::Wiou, BoxFormat::Xyxy).with_reduction(reduction);
        let (mut sd, mut sh) = (WiseIouState::new(), WiseIouState::new());
        for _ in 0..3 {
            let (pred, target) = wiou_pairs(&mut rng, n);
            let up: Vec<f64> = (0..n).map(|i| 0.5 + (i % 7) as f64 / 4.0).collect();
            let mut gh = vec![0.0f32; 4 * n];
            let host_in = Input::new(&pred).with_grad(&mut gh);
            let host_in = match reduction {
                Reduction::None => host_in.with_upstream(Upstream::PerElement(&up)),
                _ => host_in.with_upstream(Upstream::Scalar(1.5)),
            };
            let want = b.wise_iou_v3(&cfg, &mut sh, host_in, &target).unwrap();
            let (pd, td) = (
                st.clone_htod(&pred).unwrap(),
                st.clone_htod(&target).unwrap(),
            );
            let upd = st.clone_htod(&up).unwrap();
            let mut gd = st.alloc_zeros::<f32>(4 * n).unwrap();
            let dev_up = match reduction {
                Reduction::None => DeviceUpstream::PerElement(&upd),
                _ => DeviceUpstream::Scalar(1.5),
            };
            let io = Io::Separate {
                input: &pd,
                grad: &mut gd,
            };
            let got = b.wise_iou_v3_dev(&cfg, &mut sd, io, &td, dev_up).unwrap();
            assert_close("loss", &got.to_host().unwrap(), want.values(), 1e-12, 1e-12);
            let got_g: Vec<f64> = st
                .clone_dtoh(&gd)
                .unwrap()
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let want_g: Vec<f64> = gh.iter().map(|&v| f64::from(v)).collect();
            assert_close("grad", &got_g, &want_g, 0.0, 0.0);
            assert_eq!(sd, sh, "the running mean");
        }
        let before = sd;
        let mut bad = sd.with_momentum(2.0);
        let one = st.clone_htod(&[0.0f32, 0.0, 1.0, 1.0]).unwrap();
        assert!(
            b.wise_iou_v3_dev(
                &cfg,
                &mut bad,
                Io::Read(&one),
                &one,
                DeviceUpstream::Scalar(1.0)
            )
            .is_err()
        );
        assert_eq!(bad, before.with_momentum(2.0));
    }
}
