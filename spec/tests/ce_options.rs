//! The cross-entropy's LLM options on the f64 reference (`CE-10` .. `CE-15`): gradients against
//! central finite differences, micro-batch split invariance with a given denominator, the
//! per-row upstream gradient under `none` with every option, the per-row outputs and the
//! z-loss apart, and the validation of each option. Expected values come from finite
//! differences, from the written formulas evaluated here independently (plain `f64` loops), or
//! from identities between calls; PyTorch's values are `spec/cases/llm_ce.json`
//! (`tests/torch_cases.rs`).

use proptest::prelude::*;
use smoothloss_core::{
    CeRowOutputs, CeTargets, CrossEntropy, Input, Loss, LossError, Losses, Reduction,
    ReferenceBackend, Upstream,
};
use smoothloss_spec::covers;

/// Central finite differences of `f` at `x` (step `1e-6` relative).
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

fn value(cfg: &CrossEntropy, z: &[f64], n: usize, c: usize, t: CeTargets<'_, f64>) -> f64 {
    ReferenceBackend
        .cross_entropy(cfg, Input::matrix(z, n, c), t)
        .unwrap()
        .value()
}

fn grad(cfg: &CrossEntropy, z: &[f64], n: usize, c: usize, t: CeTargets<'_, f64>) -> Vec<f64> {
    let mut g = vec![0.0; z.len()];
    ReferenceBackend
        .cross_entropy(cfg, Input::matrix(z, n, c).with_grad(&mut g), t)
        .unwrap();
    g
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0_f64, |m, w| m.max(w.abs()));
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        prop_assert!((g - w).abs() <= tol * scale, "entry {k}: got {g}, want {w}");
    }
    Ok(())
}

