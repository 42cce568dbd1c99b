//! CPU cross-entropy on large inputs, long rows split across threads, many short rows,
//! streaming stores and the `ndarray` wrappers: against the `f64` reference (tolerance of
//! `smoothloss_cpu::cross_entropy`) and bit-identical across thread counts and SIMD levels.

use smoothloss_core::{CeTargets, CrossEntropy, Reduction};
use smoothloss_core::{Input, Loss, Losses};
use smoothloss_cpu::CpuBackend;
use smoothloss_cpu::simd::SimdLevel;
use smoothloss_spec::kit::{self, Rng};
mod ce_common;

use ce_common::*;

/// Bit-identical results for 1, 2 and 3 threads, including long rows split across threads.
#[test]
fn bit_identical_across_thread_counts() {
    let mut rng = Rng::new(5);
    let shapes = [
        (4usize, 200_000usize),
        (2, 70_000),
        (300, 3000),
        (37, 1025),
        (1000, 10),
    ];
    for &(rows, classes) in &shapes {
        for &(weights, probs, red) in &[
            (false, false, Reduction::Mean),
            (true, false, Reduction::Sum),
            (true, true, Reduction::None),
        ] {
            let case =
                assert_bit_identical_across_threads(&mut rng, rows, classes, weights, probs, red);
            if rows * classes <= 400_000 {
                check(&case, &cpu_losses(&case), None).unwrap();
            }
        }
    }
}

/// Large enough for the streaming-store path and the split of long rows.
#[test]
fn large_inputs_match_reference() {
    let mut rng = Rng::new(33);
    for &(rows, classes) in &[(2300usize, 1900usize), (3, 300_000)] {
        let case = make_case(
            &mut rng,
            rows,
            classes,
            Opts {
                eps: 0.1,
                weights: false,
                probs: false,
                ignore_frac: 0.1,
                reduction: Reduction::Mean,
                per_row_up: false,
                logit_scale: 2.0,
            },
        );
        for (threads, streaming) in [(1, false), (1, true), (2, false), (2, true)] {
            let be = CpuBackend::with_threads(threads).with_streaming_stores(streaming);
            let mut g = vec![0.0f32; case.logits.len()];
            let l = be
                .cross_entropy(
                    &case.cfg,
                    Input::matrix(&case.logits, rows, classes)
                        .with_upstream(case.upstream())
                        .with_grad(&mut g),
                    case.targets.as_f32(),
                )
                .map(Loss::into_values)
                .unwrap();
            check(&case, &l, Some(&g))
                .unwrap_or_else(|e| panic!("{rows}x{classes} t{threads} nt{streaming}: {e}"));
        }
    }
}

/// Few long rows with streaming stores (`>= 2^22` logits) are split across threads with one
/// thread and not with several: class weights and probability targets included, the gradient
/// must not depend on which path wrote an element (rows of odd length, so vectors straddle
/// the 64-byte lines differently on each path).
#[test]
fn long_rows_with_weights_and_probs_are_bit_identical_across_thread_counts() {
    let mut rng = Rng::new(71);
    let (rows, classes) = (3usize, 1_400_003usize);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| (3.0 * normal(&mut rng)) as f32)
        .collect();
    let t: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let q: Vec<f32> = (0..rows * classes)
        .map(|_| (2.0 * rng.unit() / classes as f64) as f32)
        .collect();
    let w: Vec<f64> = (0..classes).map(|_| 0.5 + rng.unit()).collect();
    for weighted in [false, true] {
        for probs in [false, true] {
            let mut cfg = CrossEntropy::new().with_label_smoothing(0.1);
            if weighted {
                cfg = cfg.with_class_weights(w.clone());
            }
            let mut first: Option<(Vec<f64>, Vec<f32>)> = None;
            // Streaming stores on and off must give the same bits too.
            for (threads, streaming) in [(1, true), (2, true), (3, true), (1, false), (3, false)] {
                let be = CpuBackend::with_threads(threads).with_streaming_stores(streaming);
                let mut g = vec![0.0f32; logits.len()];
                let tg = if probs {
                    CeTargets::Probs(&q)
                } else {
                    CeTargets::Classes(&t)
                };
                let l = be
                    .cross_entropy(
                        &cfg,
                        Input::matrix(&logits, rows, classes).with_grad(&mut g),
                        tg,
                    )
                    .map(Loss::into_values)
                    .unwrap();
                let got = (l, g.clone());
                match &first {
                    None => first = Some(got),
                    Some(want) => assert_same_run(
                        want,
                        &got,
                        &format!(
                            "weighted={weighted} probs={probs} threads={threads} nt={streaming}"
                        ),
                    ),
                }
            }
        }
    }
}

