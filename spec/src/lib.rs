//! The smoothloss spec as code: the PyTorch cases and their loader, the comparison rules
//! (`TOL-*` in `spec/formulas/tolerance.md`), proptest strategies, the test kit ([`kit`]), and a
//! reusable conformance suite that checks any backend with one macro call:
//!
//! ```rust,test_harness
//! // In a backend crate's tests/conformance.rs (here the reference backend stands in for
//! // yours; this example is compiled and run with the test harness, as `cargo test` would):
//! smoothloss_spec::conformance_tests!(
//!     smoothloss_core::ReferenceBackend,
//!     f32,
//!     smoothloss_spec::conformance::Tolerances::F32
//! );
//! ```
//!
//! The environment variable `SMOOTHLOSS_CASES` filters cases by substring of their id
//! (as regex-test does), e.g. `SMOOTHLOSS_CASES=torch-ce cargo test -p smoothloss-spec`.
#![warn(missing_docs)]

pub mod cases;
pub mod conformance;
pub mod coverage;
pub mod formulas;
pub mod fuzz;
pub mod kit;
pub mod random;
pub mod runner;
pub mod strategies;
pub mod tolerance;

pub use cases::{Case, CaseError, CaseFile, Expected, LossCall};
pub use conformance::Report;
pub use runner::{Output, run_call};
pub use tolerance::{Mismatch, Tolerance};

/// The PyTorch cases shipped with the spec (`spec/cases/torch_cases.json`).
pub const TORCH_CASES_JSON: &str = include_str!("../cases/torch_cases.json");

/// Parses the bundled PyTorch cases.
pub fn torch_cases() -> CaseFile {
    CaseFile::parse(TORCH_CASES_JSON).expect("the bundled case file is valid")
}

/// The detection box-loss cases (`spec/cases/detection_boxes.json`, from
/// `spec/cases/gen_detection_boxes.py`: ultralytics, torchvision, mmdetection's formulas and
/// the papers' equations in PyTorch float64).
pub const DETECTION_BOXES_JSON: &str = include_str!("../cases/detection_boxes.json");

/// Parses the bundled detection box-loss cases.
pub fn detection_boxes_cases() -> CaseFile {
    CaseFile::parse(DETECTION_BOXES_JSON).expect("the bundled case file is valid")
}

/// The case filter from `SMOOTHLOSS_CASES` (substring of the case id), if set.
pub fn case_filter() -> Option<String> {
    std::env::var("SMOOTHLOSS_CASES")
        .ok()
        .filter(|s| !s.is_empty())
}