/// Every option at once, from proptest's choices.
fn options(
    n: usize,
    cap: Option<f64>,
    zl: f64,
    rw: Option<Vec<f64>>,
    ls: f64,
    weighted: bool,
    c: usize,
) -> CrossEntropy {
    let mut cfg = CrossEntropy::new().with_label_smoothing(ls).with_z_loss(zl);
    if let Some(cap) = cap {
        cfg = cfg.with_softcap(cap);
    }
    if let Some(r) = rw {
        assert_eq!(r.len(), n);
        cfg = cfg.with_row_weights(r);
    }
    if weighted {
        cfg = cfg.with_class_weights((0..c).map(|j| 0.5 + (j % 3) as f64 * 0.4).collect());
    }
    cfg
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// CE-10, CE-11, CE-12 (with CE-3, CE-4, CE-7): the gradient of the sum / mean / per-row
    /// sum equals central differences of the value, with every option on and hard targets.
    #[test]
    fn gradient_matches_finite_differences_with_every_option(
        (n, c, z, y) in (1usize..5, 1usize..7).prop_flat_map(|(n, c)| (
            Just(n), Just(c),
            prop::collection::vec(-6.0f64..6.0, n * c),
            prop::collection::vec(0..c as i64, n),
        )),
        cap in prop::option::of(0.5f64..10.0),
        zl in prop::sample::select(vec![0.0, 1e-3, 0.2]),
        rw in prop::option::of(prop::collection::vec(0.0f64..2.0, 4)),
        ls in prop::sample::select(vec![0.0, 0.1]),
        weighted in any::<bool>(),
        red in prop::sample::select(vec![Reduction::None, Reduction::Sum, Reduction::Mean]),
    ) {
        covers!("CE-10", "CE-11", "CE-12");
        let rw = rw.map(|r| r[..n].to_vec());
        let cfg = options(n, cap, zl, rw, ls, weighted, c).with_reduction(red);
        let g = grad(&cfg, &z, n, c, CeTargets::Classes(&y));
        let fd = finite_diff(&z, |z| value(&cfg, z, n, c, CeTargets::Classes(&y)));
        assert_close(&g, &fd, 2e-6)?;
    }

    /// The same with probability targets (CE-6, CE-9 with CE-10 .. CE-12).
    #[test]
    fn gradient_matches_finite_differences_with_probability_targets(
        (n, c, z, q) in (1usize..4, 1usize..6).prop_flat_map(|(n, c)| (
            Just(n), Just(c),
            prop::collection::vec(-6.0f64..6.0, n * c),
            prop::collection::vec(0.0f64..1.0, n * c),
        )),
        cap in prop::option::of(0.5f64..10.0),
        zl in prop::sample::select(vec![0.0, 0.05]),
        rw in prop::option::of(prop::collection::vec(0.1f64..2.0, 3)),
    ) {
        covers!("CE-10", "CE-11", "CE-12");
        let rw = rw.map(|r| r[..n].to_vec());
        let cfg = options(n, cap, zl, rw, 0.1, false, c);
        let g = grad(&cfg, &z, n, c, CeTargets::Probs(&q));
        let fd = finite_diff(&z, |z| value(&cfg, z, n, c, CeTargets::Probs(&q)));
        assert_close(&g, &fd, 2e-6)?;
    }

    /// CE-13: a batch split into micro-batches, each reduced with the whole batch's
    /// denominator (the sum of the micro-batches' `mean_denominator`), gives the whole batch's
    /// `mean` (value to rounding) and exactly its gradient, row by row; with every option.
    #[test]
    fn micro_batches_with_the_summed_denominator_equal_the_whole_batch(
        (n, c, z, y) in (2usize..9, 1usize..6).prop_flat_map(|(n, c)| (
            Just(n), Just(c),
            prop::collection::vec(-5.0f64..5.0, n * c),
            prop::collection::vec(-1..c as i64, n),
        )),
        cut in 1usize..8,
        cap in prop::option::of(1.0f64..8.0),
        zl in prop::sample::select(vec![0.0, 1e-2]),
        row_weighted in any::<bool>(),
    ) {
        covers!("CE-13", "CE-12", "CE-7");
        let cut = cut.min(n - 1);
        // -1 is the ignore index here; keep one row so that the whole `mean` is defined.
        let y: Vec<i64> = y.iter().enumerate().map(|(i, &v)| if i == 0 && v < 0 { 0 } else { v }).collect();
        let rw: Vec<f64> = (0..n).map(|i| if row_weighted { 0.25 * (1 + i % 4) as f64 } else { 1.0 }).collect();
        let base = {
            let b = options(n, cap, zl, None, 0.1, false, c).with_ignore_index(Some(-1));
            if row_weighted { b.with_row_weights(rw.clone()) } else { b }
        };
        let whole_v = value(&base, &z, n, c, CeTargets::Classes(&y));
        let whole_g = grad(&base, &z, n, c, CeTargets::Classes(&y));
        let part_cfg = |lo: usize, hi: usize| {
            let mut p = base.clone();
            if row_weighted {
                p.row_weights = Some(rw[lo..hi].to_vec());
            }
            p
        };
        let parts = [(0, cut), (cut, n)];
        let d: f64 = parts
            .iter()
            .map(|&(lo, hi)| part_cfg(lo, hi).mean_denominator(&CeTargets::<f64>::Classes(&y[lo..hi]), hi - lo))
            .sum();
        let mut v = 0.0;
        let mut g = Vec::new();
        for &(lo, hi) in &parts {
            let cfg = part_cfg(lo, hi).with_denominator(d);
            let zs = &z[lo * c..hi * c];
            v += value(&cfg, zs, hi - lo, c, CeTargets::Classes(&y[lo..hi]));
            g.extend(grad(&cfg, zs, hi - lo, c, CeTargets::Classes(&y[lo..hi])));
        }
        prop_assert!((v - whole_v).abs() <= 1e-14 * whole_v.abs().max(1.0), "{v} vs {whole_v}");
        if !row_weighted {
            // A count is exact in f64, so the scale 1 / D and every gradient bit agree.
            prop_assert_eq!(d, base.mean_denominator(&CeTargets::<f64>::Classes(&y), n));
            prop_assert_eq!(g, whole_g);
        } else {
            assert_close(&g, &whole_g, 1e-15)?;
        }
    }

    /// CE-7 with every option: under `none` with a per-row upstream `u`, the gradient is
    /// `sum_i u_i * grad(row i alone)` and the values are the rows' own values (the per-row
    /// upstream bug of Liger #421, #678, #968, #1298).
    #[test]
    fn per_row_upstream_under_none_is_exact_with_every_option(
        (n, c, z, y) in (1usize..6, 1usize..6).prop_flat_map(|(n, c)| (
            Just(n), Just(c),
            prop::collection::vec(-5.0f64..5.0, n * c),
            prop::collection::vec(-1..c as i64, n),
        )),
        u in prop::collection::vec(-3.0f64..3.0, 5),
        cap in prop::option::of(1.0f64..8.0),
        zl in prop::sample::select(vec![0.0, 0.1]),
        rw in prop::option::of(prop::collection::vec(0.0f64..2.0, 5)),
    ) {
        covers!("CE-7", "CE-10", "CE-11", "CE-12");
        let u = &u[..n];
        let rw = rw.map(|r| r[..n].to_vec());
        let cfg = options(n, cap, zl, rw.clone(), 0.1, true, c)
            .with_ignore_index(Some(-1))
            .with_reduction(Reduction::None);
        let mut g = vec![0.0; n * c];
        let vals = ReferenceBackend
            .cross_entropy(&cfg, Input::matrix(&z, n, c).with_grad(&mut g).with_upstream(Upstream::PerElement(u)), &y)
            .unwrap()
            .into_values();
        for i in 0..n {
            let one = options(1, cap, zl, rw.as_ref().map(|r| vec![r[i]]), 0.1, true, c)
                .with_ignore_index(Some(-1))
                .with_reduction(Reduction::Sum);
            let zi = &z[i * c..(i + 1) * c];
            let mut gi = vec![0.0; c];
            let vi = ReferenceBackend
                .cross_entropy(&one, Input::matrix(zi, 1, c).with_grad(&mut gi).with_upstream(Upstream::Scalar(u[i])), &y[i..i + 1])
                .unwrap()
                .value();
            prop_assert_eq!(vals[i], vi);
            prop_assert_eq!(&g[i * c..(i + 1) * c], &gi[..]);
        }
    }
}

