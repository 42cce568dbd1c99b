//! The reusable conformance suite: every check, against any backend, with one call
//! ([`run_all`]) or one macro ([`conformance_tests!`](crate::conformance_tests)).
//!
//! Checks:
//! - `torch`: the PyTorch cases against PyTorch's float64 results (`TOL-1` for f64 data; for
//!   f32 data `TOL-2`'s rule for the PyTorch cases, `Tolerance::F32_TORCH_CASES`, since the
//!   inputs are rounded);
//! - `torch` (second half) and `random`: the backend against the f64 reference evaluated on the
//!   same (rounded) inputs (`TOL-2`), with an upstream gradient of 1, a scalar upstream
//!   gradient, per-element upstream gradients (reduction `none`), forward-only calls and the
//!   in-place cross-entropy;
//! - `errors`: bad input gives the same typed error as the reference, no panic, and no buffer
//!   written.

use crate::cases::{CaseError, CaseFile, Expected, LossCall, Targets};
use crate::random::random_calls;
use crate::runner::{Output, round_inputs, run_call, run_call_with};
use crate::tolerance::Tolerance;
use smoothloss_core::{
    Backend, CeTargets, Element, Input, LossError, Losses, Reduction, ReferenceBackend, Upstream,
};
use std::fmt;

/// The tolerances a backend is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Against PyTorch's expected values in the case file.
    pub torch: Tolerance,
    /// Against the f64 reference on the same inputs.
    pub reference: Tolerance,
}

impl Tolerances {
    /// For `f64` data (the reference itself): `TOL-1` both ways.
    pub const F64: Tolerances = Tolerances {
        torch: Tolerance::REFERENCE,
        reference: Tolerance::REFERENCE,
    };
    /// For `f32` data: `TOL-2`.
    pub const F32: Tolerances = Tolerances {
        torch: Tolerance::F32_TORCH_CASES,
        reference: Tolerance::F32,
    };
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Within tolerance.
    Passed,
    /// Out of tolerance or wrong error; the message says where.
    Failed(String),
    /// The backend or the reader cannot run this case (reported, never counted as passed).
    Unsupported(String),
}

/// One line of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Which check (`torch`, `random`, `errors`, ...).
    pub check: &'static str,
    /// Case id.
    pub id: String,
    /// Outcome.
    pub outcome: Outcome,
}

/// The result of a conformance run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Backend name.
    pub backend: String,
    /// Every check made.
    pub entries: Vec<Entry>,
}

impl Report {
    fn push(&mut self, check: &'static str, id: impl Into<String>, outcome: Outcome) {
        self.entries.push(Entry {
            check,
            id: id.into(),
            outcome,
        });
    }

    /// Number of passed checks.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    /// Number of failed checks.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Number of unsupported cases.
    pub fn unsupported(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Unsupported(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.entries.iter().filter(|e| f(&e.outcome)).count()
    }

    /// True when something was checked and nothing failed or was unsupported.
    pub fn all_passed(&self) -> bool {
        !self.entries.is_empty() && self.failed() == 0 && self.unsupported() == 0
    }

    /// Merges another report into this one.
    pub fn extend(&mut self, other: Report) {
        if self.backend.is_empty() {
            self.backend = other.backend;
        }
        self.entries.extend(other.entries);
    }

    /// The closing line: `N passed, M failed, K unsupported`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} unsupported",
            self.passed(),
            self.failed(),
            self.unsupported()
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            match &e.outcome {
                Outcome::Passed => {}
                Outcome::Failed(m) => {
                    writeln!(f, "FAIL [{}] {} {}: {m}", self.backend, e.check, e.id)?
                }
                Outcome::Unsupported(m) => writeln!(
                    f,
                    "UNSUPPORTED [{}] {} {}: {m}",
                    self.backend, e.check, e.id
                )?,
            }
        }
        write!(f, "{}", self.summary())
    }
}

