//! The linear cross-entropy cases (`LCE-*`, `spec/cases/linear_ce.json`) against any backend:
//! the loss and the three gradients against PyTorch's float64 composite, then against the f64
//! reference on the same rounded inputs.

use super::{AbsScale, Outcome, Report, Tolerances, outcome_of_error};
use crate::cases::linear_ce::{LinearCeOutput, run_linear_ce};
use crate::cases::{Case, CaseError, CaseFile};
use crate::tolerance::Tolerance;
use smoothloss_core::{Backend, Element, ReferenceBackend, Upstream};

/// The tolerances of the linear cross-entropy for a backend held to `tol` (`LCE-5`): the
/// same for `f64` data (`TOL-1`), the wider `f32` bounds of `LCE-5` otherwise (the logits come
/// out of an `f32` GEMM).
pub fn linear_tolerances(tol: &Tolerances) -> Tolerances {
    if *tol == Tolerances::F64 {
        *tol
    } else {
        Tolerances {
            torch: Tolerance::LCE_F32_TORCH_CASES,
            reference: Tolerance::LCE_F32,
        }
    }
}

/// Compares an output with the expected loss and gradients.
pub fn compare_linear(
    got: &LinearCeOutput,
    want: &LinearCeOutput,
    tol: &Tolerance,
    weight: f64,
) -> Outcome {
    if got.loss.len() != want.loss.len() {
        return Outcome::Failed(format!(
            "loss length: got {} values, want {}",
            got.loss.len(),
            want.loss.len()
        ));
    }
    if let Err(m) = tol.check_scaled(&got.loss, &want.loss, |_| weight) {
        return Outcome::Failed(format!("loss {m}"));
    }
    if let Some(wg) = &want.grads {
        let Some(gg) = &got.grads else {
            return Outcome::Failed("no gradient returned".into());
        };
        for (name, (g, w)) in ["hidden", "weight", "bias"].iter().zip(gg.iter().zip(wg)) {
            if let Err(m) = tol.check_scaled(g, w, |_| weight) {
                return Outcome::Failed(format!("grad.{name} {m}"));
            }
        }
    }
    Outcome::Passed
}

/// One case on `backend`: against the case's expected values, then against the reference.
pub fn check_case<T: Element, B: Backend<T> + ?Sized>(
    backend: &B,
    case: &Case,
    tol: &Tolerances,
) -> Outcome {
    let tol = linear_tolerances(tol);
    let (call, expected) = match case.decode_linear_ce() {
        Ok(d) => d,
        Err(CaseError::Unsupported { what, .. }) => return Outcome::Unsupported(what),
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let wmax = AbsScale::of_weights(call.cfg.ce.class_weights.as_deref());
    let got = match run_linear_ce::<T, B>(backend, &call, Upstream::ONE, true) {
        Ok(o) => o,
        Err(e) => return outcome_of_error(e),
    };
    let outcome = compare_linear(&got, &expected, &tol.torch, wmax);
    if outcome != Outcome::Passed {
        return outcome;
    }
    match run_linear_ce::<f64, _>(&ReferenceBackend, &call.rounded::<T>(), Upstream::ONE, true) {
        Ok(want) => match compare_linear(&got, &want, &tol.reference, wmax) {
            Outcome::Failed(m) => Outcome::Failed(format!("against the reference: {m}")),
            other => other,
        },
        Err(e) => outcome_of_error(e),
    }
}

/// Every linear cross-entropy case of `file` (filtered by `SMOOTHLOSS_CASES`) on `backend`.
pub fn linear_case_file<T: Element, B: Backend<T> + ?Sized>(
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
        report.push("torch", &case.id, check_case::<T, B>(backend, case, tol));
    }
    report
}

/// The bundled linear cross-entropy cases (`spec/cases/linear_ce.json`).
pub fn linear_ce_cases<T: Element, B: Backend<T> + ?Sized>(
    backend: &B,
    tol: &Tolerances,
) -> Report {
    linear_case_file(backend, &crate::linear_ce_cases(), tol)
}
