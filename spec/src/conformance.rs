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
    Backend, BceWithLogits, BoxFormat, BoxLoss, CeTargets, CrossEntropy, Element, Huber, Input,
    Loss, LossError, Losses, Reduction, ReferenceBackend, SigmoidFocal, SmoothL1, Upstream,
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
/// for the gradient entries of that item (`width` entries per item).
#[derive(Debug, Clone, Copy)]
pub struct AbsScale<'a> {
    /// The largest weight of the call (1 without weights).
    pub weight: f64,
    /// The call's upstream gradient.
    pub upstream: Upstream<'a>,
    /// Gradient entries per item (classes, 4 box coordinates or 1).
    pub width: usize,
}

impl<'a> AbsScale<'a> {
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
            _ => (1.0, 1),
        };
        Self {
            weight,
            upstream,
            width: width.max(1),
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
    if let Err(m) = tol.check_scaled(&out.loss, want_loss, |k| sc.loss(k)) {
        return Outcome::Failed(format!("loss {m}"));
    }
    if let Some(wg) = want_grad {
        match &out.grad {
            None => return Outcome::Failed("no gradient returned".into()),
            Some(g) => {
                if let Err(m) = tol.check_scaled(g, wg, |k| sc.grad(k)) {
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

fn per_element_upstream(call: &LossCall) -> Option<Vec<f64>> {
    let count = match call {
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
    for (id, call) in random_calls(0x5eed_1e55) {
        if filter.as_deref().is_some_and(|f| !id.contains(f)) {
            continue;
        }
        let rounded = round_inputs::<T>(&call);
        let per_elem = per_element_upstream(&call);
        let mut upstreams = vec![("up1", Upstream::ONE), ("up-2.5", Upstream::Scalar(-2.5))];
        if let Some(u) = per_elem.as_deref() {
            upstreams.push(("up-per-element", Upstream::PerElement(u)));
        }
        let is_iou = matches!(call, LossCall::BoxIou { .. });
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

type BadCall<'a, B> = Box<dyn Fn(&B) -> Result<Loss, LossError> + 'a>;

/// Inputs shared by the bad calls.
struct BadData<T> {
    z6: Vec<T>,
    boxes: Vec<T>,
    e4: Vec<T>,
}

impl<T: Element> BadData<T> {
    fn new() -> Self {
        let f = |v: f64| T::from_f64(v);
        Self {
            z6: (0..6).map(|i| f(i as f64 * 0.3)).collect(),
            boxes: [0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 2.0, 2.0].map(f).to_vec(),
            e4: [0.1, 0.9, 0.0, 1.0].map(f).to_vec(),
        }
    }
}

/// Bad calls, each run on the backend and on the reference: both must refuse with the same
/// error (the formula IDs whose domains they exercise are in the names).
fn bad_calls<'a, T: Element, B: Backend<T> + ?Sized + 'a>(
    data: &'a BadData<T>,
) -> Vec<(&'static str, BadCall<'a, B>)> {
    let f = |v: f64| T::from_f64(v);
    let z6: &'a [T] = &data.z6;
    let boxes: &'a [T] = &data.boxes;
    let e4: &'a [T] = &data.e4;
    let mut v: Vec<(&'static str, BadCall<'a, B>)> = Vec::new();
    macro_rules! add {
        ($name:expr, |$b:ident| $body:expr) => {{
            v.push(($name, Box::new(move |$b: &B| $body)));
        }};
    }
    let ce = CrossEntropy::default;
    add!("CE-2 logits length does not match N x C", |b| b
        .cross_entropy(&ce(), Input::matrix(&z6[..5], 2, 3), &[0, 1]));
    add!("CE-2 targets length does not match N", |b| b.cross_entropy(
        &ce(),
        Input::matrix(z6, 2, 3),
        &[0]
    ));
    add!("CE-2 empty batch", |b| b.cross_entropy(
        &ce(),
        Input::matrix(&z6[..0], 0, 3),
        &[]
    ));
    add!("CE-2 zero classes", |b| b.cross_entropy(
        &ce(),
        Input::matrix(&z6[..0], 2, 0),
        &[0, 0]
    ));
    add!("CE-2 target out of range (C)", |b| b.cross_entropy(
        &ce(),
        Input::matrix(z6, 2, 3),
        &[0, 3]
    ));
    add!("CE-2 negative target that is not ignore_index", |b| b
        .cross_entropy(&ce(), Input::matrix(z6, 2, 3), &[-1, 0]));
    add!("CE-5 ignore_index None: -100 is out of range", |b| b
        .cross_entropy(
            &ce().with_ignore_index(None),
            Input::matrix(z6, 2, 3),
            &[-100, 0]
        ));
    add!("CE-3 label smoothing above 1", |b| b.cross_entropy(
        &ce().with_label_smoothing(1.5),
        Input::matrix(z6, 2, 3),
        &[0, 1]
    ));
    add!("CE-3 label smoothing negative", |b| b.cross_entropy(
        &ce().with_label_smoothing(-0.1),
        Input::matrix(z6, 2, 3),
        &[0, 1]
    ));
    add!("CE-3 label smoothing NaN", |b| b.cross_entropy(
        &ce().with_label_smoothing(f64::NAN),
        Input::matrix(z6, 2, 3),
        &[0, 1]
    ));
    add!("CE-4 negative class weight", |b| b.cross_entropy(
        &ce().with_class_weights(vec![1.0, -1.0, 1.0]),
        Input::matrix(z6, 2, 3),
        &[0, 1]
    ));
    add!("CE-4 non-finite class weight", |b| b.cross_entropy(
        &ce().with_class_weights(vec![1.0, f64::INFINITY, 1.0]),
        Input::matrix(z6, 2, 3),
        &[0, 1]
    ));
    add!("CE-4 class weights of the wrong length", |b| b
        .cross_entropy(
            &ce().with_class_weights(vec![1.0, 1.0]),
            Input::matrix(z6, 2, 3),
            &[0, 1]
        ));
    add!("CE-6 probability targets of the wrong shape", |b| b
        .cross_entropy(
            &ce(),
            Input::matrix(z6, 2, 3),
            CeTargets::Probs(&z6[..4])
        ));
    add!("CE-7 gradient buffer of the wrong length", |b| {
        let mut g = vec![T::from_f64(0.0); 5];
        b.cross_entropy(&ce(), Input::matrix(z6, 2, 3).with_grad(&mut g), &[0, 1])
    });
    add!("CE-7 per-element upstream with mean", |b| b.cross_entropy(
        &ce(),
        Input::matrix(z6, 2, 3).with_upstream(Upstream::PerElement(&[1.0, 1.0])),
        &[0, 1]
    ));
    add!("CE-7 per-element upstream of the wrong length", |b| b
        .cross_entropy(
            &ce().with_reduction(Reduction::None),
            Input::matrix(z6, 2, 3).with_upstream(Upstream::PerElement(&[1.0])),
            &[0, 1]
        ));
    add!("CE-7 non-finite scalar upstream", |b| b.cross_entropy(
        &ce(),
        Input::matrix(z6, 2, 3).with_upstream(Upstream::Scalar(f64::NAN)),
        &[0, 1]
    ));
    add!("CE-5 in-place with target out of range", |b| {
        let mut z = z6.to_vec();
        b.cross_entropy(&ce(), Input::in_place(&mut z).shaped(2, 3), &[0, 7])
    });
    add!("CE-6 probability targets without the logits' shape", |b| b
        .cross_entropy(&ce(), z6, CeTargets::Probs(z6)));
    add!("CE-2 unshaped logits not a multiple of the targets", |b| b
        .cross_entropy(&ce(), &z6[..5], &[0, 1]));
    add!("CE-2 unshaped logits with no targets", |b| b.cross_entropy(
        &ce(),
        z6,
        &[]
    ));
    let bl = BoxLoss::default;
    add!("BOX-1 declared shape is not [N, 4]", |b| b.box_loss(
        &bl(),
        Input::matrix(boxes, 4, 2),
        boxes
    ));
    add!("BOX-1 wrong box width (length not a multiple of 4)", |b| b
        .box_loss(&bl(), &boxes[..7], &boxes[..7]));
    add!("BOX-1 pred and target lengths differ", |b| b.box_loss(
        &bl(),
        boxes,
        &boxes[..4]
    ));
    add!("BOX-10 empty batch", |b| b.box_loss(
        &bl(),
        &boxes[..0],
        &boxes[..0]
    ));
    add!("BOX-3 eps zero", |b| b.box_loss(
        &bl().with_eps(0.0),
        boxes,
        boxes
    ));
    add!("BOX-3 eps NaN", |b| b.box_loss(
        &bl().with_eps(f64::NAN),
        boxes,
        boxes
    ));
    add!("BOX-9 threshold alpha outside [0, 1]", |b| b.box_loss(
        &bl().with_threshold_weight(1.5, 0.5),
        boxes,
        boxes
    ));
    add!("BOX-9 threshold not finite", |b| b.box_loss(
        &bl().with_threshold_weight(0.5, f64::INFINITY),
        boxes,
        boxes
    ));
    add!("BOX-10 gradient buffer of the wrong length", |b| {
        let mut g = vec![T::from_f64(0.0); 4];
        b.box_loss(&bl(), Input::new(boxes).with_grad(&mut g), boxes)
    });
    add!("BOX-13 box_iou wrong box width", |b| {
        let mut out = vec![T::from_f64(0.0); 2];
        b.box_iou(BoxFormat::Xyxy, &boxes[..6], boxes, &mut out)
            .map(|_| Loss::PerItem(Vec::new()))
    });
    add!("BOX-13 box_iou output of the wrong size", |b| {
        let mut out = vec![T::from_f64(0.0); 3];
        b.box_iou(BoxFormat::Xyxy, boxes, boxes, &mut out)
            .map(|_| Loss::PerItem(Vec::new()))
    });
    add!("REG-1 negative beta", |b| b.smooth_l1(
        &SmoothL1 {
            beta: -1.0,
            reduction: Reduction::Mean
        },
        e4,
        e4
    ));
    add!("REG-1 length mismatch", |b| b.smooth_l1(
        &SmoothL1::default(),
        e4,
        &e4[..3]
    ));
    add!("REG-1 empty input", |b| b.smooth_l1(
        &SmoothL1::default(),
        &e4[..0],
        &e4[..0]
    ));
    add!("REG-3 zero delta", |b| b.huber(
        &Huber {
            delta: 0.0,
            reduction: Reduction::Mean
        },
        e4,
        e4
    ));
    add!("REG-3 length mismatch", |b| b.huber(
        &Huber::default(),
        e4,
        &e4[..2]
    ));
    add!("BIN-1 target outside [0, 1]", |b| {
        let t: Vec<T> = [0.0, 1.5, 0.0, 1.0].map(f).to_vec();
        b.bce_with_logits(&BceWithLogits::default(), e4, &t)
    });
    add!("BIN-1 NaN target", |b| {
        let t: Vec<T> = [0.0, f64::NAN, 0.0, 1.0].map(f).to_vec();
        b.bce_with_logits(&BceWithLogits::default(), e4, &t)
    });
    add!("BIN-1 pos_weight length does not divide the input", |b| b
        .bce_with_logits(
            &BceWithLogits {
                pos_weight: Some(vec![1.0, 2.0, 3.0]),
                reduction: Reduction::Mean
            },
            e4,
            e4
        ));
    add!("BIN-1 negative pos_weight", |b| b.bce_with_logits(
        &BceWithLogits {
            pos_weight: Some(vec![-1.0]),
            reduction: Reduction::Mean
        },
        e4,
        e4
    ));
    add!("BIN-3 negative gamma", |b| b.sigmoid_focal(
        &SigmoidFocal {
            gamma: -1.0,
            ..SigmoidFocal::default()
        },
        e4,
        e4
    ));
    add!("BIN-3 alpha above 1", |b| b.sigmoid_focal(
        &SigmoidFocal {
            alpha: 1.5,
            ..SigmoidFocal::default()
        },
        e4,
        e4
    ));
    add!("BIN-3 empty input", |b| b.sigmoid_focal(
        &SigmoidFocal::default(),
        &e4[..0],
        &e4[..0]
    ));
    // TOL-4: per-element upstream values must be finite, as a scalar must.
    let none = Reduction::None;
    add!("TOL-4 cross-entropy non-finite per-element upstream", |b| b
        .cross_entropy(
            &ce().with_reduction(none),
            Input::matrix(z6, 2, 3).with_upstream(Upstream::PerElement(&[1.0, f64::INFINITY])),
            &[0, 1]
        ));
    add!("TOL-4 box loss NaN per-element upstream", |b| b.box_loss(
        &bl().with_reduction(none),
        Input::new(boxes).with_upstream(Upstream::PerElement(&[f64::NAN, 1.0])),
        boxes
    ));
    add!("TOL-4 BCE non-finite per-element upstream", |b| b
        .bce_with_logits(
            &BceWithLogits {
                pos_weight: None,
                reduction: none
            },
            Input::new(e4).with_upstream(Upstream::PerElement(&[1.0, f64::NEG_INFINITY, 1.0, 1.0])),
            e4
        ));
    if T::NAME == "f32" {
        // TOL-4: the f32 domain of parameters and upstream gradients (f32 data only).
        add!(
            "TOL-4 f32: smooth L1 beta below the normal f32 range",
            |b| b.smooth_l1(
                &SmoothL1 {
                    beta: 1e-40,
                    reduction: Reduction::Mean
                },
                e4,
                e4
            )
        );
        add!("TOL-4 f32: Huber delta beyond f32", |b| b.huber(
            &Huber {
                delta: 1e39,
                reduction: Reduction::Mean
            },
            e4,
            e4
        ));
        add!("TOL-4 f32: box eps below the normal f32 range", |b| b
            .box_loss(&bl().with_eps(1e-40), boxes, boxes));
        add!("TOL-4 f32: focal gamma beyond f32", |b| b.sigmoid_focal(
            &SigmoidFocal {
                gamma: 1e300,
                ..SigmoidFocal::default()
            },
            e4,
            e4
        ));
        add!("TOL-4 f32: BCE pos_weight beyond f32", |b| b
            .bce_with_logits(
                &BceWithLogits {
                    pos_weight: Some(vec![1e39]),
                    reduction: Reduction::Mean
                },
                e4,
                e4
            ));
        add!("TOL-4 f32: class weight beyond f32", |b| b.cross_entropy(
            &ce()
                .with_label_smoothing(0.1)
                .with_class_weights(vec![1.0, 1e300, 1.0]),
            Input::matrix(z6, 2, 3),
            &[0, 1]
        ));
        add!("TOL-4 f32: scalar upstream beyond f32", |b| b.smooth_l1(
            &SmoothL1::default(),
            Input::new(e4).with_upstream(Upstream::Scalar(1e39)),
            e4
        ));
        add!("TOL-4 f32: per-element upstream beyond f32", |b| b.huber(
            &Huber {
                delta: 1.0,
                reduction: none
            },
            Input::new(e4).with_upstream(Upstream::PerElement(&[1.0, 1.0, -1e39, 1.0])),
            e4
        ));
    }
    v
}

/// Bad input: the backend refuses with the same typed error as the reference, without panicking
/// and without writing a buffer ([`untouched_on_error`]).
pub fn error_cases<T: Element, B: Backend<T> + ?Sized>(backend: &B) -> Report
where
    ReferenceBackend: Backend<T>,
{
    let mut report = Report {
        backend: format!("{}/{}", backend.name(), T::NAME),
        entries: Vec::new(),
    };
    let data = BadData::<T>::new();
    let ours = bad_calls::<T, B>(&data);
    let reference = bad_calls::<T, ReferenceBackend>(&data);
    for ((name, call), (_, ref_call)) in ours.iter().zip(reference.iter()) {
        let want = ref_call(&ReferenceBackend);
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(backend)));
        let outcome = match (got, want) {
            (Err(_), _) => Outcome::Failed("panicked".into()),
            (_, Ok(_)) => Outcome::Failed("the reference accepted this input".into()),
            (Ok(Ok(_)), Err(w)) => Outcome::Failed(format!("accepted; the reference says: {w}")),
            // Compared through Debug so that a NaN parameter value matches itself.
            (Ok(Err(g)), Err(w)) if format!("{g:?}") == format!("{w:?}") => Outcome::Passed,
            (Ok(Err(g)), Err(w)) => Outcome::Failed(format!("error {g:?}, want {w:?}")),
        };
        report.push("errors", *name, outcome);
    }
    report.extend(untouched_on_error(backend));
    report
}

/// On a refused call the backend writes nothing: the gradient buffer, or the input of an
/// in-place call, is left as it was (bad target values are found before any backend runs).
pub fn untouched_on_error<T: Element, B: Backend<T> + ?Sized>(backend: &B) -> Report {
    let mut report = Report {
        backend: format!("{}/{}", backend.name(), T::NAME),
        entries: Vec::new(),
    };
    let f = |v: f64| T::from_f64(v);
    let z: Vec<T> = (0..6).map(|i| f(i as f64 * 0.3 - 0.5)).collect();
    let sentinel = vec![f(7.0); 6];
    let mut check = |name: &'static str, got: Result<Loss, LossError>, buf: &[T], want: &[T]| {
        let same = buf
            .iter()
            .zip(want)
            .all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits());
        let outcome = match got {
            Ok(_) => Outcome::Failed("accepted a bad call".into()),
            Err(_) if same => Outcome::Passed,
            Err(_) => Outcome::Failed("the buffer was written".into()),
        };
        report.push("errors", name, outcome);
    };
    let ce = CrossEntropy::default();
    let mut g = sentinel.clone();
    let got = backend.cross_entropy(&ce, Input::matrix(&z, 2, 3).with_grad(&mut g), &[0, 3]);
    check(
        "CE-2 bad target leaves the gradient buffer untouched",
        got,
        &g,
        &sentinel,
    );
    let mut zz = z.clone();
    let got = backend.cross_entropy(&ce, Input::in_place(&mut zz).shaped(2, 3), &[-7, 0]);
    check(
        "CE-2 bad target leaves an in-place input untouched",
        got,
        &zz,
        &z,
    );
    let mut g = sentinel.clone();
    let t: Vec<T> = [0.0, 1.0, 2.0, 0.0, 1.0, 0.5].map(f).to_vec();
    let got = backend.bce_with_logits(
        &BceWithLogits::default(),
        Input::new(&z).with_grad(&mut g),
        &t,
    );
    check(
        "BIN-1 bad target leaves the gradient buffer untouched",
        got,
        &g,
        &sentinel,
    );
    let mut zz = z.clone();
    let got = backend.sigmoid_focal(&SigmoidFocal::default(), Input::in_place(&mut zz), &t);
    check(
        "BIN-3 bad target leaves an in-place input untouched",
        got,
        &zz,
        &z,
    );
    report
}

/// Every check against `backend`.
pub fn run_all<T: Element, B: Backend<T> + ?Sized>(backend: &B, tol: &Tolerances) -> Report
where
    ReferenceBackend: Backend<T>,
{
    let mut r = torch_cases::<T, B>(backend, tol);
    r.extend(random_cases::<T, B>(backend, &tol.reference));
    r.extend(error_cases::<T, B>(backend));
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
        fn conformance_random_cases() {
            let backend = $backend;
            let r = $crate::conformance::random_cases::<$elem, _>(&backend, &$tol.reference);
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