/// The scales of `TOL-2`'s absolute term for one call: the call's largest weight (class
/// weights, `pos_weight`; 1 without) for the loss values, times the item's upstream gradient
/// for the gradient entries of that item (`width` entries per item); and, for a cross-entropy
/// with a softcap, each value's sensitivity to the capped logits' rounding (`TOL-2`'s softcap
/// terms, [`softcap::sensitivities`]).
#[derive(Debug, Clone)]
pub struct AbsScale<'a> {
    /// The largest weight of the call (1 without weights).
    pub weight: f64,
    /// The call's upstream gradient.
    pub upstream: Upstream<'a>,
    /// Gradient entries per item (classes, 4 box coordinates or 1).
    pub width: usize,
    /// Per loss value: how far it moves per unit of relative error in every capped logit
    /// (empty without a softcap).
    pub loss_softcap: Vec<f64>,
    /// Per gradient entry: the same for the gradient (empty without a softcap).
    pub grad_softcap: Vec<f64>,
}

impl<'a> AbsScale<'a> {
    /// The largest class weight (1 without weights): the absolute scale of a call's values.
    pub fn of_weights(w: Option<&[f64]>) -> f64 {
        w.map_or(1.0, |w| w.iter().fold(0.0_f64, |m, v| m.max(v.abs())))
    }

    /// The scales of `call` under `upstream`.
    pub fn of(call: &LossCall, upstream: Upstream<'a>) -> Self {
        let wmax = |w: &Option<Vec<f64>>| {
            w.as_deref()
                .map_or(1.0, |w| w.iter().fold(0.0_f64, |m, v| m.max(v.abs())))
        };
        let (weight, width) = match call {
            LossCall::CrossEntropy { cfg, classes, .. } => (wmax(&cfg.class_weights), *classes),
            LossCall::Bce { cfg, .. } => (wmax(&cfg.pos_weight).max(1.0), 1),
            LossCall::BoxLoss { .. } => (1.0, 4),
            LossCall::Detection(d) => (1.0, d.width()),
            _ => (1.0, 1),
        };
        let (loss_softcap, grad_softcap) = softcap::sensitivities(call, upstream);
        Self {
            weight,
            upstream,
            width: width.max(1),
            loss_softcap,
            grad_softcap,
        }
    }

    /// The scale of loss value `k`.
    pub fn loss(&self, _k: usize) -> f64 {
        self.weight
    }

    /// The scale of gradient entry `k`.
    pub fn grad(&self, k: usize) -> f64 {
        let u = match self.upstream {
            Upstream::Scalar(s) => s,
            Upstream::PerElement(u) => u.get(k / self.width).copied().unwrap_or(1.0),
        };
        self.weight * u.abs()
    }

    /// The softcap sensitivity of loss value `k` (0 without a softcap).
    pub fn loss_softcap(&self, k: usize) -> f64 {
        self.loss_softcap.get(k).copied().unwrap_or(0.0)
    }

    /// The softcap sensitivity of gradient entry `k` (0 without a softcap).
    pub fn grad_softcap(&self, k: usize) -> f64 {
        self.grad_softcap.get(k).copied().unwrap_or(0.0)
    }
}

fn compare(
    out: &Output,
    want_loss: &[f64],
    want_grad: Option<&[f64]>,
    tol: &Tolerance,
    sc: &AbsScale<'_>,
) -> Outcome {
    // Lengths first: a length mismatch is not a value mismatch.
    let lengths = [
        ("loss", Some(out.loss.len()), Some(want_loss.len())),
        (
            "grad",
            out.grad.as_ref().map(Vec::len),
            want_grad.map(<[f64]>::len),
        ),
    ];
    for (what, got, want) in lengths {
        if let (Some(g), Some(w)) = (got, want)
            && g != w
        {
            return Outcome::Failed(format!("{what} length: got {g} values, want {w}"));
        }
    }
    if let Err(m) =
        tol.check_scaled_plus(&out.loss, want_loss, |k| sc.loss(k), |k| sc.loss_softcap(k))
    {
        return Outcome::Failed(format!("loss {m}"));
    }
    if let Some(wg) = want_grad {
        match &out.grad {
            None => return Outcome::Failed("no gradient returned".into()),
            Some(g) => {
                if let Err(m) = tol.check_scaled_plus(g, wg, |k| sc.grad(k), |k| sc.grad_softcap(k))
                {
                    return Outcome::Failed(format!("grad {m}"));
                }
            }
        }
    }
    Outcome::Passed
}