/// The written formulas of CE-10, CE-11, CE-12, CE-14, CE-15 evaluated independently for one
/// call (plain loops in `f64`), against the reference's loss, z-loss, lse and hits.
#[test]
fn reference_matches_the_written_formulas_and_returns_lse_hits_and_z_loss() {
    covers!("CE-10", "CE-11", "CE-12", "CE-14", "CE-15");
    let (n, c) = (4, 5);
    let z: Vec<f64> = (0..n * c)
        .map(|k| ((k * 37 % 23) as f64 - 11.0) * 0.9)
        .collect();
    let y = [2_i64, -100, 3, 0];
    let (cap, s) = (4.0, 0.05);
    let r = vec![1.5, 1.0, 0.5, 2.0];
    let cfg = CrossEntropy::new()
        .with_softcap(cap)
        .with_z_loss(s)
        .with_row_weights(r.clone());
    let (mut lse, mut hit) = (vec![7.0; n], vec![true; n]);
    let out = ReferenceBackend
        .cross_entropy_rows(
            &cfg,
            Input::matrix(&z, n, c),
            &y,
            CeRowOutputs::new().with_lse(&mut lse).with_hits(&mut hit),
        )
        .unwrap();
    let (mut total, mut ztotal, mut d) = (0.0, 0.0, 0.0);
    for i in 0..n {
        if y[i] == -100 {
            assert_eq!((lse[i], hit[i]), (0.0, false), "ignored row {i}");
            continue;
        }
        let zc: Vec<f64> = z[i * c..(i + 1) * c]
            .iter()
            .map(|&v| cap * (v / cap).tanh())
            .collect();
        let m = zc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let l = m + zc.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
        let yi = y[i] as usize;
        assert!((lse[i] - l).abs() < 1e-14, "lse {i}");
        let argmax = (0..c).fold(0, |b, j| if zc[j] > zc[b] { j } else { b });
        assert_eq!(hit[i], argmax == yi, "hit {i}");
        total += r[i] * ((l - zc[yi]) + s * l * l);
        ztotal += r[i] * s * l * l;
        d += r[i];
    }
    let (want, zwant) = (total / d, ztotal / d);
    assert!(
        (out.loss.value() - want).abs() < 1e-14 * want,
        "{} vs {want}",
        out.loss.value()
    );
    assert!((out.z_loss.value() - zwant).abs() < 1e-14 * zwant);
    // This call has both a hit and a miss among its kept rows (the check can fail either way).
    assert_eq!(hit, HITS);
}

