//! The f64 reference reproduces every dense-detector case of `spec/cases/detection_dense.json`
//! (ultralytics `DFLoss`, `VarifocalLoss`, `probiou`, `batch_probiou` and mmdetection's
//! `distribution_focal_loss`, `quality_focal_loss`, `varifocal_loss` in float64, gradients by
//! autograd) within `TOL-1`, and the runner can fail on them.

use smoothloss_core::ReferenceBackend;
use smoothloss_spec::conformance::{self, Tolerances};
use smoothloss_spec::covers;

fn run_prefix(prefix: &str) -> usize {
    let mut file = smoothloss_spec::detection_dense_cases();
    file.cases.retain(|c| c.id.starts_with(prefix));
    let report = conformance::case_file::<f64, _>(&ReferenceBackend, &file, &Tolerances::F64);
    assert!(report.all_passed(), "{report}");
    file.cases.len()
}

#[test]
fn reference_matches_ultralytics_dfloss() {
    covers!("DFL-1");
    covers!("DFL-2");
    covers!("DFL-3");
    covers!("DFL-4");
    assert_eq!(run_prefix("ultra-dfl-"), 14);
}

#[test]
fn reference_matches_mmdetection_distribution_focal_loss() {
    covers!("DFL-1");
    covers!("DFL-4");
    assert_eq!(run_prefix("mmdet-dfl-"), 5);
}

#[test]
fn reference_matches_ultralytics_varifocal_loss() {
    covers!("QUAL-1");
    covers!("QUAL-3");
    covers!("QUAL-4");
    assert_eq!(run_prefix("ultra-vfl-"), 4);
}

#[test]
fn reference_matches_mmdetection_varifocal_loss() {
    covers!("QUAL-2");
    covers!("QUAL-3");
    covers!("QUAL-4");
    assert_eq!(run_prefix("mmdet-vfl-"), 5);
}

#[test]
fn reference_matches_mmdetection_quality_focal_loss() {
    covers!("QUAL-5");
    covers!("QUAL-6");
    covers!("QUAL-7");
    assert_eq!(run_prefix("mmdet-qfl-"), 5);
}

#[test]
fn reference_matches_ultralytics_probiou() {
    covers!("OBB-1");
    covers!("OBB-2");
    covers!("OBB-3");
    covers!("OBB-4");
    covers!("OBB-5");
    assert_eq!(run_prefix("ultra-probiou-"), 8);
}

#[test]
fn reference_matches_ultralytics_batch_probiou() {
    covers!("OBB-6");
    assert_eq!(run_prefix("ultra-batch-probiou-"), 3);
}

#[test]
fn every_detection_case_decodes_and_a_wrong_value_fails() {
    let mut file = smoothloss_spec::detection_dense_cases();
    assert_eq!(file.cases.len(), 44);
    for case in &file.cases {
        case.decode().unwrap_or_else(|e| panic!("{e}"));
    }
    for case in &mut file.cases {
        let v = case.expected["loss"][0]
            .as_f64()
            .or(case.expected["iou"][0].as_f64());
        let key = if case.expected.get("loss").is_some() {
            "loss"
        } else {
            "iou"
        };
        case.expected[key][0] = serde_json::json!(v.unwrap() * (1.0 + 1e-6) + 1e-6);
    }
    let n = file.cases.len();
    let report = conformance::case_file::<f64, _>(&ReferenceBackend, &file, &Tolerances::F64);
    assert_eq!(report.failed(), n, "{report}");
}