fn outcome_of_error(e: LossError) -> Outcome {
    match e {
        LossError::Unsupported { .. } => Outcome::Unsupported(e.to_string()),
        other => Outcome::Failed(format!("error: {other}")),
    }
}

/// Runs the cases of `file` (filtered by `SMOOTHLOSS_CASES`) on `backend` and compares with the
/// expected values of the file, and with the reference on the same rounded inputs.
pub fn case_file<T: Element, B: Backend<T> + ?Sized>(
    backend: &B,
    file: &CaseFile,
    tol: &Tolerances,
) -> Report {
    let mut report = Report {
        backend: format!("{}/{}", backend.name(), T::NAME),
        entries: Vec::new(),
    };
    let filter = crate::case_filter();
    for case in file.filtered(filter.as_deref()) {
        if case.loss == "linear_cross_entropy" {
            let outcome = linear_ce::check_case::<T, B>(backend, case, tol);
            report.push("torch", &case.id, outcome);
            continue;
        }
        let (call, expected): (LossCall, Expected) = match case.decode() {
            Ok(d) => d,
            Err(CaseError::Unsupported { what, .. }) => {
                report.push("torch", &case.id, Outcome::Unsupported(what));
                continue;
            }
            Err(e) => {
                report.push("torch", &case.id, Outcome::Failed(e.to_string()));
                continue;
            }
        };
        let out = match run_call::<T, B>(backend, &call) {
            Ok(o) => o,
            Err(e) => {
                report.push("torch", &case.id, outcome_of_error(e));
                continue;
            }
        };
        // One entry per case: first against PyTorch's values, then against the f64 reference
        // on the same inputs rounded to T; the first failure is the one reported.
        let sc = AbsScale::of(&call, Upstream::ONE);
        let mut outcome = compare(
            &out,
            &expected.loss,
            expected.grad.as_deref(),
            &tol.torch,
            &sc,
        );
        if outcome == Outcome::Passed {
            let rounded = round_inputs::<T>(&call);
            outcome = match run_call::<f64, _>(&ReferenceBackend, &rounded) {
                Ok(want) => {
                    match compare(&out, &want.loss, want.grad.as_deref(), &tol.reference, &sc) {
                        Outcome::Failed(m) => {
                            Outcome::Failed(format!("against the reference: {m}"))
                        }
                        other => other,
                    }
                }
                Err(e) => outcome_of_error(e),
            };
        }
        report.push("torch", &case.id, outcome);
    }
    report
}

/// The bundled PyTorch cases.
pub fn torch_cases<T: Element, B: Backend<T> + ?Sized>(backend: &B, tol: &Tolerances) -> Report {
    case_file(backend, &crate::torch_cases(), tol)
}

/// The bundled dense-detector cases (`spec/cases/detection_dense.json`).
pub fn detection_cases<T: Element, B: Backend<T> + ?Sized>(
    backend: &B,
    tol: &Tolerances,
) -> Report {
    case_file(backend, &crate::detection_dense_cases(), tol)
}

/// The bundled PyTorch cases of the cross-entropy's LLM options (`CE-10` .. `CE-13`).
pub fn llm_ce_cases<T: Element, B: Backend<T> + ?Sized>(backend: &B, tol: &Tolerances) -> Report {
    case_file(backend, &crate::llm_ce_cases(), tol)
}

/// The bundled detection box-loss cases (`spec/cases/detection_boxes.json`).
pub fn detection_boxes_cases<T: Element, B: Backend<T> + ?Sized>(
    backend: &B,
    tol: &Tolerances,
) -> Report {
    case_file(backend, &crate::detection_boxes_cases(), tol)
}

