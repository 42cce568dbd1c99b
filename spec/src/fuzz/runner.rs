//! The campaign's runner: proptest runs of [`fuzz_call`] (seeds, call budgets, the time
//! budget of `cargo xtask fuzz --minutes N`), the kept [`regressions`] first, and the
//! minimisation of a failing call.

use super::generators::{call_reduction, fuzz_call};
use super::{FuzzCall, REFUSED, Up, VALUES, regressions};
use crate::cases::{LossCall, Targets};
use proptest::test_runner::{
    Config, FileFailurePersistence, RngSeed, TestCaseError, TestError, TestRunner,
};
use smoothloss_core::Reduction;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The proptest configuration of run `run`: `PROPTEST_CASES` calls (default `default_cases`),
/// failing seeds kept next to `source_file` (`<test>.proptest-regressions`). With
/// `SMOOTHLOSS_FUZZ_SEED=S` the runs are reproducible (run `k` uses seed `S + k`; CI's short run
/// sets it); without it each run draws a fresh seed.
fn config(source_file: &'static str, default_cases: u32, run: u64) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let rng_seed = std::env::var("SMOOTHLOSS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(RngSeed::Random, |s| RngSeed::Fixed(s.wrapping_add(run)));
    Config {
        cases,
        rng_seed,
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// `fc` without item `i` (a CE row, a box pair, an element), or `None` when it has no item
/// `i` (wrong lengths included: those stay as generated).
fn without(fc: &FuzzCall, i: usize) -> Option<FuzzCall> {
    fn cut(v: &mut Vec<f64>, i: usize, w: usize) -> Option<()> {
        if (i + 1) * w > v.len() {
            return None;
        }
        v.drain(i * w..(i + 1) * w);
        Some(())
    }
    let mut out = fc.clone();
    let mut items = 0;
    match &mut out.call {
        LossCall::Detection(_) => return None,
        LossCall::CrossEntropy {
            logits,
            rows,
            classes,
            targets,
            ..
        } => {
            cut(logits, i, *classes)?;
            match targets {
                Targets::Classes(t) if i < t.len() => {
                    t.remove(i);
                }
                Targets::Probs(p) => cut(p, i, *classes)?,
                Targets::Classes(_) => return None,
            }
            *rows -= 1;
            items = 1;
        }
        LossCall::BoxLoss { pred, target, .. } => {
            cut(pred, i, 4)?;
            cut(target, i, 4)?;
            items = 1;
        }
        LossCall::BoxIou { boxes1, boxes2, .. } => {
            let n1 = boxes1.len() / 4;
            if i < n1 {
                cut(boxes1, i, 4)?;
            } else {
                cut(boxes2, i - n1, 4)?;
            }
        }
        LossCall::SmoothL1 { pred, target, .. } | LossCall::Huber { pred, target, .. } => {
            cut(pred, i, 1)?;
            cut(target, i, 1)?;
            items = 1;
        }
        LossCall::Bce {
            logits,
            targets,
            cfg,
        } => {
            if cfg.pos_weight.as_ref().is_some_and(|w| w.len() > 1) {
                let w = cfg.pos_weight.as_mut().map(|w| cut(w, i, 1));
                w.flatten()?;
            }
            cut(logits, i, 1)?;
            cut(targets, i, 1)?;
            items = 1;
        }
        LossCall::Focal {
            logits, targets, ..
        } => {
            cut(logits, i, 1)?;
            cut(targets, i, 1)?;
            items = 1;
        }
    }
    if let Up::PerElement(u) = &mut out.up
        && items == 1
        && call_reduction(&fc.call) == Some(Reduction::None)
    {
        cut(u, i, 1)?;
    }
    Some(out)
}

/// Removes items from a failing call while it still fails (proptest's shrinking cannot see
/// through the dependent sizes of the generators).
pub fn minimise(fc: FuzzCall, check: &impl Fn(&FuzzCall) -> Result<(), String>) -> FuzzCall {
    let mut best = fc;
    let mut i = 0;
    while let Some(smaller) = without(&best, i) {
        if check(&smaller).is_err() {
            best = smaller;
        } else {
            i += 1;
        }
    }
    best
}

/// Runs the campaign: the [`regressions`], then proptest runs of [`fuzz_call`] through `check`
/// (all the backends of one test), repeated with fresh seeds until `SMOOTHLOSS_FUZZ_SECONDS`
/// have passed when that is set. Panics with the minimised failing call.
pub fn campaign(
    label: &str,
    source_file: &'static str,
    default_cases: u32,
    check: impl Fn(&FuzzCall) -> Result<(), String>,
) {
    for (id, fc) in regressions() {
        if let Err(e) = check(&fc) {
            panic!("{label}: regression {id}: {e}\n{fc:?}");
        }
    }
    let budget = std::env::var("SMOOTHLOSS_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let start = Instant::now();
    let mut runs = 0u64;
    loop {
        let cfg = config(source_file, default_cases, runs);
        let cases = cfg.cases;
        let mut runner = TestRunner::new(cfg);
        let result = runner.run(&fuzz_call(), |fc| check(&fc).map_err(TestCaseError::fail));
        runs += 1;
        match result {
            Ok(()) => {}
            Err(TestError::Fail(_, fc)) => {
                let fc = minimise(fc, &check);
                let why = check(&fc).err().unwrap_or_default();
                panic!("{label}: fuzz failure (minimised, run {runs}): {why}\n{fc:?}")
            }
            Err(e) => panic!("{label}: {e}"),
        }
        if budget.is_none_or(|b| start.elapsed() >= b) {
            eprintln!(
                "{label}: {runs} run(s) of {cases} calls in {:.1} s, no failure ({} checks of \
                 values, {} of errors)",
                start.elapsed().as_secs_f64(),
                VALUES.load(Ordering::Relaxed),
                REFUSED.load(Ordering::Relaxed)
            );
            break;
        }
    }
}
