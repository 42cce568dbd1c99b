//! TOL-2: the comparison machinery with f32 data: the reference backend run on f32 data (f64
//! math, rounded once) passes the whole conformance suite at the f32 tolerances, so a failing
//! f32 backend fails because of its own arithmetic, not because of input rounding.

use smoothloss_core::ReferenceBackend;
use smoothloss_spec::conformance::{Tolerances, run_all};
use smoothloss_spec::covers;

#[test]
fn reference_backend_with_f32_data_passes_tol_2() {
    covers!("TOL-2");
    let report = run_all::<f32, _>(&ReferenceBackend, &Tolerances::F32);
    assert!(report.all_passed(), "{report}");
    assert!(report.passed() > 500, "{}", report.summary());
}

#[test]
fn reference_backend_with_f64_data_passes_everything() {
    let report = run_all::<f64, _>(&ReferenceBackend, &Tolerances::F64);
    assert!(report.all_passed(), "{report}");
}
