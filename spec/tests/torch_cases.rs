//! TOL-1: the f64 reference reproduces every PyTorch case within `Tolerance::REFERENCE` (the rule
//! and its figures are `TOL-1` of `spec/formulas/tolerance.md`); the case reader's errors.

use smoothloss_core::ReferenceBackend;
use smoothloss_spec::conformance::{self, Tolerances};
use smoothloss_spec::covers;
use smoothloss_spec::{CaseError, CaseFile};

#[test]
fn reference_passes_every_torch_case_tol_1() {
    covers!("TOL-1");
    let file = smoothloss_spec::torch_cases();
    if smoothloss_spec::case_filter().is_none() {
        assert_eq!(file.cases.len(), 278, "the bundled file holds 278 cases");
    }
    let report = conformance::case_file::<f64, _>(&ReferenceBackend, &file, &Tolerances::F64);
    assert!(report.all_passed(), "{report}");
}

#[test]
fn reference_passes_every_llm_ce_case_tol_1() {
    covers!("CE-10");
    covers!("CE-11");
    covers!("CE-12");
    covers!("CE-13");
    let file = smoothloss_spec::llm_ce_cases();
    if smoothloss_spec::case_filter().is_none() {
        assert_eq!(file.cases.len(), 160, "the bundled file holds 160 cases");
    }
    let report = conformance::case_file::<f64, _>(&ReferenceBackend, &file, &Tolerances::F64);
    assert!(report.all_passed(), "{report}");
}

#[test]
fn every_case_loss_kind_is_decoded() {
    for case in &smoothloss_spec::torch_cases().cases {
        case.decode().unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn unknown_format_is_rejected() {
    let err = CaseFile::parse(r#"{"format":"smoothloss-cases/2","cases":[]}"#).unwrap_err();
    assert!(matches!(err, CaseError::UnknownFormat(f) if f == "smoothloss-cases/2"));
    let err = CaseFile::parse(r#"{"cases":[]}"#).unwrap_err();
    assert!(matches!(err, CaseError::UnknownFormat(_)));
    assert!(matches!(
        CaseFile::parse("not json"),
        Err(CaseError::Json(_))
    ));
}

#[test]
fn unknown_loss_and_parameter_are_reported_unsupported() {
    let text = r#"{"format":"smoothloss-cases/1","cases":[
      {"id":"a","loss":"triplet","params":{},"inputs":{},"expected":{"loss":[0]}},
      {"id":"b","loss":"huber","params":{"delta":1.0,"reduction":"mean","weird":1},
       "inputs":{"pred":[1.0],"target":[0.0]},"expected":{"loss":[0.5]}},
      {"id":"c","loss":"box_iou_loss","params":{"kind":"powerful_iou","format":"xyxy","eps":1e-7,"reduction":"mean"},
       "inputs":{"pred":[0,0,1,1],"target":[0,0,1,1]},"expected":{"loss":[0]}}]}"#;
    let file = CaseFile::parse(text).unwrap();
    for case in &file.cases {
        assert!(
            matches!(case.decode(), Err(CaseError::Unsupported { .. })),
            "{}",
            case.id
        );
    }
    let report = conformance::case_file::<f64, _>(&ReferenceBackend, &file, &Tolerances::F64);
    assert_eq!(report.unsupported(), 3);
    assert!(!report.all_passed());
}

#[test]
fn malformed_case_is_an_error_not_a_panic() {
    let text = r#"{"format":"smoothloss-cases/1","cases":[
      {"id":"m","loss":"cross_entropy","params":{"reduction":"mean"},
       "inputs":{"logits":{"shape":[2,2],"data":[1,2,3]},"targets":[0,1]},"expected":{"loss":[0]}}]}"#;
    let file = CaseFile::parse(text).unwrap();
    assert!(matches!(
        file.cases[0].decode(),
        Err(CaseError::Malformed { .. })
    ));
}

#[test]
fn wrong_expected_values_fail() {
    // The runner must be able to fail: perturb one expected value of a real case.
    let mut file = smoothloss_spec::torch_cases();
    file.cases.truncate(1);
    let loss = file.cases[0].expected["loss"][0].as_f64().unwrap();
    file.cases[0].expected["loss"][0] = serde_json::json!(loss * (1.0 + 1e-6));
    let report = conformance::case_file::<f64, _>(&ReferenceBackend, &file, &Tolerances::F64);
    assert_eq!(report.failed(), 1, "{report}");
}