/// Many short rows (the batched short-row path, `C <= 128`, and just above it): class weights,
/// `ignore_index`, probability targets, per-row upstream, reductions, NaN / `+inf` / `-inf`
/// rows, against the `f64` reference on every level (split, no-gradient and in-place).
#[test]
fn many_short_rows_match_reference() {
    let be = CpuBackend::with_threads(2);
    let mut rng = Rng::new(11);
    let shapes = [
        (5000usize, 7usize),
        (2000, 1),
        (3000, 33),
        (1500, 128),
        (700, 129),
    ];
    for (k, &(rows, classes)) in shapes.iter().enumerate() {
        for v in 0..8 {
            let o = Opts {
                eps: [0.1, 0.0, 1.0, 0.37][v % 4],
                weights: v % 3 != 2,
                probs: v % 4 == 3,
                ignore_frac: if v % 2 == 0 { 0.2 } else { 0.0 },
                reduction: [Reduction::None, Reduction::Mean, Reduction::Sum][v % 3],
                per_row_up: v % 2 == 1,
                logit_scale: [1.0, 5.0, 30.0][(v + k) % 3],
            };
            let mut case = make_case(&mut rng, rows, classes, o);
            if v >= 4 {
                // A NaN row, a `+inf` row and a row with `-inf` logits (not the target).
                let c = classes;
                case.logits[3 * c + c / 2] = f32::NAN;
                case.logits[5 * c] = f32::INFINITY;
                if let Tg::Classes(t) = &case.targets {
                    let y = t[7].max(0) as usize;
                    for j in 0..c {
                        if j != y && j % 2 == 0 {
                            case.logits[7 * c + j] = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            if let Err(e) = check_all(&case, &be) {
                panic!("shape {rows}x{classes} opts {o:?}: {e}");
            }
        }
    }
}

/// Short rows (1 to 33 classes: the lanes path up to 32 with its partial column blocks, the
/// batched path with its masked row tails above, and 63, 64, 65, 100, 127, 128): the AVX2 build
/// (and the AVX-512 build, where the CPU has it) gives the same bits as the scalar build for
/// losses and gradients, separate-buffer,
/// in place and without gradient, including NaN, `+inf`, `-inf` and ignored rows, `-0.0`
/// logits, weights, label smoothing 0 and not, and per-row upstream with a non-finite entry.
#[test]
fn short_rows_avx2_build_is_bit_identical_to_the_scalar_build() {
    if !SimdLevel::Avx2Fma.is_available() {
        eprintln!("SKIPPED: no AVX2 + FMA on this CPU");
        return;
    }
    let be = CpuBackend::with_threads(1);
    let mut rng = Rng::new(0x1a9e5);
    for classes in (1..=33usize).chain([63, 64, 65, 100, 127, 128]) {
        for v in 0..6 {
            let rows = [203usize, 8, 1, 97, 1030, 17][v];
            let o = Opts {
                eps: [0.1, 0.0, 0.3][v % 3],
                weights: v % 2 == 1,
                probs: false,
                ignore_frac: 0.15,
                reduction: [Reduction::None, Reduction::Mean][v % 2],
                per_row_up: true,
                logit_scale: [1.0, 8.0, 40.0][v % 3],
            };
            let mut case = make_case(&mut rng, rows, classes, o);
            let c = classes;
            if rows > 12 {
                case.logits[3 * c + c / 2] = f32::NAN;
                case.logits[5 * c] = f32::INFINITY;
                for j in 0..c {
                    case.logits[9 * c + j] = f32::NEG_INFINITY; // a row of -inf
                    if j % 2 == 1 {
                        case.logits[11 * c + j] = f32::NEG_INFINITY;
                    }
                }
                case.logits[2 * c] = -0.0;
                if let Some(u) = case.upstream.as_mut() {
                    // The largest upstream f32 data may have: gradients overflow to +-inf in f32
                    // (non-finite upstream values are refused by the front door).
                    u[6] = f64::from(f32::MAX);
                }
            }
            let run = |level: SimdLevel| three_calls(&case, &be, level).unwrap();
            let s = run(SimdLevel::Scalar);
            // The AVX-512 level runs the lanes path's block kernel built with AVX-512 VL.
            for level in [SimdLevel::Avx2Fma, SimdLevel::Avx512] {
                if !level.is_available() {
                    continue;
                }
                let a = run(level);
                kit::same_bits_f64(&s.0, &a.0)
                    .and(kit::same_bits_f32(&s.1, &a.1))
                    .and(kit::same_bits_f64(&s.2, &a.2))
                    .and(kit::same_bits_f64(&s.3, &a.3))
                    .and(kit::same_bits_f32(&s.4, &a.4))
                    .unwrap_or_else(|e| {
                        panic!(
                            "{rows}x{classes} {o:?}: the {level:?} build differs from the scalar build: {e}"
                        )
                    });
            }
        }
    }
}

/// Short rows (the lanes path up to 32 classes, hard targets: eight rows per block, one per
/// SIMD lane, full and partial 8-column blocks; the batched path above): a row's loss and
/// gradient bits do not depend on the rows that share its block. Each window
/// `rows[k..]` (so every row sits in every lane position) gives, row by row, the same bits as
/// the whole call, on both SIMD levels, with weights, ignored rows, NaN / `+inf` / `-inf`
/// rows (the rows that leave the lanes) and a per-row upstream.
#[test]
fn tiny_rows_bits_do_not_depend_on_the_block() {
    let be = CpuBackend::with_threads(1);
    let mut rng = Rng::new(0x7a9e);
    for classes in [
        1usize, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17, 24, 31, 32, 33, 64, 100, 127, 128,
    ] {
        for v in 0..2 {
            let rows = 29;
            let o = Opts {
                eps: [0.1, 0.0][v],
                weights: v == 1,
                probs: false,
                ignore_frac: 0.15,
                reduction: Reduction::None,
                per_row_up: true,
                logit_scale: [1.0, 20.0][v],
            };
            let mut case = make_case(&mut rng, rows, classes, o);
            let c = classes;
            case.logits[3 * c + c / 2] = f32::NAN;
            case.logits[5 * c] = f32::INFINITY;
            case.logits[10 * c] = f32::NEG_INFINITY;
            for level in levels() {
                let full = three_calls(&case, &be, level).unwrap();
                for k in 1..9 {
                    let mut w = case.clone();
                    w.rows = rows - k;
                    w.logits = case.logits[k * c..].to_vec();
                    w.upstream = case.upstream.as_ref().map(|u| u[k..].to_vec());
                    if let Tg::Classes(t) = &case.targets {
                        w.targets = Tg::Classes(t[k..].to_vec());
                    }
                    let part = three_calls(&w, &be, level).unwrap();
                    kit::same_bits_f64(&full.0[k..], &part.0)
                        .and(kit::same_bits_f32(&full.1[k * c..], &part.1))
                        .and(kit::same_bits_f64(&full.2[k..], &part.2))
                        .and(kit::same_bits_f32(&full.4[k * c..], &part.4))
                        .unwrap_or_else(|e| {
                            panic!("{classes} classes {o:?} {level:?} window {k}..: {e}")
                        });
                }
            }
        }
    }
}

/// Many short rows spread over several tasks are bit-identical for 1, 2 and 3 threads.
#[test]
fn many_short_rows_are_bit_identical_across_thread_counts() {
    let mut rng = Rng::new(13);
    for &(rows, classes) in &[(160_000usize, 7usize), (9000, 120)] {
        for &(weights, probs, red) in &[
            (false, false, Reduction::Mean),
            (true, false, Reduction::None),
            (true, true, Reduction::None),
        ] {
            assert_bit_identical_across_threads(&mut rng, rows, classes, weights, probs, red);
        }
    }
}

/// The automatic streaming-store choice: only for large gradients whose rows start on 64-byte
/// lines, and the bits are the same as with ordinary stores (forced off) in every case.
#[test]
fn automatic_streaming_stores_only_for_aligned_rows_and_bit_identical() {
    let mut rng = Rng::new(5);
    let (rows, classes) = (256usize, 16_384usize); // 2^22 logits, rows of whole lines
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| (2.0 * normal(&mut rng)) as f32)
        .collect();
    let t: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let mut buf = vec![0.0f32; rows * classes + 32];
    let lead = (64 - buf.as_ptr() as usize % 64) % 64 / 4;
    let auto = CpuBackend::with_threads(1);
    let off = CpuBackend::with_threads(1).with_streaming_stores(false);
    let on = CpuBackend::with_threads(1).with_streaming_stores(true);
    let mut run = |be: &CpuBackend, start: usize, c: usize, n: usize| {
        let g = &mut buf[start..start + n * c];
        let streams = be.streams_gradient(g, n, c);
        let l = be
            .cross_entropy(
                &cfg,
                Input::matrix(&logits[..n * c], n, c).with_grad(g),
                &t[..n],
            )
            .map(Loss::into_values)
            .unwrap();
        (streams, l, g.to_vec())
    };
    // Aligned rows: automatic streaming, same bits as ordinary stores.
    let (s_auto, l_auto, g_auto) = run(&auto, lead, classes, rows);
    let (s_off, l_off, g_off) = run(&off, lead, classes, rows);
    assert!(s_auto && !s_off);
    let auto_run = (l_auto, g_auto);
    assert_same_run(&auto_run, &(l_off, g_off), "streaming off");
    // A gradient 4 bytes past a line: rows straddle lines, no automatic streaming; forced
    // streaming still gives the same bits.
    let (s_mis, l_mis, g_mis) = run(&auto, lead + 1, classes, rows);
    let (s_on, l_on, g_on) = run(&on, lead + 1, classes, rows);
    assert!(!s_mis && s_on);
    assert_same_run(&auto_run, &(l_mis, g_mis), "misaligned");
    assert_same_run(&auto_run, &(l_on, g_on), "misaligned, streaming forced on");
    // Rows not a multiple of 16 floats, or below 2^22 logits: no automatic streaming.
    assert!(!auto.streams_gradient(&buf[lead..], rows, classes - 8));
    assert!(!auto.streams_gradient(&buf[lead..lead + 16 * classes], 16, classes));
}

/// Few long aligned rows (split across threads) with the automatic streaming stores: the same
/// bits for 1, 2 and 3 threads and with streaming forced off.
#[test]
fn automatic_streaming_stores_on_long_rows_split_across_threads() {
    let mut rng = Rng::new(9);
    let (rows, classes) = (4usize, 1usize << 20);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| (3.0 * normal(&mut rng)) as f32)
        .collect();
    let t: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let cfg = CrossEntropy::new()
        .with_label_smoothing(0.1)
        .with_class_weights((0..classes).map(|_| 0.5 + rng.unit()).collect());
    let mut buf = vec![0.0f32; rows * classes + 16];
    let lead = (64 - buf.as_ptr() as usize % 64) % 64 / 4;
    let mut first: Option<(Vec<f64>, Vec<f32>)> = None;
    for (threads, forced_off) in [(1, false), (2, false), (3, false), (3, true)] {
        let mut be = CpuBackend::with_threads(threads);
        if forced_off {
            be = be.with_streaming_stores(false);
        }
        let g = &mut buf[lead..lead + rows * classes];
        assert_eq!(be.streams_gradient(g, rows, classes), !forced_off);
        let l = be
            .cross_entropy(
                &cfg,
                Input::matrix(&logits, rows, classes).with_grad(&mut g[..]),
                &t,
            )
            .map(Loss::into_values)
            .unwrap();
        let got = (l, g.to_vec());
        match &first {
            None => first = Some(got),
            Some(want) => assert_same_run(
                want,
                &got,
                &format!("threads={threads} forced_off={forced_off}"),
            ),
        }
        g.fill(f32::NAN);
    }
}

/// Long rows (one chunk, several chunks, a tail of 1 to 7 columns, rows split across threads):
/// the AVX-512 level runs pass 1 built with AVX-512 VL (the same AVX2 intrinsics in EVEX
/// encoding), so it gives the AVX2 level's bits for losses and gradients, separate-buffer, in
/// place and without gradient, with weights, probability targets, confident rows, NaN, `+inf`
/// and ignored rows, per-row upstream, 1 and 2 threads.
#[test]
fn long_rows_avx512_build_is_bit_identical_to_the_avx2_build() {
    if !SimdLevel::Avx512.is_available() {
        eprintln!("SKIPPED: no AVX-512 on this CPU");
        return;
    }
    let mut rng = Rng::new(0xe7e8);
    let shapes = [
        (37usize, 1001usize),
        (9, 2085),
        (6, 4103),
        (3, 33_007),
        (2, 150_001),
    ];
    for (v, &(rows, classes)) in shapes.iter().enumerate() {
        for probs in [false, true] {
            let o = Opts {
                eps: [0.1, 0.0][v % 2],
                weights: v % 2 == 0,
                probs,
                ignore_frac: if probs { 0.0 } else { 0.15 },
                reduction: [Reduction::None, Reduction::Mean][v % 2],
                per_row_up: v % 2 == 0,
                logit_scale: [1.0, 8.0, 40.0][v % 3],
            };
            let mut case = make_case(&mut rng, rows, classes, o);
            let c = classes;
            if rows > 5 {
                case.logits[3 * c + c / 2] = f32::NAN;
                case.logits[5 * c + 7] = f32::INFINITY;
            }
            // A confident row: the maximum's block is summed again (issue 14).
            case.logits[c + c / 3] += 60.0;
            for threads in [1, 2] {
                let be = CpuBackend::with_threads(threads);
                let run = |level: SimdLevel| three_calls(&case, &be, level).unwrap();
                let (a, e) = (run(SimdLevel::Avx2Fma), run(SimdLevel::Avx512));
                kit::same_bits_f64(&a.0, &e.0)
                    .and(kit::same_bits_f32(&a.1, &e.1))
                    .and(kit::same_bits_f64(&a.2, &e.2))
                    .and(kit::same_bits_f64(&a.3, &e.3))
                    .and(kit::same_bits_f32(&a.4, &e.4))
                    .unwrap_or_else(|err| {
                        panic!("{rows}x{classes} {o:?}, {threads} thread(s): the AVX-512 build differs from the AVX2 build: {err}")
                    });
            }
        }
    }
}