/// The hits of the call of `reference_matches_the_written_formulas...` (row 1 is ignored).
const HITS: [bool; 4] = [false, false, true, false];

/// CE-10's non-finite rule: with a softcap a `+inf` logit becomes `cap` (derivative 0), so the
/// row is finite; NaN stays NaN.
#[test]
fn softcap_makes_infinite_logits_finite() {
    covers!("CE-10");
    let cfg = CrossEntropy::new()
        .with_softcap(2.0)
        .with_reduction(Reduction::None);
    let z = [f64::INFINITY, 0.0, f64::NEG_INFINITY, f64::NAN, 1.0, 0.0];
    let mut g = [0.0; 6];
    let v = ReferenceBackend
        .cross_entropy(&cfg, Input::matrix(&z, 2, 3).with_grad(&mut g), &[1, 1])
        .unwrap()
        .into_values();
    // Row 0 is [2, 0, -2] after the cap.
    let e = [2.0f64.exp(), 1.0, (-2.0f64).exp()];
    let want = (e.iter().sum::<f64>()).ln() - 0.0;
    assert!((v[0] - want).abs() < 1e-15, "{} vs {want}", v[0]);
    assert_eq!(g[0], 0.0);
    assert_eq!(g[2], 0.0);
    assert!(g[1] < 0.0 && g[1].is_finite());
    assert!(v[1].is_nan() && g[3..].iter().all(|x| x.is_nan()));
}

/// CE-12's denominator: `mean` with row weights divides by `sum r_i w_{y_i}` over kept rows
/// and is unchanged when every row weight is scaled by a constant.
#[test]
fn row_weighted_mean_is_a_weighted_average() {
    covers!("CE-12", "CE-7");
    let z = [1.0, 2.0, 0.5, -1.0, 0.0, 3.0];
    let y = [0_i64, 2];
    let w = vec![2.0, 1.0, 0.5];
    let per_row = ReferenceBackend
        .cross_entropy(
            &CrossEntropy::new()
                .with_class_weights(w.clone())
                .with_reduction(Reduction::None),
            Input::matrix(&z, 2, 3),
            &y,
        )
        .unwrap()
        .into_values();
    let r = [0.3, 1.7];
    let want = (r[0] * per_row[0] + r[1] * per_row[1]) / (r[0] * w[0] + r[1] * w[2]);
    let cfg = |k: f64| {
        CrossEntropy::new()
            .with_class_weights(w.clone())
            .with_row_weights(r.iter().map(|v| v * k).collect())
    };
    let got = value(&cfg(1.0), &z, 2, 3, CeTargets::Classes(&y));
    assert!((got - want).abs() < 1e-15, "{got} vs {want}");
    let scaled = value(&cfg(8.0), &z, 2, 3, CeTargets::Classes(&y));
    assert!((scaled - want).abs() < 1e-15);
    assert_eq!(
        cfg(1.0).mean_denominator(&CeTargets::<f64>::Classes(&y), 2),
        r[0] * w[0] + r[1] * w[2]
    );
}

