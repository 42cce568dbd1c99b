//! The case runner's reports (issue 14, item 7): lengths are reported as lengths.

use smoothloss_core::ReferenceBackend;
use smoothloss_spec::CaseFile;
use smoothloss_spec::conformance::{Tolerances, case_file};

#[test]
fn a_length_mismatch_is_reported_as_a_length_not_a_value() {
    // `sum` returns one value; the file wants three.
    let text = r#"{"format":"smoothloss-cases/1","cases":[{"id":"len","loss":"huber",
        "params":{"delta":1.0,"reduction":"sum"},"inputs":{"pred":[2.0,0.5],"target":[0.0,0.0]},
        "expected":{"loss":[1.625,1.0,1.0],"grad":{"pred":[1.0,0.5]}}}]}"#;
    let file = CaseFile::parse(text).unwrap();
    let report = case_file::<f64, _>(&ReferenceBackend, &file, &Tolerances::F64);
    let text = report.to_string();
    assert_eq!(report.failed(), 1, "{text}");
    assert!(text.contains("loss length: got 1 values, want 3"), "{text}");
    assert!(!text.contains("got 1e0, want 3e0"), "{text}");
    // A gradient of the wrong length likewise.
    let file = CaseFile::parse(&text_with_grad("[1.0,0.5,0.0]")).unwrap();
    let text = case_file::<f64, _>(&ReferenceBackend, &file, &Tolerances::F64).to_string();
    assert!(text.contains("grad length: got 2 values, want 3"), "{text}");
}

fn text_with_grad(grad: &str) -> String {
    format!(
        r#"{{"format":"smoothloss-cases/1","cases":[{{"id":"len","loss":"huber",
        "params":{{"delta":1.0,"reduction":"sum"}},"inputs":{{"pred":[2.0,0.5],"target":[0.0,0.0]}},
        "expected":{{"loss":[1.625],"grad":{{"pred":{grad}}}}}}}]}}"#
    )
}