fn per_element_upstream(call: &LossCall) -> Option<Vec<f64>> {
    let count = match call {
        LossCall::Detection(d) if d.reduction() == Some(Reduction::None) => d.items(),
        LossCall::CrossEntropy { cfg, rows, .. } if cfg.reduction == Reduction::None => *rows,
        LossCall::BoxLoss { cfg, pred, .. } if cfg.reduction == Reduction::None => pred.len() / 4,
        LossCall::SmoothL1 { cfg, pred, .. } if cfg.reduction == Reduction::None => pred.len(),
        LossCall::Huber { cfg, pred, .. } if cfg.reduction == Reduction::None => pred.len(),
        LossCall::Bce { cfg, logits, .. } if cfg.reduction == Reduction::None => logits.len(),
        LossCall::Focal { cfg, logits, .. } if cfg.reduction == Reduction::None => logits.len(),
        _ => return None,
    };
    Some(
        (0..count)
            .map(|i| 0.5 + (i % 5) as f64 * 0.75 - 1.0)
            .collect(),
    )
}

/// Random inputs for every loss and option against the reference (`TOL-2`), with several
/// upstream gradients, forward-only calls and the in-place cross-entropy.
pub fn random_cases<T: Element, B: Backend<T> + ?Sized>(backend: &B, tol: &Tolerance) -> Report {
    let mut report = Report {
        backend: format!("{}/{}", backend.name(), T::NAME),
        entries: Vec::new(),
    };
    let filter = crate::case_filter();
    let calls = random_calls(0x5eed_1e55)
        .into_iter()
        .chain(crate::cases::detection::random_calls(0xd3_75e));
    for (id, call) in calls {
        if filter.as_deref().is_some_and(|f| !id.contains(f)) {
            continue;
        }
        let rounded = round_inputs::<T>(&call);
        let per_elem = per_element_upstream(&call);
        let mut upstreams = vec![("up1", Upstream::ONE), ("up-2.5", Upstream::Scalar(-2.5))];
        if let Some(u) = per_elem.as_deref() {
            upstreams.push(("up-per-element", Upstream::PerElement(u)));
        }
        let is_iou = matches!(
            call,
            LossCall::BoxIou { .. }
                | LossCall::Detection(crate::cases::DetectionCall::BatchProbIou { .. })
        );
        for (uname, up) in upstreams {
            if is_iou && uname != "up1" {
                continue;
            }
            let cid = format!("{id}/{uname}");
            let want = match run_call_with::<f64, _>(&ReferenceBackend, &rounded, up, true) {
                Ok(w) => w,
                Err(e) => {
                    report.push(
                        "random",
                        cid,
                        Outcome::Failed(format!("reference refused: {e}")),
                    );
                    continue;
                }
            };
            let outcome = match run_call_with::<T, B>(backend, &call, up, true) {
                Ok(got) => compare(
                    &got,
                    &want.loss,
                    want.grad.as_deref(),
                    tol,
                    &AbsScale::of(&call, up),
                ),
                Err(e) => outcome_of_error(e),
            };
            report.push("random", cid, outcome);
        }
        if is_iou {
            continue;
        }
        // Forward only: same loss values.
        let want = run_call_with::<f64, _>(&ReferenceBackend, &rounded, Upstream::ONE, false);
        let got = run_call_with::<T, B>(backend, &call, Upstream::ONE, false);
        let outcome = match (got, want) {
            (Ok(g), Ok(w)) => compare(&g, &w.loss, None, tol, &AbsScale::of(&call, Upstream::ONE)),
            (Err(e), _) => outcome_of_error(e),
            (_, Err(e)) => Outcome::Failed(format!("reference refused: {e}")),
        };
        report.push("random", format!("{id}/forward-only"), outcome);
        // In-place cross-entropy: the gradient lands in the logits buffer.
        if let LossCall::CrossEntropy {
            cfg,
            logits,
            rows,
            classes,
            targets,
        } = &call
        {
            let mut z: Vec<T> = logits.iter().map(|&v| T::from_f64(v)).collect();
            let probs: Vec<T>;
            let t = match targets {
                Targets::Classes(c) => CeTargets::Classes(c),
                Targets::Probs(p) => {
                    probs = p.iter().map(|&v| T::from_f64(v)).collect();
                    CeTargets::Probs(&probs[..])
                }
            };
            let want = run_call::<f64, _>(&ReferenceBackend, &rounded);
            let got =
                backend.cross_entropy(cfg, Input::in_place(&mut z).shaped(*rows, *classes), t);
            let outcome = match (got, want) {
                (Ok(loss), Ok(w)) => {
                    let out = Output {
                        loss: loss.into_values(),
                        grad: Some(z.iter().map(|v| v.to_f64()).collect()),
                    };
                    let sc = AbsScale::of(&call, Upstream::ONE);
                    compare(&out, &w.loss, w.grad.as_deref(), tol, &sc)
                }
                (Err(e), _) => outcome_of_error(e),
                (_, Err(e)) => Outcome::Failed(format!("reference refused: {e}")),
            };
            report.push("random", format!("{id}/in-place"), outcome);
        }
    }
    report
}

