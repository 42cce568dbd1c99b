//! The standing fuzz campaign (`smoothloss_spec::fuzz`, issue 14) on the CUDA kernels through
//! the CPU emulation: every adversarial call of the spec's generators runs through
//! [`EmuBackend`] (the front door's validation, then the kernels' launch sequence on the g++
//! build of the `.cu` sources) and is checked against the `f64` reference on the same
//! `f32`-rounded inputs (`TOL-2`, `TOL-4`'s non-finite rule, the same error, no panic). The
//! kept regressions run first. `PROPTEST_CASES` sets the calls per run (default
//! [`DEFAULT_CALLS`]; the emulation runs every CUDA thread as a fiber with a context switch at
//! each barrier, so far fewer calls than the CPU backend's campaign fit in the same time), `SMOOTHLOSS_FUZZ_SEED` fixes the seed
//! and `SMOOTHLOSS_FUZZ_SECONDS` repeats runs: `cargo xtask fuzz` runs it (the short run of CI)
//! and `cargo xtask fuzz --minutes N` for longer.

use super::suite::EmuBackend;
use super::*;
use smoothloss_spec::fuzz::{campaign, check};

/// Calls per run without `PROPTEST_CASES` (a plain `cargo test`).
const DEFAULT_CALLS: u32 = 48;

#[test]
fn fuzz_cuda_kernels_through_the_cpu_emulation() {
    if emu().is_none() {
        return;
    }
    campaign("cuda-emulation", file!(), DEFAULT_CALLS, |fc| {
        check(&EmuBackend, fc).map_err(|e| format!("cuda kernels (emulated): {e}"))
    });
}
