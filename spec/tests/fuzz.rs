//! The fuzz campaign (`smoothloss_spec::fuzz`) on the reference backend at f32: every public
//! entry point against the reference at f64 on the same rounded inputs, no panic. The CPU
//! backend's campaign is `crates/backend-cpu/tests/fuzz.rs`; `cargo xtask fuzz --minutes N`
//! runs both for longer.

use smoothloss_core::ReferenceBackend;
use smoothloss_spec::fuzz::{campaign, check};

#[test]
fn fuzz_reference_f32() {
    campaign("reference/f32", file!(), 64, |fc| {
        check(&ReferenceBackend, fc)
    });
}