mod errors;
pub mod linear_ce;
pub mod softcap;
pub use errors::{error_cases, untouched_on_error};
pub use linear_ce::linear_ce_cases;

/// Every check against `backend`.
pub fn run_all<T: Element, B: Backend<T> + ?Sized>(backend: &B, tol: &Tolerances) -> Report
where
    ReferenceBackend: Backend<T>,
{
    let mut r = torch_cases::<T, B>(backend, tol);
    r.extend(detection_cases::<T, B>(backend, tol));
    r.extend(llm_ce_cases::<T, B>(backend, tol));
    r.extend(detection_boxes_cases::<T, B>(backend, tol));
    r.extend(random_cases::<T, B>(backend, &tol.reference));
    r.extend(error_cases::<T, B>(backend));
    r.extend(linear_ce_cases::<T, B>(backend, tol));
    r
}

/// Generates `#[test]` functions running the conformance suite against a backend:
///
/// ```rust,test_harness
/// smoothloss_spec::conformance_tests!(smoothloss_core::ReferenceBackend, f64,
///     smoothloss_spec::conformance::Tolerances::F64);
/// // A GPU backend on machines without a GPU: attributes go in `attrs [...]`.
/// mod gpu {
///     fn my_cuda_backend() -> smoothloss_core::ReferenceBackend { smoothloss_core::ReferenceBackend }
///     smoothloss_spec::conformance_tests!(attrs [#[ignore = "needs a CUDA device"]],
///         my_cuda_backend(), f32, smoothloss_spec::conformance::Tolerances::F32);
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (attrs [$(#[$m:meta])*], $backend:expr, $elem:ty, $tol:expr) => {
        $(#[$m])*
        #[test]
        fn conformance_torch_cases() {
            let backend = $backend;
            let r = $crate::conformance::torch_cases::<$elem, _>(&backend, &$tol);
            assert!(r.all_passed(), "{r}");
        }
        $(#[$m])*
        #[test]
        fn conformance_detection_cases() {
            let backend = $backend;
            let r = $crate::conformance::detection_cases::<$elem, _>(&backend, &$tol);
            assert!(r.all_passed(), "{r}");
        }
        $(#[$m])*
        #[test]
        fn conformance_llm_ce_cases() {
            let backend = $backend;
            let r = $crate::conformance::llm_ce_cases::<$elem, _>(&backend, &$tol);
            assert!(r.all_passed(), "{r}");
        }
        $(#[$m])*
        #[test]
        fn conformance_detection_boxes_cases() {
            let backend = $backend;
            let r = $crate::conformance::detection_boxes_cases::<$elem, _>(&backend, &$tol);
            assert!(r.all_passed(), "{r}");
        }
        $(#[$m])*
        #[test]
        fn conformance_random_cases() {
            let backend = $backend;
            let r = $crate::conformance::random_cases::<$elem, _>(&backend, &$tol.reference);
            assert!(r.all_passed(), "{r}");
        }
        $(#[$m])*
        #[test]
        fn conformance_linear_ce_cases() {
            let backend = $backend;
            let r = $crate::conformance::linear_ce_cases::<$elem, _>(&backend, &$tol);
            assert!(r.all_passed(), "{r}");
        }
        $(#[$m])*
        #[test]
        fn conformance_errors() {
            let backend = $backend;
            let r = $crate::conformance::error_cases::<$elem, _>(&backend);
            assert!(r.all_passed(), "{r}");
        }
    };
    ($backend:expr, $elem:ty, $tol:expr) => {
        $crate::conformance_tests!(attrs [], $backend, $elem, $tol);
    };
}