/// Each option's validation, in the plan (typed errors, nothing written).
#[test]
fn options_are_validated_in_the_plan() {
    covers!("CE-10", "CE-11", "CE-12", "CE-13", "CE-14");
    let z = [1.0_f64, 2.0, 0.5, -1.0];
    let t = [0_i64, 1];
    let run = |cfg: CrossEntropy| ReferenceBackend.cross_entropy(&cfg, Input::matrix(&z, 2, 2), &t);
    let bad = |r: Result<Loss, LossError>, name: &str| match r {
        Err(LossError::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
        other => panic!("{name}: {other:?}"),
    };
    bad(run(CrossEntropy::new().with_z_loss(-1.0)), "z_loss");
    bad(run(CrossEntropy::new().with_z_loss(f64::NAN)), "z_loss");
    bad(run(CrossEntropy::new().with_softcap(0.0)), "softcap");
    bad(
        run(CrossEntropy::new().with_softcap(f64::INFINITY)),
        "softcap",
    );
    bad(
        run(CrossEntropy::new().with_row_weights(vec![1.0, -0.5])),
        "row_weights",
    );
    bad(
        run(CrossEntropy::new().with_row_weights(vec![1.0, f64::NAN])),
        "row_weights",
    );
    bad(
        run(CrossEntropy::new().with_denominator(0.0)),
        "denominator",
    );
    bad(
        run(CrossEntropy::new().with_denominator(-3.0)),
        "denominator",
    );
    bad(
        run(CrossEntropy::new()
            .with_denominator(2.0)
            .with_reduction(Reduction::Sum)),
        "denominator",
    );
    assert!(matches!(
        run(CrossEntropy::new().with_row_weights(vec![1.0])),
        Err(LossError::ShapeMismatch {
            what: "row_weights",
            expected: 2,
            got: 1
        })
    ));
    // f32 data: the f32 domain of TOL-4.
    let z32 = [1.0_f32, 2.0, 0.5, -1.0];
    let r32 =
        |cfg: CrossEntropy| ReferenceBackend.cross_entropy(&cfg, Input::matrix(&z32, 2, 2), &t);
    bad(r32(CrossEntropy::new().with_softcap(1e-40)), "softcap");
    bad(
        r32(CrossEntropy::new().with_denominator(1e39)),
        "denominator",
    );
    bad(
        r32(CrossEntropy::new().with_row_weights(vec![1.0, 1e39])),
        "row_weights",
    );
    assert!(
        ReferenceBackend
            .cross_entropy(
                &CrossEntropy::new().with_softcap(1e-40),
                Input::matrix(&z, 2, 2),
                &t
            )
            .is_ok()
    );
    // Per-row outputs: lengths, and hits need class targets.
    let mut lse = [0.0; 3];
    assert!(matches!(
        ReferenceBackend.cross_entropy_rows(
            &CrossEntropy::new(),
            Input::matrix(&z, 2, 2),
            &t,
            CeRowOutputs::new().with_lse(&mut lse)
        ),
        Err(LossError::ShapeMismatch {
            what: "lse",
            expected: 2,
            got: 3
        })
    ));
    let mut hit = [false; 2];
    let q = [0.5, 0.5, 0.2, 0.8];
    assert!(matches!(
        ReferenceBackend.cross_entropy_rows(
            &CrossEntropy::new(),
            Input::matrix(&z, 2, 2),
            CeTargets::Probs(&q),
            CeRowOutputs::new().with_hits(&mut hit)
        ),
        Err(LossError::InvalidParameter { name: "hit", .. })
    ));
}
